"""Checkpoints: round trips, atomic writes, clear errors on damaged or foreign files, PyTorch interchange."""
import errno
import json
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as numpy_load_file
from safetensors.torch import load_file as torch_load_file
from safetensors.torch import save_file as torch_save_file

import scratchzoo
from scratchzoo import io
from scratchzoo.io import (CheckpointError, checkpoint_files, load_checkpoint, load_state_dict, save_checkpoint,
                           save_state_dict)


def model_state():
    rng = np.random.default_rng(0)
    return {"0.weight": rng.standard_normal((4, 3)).astype(np.float32),
            "0.bias": rng.standard_normal(4).astype(np.float32),
            "bn.num_batches_tracked": np.array(7, dtype=np.int64),
            "emb.weight": rng.standard_normal((5, 2)),  # float64 stays float64
            "mask": np.array([True, False])}


def adam_state():
    """The shape of torch.optim.Adam(...).state_dict(), with NumPy arrays."""
    return {"state": {0: {"step": 3, "exp_avg": np.ones((4, 3), np.float32), "exp_avg_sq": np.full((4, 3), 2, np.float32)},
                      1: {"step": 3, "exp_avg": np.zeros(4, np.float32), "exp_avg_sq": np.ones(4, np.float32)}},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                              "amsgrad": False, "foreach": None, "params": [0, 1]}]}


