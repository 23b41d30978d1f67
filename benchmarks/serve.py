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
"""
from __future__ import annotations

import argparse
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
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    ap.add_argument("--requests", type=int, default=200, help="stop after this many requests (default 200)")
    ap.add_argument("--seconds", type=float, default=60, help="stop after this long (default 60)")
    ap.add_argument("--workers", type=int, default=1, help="the server's --workers (default 1)")
    ap.add_argument("--queue", type=int, default=8, help="the server's --queue (default 8)")
    ap.add_argument("--cam", action=argparse.BooleanOptionalAction, default=False,
                    help="ask for the Grad-CAM overlay too (PyTorch models)")
    ap.add_argument("--quick", action="store_true", help="2 clients, 6 requests, 8 photos: checks the script runs")
    args = ap.parse_args()
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
