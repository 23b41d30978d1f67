"""What a command imports (issue 23 §5): `imgcls --help`, `--version` and every `imgcls COMMAND --help`
start without torch, and `imgcls predict` and `imgcls serve` without the training code (engine/). Each
check runs in a fresh interpreter, as the command would: this test process has imported everything."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imgcls.cli import build_parser

COMMANDS = ["models", "summary", "split", "check", "train", "lr-find", "eval", "predict", "cam", "serve", "export",
            "compare", "demo", "cache"]

# runs main(argv) for each argv of sys.argv[1] in turn, a stand-in uvicorn so that `serve` returns where the
# server would start; prints, after each, the modules of the watched kinds imported so far
PROBE = """
import contextlib, io, json, sys, types
uvicorn = types.ModuleType("uvicorn")
uvicorn.Config = lambda app, **kw: None
uvicorn.Server = lambda config: types.SimpleNamespace(run=lambda sockets=None: None)
sys.modules["uvicorn"] = uvicorn
from imgcls.cli import main
seen = []
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    watched = sorted(m for m in sys.modules if m == "torch" or m.startswith("imgcls.engine"))
    seen.append({"argv": argv, "code": code, "stderr": err.getvalue()[-300:], "imported": watched})
print(json.dumps(seen))
"""


def imports_of(*argvs: list[str]) -> list[dict]:
    """Run each argv through imgcls.cli.main in one fresh interpreter; what each had imported by its end."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps([[str(a) for a in argv] for argv in argvs])],
                          capture_output=True, text=True, cwd=root, check=True, timeout=300)
    return json.loads(done.stdout)


def test_the_list_holds_every_command():
    assert sorted(next(a for a in build_parser()._actions if a.dest == "command").choices) == sorted(COMMANDS)


def test_help_and_version_import_no_torch():
    argvs = [["--help"], ["--version"], *([command, "--help"] for command in COMMANDS)]
    seen = imports_of(*argvs)
    assert [s["code"] for s in seen] == [0] * len(argvs)
    assert [s["argv"] for s in seen if "torch" in s["imported"]] == []


def test_predict_and_serve_import_no_training_code(tiny_run):
    pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'imgcls[serve]'")
    data, ckpt = tiny_run
    photo = sorted(data.rglob("*.jpg"))[0]
    seen = imports_of(["predict", "--help"], ["predict", ckpt, photo, "--device", "cpu"],
                      ["serve", ckpt, "--port", "0", "--device", "cpu"])
    assert [(s["code"], s["stderr"]) for s in seen] == [(0, ""), (0, ""), (0, seen[2]["stderr"])]
    assert "imgcls serve:" in seen[2]["stderr"]  # it got as far as starting the server
    assert [m for s in seen for m in s["imported"] if m.startswith("imgcls.engine")] == []