def assert_same_arrays(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        np.testing.assert_array_equal(a[key], b[key])


def test_state_dict_round_trip(tmp_path):
    state = model_state()
    state["0.weight_t"] = state["0.weight"].T  # not contiguous: saved all the same
    save_state_dict(state, tmp_path / "m.safetensors", metadata={"note": "hi"})
    assert_same_arrays(load_state_dict(tmp_path / "m.safetensors"), state)


def test_save_leaves_no_temporary_files_and_overwrites(tmp_path):
    path = tmp_path / "m.safetensors"
    save_state_dict({"a": np.zeros(3)}, path)
    save_state_dict({"a": np.ones(3)}, path)
    assert os.listdir(tmp_path) == ["m.safetensors"]
    np.testing.assert_array_equal(load_state_dict(path)["a"], np.ones(3))
    (tmp_path / "plain").write_bytes(b"")
    assert path.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777  # not tempfile's 0600


def test_failed_save_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.safetensors"
    save_state_dict({"a": np.zeros(3)}, path)
    with pytest.raises(Exception):
        save_state_dict({"a": np.zeros(3), "b": object()}, path)  # fails while writing the temp file
    assert os.listdir(tmp_path) == ["m.safetensors"]
    np.testing.assert_array_equal(load_state_dict(path)["a"], np.zeros(3))


def expected_files(directory):
    """What a completed save leaves: checkpoint.json, the tensor files it names and their stable names."""
    files = checkpoint_files(directory)
    names = ["checkpoint.json", files["model"].name, "model.safetensors"]
    if files["optimizer"] is not None:
        names += [files["optimizer"].name, "optimizer.safetensors"]
    return sorted(names)


def assert_stable_names_hold(directory, model, optimizer):
    """model.safetensors and optimizer.safetensors, read as plain safetensors files, hold these tensors."""
    assert_same_arrays(numpy_load_file(str(directory / "model.safetensors")), model)
    if optimizer is None:
        assert not (directory / "optimizer.safetensors").exists()
    else:
        assert_same_arrays(numpy_load_file(str(directory / "optimizer.safetensors")),
                           io._split_optimizer_state(optimizer)[0])


def assert_stable_names_follow_the_checkpoint(directory):
    ckpt = load_checkpoint(directory)
    assert_stable_names_hold(directory, ckpt.model_state, ckpt.optimizer_state)


def test_checkpoint_round_trip(tmp_path):
    scratchzoo.manual_seed(123)
    scratchzoo.rng.generator().random(5)
    rng_state = scratchzoo.get_rng_state()
    expected_draws = scratchzoo.rng.generator().random(5)
    save_checkpoint(tmp_path, model_state(), adam_state(), step=42, rng_state=rng_state,
                    extra={"epoch": 2, "config": {"lr": 1e-3}})
    files = checkpoint_files(tmp_path)
    assert sorted(os.listdir(tmp_path)) == expected_files(tmp_path)
    assert files["model"].name.startswith("model.") and files["optimizer"].name.startswith("optimizer.")
    assert files["model"].name != "model.safetensors" and files["optimizer"].name != "optimizer.safetensors"

    ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 42 and ckpt.extra == {"epoch": 2, "config": {"lr": 1e-3}}
    assert_same_arrays(ckpt.model_state, model_state())
    opt, want = ckpt.optimizer_state, adam_state()
    assert opt["param_groups"] == want["param_groups"]
    assert isinstance(opt["param_groups"][0]["betas"], tuple)
    assert list(opt["state"]) == [0, 1]
    for index in (0, 1):
        assert opt["state"][index]["step"] == 3
        assert_same_arrays({k: v for k, v in opt["state"][index].items() if k != "step"},
                           {k: v for k, v in want["state"][index].items() if k != "step"})
    # the 128-bit PCG64 state survives JSON exactly: the resumed generator draws the same numbers
    assert ckpt.rng_state == rng_state and ckpt.rng_state["state"]["state"] > 2**64
    scratchzoo.set_rng_state(ckpt.rng_state)
    np.testing.assert_array_equal(scratchzoo.rng.generator().random(5), expected_draws)


def test_checkpoint_without_optimizer_and_with_stateless_optimizer(tmp_path):
    save_checkpoint(tmp_path / "a", model_state(), None, step=0)
    ckpt = load_checkpoint(tmp_path / "a")
    assert ckpt.optimizer_state is None and ckpt.rng_state is None and ckpt.extra == {}
    sgd = {"state": {}, "param_groups": [{"lr": np.float32(0.1), "momentum": 0, "params": [0, 1]}]}
    save_checkpoint(tmp_path / "b", model_state(), sgd, step=1)
    assert load_checkpoint(tmp_path / "b").optimizer_state == {
        "state": {}, "param_groups": [{"lr": pytest.approx(0.1), "momentum": 0, "params": [0, 1]}]}


def test_a_mixture_of_two_saves_is_detected(tmp_path):
    """Copy a tensor file of one save under the name another checkpoint.json expects: the header's save
    id tells them apart (a size and digest check alone would pass if the arrays happened to be the same)."""
    save_checkpoint(tmp_path / "a", model_state(), adam_state(), step=1)
    save_checkpoint(tmp_path / "b", model_state(), adam_state(), step=2)
    record = json.loads((tmp_path / "b" / "checkpoint.json").read_text())
    record["checkpoint_id"] = json.loads((tmp_path / "a" / "checkpoint.json").read_text())["checkpoint_id"]
    (tmp_path / "b" / "checkpoint.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=r"model\.[0-9a-f]{32}\.safetensors.*different save"):
        load_checkpoint(tmp_path / "b")


def other_model_state():
    return {name: (value + 1 if value.dtype != bool else ~value) for name, value in model_state().items()}


def crash_on_call(monkeypatch, target, attribute, n):
    """Make target.attribute raise KeyboardInterrupt (as a kill would stop the save) on its n-th call."""
    real, calls = getattr(target, attribute), []

    def crashing(*args, **kwargs):
        calls.append(args)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(target, attribute, crashing)


def assert_is_the_first_checkpoint(directory):
    ckpt = load_checkpoint(directory)
    assert ckpt.step == 1 and ckpt.extra == {"run": "first"}
    assert_same_arrays(ckpt.model_state, model_state())
    assert_same_arrays({k: v for k, v in ckpt.optimizer_state["state"][0].items() if k != "step"},
                       {k: v for k, v in adam_state()["state"][0].items() if k != "step"})


# the renames of one save: 1 the model file, 2 the optimizer file, 3 checkpoint.json (the commit), then the
# stable names: 4 model.safetensors, 5 optimizer.safetensors (each a hard link: link 1 the model's, 2 the
# optimizer's)
@pytest.mark.parametrize("crash_at", ["rename_1", "rename_2", "rename_3", "fsync_1", "fsync_3",
                                      "link_1", "rename_4", "link_2", "rename_5", "cleanup"])
def test_a_crash_at_any_point_of_a_save_in_place_keeps_a_whole_checkpoint(tmp_path, monkeypatch, crash_at):
    save_checkpoint(tmp_path, model_state(), adam_state(), step=1, extra={"run": "first"})
    first_files = sorted(os.listdir(tmp_path))
    newer = adam_state()
    newer["state"][0]["exp_avg"] = newer["state"][0]["exp_avg"] * 5
    with monkeypatch.context() as patch:
        kind, _, n = crash_at.partition("_")
        if kind == "rename":
            crash_on_call(patch, os, "replace", int(n))
        elif kind == "link":
            crash_on_call(patch, os, "link", int(n))
        elif kind == "fsync":  # file fsyncs alternate with directory fsyncs: 1 the model file, 3 the optimizer's
            crash_on_call(patch, os, "fsync", int(n))
        else:
            crash_on_call(patch, io, "_remove_stale_files", 1)
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(tmp_path, other_model_state(), newer, step=2, extra={"run": "second"})
    if crash_at in ("rename_1", "rename_2", "rename_3", "fsync_1", "fsync_3"):  # before the commit
        assert_is_the_first_checkpoint(tmp_path)
        assert_stable_names_follow_the_checkpoint(tmp_path)
        assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    else:  # committed: the new checkpoint is whole, the old files are leftovers
        ckpt = load_checkpoint(tmp_path)
        assert ckpt.step == 2 and ckpt.extra == {"run": "second"}
        assert_same_arrays(ckpt.model_state, other_model_state())
        np.testing.assert_array_equal(ckpt.optimizer_state["state"][0]["exp_avg"], newer["state"][0]["exp_avg"])
        assert set(first_files) - {"checkpoint.json"} <= set(os.listdir(tmp_path))
        assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
        # the stable names lag behind checkpoint.json where the crash stopped their update
        model_updated = crash_at in ("link_2", "rename_5", "cleanup")
        assert_stable_names_hold(tmp_path, other_model_state() if model_updated else model_state(),
                                 newer if crash_at == "cleanup" else adam_state())

    # the next save works, puts the stable names right and leaves exactly its own files
    save_checkpoint(tmp_path, other_model_state(), newer, step=3, extra={"run": "third"})
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 3 and ckpt.extra == {"run": "third"}
    assert_same_arrays(ckpt.model_state, other_model_state())
    np.testing.assert_array_equal(ckpt.optimizer_state["state"][0]["exp_avg"], newer["state"][0]["exp_avg"])
    assert sorted(os.listdir(tmp_path)) == expected_files(tmp_path)
    assert_stable_names_hold(tmp_path, other_model_state(), newer)


def test_stable_names_hold_the_committed_checkpoint_after_each_save(tmp_path):
    """model.safetensors / optimizer.safetensors: what PyTorch users open; each save points them anew."""
    save_checkpoint(tmp_path, model_state(), adam_state(), step=1)
    assert_stable_names_hold(tmp_path, model_state(), adam_state())
    files = checkpoint_files(tmp_path)
    assert os.path.samefile(tmp_path / "model.safetensors", files["model"])  # a hard link, no second copy
    assert os.path.samefile(tmp_path / "optimizer.safetensors", files["optimizer"])
    state = torch_load_file(str(tmp_path / "model.safetensors"))  # what a PyTorch user does
    linear = torch.nn.Linear(3, 4)
    linear.load_state_dict({"weight": state["0.weight"], "bias": state["0.bias"]})
    np.testing.assert_array_equal(linear.weight.detach().numpy(), model_state()["0.weight"])

    newer = adam_state()
    newer["state"][1]["exp_avg"] = newer["state"][1]["exp_avg"] + 3
    save_checkpoint(tmp_path, other_model_state(), newer, step=2)
    assert_stable_names_hold(tmp_path, other_model_state(), newer)
    assert sorted(os.listdir(tmp_path)) == expected_files(tmp_path)

    # a checkpoint without an optimizer: the old optimizer.safetensors would be stale, so it goes
    save_checkpoint(tmp_path, model_state(), None, step=3)
    assert_stable_names_hold(tmp_path, model_state(), None)
    assert sorted(os.listdir(tmp_path)) == expected_files(tmp_path)


def test_stable_names_are_copies_where_hard_links_fail(tmp_path, monkeypatch):
    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "hard links not supported")

    save_checkpoint(tmp_path, model_state(), adam_state(), step=1)
    monkeypatch.setattr(os, "link", no_links)
    save_checkpoint(tmp_path, other_model_state(), adam_state(), step=2)
    assert_stable_names_hold(tmp_path, other_model_state(), adam_state())
    assert not os.path.samefile(tmp_path / "model.safetensors", checkpoint_files(tmp_path)["model"])
    assert sorted(os.listdir(tmp_path)) == expected_files(tmp_path)
    (tmp_path / "plain").write_bytes(b"")
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777


def test_a_failed_update_of_a_stable_name_warns_and_keeps_the_save(tmp_path, monkeypatch):
    """An OSError after the commit (a reader holding the file open on Windows, a full disk when copying) is
    not a failed save: the checkpoint is committed; the stable name keeps the previous tensors a while."""
    save_checkpoint(tmp_path, model_state(), adam_state(), step=1, extra={"run": "first"})
    real_replace, calls = os.replace, []

    def failing_replace(src, dst, *args, **kwargs):
        calls.append(dst)
        if os.path.basename(dst) == "model.safetensors":
            raise PermissionError(errno.EACCES, "in use", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", failing_replace)
        with pytest.warns(RuntimeWarning, match=r"model\.safetensors: could not point it.*previous checkpoint"):
            save_checkpoint(tmp_path, other_model_state(), adam_state(), step=2)
    assert load_checkpoint(tmp_path).step == 2
    assert_stable_names_hold(tmp_path, model_state(), adam_state())  # kept, not deleted by the cleanup
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    save_checkpoint(tmp_path, other_model_state(), adam_state(), step=3)
    assert_stable_names_follow_the_checkpoint(tmp_path)
    assert sorted(os.listdir(tmp_path)) == expected_files(tmp_path)


def test_leftovers_of_a_killed_save_are_ignored_then_removed_and_other_files_kept(tmp_path):
    """A kill -9 runs no cleanup: temporary files and renamed tensor files of the unfinished save stay."""
    save_checkpoint(tmp_path, model_state(), adam_state(), step=1, extra={"run": "first"})
    leftovers = [f".model.{'a' * 32}.safetensors.x1y2.tmp", f".optimizer.{'b' * 32}.safetensors.q.tmp",
                 ".checkpoint.json.k3j4.tmp", ".model.safetensors.old.tmp", f"optimizer.{'c' * 32}.safetensors"]
    for name in leftovers:
        (tmp_path / name).write_bytes(b"half a file")
    save_state_dict(other_model_state(), tmp_path / f"model.{'d' * 32}.safetensors",
                    metadata={"format": io.FORMAT, "checkpoint_id": "d" * 32})  # renamed, never committed
    ours = ["metrics.json", "curves.png", "notes.model.safetensors", "model.safetensors"]  # the last: not ours
    for name in ours[:-1]:
        (tmp_path / name).write_text("keep me")
    save_state_dict({"w": np.ones(2)}, tmp_path / "model.safetensors")  # a user's file, no scratchzoo header
    assert_is_the_first_checkpoint(tmp_path)

    with pytest.warns(RuntimeWarning, match=r"model\.safetensors: not written by scratchzoo, left as it is"):
        save_checkpoint(tmp_path, other_model_state(), None, step=2)
    files = checkpoint_files(tmp_path)
    assert files["optimizer"] is None
    # the first save's optimizer.safetensors is ours and stale (no optimizer now): gone; the user's file stays
    assert sorted(os.listdir(tmp_path)) == sorted(["checkpoint.json", files["model"].name, *ours])
    assert_same_arrays(load_state_dict(tmp_path / "model.safetensors"), {"w": np.ones(2)})
    assert load_checkpoint(tmp_path).step == 2


def test_saving_into_a_new_directory_keeps_an_earlier_checkpoint_elsewhere(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "step_1", model_state(), adam_state(), step=1, extra={"run": "first"})
    crash_on_call(monkeypatch, os, "replace", 3)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "step_2", model_state(), adam_state(), step=2)
    assert_is_the_first_checkpoint(tmp_path / "step_1")
    with pytest.raises(CheckpointError, match="checkpoint.json.*not found"):
        load_checkpoint(tmp_path / "step_2")


@pytest.mark.parametrize("extra, where, kind", [
    ({"weights": torch.ones(2)}, r"extra\['weights'\]", "Tensor"),
    ({"config": {"lr": 0.1, "device": object()}}, r"extra\['config'\]\['device'\]", "object"),
    ({"history": [1, 2, {3, 4}]}, r"extra\['history'\]\[2\]", "set"),
    ({"by_pair": {(1, 2): 3}}, r"extra\['by_pair'\] key \(1, 2\)", "tuple"),
])
def test_a_bad_extra_names_its_key_and_leaves_the_previous_checkpoint(tmp_path, extra, where, kind):
    save_checkpoint(tmp_path, model_state(), adam_state(), step=1, extra={"run": "first"})
    before = {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)}
    with pytest.raises(TypeError, match=f"cannot store {where} in checkpoint.json: {kind}"):
        save_checkpoint(tmp_path, other_model_state(), adam_state(), step=2, extra=extra)
    assert {name: (tmp_path / name).read_bytes() for name in os.listdir(tmp_path)} == before
    assert_is_the_first_checkpoint(tmp_path)


