"""Temperature scaling, the expected calibration error, and the numbers of an "unknown" answer."""
import math

import pytest
import torch

from imgcls.reports import calibration as cal
from imgcls.reports.plots import plot_reliability_bins

PNG = b"\x89PNG\r\n\x1a\n"


def calibrated(n: int = 20000, classes: int = 10, scale: float = 2.0, seed: int = 0):
    """Logits of a calibrated model and labels drawn from its own probabilities."""
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, classes, generator=g)
    targets = torch.multinomial(logits.softmax(1), 1, generator=g).squeeze(1)
    return logits, targets


@pytest.mark.parametrize("t_true", [2.5, 0.5])
def test_the_fit_recovers_a_known_temperature(t_true):
    logits, targets = calibrated()
    t = cal.fit_temperature(logits * t_true, targets)
    assert t == pytest.approx(t_true, rel=0.05)
    assert cal.fit_temperature(logits * t_true, targets) == t  # deterministic


def test_the_fit_lowers_the_nll_and_the_ece_and_keeps_the_ranking():
    logits, targets = calibrated()
    z = 2.5 * logits
    record = cal.calibration_record(z, targets)
    assert record["nll_after"] < record["nll_before"] and record["ece_after"] < record["ece_before"]
    assert record["ece_after"] < 0.02 < record["ece_before"] and record["fitted_on"] == len(targets)
    assert torch.equal(cal.scaled_probs(z, record["temperature"]).argmax(1), z.argmax(1))
    assert set(record["abstain"]) == {f"{p:g}" for p in cal.PRECISIONS}


def test_the_fit_stays_in_its_bounds_and_an_empty_set_is_t_1():
    z = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    assert cal.fit_temperature(z, torch.tensor([0, 1])) == pytest.approx(cal.T_BOUNDS[0], rel=1e-3)
    assert cal.fit_temperature(torch.empty(0, 3), torch.empty(0, dtype=torch.long)) == 1.0
    with pytest.raises(ValueError, match="want logits"):
        cal.fit_temperature(torch.zeros(3), torch.zeros(3))


def test_ece_by_hand():
    # 4 predictions at 0.9 (3 right) and 2 at 0.6 (both wrong): (4 * |0.75 - 0.9| + 2 * |0 - 0.6|) / 6
    probs = torch.tensor([[0.9, 0.1]] * 4 + [[0.6, 0.4]] * 2)
    targets = torch.tensor([0, 0, 0, 1, 1, 1])
    bins = cal.reliability_bins(probs, targets)
    assert bins.counts.sum() == 6 and len(bins.counts) == cal.N_BINS
    assert bins.ece == pytest.approx((4 * 0.15 + 2 * 0.6) / 6)
    assert cal.expected_calibration_error(torch.eye(3), torch.arange(3)) == 0.0  # sure and right


def test_coverage_numbers():
    probs = torch.tensor([[0.95, 0.05], [0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
    targets = torch.tensor([0, 0, 1, 0, 1])  # right, right, wrong, right, wrong
    assert cal.coverage_and_accuracy(probs, targets, 0.85) == (0.4, 1.0)
    cov, acc = cal.coverage_and_accuracy(probs, targets, 0.99)
    assert cov == 0.0 and math.isnan(acc)
    assert cal.accuracy_at_coverage(probs, targets, 0.6) == pytest.approx(2 / 3)
    assert cal.abstain_threshold(probs, targets, 1.0) == pytest.approx(0.9)
    assert cal.abstain_threshold(probs, targets, 0.75) == pytest.approx(0.7)  # 3 of the 4 most confident are right
    assert cal.abstain_threshold(torch.tensor([[0.9, 0.1]]), torch.tensor([1]), 0.5) is None


def test_confidence_report_text_dict_and_plot(tmp_path):
    logits, targets = calibrated(n=2000)
    z = 2 * logits
    t = cal.fit_temperature(z, targets)
    report = cal.confidence_report(z.softmax(1), cal.scaled_probs(z, t), targets, temperature=t, threshold=0.8,
                                   threshold_rule="--abstain 0.8", precisions=(0.99,))
    assert "temperature" in report.to_text() and "answered" in report.to_text()
    d = report.to_dict()
    assert d["ece_after"] < d["ece_before"] and set(d["accuracy_at_coverage"]) == {"0.9", "0.95"}
    assert 0 < d["abstain"]["coverage"] < 1 and d["abstain"]["accuracy"] > report.at_coverage[0.95] - 0.2
    path = plot_reliability_bins([("before", report.before), ("after", report.after)], tmp_path / "r.png")
    assert path.read_bytes()[:8] == PNG
