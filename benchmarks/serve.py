"""`imgcls serve` under load: N concurrent clients on loopback, bounded in requests and in time.

For each MODEL (anything `imgcls serve` takes: a checkpoint today, an exported .onnx file once export
exists) a server is started as its own process on 127.0.0.1 (any free port; no other address is ever
used), the clients POST photos to /predict (one image a request, cycling over --images) until
--requests are answered or --seconds pass, then the server is stopped with Ctrl-C (SIGINT), as a user
would. One row per model: answered requests/s, p50/p95 latency of the answered ones, 429 refusals, and
the server's peak resident memory (VmHWM). Without MODEL a fresh resnet18 checkpoint (random weights,
5 classes, 224 px preprocessing) is written to a temporary folder: the speed does not depend on weights.

    python benchmarks/serve.py runs/exp1/best.ckpt --clients 4 --requests 200 --seconds 60
    python benchmarks/serve.py --quick            # a few seconds: checks that the script runs

--memory N measures what big uploads cost instead: the app runs in this process (serve.app.running), and
N requests of --files synthetic photos of --side x --side px each (a smooth gradient, JPEG quality 75,
about 1 MB for 8000 px; --pad-mb pads every file with bytes after its end-of-image marker, which a
decoder never reads, to send big bodies) are POSTed by --clients clients at once. The table gives this
process's resident memory (VmRSS, /proc/self/status) with the server up and idle (the baseline), after
one request of one photo and one of --files photos (the model warm; neither is counted in N), its peak
(VmHWM) and at the end, then the resident memory after the 1st, 10th, 100th ... of the N requests. The
clients stream each photo from its file, so what they hold is a few buffers; a 429 is counted, not retried.

    python benchmarks/serve.py --memory 50                                  # 50 x 16 photos of 8000 x 8000
    python benchmarks/serve.py --memory 12 --clients 6 --queue 1 --pad-mb 19  # 6 clients, 16 x 19 MB each
"""
from __future__ import annotations

import argparse
import contextlib
import os
import queue
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SHARED_PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "flower_photos"
HOST = "127.0.0.1"  # loopback only, by design


def fresh_checkpoint(folder: Path) -> Path:
    from imgcls.checkpoint import save_checkpoint
    from imgcls.data import IMAGENET_MEAN, IMAGENET_STD
    from imgcls.models import create_model

    model = create_model("resnet18", num_classes=5)
    return save_checkpoint({"arch": {"model": "resnet18", "num_classes": 5, "model_kwargs": {}, "head": "linear",
                                     "base_classes": None},
                            "model": model.state_dict(), "classes": ["a", "b", "c", "d", "e"],
                            "preprocessing": {"resize": 256, "crop": 224, "mean": list(IMAGENET_MEAN),
                                              "std": list(IMAGENET_STD), "interpolation": "bilinear"}},
                           folder / "resnet18-random.ckpt")


