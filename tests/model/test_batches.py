"""Length-grouped batches under several ranks: every row scored once, every rank stepping equally often; a loader
resumed mid-epoch yields what an uninterrupted one would have."""

import numpy as np
import pytest

from relevance.model.batches import LengthGroupedBatches, ResumableLoader


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


def _loader(lengths):
    sampler = LengthGroupedBatches(lengths, 8, shuffle=True, seed=3)
    return ResumableLoader(list(range(len(lengths))), batch_sampler=sampler, collate_fn=lambda rows: rows)


def _epochs(loader, n: int) -> list[list[int]]:
    return [batch for _ in range(n) for batch in loader]


@pytest.mark.parametrize("trained", [0, 3, 13, 14, 20])  # 13 batches an epoch: 13 and 14 straddle its end
def test_a_loader_resumed_at_its_saved_position_goes_on_as_an_uninterrupted_one(trained):
    lengths = np.random.default_rng(0).integers(5, 60, size=103)
    uninterrupted = _epochs(_loader(lengths), 3)
    first = _loader(lengths)
    taken, batches = [], iter(first)
    for _ in range(trained):
        if len(taken) and len(taken) % len(first) == 0:
            batches = iter(first)  # Lightning starts each epoch with a fresh iterator
        taken.append(next(batches))
    state = first.state_dict()
    resumed = _loader(lengths)
    resumed.load_state_dict(state)
    rest = [batch for _ in range(3 - trained // len(first)) for batch in resumed]
    assert taken + rest == uninterrupted
