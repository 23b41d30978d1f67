"""`imgcls train` attacked as a careless user would: every mistake is one line and exit 2 before any work,
`--resume` means what it says, Ctrl-C resumes bit-exactly wherever it lands, nothing is lost."""
from __future__ import annotations

import csv
import logging
import os
import re
import shutil
import signal

import pytest
import torch

from imgcls.engine import loop, train
from imgcls.engine.checkpoint import load_checkpoint, save_checkpoint
from imgcls.engine.batches import ImageBatches
from imgcls.errors import CheckpointError
from tests.conftest import error_line, make_tiny_folder, run_cli, stop_after_step


cli = run_cli


def train_args(data, out, *extra) -> list:
    return ["train", data, "--model", "resnet18", "--input-size", "32", "--batch-size", "8", "--workers", "0",
            "--val-fraction", "0.25", "--epochs", "2", "--out-dir", out, "--no-progress", "--no-tensorboard", *extra]


one_error_line = error_line


@pytest.mark.parametrize("flags, says", [
    (["--batch-size", "0"], "--batch-size: 0: must be >= 1"),
    (["--epochs", "-1"], "--epochs: -1: must be >= 1"),
    (["--epochs", "0"], "--epochs: 0: must be >= 1"),
    (["--lr", "nan"], "--lr: nan: must be a finite number"),
    (["--lr", "-1"], "--lr: -1.0: must be >= 0"),
    (["--input-size", "0"], "--input-size: 0: must be >= 1"),
    (["--workers", "-1"], "--workers: -1: must be >= 0"),
    (["--save-every", "-5"], "--save-every: -5: must be >= 0"),
    (["--scale", "1.0", "0.08"], "--scale 1.0 0.08: MIN must not exceed MAX"),
    (["--scale", "0", "1"], "--scale: 0.0: must be > 0"),
    (["--input-size", "16"], "--input-size 16 is below resnet18's minimum of 32 px"),
    (["--model", "resnet19"], "unknown model 'resnet19'; did you mean"),
    (["--transfer", "tail"], "unknown --transfer 'tail'"),
    (["--progressive", "224:112"], "--progressive 224:112: START must not exceed END"),
    (["--progressive", "16:32"], "--progressive 16:32: 16 px is below resnet18's minimum of 32 px"),
    (["--transfer", "head", "--cutmix", "1"], "--cutmix works on images, but --transfer head trains on cached"),
    (["--auto-augment", "autoaugment"], "--auto-augment: 'autoaugment': must be one of none, trivialaugment"),
    (["--ema-decay", "1"], "--ema-decay: 1.0: must be < 1"),
    # unbalanced classes (issue 26)
    (["--class-weights", "inverse"], "--class-weights: 'inverse': must be one of none, balanced, effective"),
    (["--class-weights-beta", "0.99"], "--class-weights-beta 0.99 has no effect without --class-weights effective"),
    (["--class-weights", "effective", "--class-weights-beta", "1"], "--class-weights-beta: 1.0: must be < 1"),
    (["--sampler", "weighted"], "--sampler: 'weighted': must be one of shuffle, balanced"),
    (["--metric", "f1"], "--metric: 'f1': must be one of top1, balanced_acc, macro_f1"),
    # sizes: bounded by the model, by MAX_SIDE and by the memory one step needs (issue 22)
    (["--input-size", "20000"], "--input-size 20000: one training step of resnet18 at 20000 px with --batch-size 8 "
                                "needs about 1.9 TB"),
    (["--progressive", "64:20000"], "--progressive 64:20000: one training step of resnet18 at 20000 px"),
    (["--input-size", "4096", "--batch-size", "100000"], "at 4096 px with --batch-size 100000 needs about 972.9 TB"),
    (["--model", "lenet5", "--progressive", "32:64"], "--progressive 32:64: lenet5 takes only 32x32 inputs"),
    (["--model", "lenet5", "--progressive", "32:60000"], "--progressive 32:60000: lenet5 takes only 32x32 inputs"),
    (["--model", "lenet5", "--input-size", "64"], "--input-size 64: lenet5 takes only 32x32 inputs; use --input-size 32"),
    (["--model", "vit_b_32", "--model-kw", "image_size=8192"], "--model-kw: vit_b_32's input size 8192: must be between"),
    (["--resize-size", "5000"], "--resize-size 5000: must be between 1 and 4096 px"),
    (["--cache-side", "9000"], "--cache-side 9000: must be between 1 and 4096 px"),
    (["--transfer", "head", "--feature-views", "1000000000"], "--feature-views 1000000000: caching 1000000000 view(s)"),
    (["--transfer", "last:layer4,fc", "--feature-views", "1000000000"],
     "--feature-views 1000000000: caching 1000000000 view(s) of 27 training images as 256 x 2 x 2 float16 maps"),
    # last: on cached maps (issue 24): asked for where they cannot stand in for the images, or beside a recipe
    (["--transfer", "last:layer4.0.conv2,layer4.0.bn2,layer4.1,fc", "--feature-views", "1"],
     "--feature-views 1: --transfer last:layer4.0.conv2,layer4.0.bn2,layer4.1,fc cannot train on cached maps of its "
     "frozen part: layer4.0.relu runs both before and after layer4.0.conv2; use --feature-views 0"),
    (["--transfer", "last:layer4,fc", "--feature-views", "2", "--cutmix", "1"],
     "--cutmix works on images, but --transfer last:layer4,fc trains on cached maps; add --feature-views 0"),
    (["--no-map-flip"], "--no-map-flip has no effect without --transfer last: on cached maps"),
    (["--transfer", "last:layer4,fc", "--feature-views", "0", "--map-dtype", "float32"],
     "--map-dtype float32 has no effect without --transfer last: on cached maps"),
    # hints that say what the flag wants
    (["--progressive", "64"], "--progressive '64': expected START:END train sizes in pixels"),
    (["--progressive", "big"], "e.g. --progressive 112:224"),
    (["--mix-prob", "0.5"], "--mix-prob 0.5 has no effect without --mixup or --cutmix"),
    (["--cutmix", "1", "--cutmix-share", "0.3"], "--cutmix-share 0.3 has no effect without both --mixup and --cutmix"),
    (["--progressive-stages", "3"], "--progressive-stages 3 has no effect without --progressive"),
    (["--randaugment-ops", "3"], "--randaugment-ops 3 has no effect without --auto-augment randaugment"),
    (["--lr", "fnd"], "--lr: 'fnd' is not a number or find"),
])
def test_bad_values_are_one_line_before_any_work(tiny_folder, tmp_path, capsys, flags, says):
    assert cli(train_args(tiny_folder, tmp_path / "runs") + flags) == 2  # the last of a repeated flag wins
    assert says in one_error_line(capsys)
    assert not (tmp_path / "runs").exists()  # a refused run leaves no folder behind


