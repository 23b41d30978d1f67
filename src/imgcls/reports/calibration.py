"""Confidence that means what it says: temperature scaling (Guo et al. 2017, "On Calibration of Modern
Neural Networks"), the expected calibration error, the reliability diagram's bins, and the numbers of an
"unknown" answer (abstaining below a threshold: coverage, accuracy on the answered part, the threshold
that reaches a stated precision on labelled data).

Temperature scaling divides every logit by one scalar T > 0 fitted on held-out data to minimise the
negative log-likelihood: the ranking (top-1) never changes, only how sure the probabilities are. The
fit is a bounded golden-section search over log T: deterministic, no gradient, no random start. NLL is
convex in 1/T, so it has one minimum along log T and the search finds it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch.nn.functional as F
from torch import Tensor

N_BINS = 15  # Guo et al.'s ECE bins
T_BOUNDS = (0.05, 20.0)  # a temperature outside these says the logits are broken, not overconfident
PRECISIONS = (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)  # the abstain thresholds train stores (--abstain precision:P)
COVERAGES = (0.9, 0.95)  # eval's "accuracy at 90% / 95% coverage"
_GOLDEN = (math.sqrt(5) - 1) / 2


def scaled_probs(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """softmax(logits / T), in float32, over the last dimension."""
    return (logits.detach().float() / temperature).softmax(-1)


def nll(logits: Tensor, targets: Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the targets under softmax(logits / T)."""
    return float(F.cross_entropy(logits.detach().double() / temperature, targets.long()))


def fit_temperature(logits: Tensor, targets: Tensor, *, bounds: tuple[float, float] = T_BOUNDS,
                    tol: float = 1e-4) -> float:
    """The T in `bounds` minimising the NLL of softmax(logits / T): golden-section search on log T to a
    relative precision `tol`. [N, C] logits, [N] class indices; an empty set gives 1.0."""
    if logits.ndim != 2 or targets.shape != (logits.shape[0],):
        raise ValueError(f"want logits [N, C] and targets [N], got {list(logits.shape)} and {list(targets.shape)}")
    if logits.shape[0] == 0:
        return 1.0
    z, t = logits.detach().double().cpu(), targets.long().cpu()

    def loss(log_t: float) -> float:
        return float(F.cross_entropy(z / math.exp(log_t), t))

    a, b = math.log(bounds[0]), math.log(bounds[1])
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = loss(c), loss(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = loss(d)
    return float(math.exp((a + b) / 2))


def _conf_correct(probs: Tensor, targets: Tensor) -> tuple[np.ndarray, np.ndarray]:
    conf, pred = probs.detach().float().cpu().max(1)
    return conf.numpy().astype(np.float64), (pred == targets.cpu().long()).numpy()


@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width confidence bins (lo, hi]: how many predictions fall in each, their mean confidence and
    their accuracy (NaN where a bin is empty)."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean |accuracy - confidence| over the bins."""
        n = self.counts.sum()
        if n == 0:
            return 0.0
        used = self.counts > 0
        gap = np.abs(self.accuracy[used] - self.confidence[used])
        return float((self.counts[used] * gap).sum() / n)


def reliability_bins(probs: Tensor, targets: Tensor, n_bins: int = N_BINS) -> ReliabilityBins:
    """The top-1 confidences of [N, C] probabilities against [N] targets, in `n_bins` bins."""
    conf, correct = _conf_correct(probs, targets)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)  # (lo, hi]; 0 joins the first
    counts = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / counts
        accuracy = np.bincount(which, weights=correct.astype(np.float64), minlength=n_bins) / counts
    return ReliabilityBins(edges, counts, mean_conf, accuracy)


def expected_calibration_error(probs: Tensor, targets: Tensor, n_bins: int = N_BINS) -> float:
    return reliability_bins(probs, targets, n_bins).ece


def abstain_threshold(probs: Tensor, targets: Tensor, precision: float) -> float | None:
    """The lowest top-1 probability threshold t such that the predictions with confidence >= t are right
    at least `precision` of the time on this data (the largest coverage that holds it); None when no
    threshold does (even the most confident prediction is wrong)."""
    conf, correct = _conf_correct(probs, targets)
    order = np.argsort(-conf, kind="stable")
    conf, correct = conf[order], correct[order]
    answered = np.arange(1, len(conf) + 1)
    right = np.cumsum(correct)
    last_of_tie = np.append(conf[1:] != conf[:-1], True)  # a threshold keeps every prediction tied with it
    ok = np.flatnonzero(last_of_tie & (right >= precision * answered - 1e-12))
    return float(conf[ok[-1]]) if len(ok) else None


def coverage_and_accuracy(probs: Tensor, targets: Tensor, threshold: float) -> tuple[float, float]:
    """(share of predictions with top-1 probability >= threshold, accuracy among them; NaN when none)."""
    conf, correct = _conf_correct(probs, targets)
    kept = conf >= threshold
    return float(kept.mean()) if len(conf) else 0.0, float(correct[kept].mean()) if kept.any() else math.nan


