"""Offline datasets: shapes, dtypes, ranges, deterministic disjoint splits, a cache that needs no network."""
import hashlib
import random
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from scratchzoo.data import DatasetUnavailable, cached_file, data_dir, digits, mnist1d, quadratic, text_corpus
from scratchzoo.data import datasets as datasets_module

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"  # /work/shared/data beside the checkout


def rows(x):
    return {row.tobytes() for row in x}


def test_quadratic():
    split = quadratic(n_train=100, n_test=30, seed=3)
    assert split.x_train.shape == split.y_train.shape == (100, 1)
    assert split.x_test.shape == split.y_test.shape == (30, 1)
    for a in (split.x_train, split.y_train, split.x_test, split.y_test):
        assert a.dtype == np.float32
    assert np.abs(split.x_train).max() <= 1.0
    np.testing.assert_allclose(split.y_train, 3 * split.x_train**2 + 5, rtol=1e-6)
    assert not rows(split.x_train) & rows(split.x_test)
    np.testing.assert_array_equal(quadratic(100, 30, seed=3).x_train, split.x_train)


def test_digits():
    pytest.importorskip("sklearn")
    split = digits()
    assert split.x_train.shape[1:] == (64,) and split.x_train.dtype == np.float32
    assert split.y_train.dtype == np.int64 and len(split.x_train) + len(split.x_test) == 1797
    assert 0.0 <= split.x_train.min() and split.x_train.max() <= 1.0 and split.x_train.max() == 1.0
    # deterministic, and disjoint up to the few images that occur twice in the original data
    again = digits()
    np.testing.assert_array_equal(again.x_test, split.x_test)
    np.testing.assert_array_equal(again.y_train, split.y_train)
    assert len(rows(split.x_train) & rows(split.x_test)) <= 5
    # stratified: every class sends about 20% of its images to the test set
    train_counts, test_counts = np.bincount(split.y_train), np.bincount(split.y_test)
    np.testing.assert_allclose(test_counts / (train_counts + test_counts), 0.2, atol=0.01)
    # classes are mixed, not in blocks
    assert len(set(split.y_train[:50].tolist())) == 10
    images = digits(as_images=True)
    assert images.x_train.shape[1:] == (1, 8, 8)
    np.testing.assert_array_equal(images.x_train.reshape(-1, 64), split.x_train)
    assert not np.array_equal(digits(seed=1).y_test, split.y_test)


@pytest.fixture(scope="module")
def mnist1d_run(tmp_path_factory):
    """Generate MNIST-1D once (a few seconds) into a private cache, watching the global generators."""
    pytest.importorskip("mnist1d")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCRATCHZOO_DATA", str(tmp_path_factory.mktemp("cache")))
        np.random.seed(7)
        random.seed(7)
        before = np.random.get_state(), random.getstate()
        split = mnist1d()
        after = np.random.get_state(), random.getstate()
        start = time.perf_counter()
        cached = mnist1d()
        cached_seconds = time.perf_counter() - start
        cache_files = list(data_dir().glob("mnist1d-*.npz"))
    return split, cached, cached_seconds, cache_files, before, after


def test_mnist1d_shapes_and_dtypes(mnist1d_run):
    split = mnist1d_run[0]
    assert split.x_train.shape == (4000, 40) and split.x_test.shape == (1000, 40)
    assert split.x_train.dtype == np.float32 and split.y_train.dtype == np.int64
    assert set(np.unique(split.y_train)) == set(range(10))
    assert not rows(split.x_train) & rows(split.x_test)


def test_mnist1d_leaves_global_random_state_alone(mnist1d_run):
    (np_before, py_before), (np_after, py_after) = mnist1d_run[4], mnist1d_run[5]
    assert np_before[0] == np_after[0] and np.array_equal(np_before[1], np_after[1])
    assert np_before[2:] == np_after[2:]
    assert py_before == py_after


def test_mnist1d_is_cached(mnist1d_run):
    split, cached, cached_seconds, cache_files = mnist1d_run[:4]
    assert len(cache_files) == 1 and cached_seconds < 1.0
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(cached, name), getattr(split, name))


def test_data_dir_default_and_env(monkeypatch, tmp_path):
    monkeypatch.delenv("SCRATCHZOO_DATA", raising=False)
    assert data_dir() == Path.home() / ".cache" / "scratchzoo"
    monkeypatch.setenv("SCRATCHZOO_DATA", str(tmp_path))
    assert data_dir() == tmp_path


def _no_network(*args, **kwargs):
    raise urllib.error.URLError("network disabled in tests")


def test_cached_file_finds_local_copy(monkeypatch, tmp_path):
    source = SHARED_DATA / "tinyshakespeare.txt"
    if not source.exists():
        pytest.skip(f"{source} not present")
    shutil.copy(source, tmp_path / "tinyshakespeare.txt")
    monkeypatch.setenv("SCRATCHZOO_DATA", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert cached_file("tinyshakespeare.txt", "https://example.invalid/x") == tmp_path / "tinyshakespeare.txt"
    text = text_corpus("tinyshakespeare")
    assert text.startswith("First Citizen") and len(text) > 1_000_000


def test_cached_file_missing_and_offline_raises_helpful_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SCRATCHZOO_DATA", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    with pytest.raises(DatasetUnavailable) as info:
        text_corpus("tinyshakespeare")
    message = str(info.value)
    assert str(tmp_path / "tinyshakespeare.txt") in message and datasets_module.TINYSHAKESPEARE_URL in message
    assert "SCRATCHZOO_DATA" in message and "network disabled" in message
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_cached_file_downloads_atomically(monkeypatch, tmp_path):
    class Response:
        def __init__(self, url, timeout):
            assert timeout <= 30

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return b"hello"

    monkeypatch.setenv("SCRATCHZOO_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(urllib.request, "urlopen", Response)
    path = cached_file("hello.txt", "https://example.invalid/hello.txt")
    assert path.read_bytes() == b"hello" and [p.name for p in path.parent.iterdir()] == ["hello.txt"]
    path.unlink()
    with pytest.raises(DatasetUnavailable, match="not the expected file .5 bytes"):  # say, an error page
        cached_file("hello.txt", "https://example.invalid/hello.txt", sha256="0" * 64)
    assert list(path.parent.iterdir()) == []  # nothing cached
    good = hashlib.sha256(b"hello").hexdigest()
    assert cached_file("hello.txt", "https://example.invalid/hello.txt", sha256=good).read_bytes() == b"hello"


def test_the_pinned_tinyshakespeare_digest_is_that_of_the_local_copy():
    """The digest a download is checked against is the file's own (../shared/data/ holds a copy)."""
    local = SHARED_DATA / "tinyshakespeare.txt"
    if not local.exists():
        pytest.skip("no local copy of tinyshakespeare.txt")
    assert hashlib.sha256(local.read_bytes()).hexdigest() == datasets_module.TINYSHAKESPEARE_SHA256


def test_stdlib_corpus_is_deterministic_and_sized():
    text = text_corpus("stdlib")
    assert len(text) == datasets_module.STDLIB_CORPUS_CHARS
    assert "def " in text and "import " in text
    assert text_corpus("stdlib") == text
    with pytest.raises(ValueError, match="unknown corpus"):
        text_corpus("nope")
