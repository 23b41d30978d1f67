"""A training run: `train(config)` checks, builds, trains, checkpoints, resumes and reports one experiment.

`Trainer.__init__` does everything that can be refused before the run folder exists; `fit` is the
loop, reading top to bottom: batches (engine.loop: images, or cached features for head-only
transfer), one epoch of steps, validation, then the epoch's row, best checkpoint and early
stopping (engine.callbacks).

Reproducibility: the seed fixes the initialisation, every epoch's order and every sample's
augmentation (`SeededSampler`/`SeededItems`, independent of the worker count); checkpoints carry
the generator states; on CPU with `deterministic` a run killed mid-epoch and resumed from its last
checkpoint ends with the same weights as one that never stopped.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.data.loader import train_workers
from imgcls.engine import budget, build, distributed, resume
from imgcls.engine.callbacks import Checkpoints, EarlyStopping, EpochLog, Quiet
from imgcls.engine.checkpoint import check_arch, load_checkpoint, remove_stale_temps, rng_state, set_rng_state
from imgcls.engine.config import Config
from imgcls.engine.interrupt import defer_interrupt
from imgcls.engine.features import backbone_runner, check_backend, extract_features
from imgcls.engine.loop import FeatureBatches, ImageBatches, Position, compute_loss, epoch_row, train_one_epoch
from imgcls.engine.optim import LRSchedule, build_optimizer, lr_rule, param_groups, resolved_lr, resolved_weight_decay
from imgcls.engine.recipes import BatchMixer, ModelEma, correct
from imgcls.engine.transfer import TransferPolicy
from imgcls.errors import ConfigError, TrainingError, summary_of
from imgcls.models.heads import stack_head
from imgcls.reports import classification_report, plot_curves, reported_ks, topk_correct
from imgcls.runtime import run_model

log = logging.getLogger("imgcls")


@dataclass
class RunResult:
    run_dir: Path
    best_top1: float
    best_epoch: int
    epochs_run: int
    seconds: float
    stopped_early: bool = False
    interrupted: bool = False
    history: list[dict] = field(default_factory=list)

    def summary_line(self, model: str) -> str:
        how = "stopped early, " if self.stopped_early else ""
        return (f"{model}: {self.epochs_run} epochs ({how}{_hms(self.seconds)}), best val top-1 "
                f"{self.best_top1:.2%} at epoch {self.best_epoch}; run folder {self.run_dir} "
                f"(best.ckpt, metrics.csv, curves.png, confusion_matrix.png)")


def _hms(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}h{m % 60:02d}m{s:02d}s" if m >= 60 else f"{m}m{s:02d}s"


def new_run_dir(out_dir: str | Path, name: str | None) -> Path:
    out = Path(out_dir)
    if name:
        run = out / name
        if run.exists() and any(run.iterdir()):
            raise ConfigError(f"{run}: run folder exists and is not empty; pick another --name, or --resume {run}/last.ckpt")
    else:
        n = 1
        while (out / f"exp{n}").exists():
            n += 1
        run = out / f"exp{n}"
    run.mkdir(parents=True, exist_ok=True)
    return run


# -- the run ----------------------------------------------------------------------------------

class Trainer:
    """One run. Everything that can be refused (config values, data, weights, a --resume that does not
    fit) is checked here, before the run folder exists, so a refused run leaves nothing behind.

    `given` names the settings the caller set explicitly (the CLI's flags); it matters only with
    `resume`, where those settings are reconciled with the checkpoint's (engine.resume). By default
    it is every setting that differs from its default.
    """

    def __init__(self, config: Config, *, callbacks: list[Callable[[Trainer], None]] | None = None,
                 given: set[str] | None = None) -> None:
        self.callbacks = callbacks or []
        self.resume_state: dict | None = None
        if config.train.resume:
            checkpoint = Path(config.train.resume)
            self.resume_state = load_checkpoint(checkpoint)
            saved = Config.from_dict(self.resume_state["config"], source=str(checkpoint))
            names = config.changed_fields() if given is None else set(given)
            config, self.resume_changes = resume.resumed_config(saved, config, names, checkpoint)
            self.new_folder = bool(self.resume_changes.keys() & {"name", "out_dir"})
            resume.check_epochs(config, self.resume_state["epoch"], self.resume_state["epoch_step"])
        else:
            self.weight_preprocessing = build.take_weight_preprocessing(
                config, config.changed_fields() if given is None else set(given))
            config.validate()
            for key in ("data", "val_data"):  # absolute, so a resume from another directory finds it
                if config.get(key):
                    config.set(key, str(Path(config.get(key)).resolve()))
        self.cfg = config
        t = config.train
        torch.manual_seed(t.seed)
        if t.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        # under torchrun: this rank's device (cuda:LOCAL_RANK, or the CPU with its share of the cores)
        self.dist = distributed.init(t.device, timeout_s=t.dist_timeout)
        self.device = self.dist.device
        t.progress = t.progress and self.dist.is_main  # progress bars on rank 0 only
        self.sums_scale = 1.0
        if self.resume_state is not None:
            self._resume_world(self.resume_state.get("world_size", 1))
        self.amp_dtype = build.resolve_amp(t.amp, self.device)
        self.policy = TransferPolicy.parse(config.model.transfer)
        if self.policy.caches_features and config.data.feature_views > 0:
            check_backend(config.data.feature_backend, self.device)
        self.data = build.build_datasets(config.data)
        self.classes = self.data.classes
        self.ks = reported_ks(len(self.classes))  # top-5 only with more than 5 classes
        self.data_files = resume.data_files(self.data.train.samples, self.data.val.samples)
        if self.policy.caches_features and config.data.feature_views > 0:
            budget.check_feature_cache(config, len(self.data.train), len(self.data.val), processes=self.dist.local_world)
        self.workers = (max(1, train_workers(self.device) // self.dist.local_world) if config.data.workers is None
                        else config.data.workers)
        distributed.check_batches(self.dist, train_images=len(self.data.train), val_images=len(self.data.val),
                                  batch_size=config.data.batch_size)
        distributed.check_sync_bn(t.sync_bn, self.dist)
        if self.resume_state is not None:
            resume.check_data(self.resume_state, self.classes, self.data_files, t.resume)
            check_arch(self.resume_state, t.resume, model=config.model.model, num_classes=len(self.classes))
            resume.check_threads(self.resume_state, t.resume)
        self.model, self.load_report, base_classes = self._model()
        self.arch = build.arch_of(config, len(self.classes), base_classes)
        self.run_dir = self.dist.run_on_main(self._run_dir)  # rank 0 picks (and makes) the folder
        self._handler = self._log_file_handler() if self.dist.is_main else None
        if self.resume_state is not None:
            resume.log_changes(self.resume_changes)
        if self.load_report is not None:
            log.info("%s", self.load_report.to_text())
        if self.resume_state is None and self.weight_preprocessing:
            log.info("preprocessing of %s: %s", config.model.weights, ", ".join(self.weight_preprocessing))

    def _resume_world(self, saved_world: int) -> None:
        """A checkpoint of a run with another number of processes: the same global batch, split anew."""
        if saved_world == self.dist.world:
            return
        old = self.cfg.data.batch_size
        new = distributed.resume_batch_size(old, saved_world, self.dist, self.cfg.train.resume)
        self.cfg.data.batch_size = new
        self.sums_scale = new / old  # the epoch's running sums are per-rank means: rescale to the new batch
        self.resume_changes["batch_size"] = (f"{old} per rank x {saved_world}", f"{new} per rank x {self.dist.world}")

    def _run_dir(self) -> Path:
        t = self.cfg.train
        if not t.resume:
            return new_run_dir(t.out_dir, t.name)
        checkpoint = Path(t.resume)
        if self.new_folder:  # continue in a new folder; the checkpoint's own folder is left as it is
            return new_run_dir(t.out_dir, t.name)
        resume.check_not_older(checkpoint, self.resume_state, checkpoint.parent)
        remove_stale_temps(checkpoint.parent)
        return checkpoint.parent

    # -- setup ---------------------------------------------------------------------------------
    def _log_file_handler(self) -> logging.Handler:
        handler = logging.FileHandler(self.run_dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handler.setLevel(logging.INFO)
        if log.level == logging.NOTSET:  # train.log records the run even when the caller set up no logging
            log.setLevel(logging.INFO)
        log.addHandler(handler)
        return handler

    def _model(self) -> tuple[nn.Module, Any, int | None]:
        cfg = self.cfg
        n = len(self.classes)
        report, base_classes, state = None, None, None
        if cfg.model.weights and self.resume_state is None:
            from imgcls.weights import read_state_dict, resolve_weights

            path = self.dist.run_on_main(resolve_weights, cfg.model.weights)  # one download, not one per rank
            if not self.dist.is_main:
                path = resolve_weights(cfg.model.weights)  # its own copy (the cache may not be shared)
            state, _ = read_state_dict(path)
            self.weights_path = path
        model = build.build_model({**build.arch_of(cfg, n, None), "head": "linear"})
        if self.policy.mode == "head+":  # keep the pretrained classifier: build it at its own size
            key = f"{model.classifier_name}.weight"
            if self.resume_state is not None:
                base_classes = int(self.resume_state["arch"]["base_classes"])
            else:
                base_classes = int(state[key].shape[0]) if state is not None and key in state else 1000
            model.reset_classifier(base_classes)
        if state is not None:
            from imgcls.weights import load_pretrained

            report = load_pretrained(model, state, source=str(self.weights_path))
        if self.policy.mode == "head+":
            stack_head(model, n)
        self.policy.apply(model)
        if cfg.model.channels_last is None:  # resolved once and saved with the config: a resume keeps it
            cfg.model.channels_last = bool(getattr(model, "channels_last", True))
        if cfg.train.sync_bn and self.dist.world > 1:
            model = distributed.sync_batchnorm(model)
        if cfg.model.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model.to(self.device), report, base_classes

    def _optimizer(self, steps_per_epoch: int) -> None:
        cfg = self.cfg
        lr = resolved_lr(cfg.optim, cfg.data.batch_size * self.dist.world)  # the rate of the global batch
        groups = param_groups(self.model.named_parameters(), lr=lr, weight_decay=resolved_weight_decay(cfg.optim),
                              no_decay_norm_bias=not cfg.optim.decay_norm_bias,
                              head_prefix=self.policy.head_name(self.model), backbone_lr_mult=cfg.model.backbone_lr_mult)
        self.optimizer = build_optimizer(cfg.optim, groups)
        self.schedule = LRSchedule(self.optimizer, kind=cfg.optim.schedule, total_steps=steps_per_epoch * cfg.train.epochs,
                                   steps_per_epoch=steps_per_epoch,
                                   warmup_steps=int(round(cfg.optim.warmup_epochs * steps_per_epoch)),
                                   step_size=cfg.optim.step_size, gamma=cfg.optim.gamma)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    # -- checkpoints ---------------------------------------------------------------------------
    def state(self, pos: Position) -> dict:
        from imgcls.engine.build import preprocessing

        return {"arch": self.arch, "model": self.model.state_dict(), "classes": list(self.classes),
                "preprocessing": preprocessing(self.cfg.data), "config": self.cfg.to_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.schedule.state_dict(),
                "scaler": self.scaler.state_dict(), "epoch": pos.epoch, "epoch_step": pos.step,
                "global_step": self.global_step, "epoch_sums": dict(pos.sums), "rng": rng_state(),
                **self.stopping.state(), "history": list(self.history), "threads": torch.get_num_threads(),
                "data_files": self.data_files, "world_size": self.dist.world,
                **({"model_ema": self.ema.state_dict()} if self.ema is not None else {})}

    def _start(self) -> Position:
        """Fresh counters, or everything a checkpoint holds restored; the Position to start from."""
        self.global_step, self.history = 0, []
        # with an EMA its weights are the ones eval/predict use, so they choose best.ckpt (as timm does)
        self.score = "ema_val_top1" if self.ema is not None else "val_top1"
        self.stopping = EarlyStopping(self.cfg.train.patience, key=self.score)
        s = self.resume_state
        if s is None:
            return Position(0)
        self.model.load_state_dict(s["model"])
        if self.ema is not None:
            self.ema.load_state_dict(s["model_ema"])
        self.optimizer.load_state_dict(s["optimizer"])
        self.schedule.load_state_dict(s["scheduler"])
        self.scaler.load_state_dict(s["scaler"])
        self.global_step, self.history = s["global_step"], list(s["history"])
        self.stopping = EarlyStopping(self.cfg.train.patience, key=self.score, best_top1=s["best"]["top1"],
                                      best_epoch=s["best"]["epoch"], patience_left=s["patience_left"], fresh=False)
        set_rng_state(s["rng"])
        resume.log_schedule_change(s["config"]["train"]["epochs"], self.cfg.train.epochs, self.cfg.optim.schedule,
                                   self.schedule.get_last_lr()[0])
        log.info("resuming %s at epoch %d step %d", self.cfg.train.resume, s["epoch"] + 1, s["epoch_step"])
        return Position(s["epoch"], s["epoch_step"], {k: v * self.sums_scale for k, v in s["epoch_sums"].items()})

    # -- loop ----------------------------------------------------------------------------------
    def fit(self) -> RunResult:
        cfg, t0, main = self.cfg, time.perf_counter(), self.dist.is_main
        if main:
            cfg.save(self.run_dir)
        net, train_b, val_b = self._batches()
        self._optimizer(train_b.steps())
        criterion = nn.CrossEntropyLoss(label_smoothing=cfg.optim.label_smoothing)  # takes soft (mixed) targets too
        self.mixer = BatchMixer(cfg.data, seed=cfg.train.seed, num_classes=len(self.classes))
        self.ema = ModelEma(self.model, cfg.optim.ema_decay) if cfg.optim.ema_decay else None
        # what a Ctrl-C checkpoint holds; it moves only together with the weights (loop.train_one_epoch)
        self.pos = self._start()
        # DDP after the weights are restored; validation and checkpoints use net itself (plain state dicts)
        step_net = self.dist.wrap(net)
        step_net = torch.compile(step_net) if cfg.model.compile else step_net  # shares net's parameters
        # only rank 0 writes: the other ranks hold a Quiet in place of the log and the checkpoints
        epochs = EpochLog(self.run_dir, self.ks, self.history, epochs=cfg.train.epochs,
                          tensorboard=cfg.train.tensorboard, fresh=self.resume_state is None,
                          ema=self.ema is not None) if main else Quiet()
        saves = Checkpoints(self.run_dir, save_every=cfg.train.save_every,
                            steps_per_epoch=train_b.steps()) if main else Quiet()
        self._log_start()
        result = RunResult(self.run_dir, 0.0, 0, self.pos.epoch, 0.0)
        self.stop_all = False
        distributed.hold_interrupts(True)
        try:
            for epoch in range(self.pos.epoch, cfg.train.epochs):
                self._train_mode(net)
                step = partial(self._step, step_net, criterion=criterion, epoch=epoch)
                pos, n_imgs, seconds = train_one_epoch(step, train_b, self.pos, moved=partial(self._moved, saves),
                                                       desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                                                       progress=cfg.train.progress)
                val = self._validate(net, val_b, epoch=epoch)
                if self.ema is not None:
                    val |= self._validate(self._ema_net(net), val_b, epoch=epoch, prefix="ema_")
                row = epoch_row(pos, val, global_step=self.global_step, lr=self.schedule.get_last_lr()[0],
                                n_imgs=n_imgs * self.dist.world, seconds=seconds)  # every rank: as many images
                with defer_interrupt():  # the epoch's row, best and checkpoints go together
                    improved = self.stopping.update(row)
                    self.history.append(row)
                    epochs.record(row, improved=improved)
                    self.pos = Position(epoch + 1)
                    saves.epoch_end(self.state(self.pos), improved=improved)
                result.epochs_run = epoch + 1
                if self.stopping.should_stop:
                    log.info("early stop: no better val top-1 for %d epochs", cfg.train.patience)
                    result.stopped_early = True
                    break
        except KeyboardInterrupt:
            result.interrupted = True
            with defer_interrupt():  # torchrun passes a Ctrl-C on to its workers: a second one waits for the save
                saves.interrupted(self.state(self.pos))
        except RuntimeError as e:
            if not distributed.lost_peer(e, self.dist):
                raise
            last = self.run_dir / "last.ckpt"
            raise TrainingError(f"rank {self.dist.rank}: another process of this run stopped or did not answer within "
                                f"--dist-timeout {cfg.train.dist_timeout}s ({summary_of(e)}); {last} holds the last "
                                f"saved state: see the failed rank's error, then continue with --resume {last}") from None
        finally:
            distributed.hold_interrupts(False)
            epochs.close()
            if sys.exc_info()[0] is not None:  # an error leaves the trainer: stop writing its log
                self._close_log()
        result.seconds = time.perf_counter() - t0
        result.best_top1, result.best_epoch = self.stopping.best_top1, self.stopping.best_epoch
        result.history = list(self.history)
        if not result.interrupted and self.history:
            self._final_report(net, val_b)
            log.info("%s", result.summary_line(cfg.model.model))
        self._close_log()
        return result

    def _moved(self, saves: Checkpoints, pos: Position) -> None:
        """After each step: the new position, a checkpoint every --save-every steps, the callbacks."""
        self.global_step += 1
        self.pos = pos
        saves.step(lambda: self.state(pos), global_step=self.global_step, epoch_step=pos.step)
        for cb in self.callbacks:
            cb(self)
        if self.stop_all:
            raise KeyboardInterrupt

    def _train_mode(self, net: nn.Module) -> None:
        if net is self.model:
            self.policy.set_train_mode(self.model)  # frozen BatchNorm stays in eval mode
        else:
            net.train()

    def _log_start(self) -> None:
        cfg = self.cfg
        log.info("%s", lr_rule(cfg.optim, cfg.data.batch_size, self.dist.world, self.optimizer.param_groups[0]["base_lr"]))
        log.info("training %s on %s: %d train / %d val images, %d classes, transfer %s, device %s%s",
                 cfg.model.model, self.data.source, len(self.data.train), len(self.data.val), len(self.classes),
                 self.policy, self.device, f", autocast {self.amp_dtype}" if self.amp_dtype else "")

    def _close_log(self) -> None:
        if self._handler is not None:
            log.removeHandler(self._handler)
            self._handler.close()
            self._handler = None

    def _diverged(self, what: str, value: float, *, epoch: int, step: int | None = None) -> TrainingError:
        where = f"epoch {epoch + 1}" + (f" step {step}" if step is not None else " (validation)")
        last = self.run_dir / "last.ckpt"
        kept = (f"; {last} holds the last finite state" if last.is_file() else "; no checkpoint was written")
        return TrainingError(f"the {what} became {value} at {where} with lr {self.schedule.get_last_lr()[0]:.3g}: "
                             f"the run stopped{kept}; lower --lr (or add --warmup-epochs / --clip-grad) and "
                             "start a new run")

    def _step(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, step: int, *, criterion: nn.Module,
              epoch: int) -> tuple[float, float]:
        """One update; (loss, correct predictions: fractional for a mixed batch, recipes.correct)."""
        cfg = self.cfg
        x, target = self.mixer(x, y, epoch=epoch, step=step)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            loss, logits = compute_loss(net(x), target, criterion, cfg.train.aux_weight)
        # under DDP the per-rank means of the whole step's loss and hits: every rank keeps the same running
        # sums (a checkpoint's are the run's), and a non-finite loss on any rank stops all ranks here
        value, hits, *stop = self.dist.average(float(loss.detach()), correct(logits, target),
                                               *([distributed.stop_requested()] if self.dist.world > 1 else []))
        self.stop_all = bool(stop and stop[0] > 0)  # a Ctrl-C on any rank: all stop after this step (_moved)
        if not math.isfinite(value):  # before the update: the weights stay finite, no checkpoint gets NaN
            raise self._diverged("training loss", value, epoch=epoch, step=step)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.optim.clip_grad:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.optim.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()
        if self.ema is not None:
            self.ema.update(self.model, updates=self.global_step)
        return value, hits

    def _logits(self, net: nn.Module, batches) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and targets of the whole set in sample order; under DDP each rank runs its share."""
        logits, targets = run_model(net, batches.epoch(0), amp_dtype=self.amp_dtype)
        index = batches.sampler.order()
        return self.dist.gather_rows(logits, index), self.dist.gather_rows(targets, index)

    def _validate(self, net: nn.Module, val_b, *, epoch: int, prefix: str = "") -> dict[str, float]:
        logits, targets = self._logits(net, val_b)
        loss = float(nn.functional.cross_entropy(logits, targets))
        if not math.isfinite(loss):
            raise self._diverged(f"{prefix.replace('_', ' ')}validation loss", loss, epoch=epoch)
        hits = topk_correct(logits, targets, ks=self.ks)
        # rank 0's numbers decide best and early stopping on every rank
        return self.dist.from_main({f"{prefix}val_loss": loss,
                                    **{f"{prefix}val_top{k}": hits[k] / len(targets) for k in self.ks}})

    def _ema_net(self, net: nn.Module) -> nn.Module:
        """The EMA copy of `net` (the model, or its head when features are cached)."""
        name = next(n for n, m in self.model.named_modules() if m is net)
        return self.ema.module.get_submodule(name)

    def _batches(self) -> tuple[nn.Module, Any, Any]:
        cfg = self.cfg
        d = self.dist
        if not self.policy.caches_features or cfg.data.feature_views == 0:
            return (self.model, ImageBatches(self.data.train, cfg, self.device, train=True, workers=self.workers, dist=d),
                    ImageBatches(self.data.val, cfg, self.device, train=False, workers=self.workers, dist=d))
        views = cfg.data.feature_views
        tic = time.perf_counter()
        with self.policy.backbone_and_head(self.model) as (backbone, head):
            train_ds = self.data.train if views > 1 else _with_transform(self.data.train, self.data.val.transform)
            # under DDP each rank extracts its share and every rank gets all features; the head then
            # trains replicated (DDP over the head), each rank on its shard of every global batch
            backbone.eval()
            runner = backbone_runner(backbone, cfg, self.device, images=views * len(train_ds) + len(self.data.val))
            tf, tt = extract_features(runner, train_ds, cfg, self.device, views=views, workers=self.workers,
                                      desc="caching train features", dist=d)
            vf, vt = extract_features(runner, self.data.val, cfg, self.device, views=1, workers=self.workers,
                                      desc="caching val features", dist=d)
        log.info("cached backbone features: %d train x %d view(s), %d val, %d-wide, in %.1fs (%s)",
                 tf.shape[1], views, vf.shape[1], tf.shape[2], time.perf_counter() - tic,
                 getattr(runner, "backend", "torch"))
        dev = self.device
        return (head, FeatureBatches(tf.to(dev), tt.to(dev), batch_size=cfg.data.batch_size, seed=cfg.train.seed, train=True,
                                     dist=d),
                FeatureBatches(vf.to(dev), vt.to(dev), batch_size=max(256, cfg.data.batch_size), seed=0, train=False,
                               dist=d))

    def _final_report(self, net: nn.Module, val_b) -> None:
        """Best weights on the val set: report.txt/json, confusion matrix CSV/PNG, curves.png."""
        best = self.run_dir / "best.ckpt"
        current = {k: v.clone() for k, v in self.model.state_dict().items()}
        saved = load_checkpoint(best) if self.dist.is_main and best.is_file() else None
        # the EMA weights when the run keeps them: what eval and predict will use
        best_state = self.dist.from_main(saved.get("model_ema", saved["model"]) if saved is not None else None)
        if best_state is not None:
            self.model.load_state_dict(best_state)
        logits, targets = self._logits(net, val_b)
        self.model.load_state_dict(current)
        if not self.dist.is_main:
            return
        paths = [str(p) for p, _ in self.data.val.samples]
        report = classification_report(logits, targets, self.classes, paths=paths)
        report.save(self.run_dir)
        plot_curves(self.history, self.run_dir / "curves.png")


def _with_transform(ds, transform):
    import copy

    clone = copy.copy(ds)
    clone.transform = transform
    return clone


def train(config: Config, *, callbacks: list[Callable[[Trainer], None]] | None = None,
          given: set[str] | None = None) -> RunResult:
    """Train one run as `config` says; returns where it went and how well it did. With
    `config.train.resume`, `given` names the settings to change on resume (see engine.resume)."""
    try:
        return Trainer(config, callbacks=callbacks, given=given).fit()
    finally:
        distributed.shutdown()
