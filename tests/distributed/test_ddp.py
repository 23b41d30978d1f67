"""DistributedDataParallel on CPU with gloo: the pieces in-process, then real `torchrun` runs of lenet5 (no
BatchNorm, so two processes and one process with the same global batch compute the same steps).

Tolerance: the weights of a 2-process run and of a 1-process run with the same global batch agree to 1e-5
(the gradients are the same sums in another order: float32 rounding only, about 1e-8 observed);
validation top-1 is identical.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest
import torch

from imgcls.data import SeededSampler
from imgcls.engine import distributed
from imgcls.engine.checkpoint import load_checkpoint
from imgcls.engine.config import OptimConfig
from imgcls.engine.distributed import LOCAL, Dist
from imgcls.engine.batches import shard_steps
from imgcls.engine.optim import lr_rule
from imgcls.engine.transfer import TransferPolicy
from imgcls.errors import ConfigError
from imgcls.models import create_model
from tests.conftest import make_tiny_folder, run_cli

# -- in-process ------------------------------------------------------------------------------


@pytest.mark.parametrize("n,batch,world", [(90, 4, 2), (91, 3, 3), (17, 2, 4)])
def test_ranks_together_take_the_single_process_batches(n, batch, world):
    steps, used = shard_steps(n, batch, train=True, dist=Dist(world=world))
    assert steps == n // (batch * world) and used == steps * batch * world
    single = SeededSampler(n, seed=3, limit=used)
    single.set_epoch(2)
    ranks = [SeededSampler(n, seed=3, rank=r, world=world, limit=used) for r in range(world)]
    for s in ranks:
        s.set_epoch(2)
    whole, shards = list(single), [list(s) for s in ranks]
    assert all(len(s) == steps * batch for s in shards)  # the same number of steps on every rank
    for step in range(steps):  # step s of all ranks = batch s of one process with batch x world
        got = sorted(item for s in shards for item in s[step * batch:(step + 1) * batch])
        assert got == sorted(whole[step * batch * world:(step + 1) * batch * world])
    seen = [i for s in shards for i, _ in s]
    assert len(seen) == len(set(seen)) == used  # each sample once per epoch, augmentation seeds included


@pytest.mark.parametrize("n,batch,world", [(90, 4, 2), (91, 3, 3)])
def test_ranks_together_take_the_single_process_balanced_batches(n, batch, world):
    from imgcls.engine.batches import epoch_sampler

    targets = [0 if i % 10 else 1 for i in range(n)]  # class 1: a tenth of the set
    steps, used = shard_steps(n, batch, train=True, dist=Dist(world=world))
    single = epoch_sampler(n, seed=3, train=True, dist=Dist(), limit=used, balanced=lambda: targets)
    ranks = [epoch_sampler(n, seed=3, train=True, dist=Dist(rank=r, world=world), limit=used,
                           balanced=lambda: targets) for r in range(world)]
    for s in (single, *ranks):
        s.set_epoch(2)
    whole, shards = list(single), [list(s) for s in ranks]
    assert all(len(s) == steps * batch for s in shards)
    for step in range(steps):  # draws and augmentation seeds: step s of all ranks = batch s of one process
        got = sorted(item for s in shards for item in s[step * batch:(step + 1) * batch])
        assert got == sorted(whole[step * batch * world:(step + 1) * batch * world])


def test_validation_shards_cover_every_image_once_without_padding():
    n, world = 10, 4
    counts = [shard_steps(n, 2, train=False, dist=Dist(rank=r, world=world))[0] for r in range(world)]
    assert counts == [2, 2, 1, 1]  # 3, 3, 2, 2 images
    orders = [SeededSampler(n, shuffle=False, rank=r, world=world).order() for r in range(world)]
    assert sorted(i for o in orders for i in o) == list(range(n))


def test_a_world_of_one_is_the_identity():
    rows = torch.arange(6.0).view(3, 2)
    assert LOCAL.gather_rows(rows, [0, 1, 2]) is rows
    assert LOCAL.average(1.5, 3) == (1.5, 3) and LOCAL.from_main({"a": 1}) == {"a": 1}
    net = torch.nn.Linear(2, 2)
    assert LOCAL.wrap(net) is net and LOCAL.is_main
    assert LOCAL.run_on_main(lambda x: x + 1, 1) == 2
    with pytest.raises(ConfigError, match="boom"):
        LOCAL.run_on_main(lambda: (_ for _ in ()).throw(ConfigError("boom")))


def test_env_world_reads_torchrun_variables(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    assert distributed.env_world() == (0, 1, 0, 1)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert distributed.env_world() == (3, 4, 1, 2)
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(ConfigError, match="RANK='x'"):
        distributed.env_world()


def test_refusals_name_the_fix():
    two = Dist(rank=0, world=2)
    with pytest.raises(ConfigError, match="fewer than one global batch of 16 .*--batch-size 5 or fewer"):
        distributed.check_batches(two, train_images=10, val_images=5, batch_size=8)
    with pytest.raises(ConfigError, match="1 validation image"):
        distributed.check_batches(two, train_images=100, val_images=1, batch_size=8)
    distributed.check_batches(LOCAL, train_images=3, val_images=1, batch_size=8)  # one process: a short batch
    with pytest.raises(ConfigError, match="--sync-bn needs CUDA"):
        distributed.check_sync_bn(True, two)
    distributed.check_sync_bn(True, LOCAL)
    with pytest.raises(ConfigError, match="no MPS backend"):
        distributed.rank_device("mps", local_rank=0, world=2)
    assert distributed.rank_device("cpu", local_rank=1, world=2) == torch.device("cpu")
    assert distributed.cpu_threads(64) == 1


def test_a_lost_peer_is_recognised():
    gloo = RuntimeError("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error: Connection reset by peer")
    assert distributed.lost_peer(gloo, Dist(world=2))
    assert not distributed.lost_peer(gloo, LOCAL) and not distributed.lost_peer(RuntimeError("shape"), Dist(world=2))


def test_torchruns_sigterm_is_raised_once_after_the_checkpoint_being_written(monkeypatch):
    monkeypatch.setattr(distributed, "TERMINATION", distributed._Termination())
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGCHLD)
    distributed.TERMINATION.install(rank=1)
    try:
        written = False
        with pytest.raises(distributed.Terminated, match="rank 1: another process of this run stopped, so torchrun"):
            with distributed.termination_held():
                signal.raise_signal(signal.SIGTERM)
                written = True  # the block goes on to its end
        assert written and distributed.terminated()
        assert distributed.lost_peer(RuntimeError("[enforce fail at inline_container.cc]"), Dist(world=2))
        signal.raise_signal(signal.SIGTERM)  # torchrun's second thoughts: ignored, the rank is on its way out
    finally:
        distributed.TERMINATION.uninstall()
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGCHLD, before[1])


def test_resume_keeps_the_global_batch_on_another_world_size():
    assert distributed.resume_batch_size(4, 2, Dist(world=1), "x.ckpt") == 8
    assert distributed.resume_batch_size(4, 2, Dist(world=4), "x.ckpt") == 2
    with pytest.raises(ConfigError, match=r"global batch of 8 .* among \[1, 2, 4, 8\]"):
        distributed.resume_batch_size(4, 2, Dist(world=3), "x.ckpt")


def test_sync_bn_keeps_frozen_batchnorm_frozen():
    model = create_model("resnet18", num_classes=3)
    policy = TransferPolicy.parse("last:layer4,fc")
    policy.apply(model)
    model = distributed.sync_batchnorm(model)
    policy.set_train_mode(model)
    assert isinstance(model.bn1, torch.nn.SyncBatchNorm) and isinstance(model.layer4[0].bn1, torch.nn.SyncBatchNorm)
    assert not model.bn1.training and not model.bn1.weight.requires_grad  # frozen: eval mode, no gradient
    assert model.layer4[0].bn1.training and model.layer4[0].bn1.weight.requires_grad
    assert "bn1.running_mean" in model.state_dict()  # the same names: loads into a plain model


def test_the_lr_rule_is_stated():
    assert lr_rule(OptimConfig(), 32, 4, 0.05) == ("global batch 128 (32 per process x 4 processes); lr 0.05 "
                                                  "(linear scaling rule: 0.1 x 128/256)")
    assert "never rescaled" in lr_rule(OptimConfig(lr=0.2), 32, 2, 0.2)
    assert lr_rule(OptimConfig(), 32, 1, 0.0125).startswith("batch 32; lr 0.0125")


# -- torchrun --------------------------------------------------------------------------------

TRAIN = ["--model", "lenet5", "--input-size", "32", "--workers", "0", "--val-fraction", "0.25", "--lr", "0.05",
         "--schedule", "constant", "--no-progress", "--no-tensorboard"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list, *, nproc: int = 2) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(nproc),
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "imgcls", "train",
           *map(str, args)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    """torchrun's exit code and output, once it ends; past the deadline the test fails with its log."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _fail_with_log(proc, f"torchrun did not finish within {timeout}s")
    return proc.returncode, out


