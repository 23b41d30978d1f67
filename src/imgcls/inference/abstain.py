"""An "unknown" answer: `--abstain P` (predict, eval, serve) answers "unknown" when the top calibrated
probability is below P; `--abstain precision:Q` takes the threshold at which the model's val answers
were Q precise, which `imgcls train` stores in best.ckpt (checkpoint.Calibration.abstain, for the
precisions of reports.calibration.PRECISIONS) and `imgcls eval` finds on any labelled data."""
from __future__ import annotations

import math
from dataclasses import dataclass

from imgcls.checkpoint import Calibration
from imgcls.errors import ConfigError

UNKNOWN = "unknown"
FORM = "--abstain P (a probability in [0, 1], e.g. 0.6) or --abstain precision:Q (e.g. precision:0.99)"


@dataclass(frozen=True)
class AbstainRule:
    """`kind` "probability" (value: the threshold itself) or "precision" (value: the precision wanted)."""

    kind: str
    value: float

    @property
    def text(self) -> str:
        return f"{self.value:g}" if self.kind == "probability" else f"precision:{self.value:g}"


def parse_abstain(text: str | float | None) -> AbstainRule | None:
    """`--abstain`'s value as a rule (None: always answer); a malformed one is one ConfigError."""
    if text is None:
        return None
    raw = str(text).strip()
    kind, _, number = raw.rpartition(":")
    if kind not in ("", "precision"):
        raise ConfigError(f"--abstain {raw!r}: use {FORM}")
    try:
        value = float(number)
    except ValueError:
        raise ConfigError(f"--abstain {raw!r}: use {FORM}") from None
    if not math.isfinite(value) or not 0 <= value <= 1 or (kind and value == 0):
        raise ConfigError(f"--abstain {raw!r}: {'the precision' if kind else 'the probability'} must be "
                          f"{'in (0, 1]' if kind else 'in [0, 1]'}; use {FORM}")
    return AbstainRule(kind or "probability", value)


def stored_threshold(rule: AbstainRule, calibration: Calibration, source: str) -> float:
    """The threshold of a rule from a model's calibration record: a probability is itself; a precision is
    looked up in the table train stored. What the record cannot give is one ConfigError with the way out."""
    if rule.kind == "probability":
        return rule.value
    if not calibration.abstain:
        raise ConfigError(f"--abstain {rule.text}: {source} has no thresholds fitted on val (a checkpoint from an "
                          "older imgcls, a weights name, or a file exported from one); give a probability "
                          "(--abstain 0.8), or find one on labelled data: imgcls eval MODEL DATA --abstain "
                          f"{rule.text}")
    key = f"{rule.value:g}"
    if key not in calibration.abstain:
        raise ConfigError(f"--abstain {rule.text}: {source} stores thresholds for precision "
                          f"{', '.join(calibration.abstain)}; use one of them, or find this one on labelled data: "
                          f"imgcls eval MODEL DATA --abstain {rule.text}, then pass the threshold it prints")
    threshold = calibration.abstain[key]
    if threshold is None:
        raise ConfigError(f"--abstain {rule.text}: on its {calibration.fitted_on} val images {source} never reached "
                          f"precision {rule.value:g} at any threshold; ask for a lower precision")
    return threshold
