"""The ASGI app of `imgcls serve` (FastAPI on uvicorn) and the function that runs it.

FastAPI rather than bare Starlette: the same app, plus typed endpoints from which it writes the OpenAPI
schema (/openapi.json) and checks the upload form. Its Swagger and ReDoc pages are turned off: they
load their scripts from a CDN, and nothing outside this machine is fetched.

    GET  /            the page (one HTML file, inline CSS and JS, no build step)
    POST /predict     multipart, field "files" (one or more): `imgcls predict --json`'s list;
                      ?cam=true adds each image's Grad-CAM overlay ("cam": PNG data URL, layer, class)
    GET  /model       the model card;  GET /healthz  liveness and queue state

Refusals: 411 without Content-Length, 413 a file above --max-upload-mb (or more than --max-files, or
images that would take more than --max-megapixels to decode and resize), 415 a file that is not an
image (or a decompression bomb) with the reason, 429 + Retry-After when every worker is busy and the
queue is full, answered before any of the body is read. No endpoint takes a path: nothing on the server
is read on a request's say-so.

Memory: a POST takes its place in the pool first; only then is its body read, each file streamed into
a temporary file (Starlette's spool: in memory up to 1 MB, then on disk in the temporary folder) that
the worker decodes from, never read whole into memory. So at most --workers + --queue requests have
uploads stored at once, each bounded by its Content-Length; see service.py for the decoding. After
each request the memory malloc holds freed goes back to the system (runtime.return_freed_memory), so a
server's resident size returns to where it was instead of staying at its busiest request's.
"""
from __future__ import annotations

import asyncio
import functools
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from importlib import resources
from typing import Any

from imgcls.errors import ConfigError, DataError
from imgcls.runtime import return_freed_memory
from imgcls.serve.options import ServeOptions
from imgcls.serve.service import BoundedPool, Busy, ModelService, TooBig, reason_of

try:
    from fastapi import FastAPI, Query, Request
    from fastapi.responses import HTMLResponse, JSONResponse
except ImportError:  # the `serve` extra is optional; create_app says how to get it
    FastAPI = None

MB = 1 << 20
# /predict reads its form itself (after taking a place in the pool), so the schema is given here
_FILES = {"type": "array", "items": {"type": "string", "format": "binary"}, "description": "one or more image files"}
_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"], "properties": {"files": _FILES}}}}}}
_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data: blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'")


def _need_fastapi() -> None:
    if FastAPI is None:
        raise ConfigError("imgcls serve needs FastAPI, uvicorn and python-multipart: pip install 'imgcls[serve]'")


def _error(status: int, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)


