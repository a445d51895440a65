"""KVCache: appends along time, stores fixed cross-attention entries, follows beams on reorder."""
import numpy as np

from scratchzoo.autograd import Tensor
from scratchzoo.nn import KVCache


def _positions(n: int, t: int, start: int) -> Tensor:
    """(n, 1, t, 2) whose value at time j is start + j, so concatenation order is visible."""
    times = np.arange(start, start + t, dtype=np.float32)[None, None, :, None]
    return Tensor(np.broadcast_to(times, (n, 1, t, 2)).copy())


def test_append_grows_along_time_in_order():
    cache = KVCache()
    assert cache.length("self") == 0 and cache.get("self") is None
    cache.append("self", _positions(2, 3, 0), _positions(2, 3, 0))
    k, v = cache.append("self", _positions(2, 1, 3), _positions(2, 1, 3))
    assert k.shape == (2, 1, 4, 2) and cache.length("self") == 4
    np.testing.assert_array_equal(k.data[0, 0, :, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(v.data, k.data)


def test_put_replaces_and_slots_are_independent():
    cache = KVCache()
    cache.put("cross", _positions(2, 5, 0), _positions(2, 5, 0))
    cache.put("cross", _positions(2, 4, 10), _positions(2, 4, 10))
    cache.append("self", _positions(2, 1, 0), _positions(2, 1, 0))
    assert cache.length("cross") == 4 and cache.length("self") == 1
    assert cache.get("cross")[0].data[0, 0, 0, 0] == 10


def test_reorder_selects_batch_rows_of_every_slot():
    cache = KVCache()
    rows = Tensor(np.arange(3, dtype=np.float32).reshape(3, 1, 1, 1) * np.ones((3, 1, 2, 2), np.float32))
    cache.append("self", rows, rows)
    cache.put("cross", rows, rows)
    cache.reorder(np.array([2, 2, 0]))
    for slot in ("self", "cross"):
        k, v = cache.get(slot)
        np.testing.assert_array_equal(k.data[:, 0, 0, 0], [2, 2, 0])
        np.testing.assert_array_equal(v.data[:, 0, 0, 0], [2, 2, 0])
