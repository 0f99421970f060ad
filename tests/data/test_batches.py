"""Batches of an epoch: by structure count or by atom count (mixed-size data), deterministic in
(seed, epoch) so that a resumed run sees the same batches."""

import numpy as np
import pytest

from mlff.data.dataset import epoch_batches


def test_count_batches_cover_every_structure_once():
    batches = epoch_batches(10, 4, seed=3, epoch=2)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    again = epoch_batches(10, 4, seed=3, epoch=2)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    assert not np.array_equal(np.concatenate(batches), np.concatenate(epoch_batches(10, 4, seed=3, epoch=3)))


def test_atom_batches_respect_the_budget():
    rng = np.random.default_rng(0)
    sizes = rng.choice([1, 2, 8, 64, 500], size=200).tolist()
    batches = epoch_batches(200, 4, seed=1, epoch=0, sizes=sizes, batch_atoms=128)
    assert sorted(np.concatenate(batches).tolist()) == list(range(200))
    for batch in batches:
        atoms = sum(sizes[i] for i in batch)
        assert atoms <= 128 or len(batch) == 1  # a structure larger than the budget is alone
    # small structures are packed many to a batch, large ones alone
    assert max(len(b) for b in batches) > 4
    assert all(len(b) == 1 for b in batches if sum(sizes[i] for i in b) >= 500)
    same = epoch_batches(200, 4, seed=1, epoch=0, sizes=sizes, batch_atoms=128)
    assert all(np.array_equal(a, b) for a, b in zip(batches, same))


def test_atom_batches_need_sizes():
    with pytest.raises(ValueError, match="atom count of every structure"):
        epoch_batches(5, 2, seed=0, epoch=0, batch_atoms=10)


def test_the_random_split_keeps_every_element_in_training():
    from mlff.data.dataset import split_indices

    elements = [{"Cu"}] * 9 + [{"Cu", "O"}]
    moved = 0
    for seed in range(20):
        plain_train, plain_valid = split_indices(10, 0.2, seed)
        train, valid = split_indices(10, 0.2, seed, elements)
        assert 9 in train
        assert len(train) + len(valid) == 10 and set(train).isdisjoint(valid)
        if 9 in plain_valid:
            moved += 1
        else:  # nothing to keep: the same split as without elements
            assert list(train) == list(plain_train) and list(valid) == list(plain_valid)
    assert moved > 0  # the case was exercised