def test_write_json_names_the_bad_key(tmp_path):
    with pytest.raises(TypeError, match=r"cannot store test_mse in metrics.json: Tensor"):
        io.write_json(tmp_path / "metrics.json", {"steps": 3, "test_mse": torch.tensor(0.5)})
    assert not (tmp_path / "metrics.json").exists()
    io.write_json(tmp_path / "metrics.json", {"lr": np.float32(0.5), "curve": np.arange(3)})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"lr": 0.5, "curve": [0, 1, 2]}


def write_format_1_checkpoint(directory, step=1, checkpoint_id="0123abcd"):
    """What scratchzoo wrote before checkpoint.json named its tensor files."""
    header = {"format": io.FORMAT, "checkpoint_id": checkpoint_id}
    save_state_dict(model_state(), directory / "model.safetensors", metadata=header)
    arrays, scalars = io._split_optimizer_state(adam_state())
    save_state_dict(arrays, directory / "optimizer.safetensors", metadata=header)
    record = {"format": io.FORMAT, "format_version": 1, "checkpoint_id": checkpoint_id, "step": step,
              "rng_state": None, "extra": {"run": "first"},
              "optimizer": {"param_groups": adam_state()["param_groups"], "scalar_state": scalars}}
    (directory / "checkpoint.json").write_text(json.dumps(record))


