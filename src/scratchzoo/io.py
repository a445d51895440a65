"""Checkpoints as safetensors files: loading one never runs code, and a crash never loses a checkpoint.

Why safetensors and not pickle: a pickle file is a program that runs when it is loaded, so a checkpoint
from the internet could do anything. A safetensors file is a JSON header (names, dtypes, shapes, byte
offsets) followed by raw bytes; reading it can only ever produce arrays. PyTorch reads and writes the
same files (`safetensors.torch`), so weights move between the two libraries.

Why atomic writes: every file is written to a temporary file in the same directory, flushed to disk
(fsync) and then renamed over the target with `os.replace`, which is atomic on POSIX and Windows. A
reader sees either the old file or the new one, never a torn mixture.

A checkpoint directory holds these files:

    model.<save id>.safetensors      the model's state dict, names as in torch.nn
    optimizer.<save id>.safetensors  the optimizer's per-parameter arrays, keyed "state.<param_index>.<name>"
    checkpoint.json                  step, RNG state, param_groups, the optimizer's scalar state (its 'step'),
                                     `extra`, a format version, the id of this save, and the names, sizes
                                     and SHA-256 digests of the two tensor files it belongs to
    model.safetensors                stable names for PyTorch and other tools, holding the same tensors as
    optimizer.safetensors            the two files above (hard links to them, or copies); see below

A whole checkpoint is atomic, even when every save goes into the same directory. Each save writes its
tensor files under new names (the save id is in the name), so the previous checkpoint's files are never
touched; then it renames the new checkpoint.json over the old one. That rename is the commit point:
before it, checkpoint.json still names the previous checkpoint's files, which are all still there;
after it, it names the new ones. Only then are the previous checkpoint's files deleted, together with
any leftovers of an earlier save that crashed. `load_checkpoint` reads the files checkpoint.json names
and nothing else, so a leftover can never be mistaken for part of the checkpoint. One process saves
into a directory at a time.

After the commit (before the cleanup) a save also points the stable names model.safetensors and
optimizer.safetensors at the new tensor files, so `safetensors.torch.load_file("run/model.safetensors")`
opens the latest model in PyTorch. Each is a hard link to the new file made under a temporary name and
renamed onto the stable name, atomically (where the file system has no hard links: a copy, fsynced, then
renamed). checkpoint.json is the source of truth and the stable names follow it: a crash after the
commit but before or during their update leaves the new checkpoint whole and loadable while a stable
name still holds the previous checkpoint's tensors, until the next completed save puts it right.
`load_checkpoint` never reads them (for version 2), and the cleanup never deletes the one of a part the
checkpoint has. `checkpoint_files(directory)` gives the exact files of the committed checkpoint. Because
a stable name may share its bytes with the checkpoint's file, write new weights to another path (or
replace the file, as `safetensors` `save_file` does) rather than overwrite it in place: a checkpoint
file changed in place no longer matches its SHA-256, and `load_checkpoint` refuses it. A stable name
that holds a safetensors file scratchzoo did not write (no scratchzoo header) is left alone, with a
warning. Checkpoints of format version 1 (whose only tensor files were model.safetensors and
optimizer.safetensors) still load.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save as save_bytes
from safetensors.numpy import save_file

from scratchzoo.autograd import DTypeError
from scratchzoo.nn.module import to_array

FORMAT = "scratchzoo-checkpoint"
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)  # version 1: fixed tensor file names, no "files" entry in checkpoint.json
CHECKPOINT_FILE = "checkpoint.json"
# The stable names: the only tensor files of format version 1; in version 2, aliases of the files that
# checkpoint.json names (those have the save id in their names).
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
_PARTS = ("model", "optimizer")
_STABLE_NAMES = {"model": MODEL_FILE, "optimizer": OPTIMIZER_FILE}
_TENSOR_FILE = re.compile(r"(model|optimizer)\.[0-9a-f]{32}\.safetensors")
_TEMPORARY_FILE = re.compile(r"\.((model|optimizer)(\.[0-9a-f]{32})?\.safetensors|checkpoint\.json)\..+\.tmp")
_TUPLE_KEYS = ("betas",)  # param_group entries that PyTorch keeps as tuples; JSON returns lists


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated, foreign or from an unknown format version."""


