"""Checkpoints: round trips, atomic writes, clear errors on damaged or foreign files, PyTorch interchange."""
import json
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file as torch_load_file
from safetensors.torch import save_file as torch_save_file

import scratchzoo
from scratchzoo.io import (CheckpointError, load_checkpoint, load_state_dict, save_checkpoint,
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


def test_checkpoint_round_trip(tmp_path):
    scratchzoo.manual_seed(123)
    scratchzoo.rng.generator().random(5)
    rng_state = scratchzoo.get_rng_state()
    expected_draws = scratchzoo.rng.generator().random(5)
    save_checkpoint(tmp_path, model_state(), adam_state(), step=42, rng_state=rng_state,
                    extra={"epoch": 2, "config": {"lr": 1e-3}})
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.json", "model.safetensors", "optimizer.safetensors"]

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


def test_interrupted_overwrite_is_detected(tmp_path):
    save_checkpoint(tmp_path, model_state(), adam_state(), step=1)
    old_json = (tmp_path / "checkpoint.json").read_text()
    save_checkpoint(tmp_path, model_state(), adam_state(), step=2)
    (tmp_path / "checkpoint.json").write_text(old_json)  # as if the crash came before the last rename
    with pytest.raises(CheckpointError, match="model.safetensors.*different save"):
        load_checkpoint(tmp_path)


def test_crash_before_json_leaves_previous_checkpoint_in_its_own_directory(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "step_1", model_state(), adam_state(), step=1)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("scratchzoo.io.write_json", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "step_2", model_state(), adam_state(), step=2)
    assert load_checkpoint(tmp_path / "step_1").step == 1
    with pytest.raises(CheckpointError, match="checkpoint.json"):
        load_checkpoint(tmp_path / "step_2")


@pytest.mark.parametrize("damage", ["truncate", "random_bytes", "pickle", "empty", "missing"])
@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors"])
def test_damaged_tensor_file_raises_checkpoint_error(tmp_path, damage, name):
    save_checkpoint(tmp_path, model_state(), adam_state(), step=5)
    path = tmp_path / name
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-5])
    elif damage == "random_bytes":
        path.write_bytes(np.random.default_rng(0).bytes(300))
    elif damage == "pickle":
        path.write_bytes(pickle.dumps(model_state()))
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
    with pytest.raises(CheckpointError, match=name):
        load_checkpoint(tmp_path)
    if name == "model.safetensors":
        with pytest.raises(CheckpointError, match=name):
            load_state_dict(path)


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    ("{not json", "not valid JSON"),
    (json.dumps({"step": 1}), "not a scratchzoo checkpoint"),
    (json.dumps(["a list"]), "not a scratchzoo checkpoint"),
    ("VERSION", "format version 999"),
    (json.dumps({"format": "scratchzoo-checkpoint", "format_version": 1}), "incomplete"),
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
