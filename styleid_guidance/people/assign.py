"""Faces ↔ people: the Hungarian assignment on cosine similarity, and what it reveals about a group image.

Free of files, models and the command line, so `styleid score --people`, the ComfyUI nodes and the demo share
one definition of *found*, *missing*, *unknown*, *swap*, *merge* and *duplicate*:

  * similarity S[f, p] = cos(face f, reference of person p);
  * the assignment maximises the summed similarity over one-to-one (face, person) pairs
    (`scipy.optimize.linear_sum_assignment`, any numbers of faces and people); a pair below the threshold is
    dropped: its face is *unknown* and its person *missing*; faces left over are unknown, people left over missing;
  * swap: a found person's face is more similar to another person's reference than to its own, by more than
    the margin: S[f, q] > S[f, p] + margin;
  * merge: one face at or above the threshold for two or more people;
  * duplicate: an unknown face at or above the threshold for a person already found elsewhere in the image
    (the same face twice, e.g. a reference pasted twice).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import Arg, StyleIDError
from ..options import DEFAULT_SWAP_MARGIN as DEFAULT_MARGIN
from ..options import DEFAULT_THRESHOLD


@dataclass
class PersonMatch:
    """One person in one image: the face found for them (index into the image's faces) and its similarity."""

    name: str
    face: int | None
    similarity: float | None

    @property
    def found(self) -> bool:
        return self.face is not None


@dataclass
class Swap:
    face: int
    assigned: str  # the person the assignment gave the face to
    closer: str  # the other person whose reference the face resembles more
    similarity: float  # to the assigned person's reference
    closer_similarity: float


@dataclass
class PeopleResult:
    """The analysis of one image. `similarity` is [faces, people]; `face_person[f]` is the person index face f
    was assigned to, or None (unknown)."""

    names: list[str]
    similarity: np.ndarray
    face_person: list[int | None]
    threshold: float
    margin: float
    people: list[PersonMatch] = field(default_factory=list)
    swaps: list[Swap] = field(default_factory=list)
    merges: list[tuple[int, list[str]]] = field(default_factory=list)  # (face, the people it matches)
    duplicates: list[tuple[int, str]] = field(default_factory=list)  # (unknown face, the found person it repeats)

    @property
    def found(self) -> list[str]:
        return [p.name for p in self.people if p.found]

    @property
    def missing(self) -> list[str]:
        return [p.name for p in self.people if not p.found]

    @property
    def unknown(self) -> list[int]:
        return [f for f, p in enumerate(self.face_person) if p is None]

    def person(self, name: str) -> PersonMatch:
        return self.people[self.names.index(name)]

    def to_dict(self) -> dict[str, Any]:
        return {"faces": len(self.face_person), "found": self.found, "missing": self.missing, "unknown_faces": self.unknown,
                "people": {p.name: {"face": p.face, "similarity": p.similarity} for p in self.people},
                "swaps": [vars(s) for s in self.swaps],
                "merges": [{"face": f, "people": names} for f, names in self.merges],
                "duplicates": [{"face": f, "of": name} for f, name in self.duplicates],
                "similarity": [[float(x) for x in row] for row in self.similarity]}


def cosine_matrix(faces: torch.Tensor | np.ndarray, references: torch.Tensor | np.ndarray) -> np.ndarray:
    """[F, D] × [P, D] → [F, P] cosine similarities (float64; rows are L2-normalised here)."""
    a = np.asarray(torch.as_tensor(faces).detach().cpu().double().numpy()).reshape(-1, np.shape(references)[-1])
    b = np.asarray(torch.as_tensor(references).detach().cpu().double().numpy())
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def hungarian(similarity: np.ndarray) -> list[tuple[int, int]]:
    """(face, person) pairs maximising the summed similarity, one-to-one; min(F, P) pairs."""
    from scipy.optimize import linear_sum_assignment

    if similarity.size == 0:
        return []
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols)]