def start_server(model: str, workers: int, queue_size: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "imgcls", "serve", model, "--host", HOST, "--port", "0",
           "--workers", str(workers), "--queue", str(queue_size)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        found = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
        if found:
            return proc, found.group(1)
    proc.kill()
    raise SystemExit(f"the server for {model} did not start (exit code {proc.poll()})")


def peak_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None  # not Linux
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024


def status_mb(key: str) -> float:
    """VmRSS or VmHWM of this process, in MB (Linux)."""
    return int(re.search(rf"{key}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024


def gradient_jpeg(path: Path, side: int, pad_mb: float = 0) -> Path:
    """A smooth side x side gradient at JPEG quality 75 (about 1 MB for 8000 px), padded with `pad_mb` MB
    after its end-of-image marker; made in a child process, so its pixels never count in this one's peak."""
    code = ("import sys, numpy as np; from PIL import Image; s = int(sys.argv[2]); r = np.arange(s, dtype=np.uint16); "
            "g = ((r[:, None] + r[None, :]) * 255 // (2 * s - 2)).astype(np.uint8); "
            "Image.merge('RGB', [Image.fromarray(g), Image.fromarray(g.T.copy()), Image.fromarray(255 - g)])"
            ".save(sys.argv[1], quality=75)")
    subprocess.run([sys.executable, "-c", code, str(path), str(side)], check=True)
    if pad_mb:
        with open(path, "ab") as f:
            f.write(b"\0" * int(pad_mb * 1e6))
    return path


def memory(requests: int, *, files: int, side: int, clients: int, workers: int, queue_size: int,
           pad_mb: float) -> None:
    """The --memory benchmark (see the module docstring): one table row."""
    import httpx

    from imgcls.serve import ServeOptions, open_model
    from imgcls.serve.app import create_app, running

    tmp = tempfile.TemporaryDirectory()
    photo = gradient_jpeg(Path(tmp.name) / "gradient.jpg", side, pad_mb)
    size = photo.stat().st_size
    service = open_model(fresh_checkpoint(Path(tmp.name)), device="cpu")
    options = ServeOptions(workers=workers, queue=queue_size, max_upload_mb=max(20.0, size / 2**20 + 1))
    counts = {"ok": 0, "refused": 0, "failed": 0}
    lock, left = threading.Lock(), [requests]

    def post(http: httpx.Client, n: int = files) -> int:
        """POST n copies of the photo, each streamed from the file (the clients hold no upload in memory)."""
        with contextlib.ExitStack() as stack:
            upload = [("files", (f"{i}.jpg", stack.enter_context(open(photo, "rb")), "image/jpeg")) for i in range(n)]
            return http.post("/predict", files=upload).status_code

    trend: list[float] = []  # resident MB after each of the N requests

    def client(http: httpx.Client) -> None:
        while True:
            with lock:
                if not left[0]:
                    return
                left[0] -= 1
            code = post(http)
            with lock:
                counts["ok" if code == 200 else "refused" if code == 429 else "failed"] += 1
                trend.append(status_mb("VmRSS"))

    with running(create_app(service, options)) as url, httpx.Client(base_url=url, timeout=600) as http:
        assert http.get("/healthz").status_code == 200
        idle_mb = status_mb("VmRSS")
        assert post(http, 1) == 200  # the model's first run
        one_mb = status_mb("VmRSS")
        assert post(http) == 200  # the model warm at a batch of --files
        warm_mb = status_mb("VmRSS")
        start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(http,)) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        end_mb, peak_mb = status_mb("VmRSS"), status_mb("VmHWM")
    tmp.cleanup()
    print(f"{requests} requests of {files} photos of {side} x {side} px ({size / 1e6:.1f} MB each), {clients} "
          f"client(s), --workers {workers} --queue {queue_size}; {os.cpu_count()} CPUs; {wall:.0f} s")
    print(f"{'ok':>5} {'429':>5} {'fail':>5} {'idle MB':>8} {'1 photo':>8} {'warm MB':>8} {'peak MB':>8} "
          f"{'end MB':>7} {'end - idle':>11}")
    print(f"{counts['ok']:>5} {counts['refused']:>5} {counts['failed']:>5} {idle_mb:>8.0f} {one_mb:>8.0f} "
          f"{warm_mb:>8.0f} {peak_mb:>8.0f} {end_mb:>7.0f} {end_mb - idle_mb:>+11.0f}")
    marks = sorted({k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, len(trend)) if k <= len(trend)})
    print("resident MB after request " + ", ".join(f"{k}: {trend[k - 1]:.0f}" for k in marks))


def load(url: str, photos: list[Path], *, clients: int, requests: int, seconds: float, cam: bool) -> dict:
    import httpx

    blobs = [(p.name, p.read_bytes()) for p in photos]
    latencies: list[float] = []
    counts = {"ok": 0, "refused": 0, "failed": 0}
    lock, issued = threading.Lock(), [0]
    deadline = time.monotonic() + seconds

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while time.monotonic() < deadline:
                with lock:
                    if issued[0] >= requests:
                        return
                    i = issued[0]
                    issued[0] += 1
                name, data = blobs[(i + k) % len(blobs)]
                start = time.perf_counter()
                r = http.post(f"/predict?cam={'true' if cam else 'false'}", files={"files": (name, data)})
                took = time.perf_counter() - start
                with lock:
                    if r.status_code == 200:
                        counts["ok"] += 1
                        latencies.append(took)
                    elif r.status_code == 429:
                        counts["refused"] += 1
                    else:
                        counts["failed"] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else latencies * 19 or [float("nan")] * 19
    return {**counts, "wall": wall, "rps": counts["ok"] / wall, "p50": statistics.median(latencies or [float("nan")]),
            "p95": q[18]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", metavar="MODEL", help="checkpoints (or .onnx files) to serve, one row each "
                                                                "(default: a fresh resnet18 checkpoint)")
    ap.add_argument("--images", type=Path, default=SHARED_PHOTOS, help="folder of photos to send (searched recursively)")
    ap.add_argument("--clients", type=int, help="concurrent clients (default 4; --memory: 1)")
    ap.add_argument("--requests", type=int, default=200, help="stop after this many requests (default 200)")
    ap.add_argument("--seconds", type=float, default=60, help="stop after this long (default 60)")
    ap.add_argument("--workers", type=int, default=1, help="the server's --workers (default 1)")
    ap.add_argument("--queue", type=int, default=8, help="the server's --queue (default 8)")
    ap.add_argument("--cam", action=argparse.BooleanOptionalAction, default=False,
                    help="ask for the Grad-CAM overlay too (PyTorch models)")
    ap.add_argument("--quick", action="store_true", help="2 clients, 6 requests, 8 photos: checks the script runs")
    ap.add_argument("--memory", type=int, metavar="N", help="the memory benchmark instead: N requests of --files "
                                                           "synthetic photos, the app in this process")
    ap.add_argument("--files", type=int, default=16, help="--memory: photos per request (default 16)")
    ap.add_argument("--side", type=int, default=8000, help="--memory: photo side in px (default 8000)")
    ap.add_argument("--pad-mb", type=float, default=0, help="--memory: MB of padding after each photo's data")
    args = ap.parse_args()
    if args.memory:
        memory(args.memory, files=args.files, side=args.side, clients=args.clients or 1, workers=args.workers,
               queue_size=args.queue, pad_mb=args.pad_mb)
        return
    args.clients = args.clients or 4
    if args.quick:
        args.clients, args.requests, args.seconds = 2, 6, 60
    from imgcls.inference import expand_inputs

    photos = expand_inputs([args.images])[:8 if args.quick else 200]
    tmp = tempfile.TemporaryDirectory()
    models = args.models or [str(fresh_checkpoint(Path(tmp.name)))]
    print(f"{len(photos)} photos from {args.images}; {args.clients} clients, at most {args.requests} requests or "
          f"{args.seconds:g} s; server --workers {args.workers} --queue {args.queue}; cam {args.cam}; "
          f"{os.cpu_count()} CPUs")
    print(f"{'model':<28} {'ok':>5} {'429':>5} {'fail':>5} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'peak MB':>8}")
    for model in models:
        proc, url = start_server(model, args.workers, args.queue)
        try:
            r = load(url, photos, clients=args.clients, requests=args.requests, seconds=args.seconds, cam=args.cam)
            peak = peak_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGINT)  # Ctrl-C: the server finishes open requests and exits
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shown = f"{peak:8.0f}" if peak is not None else f"{'n/a':>8}"
        print(f"{Path(model).name[:28]:<28} {r['ok']:>5} {r['refused']:>5} {r['failed']:>5} {r['rps']:>7.2f} "
              f"{1000 * r['p50']:>8.1f} {1000 * r['p95']:>8.1f} {shown}  (exit {proc.returncode})")
    tmp.cleanup()


if __name__ == "__main__":
    main()