@dataclass
class Checkpoint:
    model_state: dict[str, np.ndarray]
    optimizer_state: dict[str, Any] | None  # PyTorch shape: {'state': {int: {...}}, 'param_groups': [...]}
    step: int
    rng_state: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---- atomic writing ----------------------------------------------------------------------------------
def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Let `write` fill a temporary file beside `path`, fsync it, then rename it onto `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(delete=False, dir=path.parent, prefix=f".{path.name}.", suffix=".tmp") as tmp:
        tmp_name = tmp.name
    try:
        write(tmp_name)
        os.chmod(tmp_name, 0o666 & ~_umask())  # NamedTemporaryFile makes 0600; give what open() would
        with open(tmp_name, "rb+") as f:  # flush the bytes to the disk, not just to the OS cache
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it before Python 3.13 is to set it and put it back
    os.umask(mask)
    return mask


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); Windows cannot open directories, and needs no such step."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---- one file of arrays -----------------------------------------------------------------------------
def _contiguous(state: Mapping[str, Any], owner: str) -> dict[str, np.ndarray]:
    """name -> dense C-order array, as safetensors needs; values may be arrays or tensors (ours or torch's,
    as Module.load_state_dict accepts). A key that is not a str, or a value that safetensors cannot store,
    is an error naming the key (raised before anything is written)."""
    arrays = {}
    for name, value in state.items():
        if not isinstance(name, str):
            raise TypeError(f"{owner}: key {name!r} ({type(name).__name__}) is not a str; safetensors names "
                            "every tensor by a string")
        # np.asarray keeps 0-d arrays 0-d (ascontiguousarray would not)
        array = np.asarray(to_array(value), order="C")
        if array.dtype.kind not in "biuf":
            raise DTypeError(f"{owner}: {name!r} has dtype {array.dtype}; safetensors stores bool, integer and "
                             "float arrays only")
        arrays[name] = array
    return arrays


def save_state_dict(state: Mapping[str, Any], path: str | os.PathLike,
                    metadata: dict[str, str] | None = None) -> None:
    """Write name -> array (or Tensor) to a safetensors file, atomically. `metadata` is free text for the
    header."""
    arrays = _contiguous(state, "save_state_dict")
    _atomic_write(Path(path), lambda tmp: save_file(arrays, tmp, metadata=metadata))


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    try:
        with safe_open(str(path), framework="np") as f:
            return {name: _get_tensor(f, name, path) for name in f.keys()}, dict(f.metadata() or {})
    except CheckpointError:  # a ValueError too (an unsupported dtype, named by _get_tensor): as it is
        raise
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: file not found") from e
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or foreign?): {e}") from e


def _get_tensor(f: Any, name: str, path: Path) -> np.ndarray:
    try:
        return f.get_tensor(name)
    except TypeError as e:  # a dtype NumPy lacks: PyTorch's bfloat16, float8 ...
        dtype = f.get_slice(name).get_dtype()
        raise CheckpointError(
            f"{path}: tensor {name!r} has dtype {dtype}, which NumPy (and so scratchzoo) cannot hold; "
            f"save it as float32 in PyTorch, e.g. save_file({{k: v.float() for k, v in "
            f"state_dict.items()}}, path)") from e


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a safetensors file (ours or PyTorch's) into name -> NumPy array. Never runs code.

    PyTorch's float32, float64, float16 and integer tensors load; bfloat16 and float8, which NumPy has
    no dtype for, raise CheckpointError (convert them with `.float()` in PyTorch before saving)."""
    return _read_safetensors(Path(path))[0]


# ---- JSON ---------------------------------------------------------------------------------------------
def _json_default(value: Any) -> Any:
    """NumPy scalars (a learning rate kept as np.float32) and small arrays become plain JSON values."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} as JSON: {value!r}")


def _unserialisable(value: Any, where: str, depth: int = 0) -> tuple[str, Any] | None:
    """The first place in `value` that JSON cannot hold, as ("extra['weights']", the value), or None."""
    try:
        json.dumps(value, default=_json_default)
        return None
    except (TypeError, ValueError, RecursionError):
        pass
    if depth > 50:  # a container that holds itself
        return where, value
    if isinstance(value, dict):
        for key, item in value.items():
            if key is not None and not isinstance(key, (str, int, float, bool)):
                return f"{where} key {key!r}", key
            found = _unserialisable(item, f"{where}[{key!r}]", depth + 1)
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _unserialisable(item, f"{where}[{index}]", depth + 1)
            if found:
                return found
    return where, value


def _dumps(record: dict[str, Any], what: str) -> str:
    """JSON text of `record`, or a TypeError naming the entry that JSON cannot hold."""
    try:
        # Python's json writes ints with every digit, so the 128-bit PCG64 state survives exactly.
        return json.dumps(record, indent=2, default=_json_default)
    except (TypeError, ValueError, RecursionError) as e:
        where, value = next((found for key, item in record.items()
                             if (found := _unserialisable(item, key))), ("the record", record))
        raise TypeError(f"cannot store {where} in {what}: {type(value).__name__} {_short_repr(value)} is not "
                        "a JSON value (numbers, strings, booleans, None, lists and dicts; NumPy arrays "
                        "become lists; convert tensors with .tolist() or keep them in the state dict)") from e


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Write a JSON record atomically (a temporary file, then a rename)."""
    text = _dumps(record, Path(path).name)
    _atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: file not found (no checkpoint here, or its save never finished)") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a scratchzoo checkpoint (no \"format\": \"{FORMAT}\")")
    if record.get("format_version") not in _READABLE_VERSIONS:
        raise CheckpointError(f"{path}: format version {record.get('format_version')!r}, "
                              f"this scratchzoo reads versions {', '.join(map(str, _READABLE_VERSIONS))}")
    required = ("checkpoint_id", "step") + (("files",) if record["format_version"] >= 2 else ())
    missing = [key for key in required if key not in record]
    if missing:
        raise CheckpointError(f"{path}: incomplete, missing {missing}")
    return record


# ---- optimizer state: arrays to safetensors, the rest to JSON ----------------------------------------
def _split_optimizer_state(optimizer_state: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """{'state': {0: {'step': 3, 'exp_avg': array}}} -> ({'state.0.exp_avg': array}, {'0': {'step': 3}})."""
    arrays, scalars = {}, {}
    for index, entries in optimizer_state.get("state", {}).items():
        for name, value in entries.items():
            if isinstance(value, np.ndarray):
                arrays[f"state.{int(index)}.{name}"] = value
            else:
                scalars.setdefault(str(int(index)), {})[name] = value
    return arrays, scalars


def _join_optimizer_state(arrays: dict[str, np.ndarray], scalars: dict[str, dict],
                          param_groups: list[dict[str, Any]], path: Path) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for index, entries in scalars.items():
        state.setdefault(int(index), {}).update(entries)
    for key, value in arrays.items():
        prefix, index, name = key.split(".", 2)  # the name may itself hold dots
        if prefix != "state" or not index.isdigit():
            raise CheckpointError(f"{path}: unexpected key {key!r}, expected 'state.<param_index>.<name>'")
        state.setdefault(int(index), {})[name] = value
    groups = [{k: tuple(v) if k in _TUPLE_KEYS and isinstance(v, list) else v for k, v in group.items()}
              for group in param_groups]
    return {"state": dict(sorted(state.items())), "param_groups": groups}


# ---- a whole checkpoint --------------------------------------------------------------------------------
def save_checkpoint(directory: str | os.PathLike, model_state: dict[str, np.ndarray],
                    optimizer_state: dict[str, Any] | None, step: int,
                    rng_state: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> None:
    """Write model, optimizer, step, RNG state and `extra` (JSON values) into `directory`.

    `rng_state` is `scratchzoo.get_rng_state()`, so a resumed run draws the same numbers (dropout masks,
    shuffles) it would have drawn. Saving over an earlier checkpoint in the same directory is safe: until
    the new checkpoint.json is renamed into place the earlier checkpoint stays whole (module docstring).
    After that commit, model.safetensors and optimizer.safetensors are pointed at the new tensors; if that
    fails (a full disk when copying, say) the save still counts, a RuntimeWarning says so, and the stable
    name keeps the previous tensors until the next save. A save without an optimizer removes a stale
    optimizer.safetensors that scratchzoo wrote. Everything is serialised before anything is written, so a
    bad `extra` (a value JSON cannot hold) raises TypeError naming the entry and leaves the directory as it
    was.
    """
    directory = Path(directory)
    save_id = uuid.uuid4().hex  # in the tensor files' names and headers and in checkpoint.json
    header = {"format": FORMAT, "checkpoint_id": save_id}
    model_arrays = _contiguous(model_state, "save_checkpoint: model_state")
    parts: dict[str, bytes] = {"model": save_bytes(model_arrays, metadata=header)}
    record: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "checkpoint_id": save_id,
                              "step": int(step), "rng_state": rng_state, "extra": extra or {}, "optimizer": None}
    if optimizer_state is not None:
        arrays, scalars = _split_optimizer_state(optimizer_state)
        parts["optimizer"] = save_bytes(_contiguous(arrays, "save_checkpoint: optimizer_state"), metadata=header)
        record["optimizer"] = {"param_groups": optimizer_state.get("param_groups", []), "scalar_state": scalars}
    record["files"] = {part: {"name": f"{part}.{save_id}.safetensors", "size": len(data),
                              "sha256": hashlib.sha256(data).hexdigest()} for part, data in parts.items()}
    text = _dumps(record, CHECKPOINT_FILE)

    for part, data in parts.items():  # new names: the previous checkpoint's files stay as they are
        _atomic_write(directory / record["files"][part]["name"], lambda tmp, data=data: Path(tmp).write_bytes(data))
    _atomic_write(directory / CHECKPOINT_FILE, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))  # commit
    for part, data in parts.items():
        _update_stable_name(directory, part, record["files"][part]["name"], data)
    _remove_stale_files(directory, keep={entry["name"] for entry in record["files"].values()}
                        | {_STABLE_NAMES[part] for part in parts})


def _header(path: Path) -> dict[str, str] | None:
    """The metadata in a safetensors file's header; None if there is no file or it is not safetensors."""
    try:
        with safe_open(str(path), framework="np") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return None


def _update_stable_name(directory: Path, part: str, committed: str, data: bytes) -> None:
    """After a commit: make model.safetensors (optimizer.safetensors) hold the committed file's tensors.

    A hard link to `committed` under a temporary name, renamed onto the stable name: atomic, so a reader
    sees the previous tensors or the new ones. Where hard links fail (FAT, some network shares) the same
    bytes, `data`, are written to a temporary file, fsynced and renamed. A crash leaves the stable name as
    it was and at most a temporary file, which the next cleanup deletes. An OSError is a warning, not a
    failed save: the checkpoint is committed already. A safetensors file there without our header is
    someone else's and stays."""
    stable = directory / _STABLE_NAMES[part]
    header = _header(stable)
    if header is not None and header.get("format") != FORMAT:
        warnings.warn(f"{stable}: not written by scratchzoo, left as it is; the checkpoint's {part} is "
                      f"{directory / committed} (io.checkpoint_files)", RuntimeWarning, stacklevel=3)
        return
    try:
        link = directory / f".{stable.name}.{uuid.uuid4().hex}.tmp"  # a name the cleanup knows as temporary
        try:
            os.link(directory / committed, link)
        except OSError:
            _atomic_write(stable, lambda tmp: Path(tmp).write_bytes(data))
            return
        try:
            os.replace(link, stable)
        except BaseException:
            link.unlink(missing_ok=True)
            raise
        _fsync_directory(directory)
    except OSError as e:
        warnings.warn(f"{stable}: could not point it at the new checkpoint ({e}); it may still hold the "
                      f"previous checkpoint's {part} until the next save. The checkpoint itself is saved: "
                      f"{directory / committed} (io.checkpoint_files)", RuntimeWarning, stacklevel=3)


def _remove_stale_files(directory: Path, keep: set[str]) -> None:
    """After a commit: delete the previous checkpoint's tensor files and what crashed saves left behind.

    Only files this module names: tensor files of format 2 that checkpoint.json no longer names, our
    temporary files, and a stable name (model.safetensors, optimizer.safetensors) that is not in `keep`
    (the save keeps those of the parts it has) if its header says it is ours: the optimizer.safetensors
    of an earlier checkpoint when this one has no optimizer, say. A file that cannot be deleted stays;
    the next save tries again."""
    for path in directory.iterdir():
        name = path.name
        if name in keep:
            continue
        stale = bool(_TENSOR_FILE.fullmatch(name) or _TEMPORARY_FILE.fullmatch(name))
        if name in _STABLE_NAMES.values():
            stale = (_header(path) or {}).get("format") == FORMAT
        if stale:
            try:
                path.unlink()
            except OSError:
                pass


def _file_entry(record: dict[str, Any], part: str, path: Path) -> dict[str, Any]:
    """checkpoint.json's entry for one tensor file: a plain file name in the directory, size and digest."""
    files = record["files"]
    entry = files.get(part) if isinstance(files, dict) else None
    if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
            and _TENSOR_FILE.fullmatch(entry["name"]) and isinstance(entry.get("size"), int)
            and isinstance(entry.get("sha256"), str)):
        raise CheckpointError(f"{path}: \"files\" has no valid entry for the {part} "
                              f"(a name like '{part}.<save id>.safetensors', its size and sha256)")
    return entry


def _parts(record: dict[str, Any], directory: Path) -> dict[str, tuple[Path, dict[str, Any] | None]]:
    """part -> (its file, its entry in checkpoint.json or None for format 1); no 'optimizer' if none was saved."""
    wanted = _PARTS if record.get("optimizer") is not None else _PARTS[:1]
    if record["format_version"] == 1:
        return {part: (directory / _STABLE_NAMES[part], None) for part in wanted}
    entries = {part: _file_entry(record, part, directory / CHECKPOINT_FILE) for part in wanted}
    return {part: (directory / entry["name"], entry) for part, entry in entries.items()}


def checkpoint_files(directory: str | os.PathLike) -> dict[str, Path | None]:
    """The tensor files of the checkpoint in `directory`: {'model': Path, 'optimizer': Path or None}.

    The exact way to find them, as checkpoint.json names them: `safetensors.torch.load_file(
    checkpoint_files(run_dir)["model"])` opens the model in PyTorch. `run_dir/model.safetensors` holds the
    same tensors after every completed save, but may still hold the previous ones after a crash."""
    directory = Path(directory)
    parts = _parts(_read_json(directory / CHECKPOINT_FILE), directory)
    return {part: parts[part][0] if part in parts else None for part in _PARTS}


def _read_part(path: Path, entry: dict[str, Any] | None, save_id: str) -> dict[str, np.ndarray]:
    if entry is not None:  # format 2: check size and digest before parsing
        try:
            data = path.read_bytes()
        except FileNotFoundError as e:
            raise CheckpointError(f"{path}: file not found (named by {CHECKPOINT_FILE}; deleted by hand?)") from e
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read: {e}") from e
        if len(data) != entry["size"]:
            raise CheckpointError(f"{path}: {len(data)} bytes, {CHECKPOINT_FILE} says {entry['size']} "
                                  "(truncated or overwritten?)")
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise CheckpointError(f"{path}: SHA-256 differs from the one in {CHECKPOINT_FILE} (file damaged)")
    arrays, metadata = _read_safetensors(path)
    if metadata.get("checkpoint_id") != save_id:
        raise CheckpointError(f"{path}: belongs to a different save than {CHECKPOINT_FILE} "
                              "(a save into this directory was interrupted?)")
    return arrays


def load_checkpoint(directory: str | os.PathLike) -> Checkpoint:
    """Read what `save_checkpoint` wrote. Raises CheckpointError naming the file that is wrong."""
    directory = Path(directory)
    record = _read_json(directory / CHECKPOINT_FILE)
    parts = _parts(record, directory)
    model_state = _read_part(*parts["model"], record["checkpoint_id"])
    optimizer_state = None
    if "optimizer" in parts:
        opt = record["optimizer"]
        arrays = _read_part(*parts["optimizer"], record["checkpoint_id"])
        optimizer_state = _join_optimizer_state(arrays, opt.get("scalar_state", {}), opt.get("param_groups", []),
                                                parts["optimizer"][0])
    return Checkpoint(model_state=model_state, optimizer_state=optimizer_state, step=int(record["step"]),
                      rng_state=record.get("rng_state"), extra=record.get("extra") or {})
