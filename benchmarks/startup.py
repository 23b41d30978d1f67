"""How long `imgcls` takes to start, and what it imports, per command (issue 23 §5).

Each case runs `imgcls.cli.main(ARGV)` in a fresh `python` process (a `-c` probe, so `serve MODEL` can
stop where uvicorn would start: the probe puts a stand-in `uvicorn` module in sys.modules whose server
returns at once). The table gives the best wall time of --repeats runs of the whole process, the sum of
the import times `python -X importtime` reports for one more run, whether torch was imported, and how
many modules of imgcls.engine and of imgcls were. Without MODEL, `predict` and `serve` get a fresh resnet18
checkpoint (random weights) in a temporary folder, as benchmarks/serve.py makes it; PHOTO is the first of
the bundled flower photos.

    python benchmarks/startup.py                 # 5 runs per case
    python benchmarks/startup.py --repeats 1     # a few seconds: checks that the script runs
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serve import fresh_checkpoint

from imgcls.paths import bundled_photos

PROBE = """
import contextlib, io, json, sys, types
uvicorn = types.ModuleType("uvicorn")  # `serve` stops where the server would start
uvicorn.Config = lambda app, **kw: None
uvicorn.Server = lambda config: types.SimpleNamespace(run=lambda sockets=None: None)
sys.modules["uvicorn"] = uvicorn
from imgcls.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(json.loads(sys.argv[1]))
    except SystemExit as e:
        code = e.code
mods = [m for m in sys.modules if m == "imgcls" or m.startswith("imgcls.")]
print(json.dumps({"code": code, "torch": "torch" in sys.modules, "imgcls": len(mods),
                  "engine": sum(m.startswith("imgcls.engine.") for m in mods)}))
"""


def probe(argv: list[str], *, importtime: bool = False) -> tuple[float, dict, float]:
    """(wall seconds, what the probe reports, seconds of import time summed from -X importtime)."""
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", PROBE, json.dumps(argv)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    self_us = [int(m) for m in re.findall(r"^import time:\s+(\d+) \|", done.stderr, re.M)]
    return wall, json.loads(done.stdout.strip().splitlines()[-1]), sum(self_us) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="what `serve` opens (default: a fresh resnet18 checkpoint)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per case; the best wall time is kept")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(fresh_checkpoint(Path(tmp)))
        photo = str(sorted(bundled_photos().rglob("*.jpg"))[0])
        cases = [["--help"], ["--version"], ["predict", "--help"], ["train", "--help"], ["serve", "--help"],
                 ["predict", model, photo, "--device", "cpu"], ["serve", model, "--port", "0", "--device", "cpu"]]
        print("| command | exit | wall s (best of %d) | import s (-X importtime) | torch | imgcls.engine modules "
              "| imgcls modules |" % args.repeats)
        print("|---|---:|---:|---:|---|---:|---:|")
        for argv in cases:
            walls = [probe(argv)[0] for _ in range(args.repeats)]
            _, seen, imports = probe(argv, importtime=True)
            shown = " ".join({model: "MODEL", photo: "PHOTO"}.get(a, a) for a in argv)
            print(f"| imgcls {shown} | {seen['code']} | {min(walls):.2f} | {imports:.2f} | {'yes' if seen['torch'] else 'no'} "
                  f"| {seen['engine']} | {seen['imgcls']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
