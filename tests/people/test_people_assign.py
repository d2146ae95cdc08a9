"""styleid_guidance.people.assign / multiid.copy_paste: the Hungarian assignment against brute force, the
found / missing / unknown / swap / merge / duplicate rules on hand-made embeddings, and WithAnyone's copy-paste."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from styleid_guidance.errors import StyleIDError
from styleid_guidance.people.assign import (
    analyse,
    assign_people,
    cosine_matrix,
    hungarian,
)
from styleid_guidance.people.multiid import copy_paste, score_case


def _brute_force(sim: np.ndarray) -> float:
    """The best summed similarity over every one-to-one pairing of min(F, P) faces and people."""
    f, p = sim.shape
    k = min(f, p)
    if k == 0:
        return 0.0
    return max(sum(sim[r, c] for r, c in zip(rows, cols))
               for rows in itertools.combinations(range(f), k) for cols in itertools.permutations(range(p), k))


@settings(max_examples=150, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(0, 5), st.integers(0, 5)), elements=st.floats(-1, 1)))
def test_hungarian_equals_brute_force(sim):
    pairs = hungarian(sim)
    assert len(pairs) == min(sim.shape)
    assert len({f for f, _ in pairs}) == len(pairs) and len({p for _, p in pairs}) == len(pairs)  # one-to-one
    assert sum(sim[f, p] for f, p in pairs) == pytest.approx(_brute_force(sim), abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(0, 4), st.integers(1, 4)), elements=st.floats(-1, 1)),
       st.floats(-1, 1), st.floats(0, 0.5))
def test_analysis_follows_its_rules(sim, threshold, margin):
    names = [f"p{k}" for k in range(sim.shape[1])]
    r = analyse(sim, hungarian(sim), names, threshold, margin)
    for p, m in enumerate(r.people):  # found = assigned at or above the threshold, with that similarity
        assert (m.face is not None) == (m.similarity is not None)
        if m.found:
            assert r.face_person[m.face] == p and m.similarity == sim[m.face, p] >= threshold
    assert sorted(r.found + r.missing) == sorted(names)
    assert len(r.unknown) == sim.shape[0] - len(r.found)
    merges = {f for f in range(sim.shape[0]) if (sim[f] >= threshold).sum() > 1}
    assert {f for f, _ in r.merges} == merges
    for s in r.swaps:
        assert s.closer_similarity > s.similarity + margin and r.person(s.assigned).face == s.face


def test_pasted_twice_is_a_duplicate_or_a_swap():
    ann, bob = np.eye(3)[0], np.eye(3)[1]
    copy = ann + 0.05 * np.eye(3)[2]  # the same face twice (a reference pasted twice)
    faces = np.stack([ann, copy])
    r = assign_people(faces, np.stack([ann, bob]), ["ann", "bob"], threshold=0.4)
    assert r.found == ["ann"] and r.missing == ["bob"] and r.unknown == [1]
    assert r.duplicates == [(1, "ann")] and not r.swaps
    # with a threshold below the copy's similarity to bob, the copy is bob's face, and it looks like ann: a swap
    bobish = np.stack([ann, ann + 0.3 * bob])
    r = assign_people(bobish, np.stack([ann, bob]), ["ann", "bob"], threshold=0.2, margin=0.05)
    assert r.found == ["ann", "bob"] and len(r.swaps) == 1
    assert (r.swaps[0].face, r.swaps[0].assigned, r.swaps[0].closer) == (1, "bob", "ann")


def test_merge_missing_and_more_people_than_faces():
    ann, bob, cat = np.eye(4)[:3]
    blend = ann + bob  # one face resembling two people (cos 0.71 with each)
    r = assign_people(blend[None], np.stack([ann, bob, cat]), ["ann", "bob", "cat"], threshold=0.5)
    assert r.merges == [(0, ["ann", "bob"])] and len(r.found) == 1 and set(r.missing) == {"cat"} | ({"ann", "bob"} - set(r.found))
    empty = assign_people(np.zeros((0, 4)), np.stack([ann, bob]), ["ann", "bob"])
    assert empty.missing == ["ann", "bob"] and empty.unknown == [] and empty.to_dict()["faces"] == 0


def test_cosine_matrix_normalises_and_accepts_torch():
    a = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(cosine_matrix(a, a.numpy()), [[1, math.sqrt(0.5)], [math.sqrt(0.5), 1]], atol=1e-12)


@pytest.mark.parametrize("names,threshold,margin,match", [
    (["ann", "ann"], 0.4, 0.05, "unique"),
    (["ann", "bob"], 1.5, 0.05, "threshold"),
    (["ann", "bob"], 0.4, -0.1, "margin"),
    (["ann"], 0.4, 0.05, "names for 2"),
])
def test_bad_arguments_are_one_clear_error(names, threshold, margin, match):
    with pytest.raises(StyleIDError, match=match):
        assign_people(np.eye(2), np.eye(2), names, threshold, margin)


def test_copy_paste_is_withanyones_angle_ratio():
    t, r = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    assert copy_paste(r, t, r) == pytest.approx(1.0)  # generated = reference: copied
    assert copy_paste(t, t, r) == pytest.approx(-1.0)  # generated = ground truth
    mid = (t + r) / np.linalg.norm(t + r)
    assert copy_paste(mid, t, r) == pytest.approx(0.0, abs=1e-12)
    g = np.array([0.2, 0.5, 0.8])
    gn = g / np.linalg.norm(g)
    expected = (math.acos(gn @ t) - math.acos(gn @ r)) / (math.pi / 2)
    assert copy_paste(g * 3, t, r) == pytest.approx(expected)
    assert copy_paste(g, t, t) == 0.0  # θ(t, r) = 0: undefined, 0 as the benchmark returns


@settings(max_examples=100, deadline=None)
@given(arrays(np.float64, (3, 5), elements=st.floats(-1, 1)).filter(lambda a: (np.linalg.norm(a, axis=1) > 1e-3).all()))
def test_copy_paste_stays_in_minus_one_one(v):
    assert -1 - 1e-9 <= copy_paste(v[0], v[1], v[2]) <= 1 + 1e-9


def test_score_case_pairs_each_person_through_the_references():
    refs = torch.eye(4)[:2]  # ann, bob
    gt = torch.stack([refs[1] + 0.2 * torch.eye(4)[2], refs[0] + 0.2 * torch.eye(4)[3]])  # ori: bob left, ann right
    out = torch.stack([refs[0]])  # one generated face: ann copied; bob missing
    cs = score_case(refs, out, gt, ["ref_1", "ref_2"])
    ann = cs.people["ref_1"]
    assert ann["sim_ref"] == pytest.approx(1.0) and ann["copy_paste"] == pytest.approx(1.0)
    assert ann["sim_gt"] == pytest.approx(float(cosine_matrix(out, gt[1:2])[0, 0]))
    assert cs.people["ref_2"] == {"sim_ref": None, "sim_gt": None, "copy_paste": None}
    no_gt = score_case(refs, out, None, ["ref_1", "ref_2"])
    assert no_gt.people["ref_1"]["sim_gt"] is None and no_gt.people["ref_1"]["copy_paste"] is None