def accuracy_at_coverage(probs: Tensor, targets: Tensor, coverage: float) -> float:
    """Accuracy on the `coverage` share of predictions made with the highest confidence."""
    conf, correct = _conf_correct(probs, targets)
    k = max(1, int(math.ceil(coverage * len(conf) - 1e-9)))
    return float(correct[np.argsort(-conf, kind="stable")[:k]].mean())


def calibration_record(logits: Tensor, targets: Tensor, *, precisions: Sequence[float] = PRECISIONS) -> dict:
    """What train stores in best.ckpt (checkpoint.Calibration reads it): the temperature fitted on these
    (validation) logits, NLL and ECE before and after, and the abstain threshold of each precision in
    `precisions` on the calibrated probabilities (None where the data never reaches it)."""
    t = fit_temperature(logits, targets)
    before, after = scaled_probs(logits), scaled_probs(logits, t)
    return {"temperature": t, "fitted_on": int(len(targets)),
            "nll_before": nll(logits, targets), "nll_after": nll(logits, targets, t),
            "ece_before": expected_calibration_error(before, targets),
            "ece_after": expected_calibration_error(after, targets),
            "abstain": {f"{p:g}": abstain_threshold(after, targets, p) for p in precisions}}


@dataclass
class ConfidenceReport:
    """Eval's confidence section: ECE and reliability bins at T = 1 and at the model's temperature,
    accuracy at 90%/95% coverage, and, with a threshold, how much is answered and how well."""

    temperature: float
    before: ReliabilityBins
    after: ReliabilityBins
    at_coverage: dict[float, float]
    threshold: float | None = None
    threshold_rule: str = ""
    coverage: float | None = None
    covered_accuracy: float | None = None
    precision_thresholds: dict[str, float | None] = field(default_factory=dict)

    def to_text(self) -> str:
        lines = [f"calibration: temperature {self.temperature:.3f}, ECE ({len(self.before.counts)} bins) "
                 f"{self.before.ece:.2%} at T=1 -> {self.after.ece:.2%}"]
        lines.append("accuracy at coverage: " + ", ".join(f"{c:.0%} -> {a:.2%}" for c, a in self.at_coverage.items()))
        for p, t in self.precision_thresholds.items():
            lines.append(f"precision {p} on this data: " + (f"--abstain {t:.4f}" if t is not None else "not reached"))
        if self.threshold is not None:
            acc = "no answer" if self.covered_accuracy is None or math.isnan(self.covered_accuracy) \
                else f"accuracy {self.covered_accuracy:.2%} on them"
            lines.append(f"abstain below {self.threshold:.4f} ({self.threshold_rule}): answered "
                         f"{self.coverage:.2%}, {acc}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        def finite(x: float | None) -> float | None:
            return None if x is None or math.isnan(x) else float(x)

        return {"temperature": self.temperature, "bins": len(self.before.counts),
                "ece_before": self.before.ece, "ece_after": self.after.ece,
                "accuracy_at_coverage": {f"{c:g}": a for c, a in self.at_coverage.items()},
                "abstain": None if self.threshold is None else {
                    "threshold": self.threshold, "rule": self.threshold_rule, "coverage": self.coverage,
                    "accuracy": finite(self.covered_accuracy)},
                "precision_thresholds": dict(self.precision_thresholds)}


def confidence_report(probs_before: Tensor, probs_after: Tensor, targets: Tensor, *, temperature: float,
                      threshold: float | None = None, threshold_rule: str = "",
                      precisions: Sequence[float] = ()) -> ConfidenceReport:
    """Eval's confidence numbers from the probabilities at T = 1 and at the model's temperature (both
    averaged over the views under test-time augmentation); `threshold`: the --abstain one, on the latter;
    `precisions`: thresholds to find on this data."""
    report = ConfidenceReport(temperature, reliability_bins(probs_before, targets),
                              reliability_bins(probs_after, targets),
                              {c: accuracy_at_coverage(probs_after, targets, c) for c in COVERAGES},
                              precision_thresholds={f"{p:g}": abstain_threshold(probs_after, targets, p)
                                                    for p in precisions})
    if threshold is not None:
        report.threshold, report.threshold_rule = threshold, threshold_rule
        report.coverage, report.covered_accuracy = coverage_and_accuracy(probs_after, targets, threshold)
    return report


def plot_reliability(report: ConfidenceReport, path) -> object:
    from imgcls.reports.plots import plot_reliability_bins

    return plot_reliability_bins([("T = 1", report.before), (f"T = {report.temperature:.2f}", report.after)], path)


__all__ = ["N_BINS", "PRECISIONS", "COVERAGES", "scaled_probs", "nll", "fit_temperature", "ReliabilityBins",
           "reliability_bins", "expected_calibration_error", "abstain_threshold", "coverage_and_accuracy",
           "accuracy_at_coverage", "calibration_record", "ConfidenceReport", "confidence_report",
           "plot_reliability"]