def _check(names: Sequence[str], n_people: int, threshold: float, margin: float) -> list[str]:
    names = [str(n) for n in names]
    if len(names) != n_people:
        raise StyleIDError(f"{len(names)} names for {n_people} reference embeddings")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise StyleIDError(f"person names must be unique; given twice: {', '.join(dupes)}")
    if not (isinstance(threshold, (int, float)) and np.isfinite(threshold) and -1.0 <= threshold <= 1.0):
        raise StyleIDError("{arg}: a cosine similarity threshold must be a number in [-1, 1]", param="threshold",
                           arg=Arg("threshold", threshold))
    if not (isinstance(margin, (int, float)) and np.isfinite(margin) and 0.0 <= margin <= 2.0):
        raise StyleIDError("{arg}: the swap margin is a cosine difference in [0, 2]", param="margin", arg=Arg("margin", margin))
    return names


def analyse(similarity: np.ndarray, pairs: Sequence[tuple[int, int]], names: Sequence[str],
            threshold: float = DEFAULT_THRESHOLD, margin: float = DEFAULT_MARGIN) -> PeopleResult:
    """The result for given (face, person) pairs: from `hungarian`, or from where the pipeline placed people
    (`--match position`). Pairs below the threshold are dropped (unknown face, missing person)."""
    sim = np.asarray(similarity, np.float64)
    if sim.ndim != 2:  # no faces (an empty list): [0, people]
        sim = sim.reshape(-1, len(names)) if sim.size else np.zeros((0, len(names)))
    names = _check(names, sim.shape[1], threshold, margin)
    face_person: list[int | None] = [None] * sim.shape[0]
    person_face: list[int | None] = [None] * sim.shape[1]
    for f, p in pairs:
        if face_person[f] is not None or person_face[p] is not None:
            raise StyleIDError(f"face {f} or person {names[p]!r} is paired twice; pairs must be one-to-one")
        if sim[f, p] >= threshold:
            face_person[f], person_face[p] = p, f
    people = [PersonMatch(n, person_face[p], None if person_face[p] is None else float(sim[person_face[p], p]))
              for p, n in enumerate(names)]
    out = PeopleResult(names, sim, face_person, float(threshold), float(margin), people)
    for f, p in enumerate(face_person):
        above = [names[q] for q in range(sim.shape[1]) if sim[f, q] >= threshold]
        if len(above) > 1:
            out.merges.append((f, above))
        if p is None:
            # the unknown face repeats someone found elsewhere (the most similar such person)
            best = max((q for q in range(sim.shape[1]) if person_face[q] is not None and sim[f, q] >= threshold),
                       key=lambda q: sim[f, q], default=None)
            if best is not None:
                out.duplicates.append((f, names[best]))
            continue
        others = [q for q in range(sim.shape[1]) if q != p]
        if others:
            q = max(others, key=lambda q: sim[f, q])
            if sim[f, q] > sim[f, p] + margin:
                out.swaps.append(Swap(f, names[p], names[q], float(sim[f, p]), float(sim[f, q])))
    return out


def assign_people(face_embeddings: torch.Tensor | np.ndarray, reference_embeddings: torch.Tensor | np.ndarray,
                  names: Sequence[str], threshold: float = DEFAULT_THRESHOLD, margin: float = DEFAULT_MARGIN) -> PeopleResult:
    """Every face of one image ([F, D]) against every person's reference ([P, D], one row per name): the Hungarian
    assignment on cosine similarity, then found / missing / unknown / swaps / merges / duplicates (module doc)."""
    ref = torch.as_tensor(reference_embeddings)
    if ref.ndim != 2:
        raise StyleIDError(f"reference embeddings must be [people, dim], got shape {tuple(ref.shape)}")
    faces = torch.as_tensor(face_embeddings).reshape(-1, ref.shape[1])
    sim = cosine_matrix(faces, ref)
    return analyse(sim, hungarian(sim), names, threshold, margin)