def _fail_with_log(proc: subprocess.Popen, why: str) -> NoReturn:
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its workers: nothing outlives the test
    out, _ = proc.communicate()
    pytest.fail(f"{why}:\n{out[-3000:]}")


def _wait_until(proc: subprocess.Popen, done: Callable[[], bool], what: str, timeout: float = 180) -> None:
    """Poll `done` while torchrun runs; the test fails with torchrun's log when it ends first or the
    deadline passes (a hang is a failure with its log, never a stuck suite)."""
    deadline = time.monotonic() + timeout
    while not done():
        if proc.poll() is not None:
            _fail_with_log(proc, f"the run ended before {what}")
        if time.monotonic() > deadline:
            _fail_with_log(proc, f"no {what} within {timeout}s")
        time.sleep(0.02)


def _weights(run: Path) -> dict:
    return load_checkpoint(run / "last.ckpt")["model"]


def _rows(run: Path) -> list[dict]:
    return list(csv.DictReader((run / "metrics.csv").open()))


def _worker(torchrun_pid: int, rank: int) -> int | None:
    """The pid of a worker of that torchrun with RANK=rank (its workers are its children)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == torchrun_pid and f"RANK={rank}".encode() in env:
            return int(entry.name)
    return None


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """90 train / 30 val images; 2 processes x batch 4 for 3 epochs (11 steps each)."""
    root = tmp_path_factory.mktemp("ddp")
    data = make_tiny_folder(root / "data", per_class=40)
    code, out = _finish(_torchrun([data, *TRAIN, "--batch-size", 4, "--epochs", 3, "--out-dir", root / "runs"]))
    assert code == 0, out[-3000:]
    return root, data, out


def test_two_processes_match_one_process_with_the_same_global_batch(two_process_run, tmp_path):
    root, data, out = two_process_run
    ddp = root / "runs" / "exp1"
    assert run_cli(["train", data, *TRAIN, "--batch-size", 8, "--epochs", 3, "--out-dir", tmp_path]) == 0
    one = tmp_path / "exp1"
    a, b = _weights(ddp), _weights(one)
    assert list(a) == list(b)  # plain names: no "module." prefix
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-5) for k in a)
    ra, rb = _rows(ddp), _rows(one)
    assert float(ra[-1]["train_loss"]) < float(ra[0]["train_loss"])  # it learned: the comparison means something
    assert [r["val_top1"] for r in ra] == [r["val_top1"] for r in rb]
    for key in ("val_loss", "train_loss", "train_acc"):
        assert [float(r[key]) for r in ra] == pytest.approx([float(r[key]) for r in rb], abs=1e-6)
    assert json.loads((ddp / "report.json").read_text())["n"] == 30  # the final report: every val image once
    # only rank 0 wrote: one run folder with exactly the files of a single-process run, one log voice
    assert sorted(p.name for p in (root / "runs").iterdir()) == ["exp1"]
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in one.iterdir())
    assert out.count("global batch 8 (4 per process x 2 processes); lr 0.05") == 1
    assert out.count("epoch 3/3") == 1


def test_a_killed_rank_stops_the_run_and_it_resumes(two_process_run, tmp_path):
    root, data, _ = two_process_run
    proc = _torchrun([data, *TRAIN, "--batch-size", 4, "--epochs", 3, "--save-every", 1, "--out-dir", tmp_path])
    last = tmp_path / "exp1" / "last.ckpt"
    _wait_until(proc, last.is_file, "a first checkpoint")
    victim = _worker(proc.pid, 1)
    assert victim is not None, "no rank 1 to kill"
    os.kill(victim, signal.SIGKILL)
    code, out = _finish(proc, timeout=60)  # rank 0 must not wait for ever
    assert code != 0, out[-3000:]
    # rank 0 says why in one line, unless torchrun stopped it first
    assert "another process of this run stopped" in out or "SIGTERM" in out, out[-3000:]
    state = load_checkpoint(last)
    assert state["world_size"] == 2 and state["epoch"] < 3 and state["epoch_step"] > 0  # mid-epoch
    shutil.copytree(tmp_path / "exp1", tmp_path / "copy")  # a second resume, on one process
    # the same two processes continue from the last checkpoint to the weights of the uninterrupted run
    code, out = _finish(_torchrun([data, *TRAIN, "--batch-size", 4, "--epochs", 3, "--resume", last]))
    assert code == 0, out[-3000:]
    want = _weights(root / "runs" / "exp1")
    got = _weights(tmp_path / "exp1")
    assert all(torch.allclose(got[k], want[k], rtol=0, atol=1e-6) for k in want)
    assert [r["epoch"] for r in _rows(tmp_path / "exp1")] == ["1", "2", "3"]
    # one process resumes it too: the global batch of 8 is kept (batch 4 x 2 -> 8 x 1)
    assert run_cli(["train", data, *TRAIN, "--batch-size", 4, "--epochs", 3, "--resume", tmp_path / "copy" / "last.ckpt"]) == 0
    one = _weights(tmp_path / "copy")
    assert all(torch.allclose(one[k], want[k], rtol=0, atol=1e-5) for k in want)
    assert load_checkpoint(tmp_path / "copy" / "last.ckpt")["config"]["data"]["batch_size"] == 8
    want_rows = _rows(root / "runs" / "exp1")
    for key in ("train_loss", "train_acc", "val_loss"):  # the interrupted epoch's sums carried over to batch 8
        assert [float(r[key]) for r in _rows(tmp_path / "copy")] == pytest.approx([float(r[key]) for r in want_rows],
                                                                                  abs=1e-5)


def _wait_for_epoch_line(proc: subprocess.Popen, log: Path, epochs: int) -> None:
    """Until train.log has its first epoch line: the ranks are inside the training loop."""
    _wait_until(proc, lambda: log.is_file() and re.search(rf"epoch +1/{epochs} ", log.read_text()) is not None,
                "the first epoch line in train.log")


def _signal_pending(pid: int, signum: int) -> bool:
    """Whether `signum` waits for process `pid` (sent, not yet delivered: the process is stopped)."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    status = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
    return bool((int(status["SigPnd"], 16) | int(status["ShdPnd"], 16)) & (1 << (signum - 1)))


