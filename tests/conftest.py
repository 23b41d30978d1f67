from __future__ import annotations

import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

# `pytest -m "not slow"` runs the suite in about a minute; the README's `pytest -q` runs everything.
# Slow: what starts processes or browsers, exports ONNX graphs, trains on ../shared/data, or runs the
# big models' parity. Kept here as one table rather than a marker line in every file.
SLOW_FILES = ("distributed/", "integration/", "export/", "serve/test_browser.py",
              "bad_inputs/test_export_inputs.py")
SLOW_PARITY = ("resnet101", "resnet152", "resnext101", "wide_resnet", "vgg", "vit_", "densenet161",
               "densenet201", "efficientnet_lite")
SLOW_SEG = ("fcn_resnet", "deeplabv3_resnet")  # segmentation on a dilated ResNet: seconds each
SEG_FILES = ("models/test_seg_parity.py", "models/test_segmentation.py")


def pytest_collection_modifyitems(config, items):
    root = Path(__file__).resolve().parent
    for item in items:
        rel = Path(str(item.fspath)).resolve().relative_to(root).as_posix()
        param = item.callspec.id if hasattr(item, "callspec") else ""
        if rel.startswith(SLOW_FILES) or (rel == "models/test_parity.py" and param.startswith(SLOW_PARITY)) \
                or (rel in SEG_FILES and param.startswith(SLOW_SEG)):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "DESIGN.md").is_file():
        pytest.skip(f"../shared is absent ({SHARED}): clone the project next to its shared/ folder to run this")
    return SHARED


@pytest.fixture(scope="session")
def parity(shared):
    sys.path.insert(0, str(shared / "tools"))
    import parity as module

    return module


@pytest.fixture(scope="session")
def parity_fixture(parity) -> dict:
    return parity.load_fixture()


def make_tiny_folder(root: Path, *, classes: int = 3, per_class: int = 12, size: int = 40, seed: int = 0) -> Path:
    """A learnable toy set: class k is a blob of colour k on noise, at a random place and size."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = [(220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 200, 40), (200, 60, 200)]
    for k in range(classes):
        folder = root / f"class_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 90, (size, size + 8, 3), dtype=np.uint8)
            r = int(rng.integers(size // 4, size // 2))
            y, x = (int(v) for v in rng.integers(0, size - r, 2))
            img[y:y + r, x:x + r] = colours[k % len(colours)]
            Image.fromarray(img).save(folder / f"img_{i:03d}.jpg", quality=92)
    return root


def flat_jpeg(path: Path, width: int, height: int) -> Path:
    """A mid-grey baseline JPEG of any size, written without ever holding its pixels: 20000 x 20000 is a
    4.7 MB file made in a blink. Every 8x8 block of flat grey 128 codes the same 6 bits (DC difference 0,
    end of block) in the standard Huffman tables, so the scan of a 16 x 16 image (4 blocks, 3 bytes) is
    repeated once per 4 blocks behind a header that states the new size."""
    import io
    import struct

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (16, 16), 128).save(buf, "JPEG", quality=75)
    data = buf.getvalue()
    sof, sos = data.index(b"\xff\xc0"), data.index(b"\xff\xda")
    scan = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")
    four_blocks = data[scan:data.rindex(b"\xff\xd9")]
    assert four_blocks == b"\x28\xa2\x8a", four_blocks.hex()  # Pillow's encoder changed: build it another way
    blocks = -(-width // 8) * -(-height // 8)
    assert blocks % 4 == 0, "choose sides whose 8-px block counts multiply to a multiple of 4"
    head = bytearray(data[:scan])
    head[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(head) + four_blocks * (blocks // 4) + b"\xff\xd9")
    return path


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    return make_tiny_folder(tmp_path / "tiny")


def run_cli(argv: list) -> int:
    """`imgcls ARGV` in-process: main's exit code, or argparse's when it refuses while parsing."""
    from imgcls.cli import main

    try:
        return main([str(a) for a in argv])
    except SystemExit as e:
        return e.code


def stop_after_step(monkeypatch, n: int, how: str) -> None:
    """Make training stop right after its n-th update, as a real run would: `killed` raises inside the
    step (the process dies before the step's position is kept: only earlier checkpoints survive);
    `ctrl-c` sends this process a real SIGINT there (held until the step's position and checkpoints are
    kept, then raised: the loop saves last.ckpt where it stopped)."""
    import os
    import signal

    from imgcls.engine import loop

    original = loop.train_step

    def step(net, x, y, state, rule, **kw):
        out = original(net, x, y, state, rule, **kw)
        if state.global_step == n:
            if how == "killed":
                raise RuntimeError("killed")
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(loop, "train_step", step)


def error_line(capsys, *, only: bool = False) -> str:
    """The last line on stderr (with `only`: asserted to be the only one)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error message"
    assert not only or len(err) == 1, err
    return err[-1]


def train_tiny(root: Path) -> tuple[Path, Path]:
    """(data folder, best.ckpt) of a 1-epoch resnet18 run on 3 classes x 12 images at 32 px."""
    from imgcls.engine import Config, train

    data = make_tiny_folder(root / "data")
    cfg = Config()
    cfg.data.data, cfg.data.input_size, cfg.data.batch_size, cfg.data.workers = str(data), 32, 8, 0
    cfg.data.val_fraction = 0.25
    cfg.train.epochs, cfg.train.out_dir, cfg.train.progress, cfg.train.tensorboard = 1, str(root / "runs"), False, False
    return data, train(cfg).run_dir / "best.ckpt"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """`train_tiny` once per session, shared by the tests that only read its checkpoint (cam, serve)."""
    return train_tiny(tmp_path_factory.mktemp("tiny_run"))