def test_format_1_checkpoints_still_load_and_are_replaced_by_the_next_save(tmp_path):
    write_format_1_checkpoint(tmp_path)
    assert_is_the_first_checkpoint(tmp_path)
    assert checkpoint_files(tmp_path) == {"model": tmp_path / "model.safetensors",
                                          "optimizer": tmp_path / "optimizer.safetensors"}
    assert load_checkpoint(tmp_path).optimizer_state["param_groups"] == adam_state()["param_groups"]

    save_checkpoint(tmp_path, other_model_state(), adam_state(), step=2)
    assert sorted(os.listdir(tmp_path)) == expected_files(tmp_path)  # the fixed names are now stable names
    assert json.loads((tmp_path / "checkpoint.json").read_text())["format_version"] == io.FORMAT_VERSION
    assert_stable_names_hold(tmp_path, other_model_state(), adam_state())


def test_format_1_interrupted_overwrite_is_detected(tmp_path):
    """Format 1 overwrote the fixed names in place; a new model file beside the old record is refused."""
    write_format_1_checkpoint(tmp_path, checkpoint_id="old")
    save_state_dict(other_model_state(), tmp_path / "model.safetensors",
                    metadata={"format": io.FORMAT, "checkpoint_id": "new"})
    with pytest.raises(CheckpointError, match="model.safetensors.*different save"):
        load_checkpoint(tmp_path)


