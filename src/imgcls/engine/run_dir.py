"""A run's folder: a new one (exp1, exp2, ... or --name), or the resumed checkpoint's, with the resolved
config saved in it, and train.log written there while the run lasts."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imgcls.engine import resume
from imgcls.engine.checkpoint import remove_stale_temps
from imgcls.engine.plan import Plan, check_run_name

log = logging.getLogger("imgcls")


def new_run_dir(out_dir: str | Path, name: str | None) -> Path:
    out = Path(out_dir)
    if name:
        run = out / name
        check_run_name(run)  # checked by the plan too; the folder may have filled since
    else:
        n = 1
        while (out / f"exp{n}").exists():
            n += 1
        run = out / f"exp{n}"
    run.mkdir(parents=True, exist_ok=True)
    return run


def open_run_dir(p: Plan) -> Path:
    """The run folder: a new one, or the resumed checkpoint's (its dead writers' temporaries removed),
    with the resolved config saved in it."""
    t = p.config.train
    if p.resume is None or p.resume.new_folder:  # a new folder; a resumed checkpoint's own is left as it is
        run_dir = new_run_dir(t.out_dir, t.name)
    else:
        run_dir = p.resume.path.parent
        resume.check_not_older(p.resume.path, p.resume.state, run_dir)
        remove_stale_temps(run_dir)
    p.config.save(run_dir)
    return run_dir


@contextmanager
def run_log(run_dir: Path | None) -> Iterator[None]:
    """train.log in the run folder for the block (records the run even when the caller set up no logging)."""
    if run_dir is None:
        yield
        return
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()
