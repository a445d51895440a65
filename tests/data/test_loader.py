"""DataLoader: every index once per epoch, one fancy index per batch, reproducible shuffles."""
import numpy as np
import pytest

import scratchzoo
from scratchzoo.data import DataLoader, TensorDataset


def dataset(n=10):
    return TensorDataset(np.arange(n), np.arange(n, dtype=np.float32)[:, None] * 2)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("n, batch_size", [(10, 3), (10, 5), (7, 10), (1, 1)])
def test_every_index_once_per_epoch(n, batch_size, shuffle):
    loader = DataLoader(dataset(n), batch_size=batch_size, shuffle=shuffle)
    batches = list(loader)
    assert len(batches) == len(loader) == -(-n // batch_size)
    seen = np.concatenate([idx for idx, _ in batches])
    assert sorted(seen) == list(range(n))
    assert all(len(idx) == batch_size for idx, _ in batches[:-1])
    for idx, x in batches:  # the arrays stay aligned row for row
        assert x.shape == (len(idx), 1) and x.dtype == np.float32
        np.testing.assert_array_equal(x[:, 0], idx * 2)
    if not shuffle:
        np.testing.assert_array_equal(seen, np.arange(n))


def test_drop_last():
    loader = DataLoader(dataset(10), batch_size=3, drop_last=True, shuffle=True)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert all(len(idx) == 3 for idx, _ in batches)
    assert len(DataLoader(dataset(2), batch_size=3, drop_last=True)) == 0


def test_shuffle_is_reproducible_with_manual_seed_and_differs_between_epochs():
    loader = DataLoader(dataset(50), batch_size=8, shuffle=True)
    scratchzoo.manual_seed(0)
    first = [np.concatenate([idx for idx, _ in loader]) for _ in range(2)]
    scratchzoo.manual_seed(0)
    again = [np.concatenate([idx for idx, _ in loader]) for _ in range(2)]
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], np.arange(50))


def test_shuffle_follows_the_saved_rng_state():
    loader = DataLoader(dataset(20), batch_size=4, shuffle=True)
    scratchzoo.manual_seed(1)
    state = scratchzoo.get_rng_state()
    order = np.concatenate([idx for idx, _ in loader])
    scratchzoo.set_rng_state(state)
    np.testing.assert_array_equal(np.concatenate([idx for idx, _ in loader]), order)


def test_tensor_dataset_is_indexed_once_per_array_per_batch():
    class CountingArray(np.ndarray):
        calls = 0

        def __getitem__(self, index):
            CountingArray.calls += 1
            return np.asarray(self).__getitem__(index)

    ds = dataset(12)
    ds.arrays = tuple(a.view(CountingArray) for a in ds.arrays)
    batches = list(DataLoader(ds, batch_size=4, shuffle=True))
    assert CountingArray.calls == len(batches) * 2 == 6


def test_tensor_dataset_rows_and_errors():
    ds = dataset(4)
    assert len(ds) == 4
    idx, x = ds[2]
    assert idx == 2 and x.tolist() == [4.0]
    with pytest.raises(ValueError, match="first dimension"):
        TensorDataset(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(ds, batch_size=0)


def test_generic_dataset_is_stacked():
    class Squares:
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.array([i]), i * i

    batches = list(DataLoader(Squares(), batch_size=2))
    assert len(batches) == 3
    np.testing.assert_array_equal(batches[0][0], [[0], [1]])
    np.testing.assert_array_equal(batches[1][1], [4, 9])
