"""DistributedDataParallel under `torchrun`: the process group, the rank's device and threads, and the few
collectives the trainer needs (sum of step statistics, rows gathered in sample order, one object from rank 0).

`torchrun --nproc-per-node N -m imgcls train ...` starts N copies of the same command; each finds its
rank in the environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT) and
`init` joins the group: NCCL when the rank runs on CUDA (device cuda:LOCAL_RANK), gloo on CPU. Every
collective fails after `--dist-timeout` seconds instead of waiting forever for a rank that stopped.
Without those variables (a plain `imgcls train`) `Dist` is a world of one and every helper is the
identity, so the trainer has one code path.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from imgcls.data.loader import usable_cores
from imgcls.errors import ConfigError
from imgcls.runtime import resolve_device

log = logging.getLogger("imgcls")


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: rank in the world, rank and count on its machine, its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes logs, metrics, checkpoints and reports, and shows progress."""
        return self.rank == 0

    # -- collectives (identities in a world of one) ------------------------------------------------
    def average(self, *values: float) -> tuple[float, ...]:
        """The mean over ranks of each value (one all-reduce for all of them)."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return tuple(v / self.world for v in t.tolist())

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of a tensor of the same shape on every rank (a streamed task's tally)."""
        if self.world == 1:
            return t
        t = t.to(self.device)
        dist.all_reduce(t)
        return t.cpu()

    def gather_rows(self, rows: torch.Tensor, index: list[int]) -> torch.Tensor:
        """Every rank's rows (row i is sample `index[i]`) in sample order, on every rank, on the CPU.

        Ranks hold different numbers of rows (the validation set is split without padding), so each
        pads to the largest count for the all-gather and the padding is cut off again: no sample is
        counted twice and none is missing.
        """
        if self.world == 1:
            return rows
        counts = [torch.zeros(1, dtype=torch.long, device=self.device) for _ in range(self.world)]
        dist.all_gather(counts, torch.tensor([len(rows)], device=self.device))
        counts = [int(c) for c in counts]
        most = max(counts)
        padded = torch.zeros((most, *rows.shape[1:]), dtype=rows.dtype, device=self.device)
        padded[:len(rows)] = rows.to(self.device)
        idx = torch.full((most,), -1, dtype=torch.long, device=self.device)
        idx[:len(index)] = torch.tensor(index, dtype=torch.long)
        all_rows = [torch.empty_like(padded) for _ in range(self.world)]
        all_idx = [torch.empty_like(idx) for _ in range(self.world)]
        dist.all_gather(all_rows, padded)
        dist.all_gather(all_idx, idx)
        got_rows = torch.cat([r[:c] for r, c in zip(all_rows, counts)]).cpu()
        got_idx = torch.cat([i[:c] for i, c in zip(all_idx, counts)]).cpu()
        out = torch.empty_like(got_rows)
        out[got_idx] = got_rows
        return out

    def from_main(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (a decision made once: best epoch, early stop, a run folder)."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def run_on_main(self, fn, *args: Any) -> Any:
        """`fn(*args)` on rank 0 and its result on every rank; an exception raised there is raised on every
        rank too (so a refused run folder stops all ranks at once, not after the timeout)."""
        result, error = None, None
        if self.is_main:
            try:
                result = fn(*args)
            except Exception as e:  # noqa: BLE001 - passed on to the other ranks, then raised everywhere
                error = e
        result, error = self.from_main((result, error))
        if error is not None:
            raise error
        return result

    def wrap(self, net: nn.Module) -> nn.Module:
        """`net` under DistributedDataParallel (gradients averaged over ranks); `net` itself in a world of one.
        The module inside keeps its own names, so checkpoints hold plain, un-prefixed state dicts."""
        if self.world == 1:
            return net
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=ids, output_device=ids[0] if ids else None)


LOCAL = Dist()  # a plain single-process run


class Terminated(BaseException):
    """torchrun's SIGTERM reached this rank: its agent stops the surviving ranks this way as soon as one rank
    failed (or when torchrun itself is asked to stop). A BaseException, as KeyboardInterrupt is, so that no
    library's `except Exception` turns it into an error of its own (the DataLoader's wait for a batch would
    report its worker, stopped by the same signal); `train` reports it as a TrainingError."""


