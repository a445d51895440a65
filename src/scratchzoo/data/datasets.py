"""Offline datasets: each returns a `Split` of NumPy arrays (float32 features, int64 class labels).

Generated or bundled data needs no network. Files that real use would download (tinyshakespeare) are
looked for in the cache directory first (`SCRATCHZOO_DATA`, default `~/.cache/scratchzoo`) under their
plain name, then fetched from their public address, with a message saying where to put the file when
neither works.
"""
from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import random
import sysconfig
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TINYSHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"  # 1,115,394 bytes
STDLIB_CORPUS_CHARS = 2_000_000  # the first ~2 MB of the standard library's source: enough for a small LM
_STDLIB_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


class DatasetUnavailable(RuntimeError):
    """A dataset file is neither in the cache directory nor downloadable right now."""


@dataclass
class Split:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


# ---- generated and bundled -----------------------------------------------------------------------------
def quadratic(n_train: int = 1000, n_test: int = 200, seed: int = 0) -> Split:
    """y = 3x^2 + 5 with x ~ U[-1, 1]; x and y of shape (n, 1), both float32 (a regression target)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n_train + n_test, 1)).astype(np.float32)
    y = 3.0 * x**2 + 5.0
    return Split(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


def digits(test_fraction: float = 0.2, seed: int = 0, as_images: bool = False) -> Split:
    """sklearn's 8x8 handwritten digits (1797 images), pixels scaled from 0..16 to [0, 1].

    The split is stratified: each class gives the same fraction of its images to the test set, drawn
    by a Generator seeded with `seed`, so the split is the same on every run. Features are (n, 64), or
    (n, 1, 8, 8) with `as_images=True` (channels first, as Conv2d expects).
    """
    from sklearn.datasets import load_digits  # optional dependency: scratchzoo[data]

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_test = int(round(test_fraction * len(members)))
        test.append(members[:n_test])
        train.append(members[n_test:])
    train, test = rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))  # mix classes
    if as_images:
        x = x.reshape(-1, 1, 8, 8)
    return Split(x[train], y[train], x[test], y[test])


def mnist1d(seed: int = 42, cache: bool = True) -> Split:
    """MNIST-1D (Greydanus 2020): 4000 train / 1000 test signals of length 40, 10 classes.

    `make_dataset` takes a few seconds (about 4 s here), so the arrays are cached as
    `data_dir()/mnist1d-<hash of the arguments>.npz`; later calls load that file. The default seed 42
    is the one behind the published baselines. mnist1d reseeds NumPy's and Python's global random
    generators; both are saved before and restored after, so calling this disturbs nothing else.
    """
    from mnist1d.data import get_dataset_args, make_dataset  # optional dependency: scratchzoo[data]
    from mnist1d.utils import ObjectView

    args = get_dataset_args(as_dict=True)
    args["seed"] = seed
    key_args = {k: v for k, v in args.items() if k != "url"}  # the url does not change the data
    key = hashlib.sha256(json.dumps(key_args, sort_keys=True).encode()).hexdigest()[:16]
    path = data_dir() / f"mnist1d-{key}.npz"
    if cache and path.exists():
        with np.load(path, allow_pickle=False) as f:
            return Split(f["x_train"], f["y_train"], f["x_test"], f["y_test"])

    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(args))  # it reads args as attributes
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    split = Split(data["x"].astype(np.float32), data["y"].astype(np.int64),
                  data["x_test"].astype(np.float32), data["y_test"].astype(np.int64))
    if cache:
        buffer = io.BytesIO()
        np.savez(buffer, **vars(split))
        _write_atomically(path, buffer.getvalue())
    return split


# ---- the cache directory and downloads ------------------------------------------------------------------
def data_dir() -> Path:
    """Where dataset files live: $SCRATCHZOO_DATA, or ~/.cache/scratchzoo."""
    return Path(os.environ.get("SCRATCHZOO_DATA") or "~/.cache/scratchzoo").expanduser()


def _write_atomically(path: Path, data: bytes) -> None:
    """Temp file beside `path`, then rename: an interrupted download never leaves half a file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(delete=False, dir=path.parent, prefix=f".{path.name}.", suffix=".tmp") as tmp:
        try:
            tmp.write(data)
            os.chmod(tmp.name, 0o644)  # NamedTemporaryFile makes 0600; a cached dataset is shared data
            tmp.flush()
            os.fsync(tmp.fileno())
        except BaseException:
            tmp.close()
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, path)


def cached_file(name: str, url: str, sha256: str | None = None) -> Path:
    """`data_dir()/name` if it is there; otherwise download `url` to it; otherwise DatasetUnavailable.

    With `sha256`, a download is cached only if its digest is that one: an error page or a truncated
    transfer must not become the data set for good."""
    path = data_dir() / name
    if path.exists():
        return path
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            data = response.read()
    except (OSError, http.client.HTTPException, ValueError) as e:  # URLError and timeouts are OSErrors
        raise DatasetUnavailable(
            f"{name} is not in {path.parent} and downloading it from {url} failed ({e}). "
            f"Download it yourself and save it as {path}, or set SCRATCHZOO_DATA to a directory holding {name}."
        ) from e
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise DatasetUnavailable(f"the download of {name} from {url} is not the expected file ({len(data)} bytes, "
                                 f"sha256 {hashlib.sha256(data).hexdigest()[:12]}..., expected {sha256[:12]}...); "
                                 f"nothing was cached. Save the right file as {path} yourself.")
    try:
        _write_atomically(path, data)
    except OSError as e:
        raise DatasetUnavailable(f"downloaded {name}, but could not save it to {path} ({e}); set SCRATCHZOO_DATA "
                                 f"to a writable directory") from e
    return path


# ---- text ------------------------------------------------------------------------------------------------
def _stdlib_source() -> str:
    """Python's standard library .py files, sorted by path, concatenated, cut at STDLIB_CORPUS_CHARS.

    Always available offline. Tests and site-packages are skipped; the order is fixed, so the corpus is
    the same on every run with the same Python.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    paths = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [d for d in subfolders if d not in _STDLIB_SKIP_DIRS]  # prune: never descend there
        paths += [Path(folder, f) for f in files if f.endswith(".py")]
    pieces, size = [], 0
    for path in sorted(paths, key=lambda p: p.relative_to(root).as_posix()):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):  # a few files use other encodings: leave them out
            continue
        pieces.append(text)
        size += len(text)
        if size >= STDLIB_CORPUS_CHARS:
            break
    return "".join(pieces)[:STDLIB_CORPUS_CHARS]


CORPORA = ("stdlib", "tinyshakespeare")  # the names text_corpus knows


def text_corpus(name: str) -> str:
    """'tinyshakespeare' (~1.1 MB, cached or downloaded) or 'stdlib' (Python's own source, always here)."""
    if name == "tinyshakespeare":
        path = cached_file("tinyshakespeare.txt", TINYSHAKESPEARE_URL, TINYSHAKESPEARE_SHA256)
        return path.read_text(encoding="utf-8")
    if name == "stdlib":
        return _stdlib_source()
    raise ValueError(f"text_corpus: unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
