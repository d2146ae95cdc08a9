"""Identity-balanced P×K sampler: positives for every anchor, disjoint ranks, exact resumability."""
from __future__ import annotations

import itertools
from collections import Counter

import pytest

from styleid_guidance.errors import StyleIDError
from styleid_guidance.train.sampler import IdentityBalancedBatchSampler


def _labels(n_ids: int, per_id: int | list[int]) -> list[int]:
    counts = per_id if isinstance(per_id, list) else [per_id] * n_ids
    return [i for i, c in enumerate(counts) for _ in range(c)]


def test_every_anchor_has_a_positive_and_batch_shape():
    labels = _labels(20, [2, 3, 5, 9] * 5)
    sampler = IdentityBalancedBatchSampler(labels, ids_per_batch=6, images_per_id=2, seed=3)
    for batch in itertools.islice(iter(sampler), 25):
        assert len(batch) == 12
        ids = Counter(labels[i] for i, _ in batch)
        assert len(ids) == 6 and set(ids.values()) == {2}
        for i, _ in batch:  # the anchor's identity appears at least once more in the batch
            assert ids[labels[i]] >= 2
        # an identity with ≥ K images never repeats an image inside one batch
        for ident in ids:
            picks = [i for i, _ in batch if labels[i] == ident]
            assert len(set(picks)) == len(picks)


def test_identity_with_fewer_images_than_k_is_sampled_with_replacement():
    labels = _labels(4, [2, 2, 2, 2])
    sampler = IdentityBalancedBatchSampler(labels, ids_per_batch=2, images_per_id=4)
    batch = sampler.batch(0)
    counts = Counter(labels[i] for i, _ in batch)
    assert sorted(counts.values()) == [4, 4]


def test_distributed_ranks_take_disjoint_identities_and_cover_an_epoch():
    labels = _labels(24, 3)
    world = 3
    samplers = [IdentityBalancedBatchSampler(labels, 4, 2, num_replicas=world, rank=r, seed=7) for r in range(world)]
    assert samplers[0].batches_per_epoch == 2  # 24 ids / (4 per batch × 3 ranks)
    seen = []
    for n in range(samplers[0].batches_per_epoch):
        per_rank = [{labels[i] for i, _ in s.batch(n)} for s in samplers]
        for a, b in itertools.combinations(per_rank, 2):
            assert not a & b, "two ranks share an identity in the same step"
        seen += [ident for ids in per_rank for ident in ids]
    assert sorted(seen) == list(range(24)), "one epoch visits every identity exactly once across ranks"
    # the next epoch is a different permutation
    first = [sorted({labels[i] for i, _ in s.batch(0)}) for s in samplers]
    second = [sorted({labels[i] for i, _ in s.batch(2)}) for s in samplers]
    assert first != second


def test_stream_is_deterministic_and_resumes_at_a_position():
    labels = _labels(10, 4)
    a = IdentityBalancedBatchSampler(labels, 3, 2, seed=11)
    stream = list(itertools.islice(iter(a), 9))
    assert stream == [a.batch(n) for n in range(9)]
    b = IdentityBalancedBatchSampler(labels, 3, 2, seed=11)
    b.load_state_dict(a.state_dict(batches_consumed=5))
    assert list(itertools.islice(iter(b), 4)) == stream[5:9]
    # augmentation seeds are part of the stream and differ between samples
    seeds = [s for _, s in stream[0]]
    assert len(set(seeds)) == len(seeds)
    other = IdentityBalancedBatchSampler(labels, 3, 2, seed=12)
    assert other.batch(0) != stream[0]


def test_sampler_errors_are_clear():
    with pytest.raises(StyleIDError, match="images-per-id"):
        IdentityBalancedBatchSampler(_labels(4, 2), 2, 1)
    with pytest.raises(StyleIDError, match="identities but a step needs 8"):
        IdentityBalancedBatchSampler(_labels(5, 2), 4, 2, num_replicas=2)
    with pytest.raises(StyleIDError, match="fewer than 2 images"):
        IdentityBalancedBatchSampler(_labels(3, [2, 1, 2]), 2, 2)
    s = IdentityBalancedBatchSampler(_labels(8, 2), 2, 2, seed=0)
    state = s.state_dict(3)
    state["num_replicas"] = 2
    with pytest.raises(StyleIDError, match="num_replicas"):
        s.load_state_dict(state)
