"""compare.candidates and compare.plan: names and durations read once with one-line errors, and the plan
fitted to the budget (dropped and shortened candidates, with the reason)."""
from __future__ import annotations

import pytest

from imgcls.compare import candidates as cand
from imgcls.compare.candidates import Candidate, parse_budget, parse_models, resolve_candidate
from imgcls.compare.plan import MIN_SCRATCH_EPOCHS, SCRATCH_EPOCHS, Speed, estimate, fit_budget
from imgcls.errors import ConfigError


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("10m", 600), ("1h30m", 5400), ("1.5h", 5400),
                                               ("2m30s", 150), (" 10M ", 600)])
def test_budgets(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["ten minutes", "10", "", "m", "10x", "5s", "1h-2m"])
def test_bad_budgets_are_one_line_errors(text):
    with pytest.raises(ConfigError, match=r"^--budget .*(e\.g\.)"):
        parse_budget(text)


def test_names_resolve_to_weights_or_scratch(monkeypatch):
    monkeypatch.setattr(cand, "_local_weights", lambda name: name == "resnet34.tv_in1k")
    lite = resolve_candidate("efficientnet_lite1.in1k", None)
    assert (lite.model, lite.weights, lite.input_size, lite.resize) == ("efficientnet_lite1", "efficientnet_lite1.in1k",
                                                                        240, 272)
    assert resolve_candidate("resnet34", None).weights == "resnet34.tv_in1k"  # its weights are on this machine
    scratch = resolve_candidate("resnet18", None)  # they are not
    assert (scratch.weights, scratch.input_size, scratch.label, scratch.slug) == (
        None, 112, "resnet18 (scratch)", "resnet18-scratch-112")
    sized = resolve_candidate("efficientnet_lite0.in1k", 160)
    assert (sized.input_size, sized.resize, sized.slug) == (160, 183, "efficientnet_lite0.in1k-160")


def test_an_unknown_name_gets_close_matches():
    with pytest.raises(ConfigError, match=r"^--models resnet81: not a model or weights name; did you mean resnet18"):
        parse_models("efficientnet_lite0.in1k,resnet81", None)
    with pytest.raises(ConfigError, match="segmentation model"):
        parse_models("fcn_resnet50.tv_coco_voc", None)
    with pytest.raises(ConfigError, match="name at least one model"):
        parse_models(" , ", None)


def test_the_same_run_named_twice_is_compared_once():
    got = parse_models("efficientnet_lite0.in1k, efficientnet_lite0.in1k,efficientnet_lite0", None)
    assert [c.slug for c in got] == ["efficientnet_lite0.in1k-224"]


def test_the_default_set_is_what_is_on_this_machine(monkeypatch):
    monkeypatch.setattr(cand, "_local_weights", lambda name: name in ("efficientnet_lite0.in1k", "resnet18.tv_in1k"))
    got = cand.default_candidates(None)
    assert [(c.label, c.optional) for c in got] == [("efficientnet_lite0.in1k", False), ("resnet18.tv_in1k", False),
                                                   ("resnet18 (scratch)", True)]


def _c(model: str, weights: str | None, *, optional: bool = False) -> Candidate:
    return Candidate(model, weights, 224 if weights else 112, 256 if weights else 128, optional)


SPEED = Speed(forward=0.01, decode=0.004)


def test_what_fits_is_kept_in_order_and_the_rest_dropped_with_the_reason():
    a, b = _c("efficientnet_lite0", "efficientnet_lite0.in1k"), _c("resnet50", "resnet50.tv_in1k")
    speeds = {a.slug: SPEED, b.slug: Speed(forward=0.2, decode=0.004)}
    cost_a = estimate(a, 30, 1000, 100, SPEED)
    plan = fit_budget([a, b], speeds, 1000, 100, budget=cost_a + 5)
    assert [s.candidate for s in plan.steps] == [a]
    assert [c for c, _ in plan.dropped] == [b]
    assert "over the 0m05s left of the budget" in plan.dropped[0][1]
    assert "dropped resnet50.tv_in1k" in plan.text() and "estimated" in plan.text()


def test_from_scratch_is_shortened_to_fit_or_dropped_below_the_minimum():
    s = _c("resnet18", None, optional=True)
    full = estimate(s, SCRATCH_EPOCHS, 1000, 100, SPEED)
    plan = fit_budget([s], {s.slug: SPEED}, 1000, 100, budget=0.6 * full)
    (step,) = plan.steps
    assert MIN_SCRATCH_EPOCHS <= step.epochs < SCRATCH_EPOCHS and step.seconds <= 0.6 * full
    assert "shortened" in step.note
    tiny = fit_budget([s], {s.slug: SPEED}, 1000, 100, budget=estimate(s, MIN_SCRATCH_EPOCHS - 1, 1000, 100, SPEED))
    assert not tiny.steps and "needs at least" in tiny.dropped[0][1]


def test_optional_candidates_come_after_the_others():
    s, a = _c("resnet18", None, optional=True), _c("efficientnet_lite0", "efficientnet_lite0.in1k")
    plan = fit_budget([s, a], {s.slug: SPEED, a.slug: SPEED}, 100, 10, budget=3600)
    assert [st.candidate for st in plan.steps] == [a, s]
    assert plan.seconds == pytest.approx(sum(st.seconds for st in plan.steps))


def test_a_head_costs_one_pass_and_scratch_costs_epochs():
    head, scratch = _c("efficientnet_lite0", "efficientnet_lite0.in1k"), _c("resnet18", None)
    assert estimate(head, 30, 1000, 100, SPEED) < estimate(scratch, 2, 1000, 100, SPEED)
    assert estimate(scratch, 10, 1000, 100, SPEED) > estimate(scratch, 5, 1000, 100, SPEED)


def test_scaled_estimates_take_back_what_an_overestimate_dropped():
    # compare re-plans after each candidate with real / estimated time: estimates twice too high had dropped b
    a, b = _c("efficientnet_lite0", "efficientnet_lite0.in1k"), _c("efficientnet_lite1", "efficientnet_lite1.in1k")
    speeds = {a.slug: SPEED, b.slug: SPEED}
    cost = estimate(a, 30, 1000, 100, SPEED)
    assert [s.candidate for s in fit_budget([a, b], speeds, 1000, 100, budget=1.5 * cost).steps] == [a]
    again = fit_budget([b], speeds, 1000, 100, budget=1.5 * cost, spent=0.5 * cost, scale=0.5)
    assert [s.candidate for s in again.steps] == [b] and again.steps[0].seconds == pytest.approx(0.5 * cost)
    assert not fit_budget([b], speeds, 1000, 100, budget=1.5 * cost, spent=0.5 * cost, scale=1.2).steps
