"""Identity-balanced P×K batch sampler (the paper's 56 identities × 2 images), distributed-aware.

Every batch holds P identities with K images each, so every anchor has at least one positive for
the supervised-contrastive term. Across processes, one *global* step draws P × world_size distinct
identities and rank r takes the r-th block of P: ranks never share an identity within a step, and
over an epoch every identity is visited once per rank group.

The stream is a pure function of (seed, batch number): batch n is the same on any machine, with any
number of DataLoader workers, and after any restart. That is what makes resume exact — the trainer
only stores how many batches it consumed (`state_dict`) and the sampler starts from there.

Each yielded item is a `(dataset_index, augmentation_seed)` pair, so random augmentations are also
a function of the stream position, not of worker RNG state.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from styleid_guidance.errors import StyleIDError

SampleKey = tuple[int, int]  # (dataset index, augmentation seed)


class IdentityBalancedBatchSampler:
    """Infinite batch sampler: yields lists of P·K `(index, aug_seed)` keys for this rank.

    Args:
        labels: identity label per dataset item (any hashable ints).
        ids_per_batch: P, identities per batch on each process.
        images_per_id: K, images per identity (≥ 2 so every anchor has a positive).
        num_replicas / rank: the distributed world; ranks draw disjoint identities each step.
        seed: the stream's seed.
        start_batch: first batch number to yield (set by `load_state_dict` on resume).
    """

    def __init__(
        self,
        labels: Sequence[int],
        ids_per_batch: int = 56,
        images_per_id: int = 2,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        start_batch: int = 0,
    ) -> None:
        if ids_per_batch < 1:
            raise StyleIDError(f"--ids-per-batch must be ≥ 1, got {ids_per_batch}")
        if images_per_id < 2:
            raise StyleIDError(f"--images-per-id must be ≥ 2 so every anchor has a positive, got {images_per_id}")
        if not 0 <= rank < num_replicas:
            raise StyleIDError(f"rank {rank} is outside a world of {num_replicas} processes")
        by_label: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            by_label.setdefault(int(label), []).append(index)
        self.identities = sorted(by_label)
        self.indices_by_id = [np.asarray(by_label[i], dtype=np.int64) for i in self.identities]
        singletons = [i for i, idx in zip(self.identities, self.indices_by_id) if len(idx) < 2]
        if singletons:
            raise StyleIDError(f"identities {singletons[:5]} have fewer than 2 images; drop them before sampling")
        per_step = ids_per_batch * num_replicas
        if len(self.identities) < per_step:
            raise StyleIDError(
                f"the dataset has {len(self.identities)} identities but a step needs {per_step} "
                f"({ids_per_batch} per batch × {num_replicas} processes); lower --ids-per-batch or add identities"
            )
        self.ids_per_batch = ids_per_batch
        self.images_per_id = images_per_id
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.start_batch = start_batch
        # identities left over after the last full step of an epoch roll into the next permutation
        self.batches_per_epoch = len(self.identities) // per_step

    @property
    def batch_size(self) -> int:
        return self.ids_per_batch * self.images_per_id

    def _epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.identities))

    def batch(self, n: int) -> list[SampleKey]:
        """Batch number `n` of this rank's stream (deterministic)."""
        epoch, step = divmod(n, self.batches_per_epoch)
        order = self._epoch_order(epoch)
        start = (step * self.num_replicas + self.rank) * self.ids_per_batch
        chosen = order[start : start + self.ids_per_batch]
        # one generator per (seed, batch, rank): image choice and aug seeds never depend on history
        rng = np.random.default_rng([self.seed, 1, n, self.rank])
        keys: list[SampleKey] = []
        for identity in chosen:
            pool = self.indices_by_id[identity]
            picks = rng.choice(pool, size=self.images_per_id, replace=len(pool) < self.images_per_id)
            keys.extend((int(i), int(rng.integers(0, 2**31 - 1))) for i in picks)
        return keys

    def __iter__(self) -> Iterator[list[SampleKey]]:
        n = self.start_batch
        while True:
            yield self.batch(n)
            n += 1

    def state_dict(self, batches_consumed: int) -> dict:
        """The position to resume from. Pass what the trainer consumed, not what workers prefetched."""
        return {"seed": self.seed, "batch": int(batches_consumed), "num_replicas": self.num_replicas,
                "ids_per_batch": self.ids_per_batch, "images_per_id": self.images_per_id}

    def load_state_dict(self, state: dict) -> None:
        for key in ("seed", "num_replicas", "ids_per_batch", "images_per_id"):
            if state.get(key) != getattr(self, key):
                raise StyleIDError(
                    f"cannot resume the sampler: {key} was {state.get(key)} in the checkpoint and is {getattr(self, key)} now"
                )
        self.start_batch = int(state["batch"])
