"""Checkpoints as safetensors files: loading one never runs code, and a crash never leaves half a file.

Why safetensors and not pickle: a pickle file is a program that runs when it is loaded, so a checkpoint
from the internet could do anything. A safetensors file is a JSON header (names, dtypes, shapes, byte
offsets) followed by raw bytes; reading it can only ever produce arrays. PyTorch reads and writes the
same files (`safetensors.torch`), so weights move between the two libraries.

Why atomic writes: every file is written to a temporary file in the same directory, flushed to disk
(fsync) and then renamed over the target with `os.replace`, which is atomic on POSIX and Windows. A
reader sees either the old file or the new one, never a torn mixture.

A checkpoint directory holds three files:

    model.safetensors       the model's state dict, names as in torch.nn
    optimizer.safetensors   the optimizer's per-parameter arrays, keyed "state.<param_index>.<name>"
    checkpoint.json         step, RNG state, param_groups, the optimizer's scalar state (its 'step'),
                            `extra`, a format version and the id of this save

checkpoint.json is written LAST. It is the commit record: until it is on disk, the new tensor files
count for nothing. Saving each checkpoint to its own directory (say `runs/step_000500/`) therefore
keeps the previous checkpoint complete and readable whatever moment a crash strikes. When a directory
is overwritten in place, a crash between the renames can leave new tensor files beside the old
checkpoint.json; every tensor file carries the id of its save in its header, so `load_checkpoint`
notices the mismatch and raises `CheckpointError` instead of resuming from a mixture.
"""
from __future__ import annotations

import json
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

FORMAT = "scratchzoo-checkpoint"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
CHECKPOINT_FILE = "checkpoint.json"
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
def save_state_dict(state: dict[str, np.ndarray], path: str | os.PathLike,
                    metadata: dict[str, str] | None = None) -> None:
    """Write name -> array to a safetensors file, atomically. `metadata` is free text for the header."""
    # safetensors needs dense C-order bytes; np.asarray keeps 0-d arrays 0-d (ascontiguousarray would not)
    arrays = {name: np.asarray(value, order="C") for name, value in state.items()}
    _atomic_write(Path(path), lambda tmp: save_file(arrays, tmp, metadata=metadata))


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    try:
        with safe_open(str(path), framework="np") as f:
            return {name: f.get_tensor(name) for name in f.keys()}, dict(f.metadata() or {})
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: file not found") from e
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or foreign?): {e}") from e


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a safetensors file (ours or PyTorch's) into name -> NumPy array. Never runs code."""
    return _read_safetensors(Path(path))[0]


# ---- JSON ---------------------------------------------------------------------------------------------
def _json_default(value: Any) -> Any:
    """NumPy scalars (a learning rate kept as np.float32) and small arrays become plain JSON values."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in {CHECKPOINT_FILE}: {value!r}")


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Write a JSON record atomically (a temporary file, then a rename)."""
    # Python's json writes ints with every digit, so the 128-bit PCG64 state survives exactly.
    text = json.dumps(record, indent=2, default=_json_default)
    _atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: file not found (no checkpoint here, or its save never finished)") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a scratchzoo checkpoint (no \"format\": \"{FORMAT}\")")
    if record.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {record.get('format_version')!r}, "
                              f"this scratchzoo reads version {FORMAT_VERSION}")
    missing = [key for key in ("checkpoint_id", "step") if key not in record]
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
    shuffles) it would have drawn. checkpoint.json goes last; see the module docstring for why.
    """
    directory = Path(directory)
    save_id = uuid.uuid4().hex  # ties the three files of one save together
    header = {"format": FORMAT, "checkpoint_id": save_id}
    save_state_dict(model_state, directory / MODEL_FILE, metadata=header)
    record: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "checkpoint_id": save_id,
                              "step": int(step), "rng_state": rng_state, "extra": extra or {}, "optimizer": None}
    if optimizer_state is not None:
        arrays, scalars = _split_optimizer_state(optimizer_state)
        save_state_dict(arrays, directory / OPTIMIZER_FILE, metadata=header)
        record["optimizer"] = {"param_groups": optimizer_state.get("param_groups", []), "scalar_state": scalars}
    write_json(directory / CHECKPOINT_FILE, record)


def _read_part(path: Path, save_id: str) -> dict[str, np.ndarray]:
    arrays, metadata = _read_safetensors(path)
    if metadata.get("checkpoint_id") != save_id:
        raise CheckpointError(f"{path}: belongs to a different save than {CHECKPOINT_FILE} "
                              "(a save into this directory was interrupted?)")
    return arrays


def load_checkpoint(directory: str | os.PathLike) -> Checkpoint:
    """Read what `save_checkpoint` wrote. Raises CheckpointError naming the file that is wrong."""
    directory = Path(directory)
    record = _read_json(directory / CHECKPOINT_FILE)
    save_id = record["checkpoint_id"]
    model_state = _read_part(directory / MODEL_FILE, save_id)
    optimizer_state = None
    if record.get("optimizer") is not None:
        opt = record["optimizer"]
        arrays = _read_part(directory / OPTIMIZER_FILE, save_id)
        optimizer_state = _join_optimizer_state(arrays, opt.get("scalar_state", {}), opt.get("param_groups", []),
                                                directory / OPTIMIZER_FILE)
    return Checkpoint(model_state=model_state, optimizer_state=optimizer_state, step=int(record["step"]),
                      rng_state=record.get("rng_state"), extra=record.get("extra") or {})
