"""Length-grouped batches under several ranks: every row scored once, every rank stepping equally often."""

import numpy as np

from relevance.model.batches import LengthGroupedBatches


def test_ranks_share_the_batches_without_overlap():
    lengths = np.random.default_rng(0).integers(5, 60, size=103)
    for shuffle in (False, True):
        per_rank = [list(LengthGroupedBatches(lengths, 8, shuffle, seed=3, rank=r, world_size=3)) for r in range(3)]
        single = list(LengthGroupedBatches(lengths, 8, shuffle, seed=3))
        rows = [i for batches in per_rank for batch in batches for i in batch]
        assert set(rows) == set(range(103))  # every row on some rank
        if shuffle:  # training: every rank steps equally often; a repeated batch pads the last rank
            assert [len(b) for b in per_rank] == [5, 5, 5] and len(rows) >= 103
        else:  # scoring: each row exactly once, the batches exactly those of a single process
            assert len(rows) == 103 and sorted(map(tuple, single)) == sorted(tuple(b) for bs in per_rank for b in bs)
        assert [len(LengthGroupedBatches(lengths, 8, shuffle, rank=r, world_size=3)) for r in range(3)] == [
            len(b) for b in per_rank
        ]