@pytest.mark.parametrize("flags, says", [
    (["--start-lr", "0"], "--start-lr: 0.0: must be > 0"),
    (["--start-lr", "1", "--end-lr", "0.1"], "--start-lr 1 --end-lr 0.1: need 0 < start < end"),
    (["--steps", "2"], "--steps: 2: must be >= 5"),
    (["--input-size", "16"], "--input-size 16 is below resnet18's minimum of 32 px"),  # train's own checks
    (["--resume", "runs/exp1/last.ckpt"], "lr-find starts from the run's initial weights; it does not take --resume"),
])
def test_lr_find_refuses_bad_values_before_any_work(tiny_folder, tmp_path, capsys, flags, says):
    argv = ["lr-find", *train_args(tiny_folder, tmp_path / "runs")[1:], *flags]
    assert cli(argv) == 2
    assert says in one_error_line(capsys)
    assert not (tmp_path / "runs").exists()


def test_train_lr_find_on_resume_is_refused(tiny_folder, tmp_path, capsys):
    result = train(_config_of(tiny_folder, tmp_path / "runs"))
    last = result.run_dir / "last.ckpt"
    assert cli(["train", "--resume", last, "--lr", "find"]) == 2
    assert one_error_line(capsys).endswith("--lr find picks the rate of a new run; a --resume continues with its "
                                           "checkpoint's rate")


def _config_of(data, out):
    from imgcls.engine import Config

    cfg = Config()
    cfg.data.data, cfg.data.input_size, cfg.data.batch_size, cfg.data.workers = str(data), 32, 8, 0
    cfg.data.val_fraction, cfg.train.epochs, cfg.train.out_dir = 0.25, 1, str(out)
    cfg.train.progress = cfg.train.tensorboard = False
    return cfg