class _Termination:
    """SIGTERM under torchrun. Python's default is to die at once, without a word: the user would see only
    torchrun's report of the rank that failed, nothing of the state this rank leaves. Here the first SIGTERM is
    raised as `Terminated` (the trainer turns it into its one line: where last.ckpt is, how to resume) and the
    rank's `finally` blocks run; inside `termination_held` (a checkpoint being written) it waits for the block's
    end. From then on, and once a rank reports a lost peer on its own (`leaving`), the process is on its way
    out: a later SIGTERM is ignored (torchrun sends SIGKILL 30 s after the first), and so are the exits of the
    data-loading workers, which got the same SIGTERM (torchrun signals the whole process group): the
    DataLoader's SIGCHLD handler would turn them into a second error that hides the first."""

    def __init__(self) -> None:
        self.owner, self.rank, self.previous = 0, 0, None
        self.held = self.pending = self.fired = self.left = False

    def handler(self, signum: int, frame: Any) -> None:
        if os.getpid() != self.owner:  # a forked data-loading worker inherited this handler: die as before
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        self.quiet_workers()
        if self.held:
            self.pending = True
        elif not self.left:
            self.fire()

    def fire(self) -> None:
        self.fired = self.left = True
        raise Terminated(f"rank {self.rank}: another process of this run stopped, so torchrun stopped this one "
                         "(SIGTERM; it does the same when it is asked to stop); see the failed rank's error")

    def leave(self) -> None:
        self.left = True
        self.quiet_workers()

    def quiet_workers(self) -> None:
        if self.previous is not None:  # a handler that does nothing (SIG_DFL would print a warning if one is due)
            signal.signal(signal.SIGCHLD, lambda signum, frame: None)

    def install(self, rank: int) -> None:
        if threading.current_thread() is threading.main_thread() and self.previous is None:
            self.owner, self.rank = os.getpid(), rank
            self.held = self.pending = self.fired = self.left = False
            self.previous = signal.signal(signal.SIGTERM, self.handler)

    def uninstall(self) -> None:
        if self.previous is not None and not self.left:  # once leaving, a SIGTERM must not cut the message short
            signal.signal(signal.SIGTERM, self.previous)
        self.previous = None


TERMINATION = _Termination()


@contextmanager
def termination_held() -> Iterator[None]:
    """A SIGTERM from torchrun that arrives inside the block is raised when the block ends: a checkpoint being
    written is finished first (torch.save turns an exception raised inside its writes into an error of its own)."""
    t = TERMINATION
    if t.held:
        yield
        return
    t.held = True
    try:
        yield
    finally:
        t.held = False
    if t.pending and not t.left:
        t.fire()


def terminated() -> bool:
    """Whether torchrun's SIGTERM stopped this rank (whatever error a library made of it on the way out)."""
    return TERMINATION.fired


def leaving() -> None:
    """This rank stops because another one did: from here a SIGTERM from torchrun ends nothing early."""
    TERMINATION.leave()


def env_world() -> tuple[int, int, int, int]:
    """(rank, world, local rank, local world) from torchrun's variables; (0, 1, 0, 1) without them."""
    def get(name: str, default: int) -> int:
        value = os.environ.get(name, "")
        try:
            return int(value) if value else default
        except ValueError:
            raise ConfigError(f"{name}={value!r} in the environment is not an integer; start the run with torchrun, "
                              "which sets it") from None

    world = get("WORLD_SIZE", 1)
    return get("RANK", 0), world, get("LOCAL_RANK", 0), get("LOCAL_WORLD_SIZE", world)


def rank_device(name: str, *, local_rank: int, world: int) -> torch.device:
    """The device of one rank: `--device auto`/`cuda` become cuda:LOCAL_RANK (one GPU per process)."""
    device = resolve_device(name)
    if world == 1:
        return device
    if device.type == "mps":
        raise ConfigError("--device mps cannot run under torchrun (torch.distributed has no MPS backend); "
                          "use --device cpu")
    if device.type == "cuda":
        if device.index is not None and name != "auto":
            raise ConfigError(f"--device {name}: under torchrun each rank uses cuda:LOCAL_RANK; use --device cuda "
                              "(choose the GPUs with CUDA_VISIBLE_DEVICES)")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"rank {local_rank} on this machine has no GPU ({torch.cuda.device_count()} visible): "
                              "start at most as many processes per node as GPUs (--nproc-per-node)")
        return torch.device("cuda", local_rank)
    return device