def create_app(service: ModelService, options: ServeOptions | None = None) -> FastAPI:
    """The app over `service`; inference runs in a BoundedPool(options.workers, options.queue)."""
    _need_fastapi()
    opts = options or ServeOptions()
    limit = int(opts.max_upload_mb * MB)
    max_pixels = int(opts.max_megapixels * 1e6)
    page = resources.files("imgcls.serve").joinpath("page.html").read_text(encoding="utf-8")
    pool = BoundedPool(opts.workers, opts.queue)
    topk = min(opts.topk, len(service.predictor.classes))

    @functools.cache
    def card() -> dict[str, Any]:  # made at the first GET /model: the model does not change while served
        return service.card() | {"topk": topk, "max_upload_mb": opts.max_upload_mb, "max_files": opts.max_files,
                                 "max_megapixels": opts.max_megapixels}

    def run(uploads: list[tuple[str, Any]], cam: bool) -> list[dict[str, Any]]:
        """One request's job, on a worker: what it freed goes back to the system, not kept by malloc."""
        try:
            return service.predict(uploads, topk=topk, cam=cam, max_pixels=max_pixels)
        finally:
            return_freed_memory()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        pool.shutdown()  # Ctrl-C: uvicorn has finished the open requests; drop what still waits

    app = FastAPI(title="imgcls serve", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Classify photos with a trained imgcls model; the page is at /.")

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        """Refuse an oversized body from its header, before any of it is read or spooled to disk."""
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return _error(411, "send a Content-Length header")
            if int(length) > opts.max_files * limit + MB:
                return _error(413, f"request of {int(length) / MB:.1f} MB: at most {opts.max_files} files of "
                                   f"{opts.max_upload_mb:g} MB each")
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-store"})

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "workers": pool.workers, "queue": pool.queue}

    @app.get("/model")
    async def model_card() -> dict[str, Any]:
        return card()

    @app.post("/predict", openapi_extra=_UPLOAD_BODY,
              responses={413: {"description": "a file above the size limit, too many files, or too many pixels"},
                         415: {"description": "a file that is not a readable image"},
                         422: {"description": "no files in the form"},
                         429: {"description": "busy: every worker and queue place taken"}})
    async def predict(request: Request,
                      cam: bool = Query(False, description="add each image's Grad-CAM overlay")) -> Any:
        """The top classes of each uploaded image: `imgcls predict --json`'s list (path = the file's name)."""
        try:
            place = pool.hold()  # before the body is read: a busy server reads and stores nothing of it
        except Busy as e:
            return _error(429, f"busy: every worker is taken and {pool.queue} request(s) wait; retry after "
                               f"{e.retry_after} s", **{"Retry-After": str(e.retry_after)})
        with place:
            async with request.form() as form:  # files stream into spooled temporary files
                files = [f for f in form.getlist("files") if not isinstance(f, str)]
                if not files:
                    return _error(422, 'no files: send the images as multipart/form-data in the field "files"')
                if len(files) > opts.max_files:
                    return _error(413, f"{len(files)} files: at most {opts.max_files} a request")
                for f in files:
                    if f.size is not None and f.size > limit:
                        return _error(413, f"{f.filename or 'upload'}: {f.size / MB:.1f} MB, above the limit of "
                                           f"{opts.max_upload_mb:g} MB")
                uploads = [(f.filename or "upload", f.file) for f in files]
                future = place.run(run, uploads, cam)
                try:
                    return JSONResponse(await asyncio.wrap_future(future))
                except TooBig as e:
                    return _error(413, reason_of(e))
                except DataError as e:
                    return _error(415, reason_of(e))

    return app


def _version() -> str:
    from imgcls import __version__

    return __version__


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a ConfigError that says why not (in use, no such address)."""
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                    backlog=128)
    except OSError as e:
        why = "in use; pick another --port (or 0 for any free one)" if e.errno == 98 else e.strerror or str(e)
        raise ConfigError(f"--host {host} --port {port}: cannot listen there: {why}") from None


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(model: str, options: ServeOptions, *, log: Any = sys.stderr) -> int:
    """Run `imgcls serve MODEL` until Ctrl-C (or SIGTERM): open requests finish, then it returns 0."""
    _need_fastapi()
    from imgcls.serve.service import open_model

    service = open_model(model, device=options.device, abstain=options.abstain)  # a bad model is refused before the port is taken
    app = create_app(service, options)
    sock = bind(options.host, options.port)
    if options.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"imgcls: warning: --host {options.host} makes the page reachable from other machines, "
              "with no authentication", file=log)
    card = service.card()
    cam = f"Grad-CAM at {card['cam']['layer']}" if card["cam"]["available"] else "no Grad-CAM"
    print(f"imgcls serve: {card['source']} ({card['architecture']}, {card['num_classes']} classes, {cam}) at "
          f"{url_of(sock)}  (Ctrl-C stops)", file=log, flush=True)
    _server(app, timeout_graceful_shutdown=10).run(sockets=[sock])
    return 0


def _server(app: FastAPI, **config: Any):
    """A uvicorn server for `app` that logs warnings only (no access log)."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, **config))


@contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `app` from a background thread for the `with` block; yields its URL. The socket listens
    before the block starts, so a client may connect at once (uvicorn accepts it when it is up)."""
    sock = bind(host, port)
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="imgcls-serve", daemon=True)
    thread.start()
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