def test_a_size_beyond_the_machines_memory_says_what_fits(tiny_folder, tmp_path, capsys, monkeypatch):
    from imgcls.engine import budget

    monkeypatch.setattr(budget, "_device_memory", lambda device, processes: (1e9, "this machine has 1.0 GB available"))
    assert cli(train_args(tiny_folder, tmp_path / "runs") + ["--input-size", "2048"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("imgcls: error: --input-size 2048: one training step of resnet18 at 2048 px with "
                           "--batch-size 8 needs about ")
    assert re.search(r"this machine has 1.0 GB available; use at most --input-size \d+$", line)
    assert not (tmp_path / "runs").exists()


def test_a_misspelled_flag_gets_the_subcommand_usage_and_a_hint(tiny_folder, capsys):
    assert cli(["train", tiny_folder, "--input-szie", "64"]) == 2
    err = capsys.readouterr().err
    assert "usage: imgcls train" in err and "did you mean --input-size?" in err


@pytest.mark.parametrize("text, says", [
    ("train:\n  epochs: ten\n", "train.epochs 'ten': must be an integer"),
    ("optim:\n  lr: [1, 2]\n", "optim.lr '1 2': must be a number"),
    ("train: {epochs: 3\n", "not valid YAML"),
    ("model: !!python/object/apply:os.system ['echo hi']\n", "refused: could not determine a constructor"),
    ("- just\n- a list\n", "expected a mapping of sections"),
    ("data: 5\n", "section 'data' must be a mapping"),
])
def test_bad_config_files_are_one_line(tiny_folder, tmp_path, capsys, text, says):
    pytest.importorskip("yaml")
    path = tmp_path / "run.yaml"
    path.write_text(text)
    assert cli(["train", tiny_folder, "--config", path, "--out-dir", tmp_path / "runs"]) == 2
    line = one_error_line(capsys)
    assert says in line and str(path) in line and "Traceback" not in line
    assert not (tmp_path / "runs").exists()


def test_one_class_is_refused(tmp_path, capsys):
    data = make_tiny_folder(tmp_path / "one", classes=1)
    assert cli(train_args(data, tmp_path / "runs")) == 2
    assert "needs at least 2 classes" in one_error_line(capsys)
    assert not (tmp_path / "runs").exists()


# -- --resume --------------------------------------------------------------------------------------

@pytest.fixture
def finished(tiny_folder, tmp_path):
    """A finished 2-epoch run: (data, run folder)."""
    assert cli(train_args(tiny_folder, tmp_path / "runs")) == 0
    return tiny_folder, tmp_path / "runs" / "exp1"


def test_resume_with_more_epochs_trains_further(finished, capsys):
    data, run = finished
    assert cli(["train", "--resume", run / "last.ckpt", "--epochs", "3", "--no-progress"]) == 0
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert load_checkpoint(run / "last.ckpt")["epoch"] == 3
    assert "--epochs 2 -> 3" in (run / "train.log").read_text()


def test_resume_of_a_finished_run_without_more_epochs_says_so(finished, capsys):
    _, run = finished
    assert cli(["train", "--resume", run / "last.ckpt"]) == 2
    assert "finished 2 epoch(s) already; pass --epochs N with N > 2" in one_error_line(capsys)


@pytest.mark.parametrize("flag, value", [("--model", "resnet34"), ("--lr", "0.5"), ("--batch-size", "4"),
                                         ("--transfer", "head"), ("--optimizer", "adamw"), ("--input-size", "48")])
def test_resume_refuses_flags_that_change_the_experiment(finished, capsys, flag, value):
    _, run = finished
    assert cli(["train", "--resume", run / "last.ckpt", "--epochs", "3", flag, value]) == 2
    line = one_error_line(capsys)
    assert f"{flag} " in line and "cannot change on --resume" in line
    assert load_checkpoint(run / "last.ckpt")["epoch"] == 2  # untouched


def test_resume_refuses_data_with_other_classes_or_files(finished, tmp_path, capsys):
    data, run = finished
    other = make_tiny_folder(tmp_path / "other", classes=4)
    assert cli(["train", other, "--resume", run / "last.ckpt", "--epochs", "3"]) == 2
    assert "was trained on ['class_0', 'class_1', 'class_2']" in one_error_line(capsys)
    shutil.copy(data / "class_0" / "img_000.jpg", data / "class_0" / "img_new.jpg")
    assert cli(["train", "--resume", run / "last.ckpt", "--epochs", "3"]) == 2
    assert "files differ" in one_error_line(capsys)


def test_resume_finds_moved_data_and_works_from_another_directory(finished, tmp_path, monkeypatch):
    data, run = finished
    moved = tmp_path / "moved"
    shutil.move(data, moved)
    monkeypatch.chdir(tmp_path / "runs")
    assert cli(["train", moved, "--resume", "exp1/last.ckpt", "--epochs", "3", "--no-progress"]) == 0
    assert load_checkpoint(run / "last.ckpt")["config"]["data"]["data"] == str(moved)


def test_relative_data_is_stored_absolute(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_folder.parent)
    assert cli(train_args(tiny_folder.name, tmp_path / "runs", "--epochs", "1")) == 0
    monkeypatch.chdir(tmp_path / "runs")
    assert load_checkpoint("exp1/last.ckpt")["config"]["data"]["data"] == str(tiny_folder)
    assert cli(["train", "--resume", "exp1/last.ckpt", "--epochs", "2", "--no-progress"]) == 0


def test_resume_from_best_never_overwrites_a_newer_last(tiny_folder, tmp_path, capsys):
    assert cli(train_args(tiny_folder, tmp_path / "runs", "--epochs", "3", "--lr", "0.05")) == 0
    run = tmp_path / "runs" / "exp1"
    best, last = load_checkpoint(run / "best.ckpt"), load_checkpoint(run / "last.ckpt")
    if best["epoch"] == last["epoch"]:  # make best older than last, as after a plateau
        save_checkpoint({**last, "epoch": 1, "global_step": 3}, run / "best.ckpt")
    before = (run / "metrics.csv").read_bytes(), (run / "last.ckpt").read_bytes()
    assert cli(["train", "--resume", run / "best.ckpt", "--epochs", "4"]) == 2
    assert "is older than" in one_error_line(capsys) and "--name" in capsys.readouterr().err + "--name"
    assert ((run / "metrics.csv").read_bytes(), (run / "last.ckpt").read_bytes()) == before
    assert cli(["train", "--resume", run / "best.ckpt", "--epochs", "4", "--name", "from-best", "--no-progress"]) == 0
    assert load_checkpoint(tmp_path / "runs" / "from-best" / "last.ckpt")["epoch"] == 4
    assert ((run / "metrics.csv").read_bytes(), (run / "last.ckpt").read_bytes()) == before


def test_resume_warns_when_the_thread_count_differs(finished, caplog):
    _, run = finished
    state = load_checkpoint(run / "last.ckpt")
    save_checkpoint({**state, "threads": torch.get_num_threads() + 1}, run / "last.ckpt")
    with caplog.at_level(logging.WARNING, logger="imgcls"):
        assert cli(["train", "--resume", run / "last.ckpt", "--epochs", "3", "--no-progress"]) == 0
    assert "will not be bit-exact" in caplog.text


def test_stale_temp_files_of_killed_saves_are_removed(finished):
    _, run = finished
    dead = run / ".last.ckpt.999999999.x1y2.tmp"  # no such process
    old_style = run / ".best.ckpt.k3j2h1.tmp"  # imgcls 0.1.0's name, no pid
    alive = run / f".last.ckpt.{os.getppid()}.abcd.tmp"  # a writer that still runs
    mine = run / "notes.tmp"
    for p in (dead, old_style, alive, mine):
        p.write_bytes(b"x" * 100)
    assert cli(["train", "--resume", run / "last.ckpt", "--epochs", "3", "--no-progress"]) == 0
    assert not dead.exists() and not old_style.exists() and alive.exists() and mine.exists()


# -- Ctrl-C ----------------------------------------------------------------------------------------

def _sigint() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def _config(data, out, **kw):
    from tests.engine.test_trainer import tiny_config

    return tiny_config(data, out, epochs=3, **kw)


@pytest.mark.parametrize("where", ["before the first step of epoch 2", "mid-epoch", "inside a step",
                                   "during validation"])
def test_ctrl_c_resumes_bit_exactly_wherever_it_lands(tiny_folder, tmp_path, monkeypatch, where):
    full = train(_config(tiny_folder, tmp_path / "a"))
    if where == "before the first step of epoch 2":
        original = ImageBatches.epoch

        def epoch(self, e, start_step=0):
            if self.train and e == 1 and start_step == 0:
                _sigint()
            yield from original(self, e, start_step)

        monkeypatch.setattr(ImageBatches, "epoch", epoch)
    elif where == "mid-epoch":  # right after step 4: held until its position and checkpoints are kept
        stop_after_step(monkeypatch, 4, "ctrl-c")
    elif where == "inside a step":  # held until the update and its counters are done
        original = loop.train_step

        def step(net, x, y, state, rule, **k):
            if state.global_step == 4:
                _sigint()
            return original(net, x, y, state, rule, **k)

        monkeypatch.setattr(loop, "train_step", step)
    else:
        original = loop.predict_all
        calls = []

        def outputs(*a, **k):
            calls.append(1)
            if len(calls) == 2:
                _sigint()
            return original(*a, **k)

        monkeypatch.setattr(loop, "predict_all", outputs)
    assert train(_config(tiny_folder, tmp_path / "b")).interrupted
    monkeypatch.undo()
    stopped = load_checkpoint(tmp_path / "b" / "exp1" / "last.ckpt")
    want = {"before the first step of epoch 2": (1, 0), "mid-epoch": (1, 1), "inside a step": (1, 2),
            "during validation": (1, 3)}[where]
    assert (stopped["epoch"], stopped["epoch_step"]) == want
    resumed = train(_config(tiny_folder, tmp_path / "b", resume=str(tmp_path / "b" / "exp1" / "last.ckpt")))
    a, b = (load_checkpoint(r.run_dir / "last.ckpt")["model"] for r in (full, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = list(csv.DictReader((resumed.run_dir / "metrics.csv").open()))
    want_rows = list(csv.DictReader((full.run_dir / "metrics.csv").open()))
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in want_rows]


# -- divergence and a full disk --------------------------------------------------------------------

def test_a_diverging_loss_stops_the_run_and_never_becomes_best(tiny_folder, tmp_path, capsys):
    assert cli(train_args(tiny_folder, tmp_path / "runs", "--lr", "1e30", "--epochs", "3")) == 2
    line = one_error_line(capsys)
    assert "became nan" in line or "became inf" in line
    assert "lower --lr" in line
    run = tmp_path / "runs" / "exp1"
    for name in ("best.ckpt", "last.ckpt"):
        if (run / name).exists():
            state = load_checkpoint(run / name)["model"]
            assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(tiny_folder, tmp_path, monkeypatch, capsys):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system to simulate a full disk")
    saves = []
    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *a, **k):
        if "w" in mode:
            saves.append(fd)
            if len(saves) == 3:  # epoch 2's last.ckpt: a real ENOSPC from the kernel
                os.close(fd)
                return open("/dev/full", "wb")
        return real_fdopen(fd, mode, *a, **k)

    monkeypatch.setattr(os, "fdopen", fdopen)
    assert cli(train_args(tiny_folder, tmp_path / "runs")) == 2
    monkeypatch.undo()
    line = one_error_line(capsys)
    assert "No space left on device" in line and "the previous last.ckpt is intact" in line
    run = tmp_path / "runs" / "exp1"
    assert load_checkpoint(run / "last.ckpt")["epoch"] == 1
    assert not list(run.glob(".*.tmp"))


# -- checkpoints that are not checkpoints ----------------------------------------------------------

class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("kind, says", [
    ("zero bytes", "empty file"),
    ("random bytes", "not a PyTorch weights file"),
    ("html", "an HTML page"),
    ("pickle with code", "refuses to run code"),
])
def test_a_checkpoint_that_is_not_one_is_described_safely(tmp_path, capsys, kind, says):
    path = tmp_path / "model.ckpt"
    if kind == "zero bytes":
        path.write_bytes(b"")
    elif kind == "random bytes":
        path.write_bytes(os.urandom(4096).replace(b"PK", b"pk").lstrip(b"\x80") or b"x")
    elif kind == "html":
        path.write_text("<!DOCTYPE html><html><body>404</body></html>")
    else:
        torch.save({"model": _Evil()}, path)
    for argv in (["predict", path, tmp_path], ["train", "--resume", path]):
        assert cli(argv) == 2
        line = one_error_line(capsys)
        assert says in line and str(path) in line
        assert "weights_only=False" not in line and "weights_only` set to `False" not in line
    with pytest.raises(CheckpointError, match=says):
        load_checkpoint(path)
