"""Class weights and the balanced sampler (data/balance.py)."""
from collections import Counter

import pytest

from imgcls.data import SeededSampler
from imgcls.data.balance import BalancedSampler, class_counts, class_weights, weights_line


def test_class_weights_are_the_stated_rules_normalised_to_mean_one():
    counts = [10, 100, 0]
    assert class_weights(counts, "none") is None
    balanced = class_weights(counts, "balanced")  # 1/n with an empty class counted as one image
    raw = [1 / 10, 1 / 100, 1 / 1]
    assert balanced == pytest.approx([r / (sum(raw) / 3) for r in raw])
    beta = 0.99
    effective = class_weights(counts, "effective", beta=beta)
    raw = [(1 - beta) / (1 - beta ** n) for n in (10, 100, 1)]
    assert effective == pytest.approx([r / (sum(raw) / 3) for r in raw])
    assert sum(effective) == pytest.approx(3) and effective[1] < effective[0] < effective[2]
    # beta -> 1 approaches the inverse frequency; a larger beta weighs the small class more
    assert class_weights([10, 100], "effective", beta=0.9999) == pytest.approx(class_weights([10, 100], "balanced"),
                                                                               rel=0.01)
    with pytest.raises(ValueError, match="unknown class weighting 'inverse'"):
        class_weights(counts, "inverse")
    assert class_counts([0, 2, 2, 0, 2], 4) == [2, 0, 3, 0]
    assert weights_line(["a", "b"], [10, 100], [1.818, 0.1818], "balanced (1/n)") == \
        "class weights balanced (1/n), mean 1: a (10) 1.82, b (100) 0.182"


def _epoch(sampler, epoch, start=0):
    sampler.set_epoch(epoch, start)
    return list(sampler)


def test_balanced_sampler_draws_classes_evenly_and_depends_only_on_seed_and_epoch():
    targets = [0] * 900 + [1] * 90 + [2] * 10
    sampler = BalancedSampler(targets, seed=3)
    first = _epoch(sampler, 0)
    assert len(first) == len(sampler) == 1000
    shares = Counter(targets[i] for i, _ in first)
    assert all(abs(shares[c] - 333) < 60 for c in range(3)), shares  # a plain epoch: 900 / 90 / 10
    assert _epoch(BalancedSampler(targets, seed=3), 0) == first  # a new sampler, the same epoch
    assert _epoch(sampler, 1) != first and _epoch(BalancedSampler(targets, seed=4), 0) != first
    # an image drawn twice gets two augmentation seeds: they follow the draw's position
    assert len({seed for _, seed in first}) == 1000 and len({i for i, _ in first}) < 1000


def test_balanced_sampler_resumes_mid_epoch_and_shards_like_the_plain_one():
    targets = [0] * 50 + [1] * 5
    full = _epoch(BalancedSampler(targets, seed=1), 2)
    assert _epoch(BalancedSampler(targets, seed=1), 2, start=16) == full[16:]
    ranks = [BalancedSampler(targets, seed=1, rank=r, world=2, limit=48) for r in range(2)]
    shards = [_epoch(s, 2) for s in ranks]
    assert [len(s) for s in shards] == [len(s) for s in ranks] == [24, 24]
    assert [x for pair in zip(*shards) for x in pair] == full[:48]  # rank r takes every world-th draw
    assert [i for i, _ in shards[1]] == ranks[1].order()
    resumed = BalancedSampler(targets, seed=1, rank=1, world=2, limit=48)
    assert _epoch(resumed, 2, start=8) == shards[1][8:] and len(resumed) == 16
    plain = SeededSampler(len(targets), seed=1)  # the plain sampler: a permutation, unchanged
    plain.set_epoch(2)
    assert sorted(i for i, _ in plain) == list(range(55))