def test_a_file_name_in_checkpoint_json_cannot_leave_the_directory(tmp_path):
    save_checkpoint(tmp_path / "run", model_state(), None, step=1)
    record = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    save_state_dict(model_state(), tmp_path / "elsewhere.safetensors")
    record["files"]["model"]["name"] = "../elsewhere.safetensors"
    (tmp_path / "run" / "checkpoint.json").write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match="checkpoint.json.*no valid entry for the model"):
        load_checkpoint(tmp_path / "run")


def test_pytorch_bfloat16_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "bf16.safetensors"
    torch_save_file({"bias": torch.ones(4), "weight": torch.ones(4, 3, dtype=torch.bfloat16)}, str(path))
    with pytest.raises(CheckpointError, match=r"bf16.safetensors: tensor 'weight' has dtype BF16.*float32.*\.float\(\)"):
        load_state_dict(path)


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "random_bytes", "pickle", "empty", "missing"])
@pytest.mark.parametrize("part", ["model", "optimizer"])
def test_damaged_tensor_file_raises_checkpoint_error(tmp_path, damage, part):
    save_checkpoint(tmp_path, model_state(), adam_state(), step=5)
    path = checkpoint_files(tmp_path)[part]
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-5])
    elif damage == "flip_byte":
        data = bytearray(path.read_bytes())
        data[-1] ^= 1  # a value changes, the file still parses: only the digest notices
        path.write_bytes(bytes(data))
    elif damage == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(300))
    elif damage == "pickle":
        path.write_bytes(pickle.dumps(model_state()))
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
    with pytest.raises(CheckpointError, match=path.name.replace(".", r"\.")):
        load_checkpoint(tmp_path)
    if part == "model" and damage not in ("flip_byte", "missing"):
        with pytest.raises(CheckpointError, match=path.name.replace(".", r"\.")):
            load_state_dict(path)


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    ("{not json", "not valid JSON"),
    (json.dumps({"step": 1}), "not a scratchzoo checkpoint"),
    (json.dumps(["a list"]), "not a scratchzoo checkpoint"),
    ("VERSION", "format version 999"),
    (json.dumps({"format": "scratchzoo-checkpoint", "format_version": 1}), "incomplete"),
    (json.dumps({"format": "scratchzoo-checkpoint", "format_version": 2, "checkpoint_id": "a", "step": 1}),
     r"incomplete, missing \['files'\]"),
])
def test_bad_checkpoint_json_raises_checkpoint_error(tmp_path, content, message):
    save_checkpoint(tmp_path, model_state(), None, step=5)
    path = tmp_path / "checkpoint.json"
    if content is None:
        path.unlink()
    elif content == "VERSION":
        record = json.loads(path.read_text())
        record["format_version"] = 999
        path.write_text(json.dumps(record))
    else:
        path.write_text(content)
    with pytest.raises(CheckpointError, match=f"checkpoint.json.*{message}"):
        load_checkpoint(tmp_path)
    assert issubclass(CheckpointError, ValueError)


def test_reads_file_written_by_pytorch(tmp_path):
    linear = torch.nn.Linear(3, 4)
    torch_save_file(linear.state_dict(), str(tmp_path / "torch.safetensors"))
    loaded = load_state_dict(tmp_path / "torch.safetensors")
    assert_same_arrays(loaded, {k: v.numpy() for k, v in linear.state_dict().items()})


def test_pytorch_reads_our_file(tmp_path):
    state = {"weight": np.arange(12, dtype=np.float32).reshape(4, 3), "bias": np.ones(4, np.float32)}
    save_state_dict(state, tmp_path / "ours.safetensors")
    linear = torch.nn.Linear(3, 4)
    linear.load_state_dict(torch_load_file(str(tmp_path / "ours.safetensors")))
    assert_same_arrays({k: v.detach().numpy() for k, v in linear.state_dict().items()}, state)