def cpu_threads(local_world: int) -> int:
    """Compute threads of one CPU rank: this machine's cores shared by its ranks (torchrun's default of
    OMP_NUM_THREADS=1 would leave cores idle with fewer ranks than cores)."""
    return max(1, usable_cores() // local_world)


def init(device_name: str, *, timeout_s: int) -> Dist:
    """Join torchrun's process group (NCCL on CUDA, gloo on CPU) when there is more than one rank, with every
    collective bounded by `timeout_s`; set the rank's device and threads. A world of one initialises nothing."""
    rank, world, local_rank, local_world = env_world()
    device = rank_device(device_name, local_rank=local_rank, world=world)
    if world == 1:
        return Dist(device=device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(cpu_threads(local_world))
    if not dist.is_initialized():
        global _OWNED
        _OWNED = True
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s),
                                device_id=device if device.type == "cuda" else None)
    if dist.get_world_size() != world:
        raise ConfigError(f"WORLD_SIZE={world} but the process group has {dist.get_world_size()} ranks")
    TERMINATION.install(rank)
    if rank != 0:  # one voice: the others report only errors (their own lines come through torchrun)
        log.setLevel(logging.ERROR)
    return Dist(rank, world, local_rank, local_world, device)


_OWNED = False  # True once `init` made the process group (a caller's own group is left to the caller)


def shutdown() -> None:
    """Leave the process group `init` joined, at the end of a run (a no-op otherwise)."""
    global _OWNED
    TERMINATION.uninstall()
    if _OWNED and dist.is_initialized():
        dist.destroy_process_group()
    _OWNED = False


def lost_peer(error: BaseException, d: Dist) -> bool:
    """True for the error a collective raises when another rank died or timed out (gloo reports it as a plain
    RuntimeError naming its transport; NCCL and c10d as DistError), and for whatever stops a rank that torchrun's
    SIGTERM reached (`Terminated`, or the error a library made of it)."""
    text = str(error)
    return d.world > 1 and (isinstance(error, (dist.DistError, Terminated)) or terminated() or "/gloo/" in text
                            or "NCCL" in text)


def check_batches(d: Dist, *, train_images: int, val_images: int, batch_size: int) -> None:
    """Every rank must take the same number of steps (each step is one all-reduce): the training set must
    hold at least one global batch, and the validation set at least one image per rank."""
    if d.world == 1:
        return
    global_batch = batch_size * d.world
    if train_images < global_batch:
        raise ConfigError(f"{train_images} training images are fewer than one global batch of {global_batch} "
                          f"({batch_size} per rank x {d.world} ranks); use --batch-size "
                          f"{max(1, train_images // d.world)} or fewer, or fewer processes")
    if val_images < d.world:
        raise ConfigError(f"{val_images} validation image(s) for {d.world} ranks; each rank needs at least one: "
                          "use a larger validation set or fewer processes")


def check_sync_bn(sync_bn: bool, d: Dist) -> None:
    if sync_bn and d.world > 1 and d.device.type != "cuda":
        raise ConfigError("--sync-bn needs CUDA devices: torch's SyncBatchNorm does not run on CPU; drop --sync-bn "
                          "(each rank then normalises its own batch) or train on GPUs")


def sync_batchnorm(model: nn.Module) -> nn.Module:
    """BatchNorm layers -> SyncBatchNorm (statistics over the global batch). Parameters are kept as they are,
    `requires_grad` included, and frozen layers are put in eval mode by the transfer policy as before, so a
    frozen BatchNorm stays frozen. Module names do not change: checkpoints load into a plain model."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def resume_batch_size(saved_batch: int, saved_world: int, d: Dist, checkpoint: str) -> int:
    """The per-rank batch on resume: the global batch of the checkpoint's run, split over this world, so
    every step covers the same samples as before (mid-epoch resumes included). Refused when it does not divide."""
    global_batch = saved_batch * saved_world
    if global_batch % d.world:
        ok = [w for w in range(1, global_batch + 1) if global_batch % w == 0]
        raise ConfigError(f"{checkpoint} was trained with a global batch of {global_batch} ({saved_batch} per rank x "
                          f"{saved_world}); {d.world} ranks cannot split it evenly: resume with a number of "
                          f"processes among {ok}")
    return global_batch // d.world