def test_rank_0_says_where_the_state_is_when_torchrun_stops_it_for_a_killed_rank(two_process_run, tmp_path):
    _, data, _ = two_process_run
    proc = _torchrun([data, *TRAIN, "--batch-size", 4, "--epochs", 50, "--workers", 1, "--out-dir", tmp_path])
    _wait_for_epoch_line(proc, tmp_path / "exp1" / "train.log", 50)
    main, victim = _worker(proc.pid, 0), _worker(proc.pid, 1)
    # rank 0 held still, so torchrun's SIGTERM reaches it before any collective can notice the lost peer:
    # the case of a rank busy computing when another dies
    os.kill(main, signal.SIGSTOP)
    os.kill(victim, signal.SIGKILL)
    try:
        _wait_until(proc, lambda: _signal_pending(main, signal.SIGTERM), "SIGTERM from torchrun for rank 0", timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone when the wait failed and killed the run
            os.kill(main, signal.SIGCONT)
    code, out = _finish(proc, timeout=120)
    last = tmp_path / "exp1" / "last.ckpt"
    assert code != 0 and last.is_file()
    lines = [line for line in out.splitlines() if line.startswith("imgcls: error: rank 0: another process of this run")]
    assert len(lines) == 1 and f"{last} holds the last saved state" in lines[0] and \
        lines[0].endswith(f"continue with --resume {last}"), out[-3000:]
    assert "DataLoader worker" not in out, out[-3000:]  # the loader's worker got the same SIGTERM: no second error


def test_ctrl_c_stops_every_rank_after_the_same_step_and_rank_0_saves(two_process_run, tmp_path):
    root, data, _ = two_process_run
    proc = _torchrun([data, *TRAIN, "--batch-size", 4, "--epochs", 50, "--out-dir", tmp_path])
    _wait_for_epoch_line(proc, tmp_path / "exp1" / "train.log", 50)
    os.kill(proc.pid, signal.SIGINT)  # torchrun passes it on to both ranks, each at its own moment
    _, out = _finish(proc, timeout=60)  # every rank stops after the step it agreed on, none waits for ever
    assert "interrupted; continue with" in out, out[-3000:]
    assert "another process of this run stopped" not in out  # no rank was left waiting
    state = load_checkpoint(tmp_path / "exp1" / "last.ckpt")
    assert state["epoch"] < 50 and state["global_step"] == state["epoch"] * 11 + state["epoch_step"]


def test_last_on_cached_maps_under_two_processes(two_process_run, tmp_path):
    # each rank runs its share of the frozen prefix, every rank holds all maps; the tail trains under DDP
    _, data, _ = two_process_run
    args = [data, *TRAIN, "--model", "resnet18", "--transfer", "last:layer4,fc", "--feature-views", 2, "--batch-size", 4,
            "--epochs", 2, "--out-dir", tmp_path]
    code, out = _finish(_torchrun(args))
    assert code == 0, out[-3000:]
    assert out.count("cached frozen maps (conv1 .. layer3 run once per image; --feature-views 0 runs them every "
                     "step): 90 train x 2 view(s) + 30 val, 256 x 2 x 2 each") == 1, out[-3000:]
    assert [r["epoch"] for r in _rows(tmp_path / "exp1")] == ["1", "2"]


def test_segmentation_under_two_processes_tallies_every_val_pixel_once(tmp_path):
    # 3 val photos over 2 ranks (2 + 1): each rank tallies its share and the summed confusion matrix holds
    # every labelled val pixel exactly once (48 x 32 photos, 16 void pixels each). The numbers themselves
    # differ from one process's: each rank's BatchNorm running statistics are its own after the last step.
    from tests.seg_data import make_seg_folder

    data = make_seg_folder(tmp_path / "seg", n_train=8, n_val=3)
    args = [data, "--model", "lraspp_efficientnet_lite0", "--input-size", 32, "--batch-size", 2, "--epochs", 2,
            "--workers", 0, "--no-progress", "--no-tensorboard", "--out-dir", tmp_path / "runs"]
    code, out = _finish(_torchrun(args))
    assert code == 0, out[-3000:]
    run = tmp_path / "runs" / "exp1"
    assert [r["epoch"] for r in _rows(run)] == ["1", "2"] and "val_miou" in _rows(run)[0]
    report = json.loads((run / "report.json").read_text())
    assert report["task"] == "segmentation" and report["pixels"] == 3 * (48 * 32 - 16)
    assert out.count("epoch 2/2") == 1
