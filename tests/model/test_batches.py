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
        # 13 batches on 3 ranks: every rank steps (or scores, as ZeRO-3 needs) equally often, repeated batches pad
        assert [len(b) for b in per_rank] == [5, 5, 5] and len(rows) >= 103
        if not shuffle:  # scoring: the batches exactly those of a single process, the padding its shortest ones
            assert set(map(tuple, single)) == {tuple(b) for bs in per_rank for b in bs}
            assert set(per_rank[1][-1]) | set(per_rank[2][-1]) <= set(single[-1]) | set(single[-2])
        assert [len(LengthGroupedBatches(lengths, 8, shuffle, rank=r, world_size=3)) for r in range(3)] == [
            len(b) for b in per_rank
        ]


def test_scores_of_repeated_rows_are_kept_once():
    import torch

    from relevance.model.module import gather_scores

    outputs = [
        {"index": torch.tensor([2, 0]), "score": torch.tensor([0.2, 0.0])},
        {"index": torch.tensor([1]), "score": torch.tensor([0.1])},
        {"index": torch.tensor([1]), "score": torch.tensor([0.9])},  # a padding batch scored again
    ]
    assert gather_scores(outputs, 3).tolist() == pytest.approx([0.0, 0.1, 0.2])


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
