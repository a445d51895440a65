"""BatchNorm1d and BatchNorm2d against torch.nn: training and eval, every option, running statistics after
several steps, num_batches_tracked, state-dict interchange both ways; the fused op's gradients by finite
differences; clear errors."""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import scratchzoo as sz
from scratchzoo import functional as F
from scratchzoo import nn
from scratchzoo.autograd import DTypeError, ShapeError

from helpers import assert_close, assert_matches_torch, gradcheck, rand

DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
SHAPES = {"BatchNorm1d-2d": (nn.BatchNorm1d, torch.nn.BatchNorm1d, (6, 3)),
          "BatchNorm1d-3d": (nn.BatchNorm1d, torch.nn.BatchNorm1d, (4, 3, 5)),
          "BatchNorm2d": (nn.BatchNorm2d, torch.nn.BatchNorm2d, (4, 3, 5, 3))}
OPTIONS = {"default": {}, "momentum-none": {"momentum": None}, "no-affine": {"affine": False},
           "no-bias": {"bias": False}, "untracked": {"track_running_stats": False},
           "eps": {"eps": 1e-2, "momentum": 0.3}}


def randomized(module: torch.nn.Module, seed: int = 7) -> torch.nn.Module:
    """Random gamma, beta and running statistics, so that defaults (1, 0) cannot hide a mistake."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, value in module.state_dict().items():
            if name == "running_var":
                value.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, tuple(value.shape))))
            elif name == "num_batches_tracked":
                value.fill_(3)
            else:
                value.copy_(torch.from_numpy(rng.standard_normal(tuple(value.shape))))
    return module


@DTYPES
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("option", OPTIONS, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_batchnorm_matches_torch(shape: str, option: str, training: bool, dtype: Any) -> None:
    ours_class, their_class, input_shape = SHAPES[shape]
    ours, theirs = ours_class(3, **OPTIONS[option]), randomized(their_class(3, **OPTIONS[option]))
    ours.train(training), theirs.train(training)
    assert_matches_torch(ours, theirs, [rand(*input_shape) * 2 + 1], dtype=dtype)
    tolerance = (1e-6, 1e-7) if dtype == np.float32 else (1e-12, 1e-12)
    for name, value in theirs.state_dict().items():  # the running statistics moved (or not) alike
        assert_close(name, ours.state_dict()[name], value.numpy(), *tolerance)


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum0.1", "cumulative"])
def test_running_statistics_equal_torch_after_several_steps(momentum: float | None) -> None:
    ours, theirs = nn.BatchNorm2d(4, momentum=momentum).double(), torch.nn.BatchNorm2d(4, momentum=momentum).double()
    for step in range(4):
        x = rand(5, 4, 3, 2) * (step + 1) + step
        ours(sz.tensor(x))
        theirs(torch.from_numpy(x))
    for name, value in theirs.state_dict().items():
        assert_close(name, ours.state_dict()[name], value.numpy(), 1e-12, 1e-12)
    counter = ours.state_dict()["num_batches_tracked"]
    assert isinstance(counter, np.ndarray) and counter.dtype == np.int64 and counter.shape == ()
    assert int(ours.num_batches_tracked.item()) == 4
    ours.eval(), theirs.eval()  # eval normalises with those statistics and changes nothing
    x = rand(2, 4, 3, 2)
    assert_close("eval output", ours(sz.tensor(x)).data, theirs(torch.from_numpy(x)).detach().numpy(), 1e-12, 1e-12)
    assert int(ours.num_batches_tracked.item()) == 4


def test_state_dict_interchanges_with_torch_both_ways() -> None:
    theirs = randomized(torch.nn.BatchNorm2d(5)).eval()
    ours = nn.BatchNorm2d(5).eval()
    ours.load_state_dict(theirs.state_dict())  # torch -> ours
    assert list(ours.state_dict()) == list(theirs.state_dict()) == [
        "weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    x = rand(2, 5, 4, 4).astype(np.float32)
    expected = theirs(torch.from_numpy(x)).detach().numpy()
    assert_close("torch -> ours", ours(sz.tensor(x)).data, expected, 1e-5, 1e-6)
    back = torch.nn.BatchNorm2d(5).eval()
    back.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in ours.state_dict().items()})  # ours -> torch
    assert_close("ours -> torch", back(torch.from_numpy(x)).detach().numpy(), expected, 1e-6, 1e-7)
    assert back.num_batches_tracked.dtype == torch.int64


def test_untracked_batchnorm_has_no_buffers_and_uses_batch_statistics_in_eval() -> None:
    bn = nn.BatchNorm2d(3, track_running_stats=False).eval()
    assert bn.running_mean is None and list(bn.state_dict()) == ["weight", "bias"]
    y = bn(sz.tensor((rand(4, 3, 2, 2) * 3 + 2).astype(np.float32))).data
    assert_close("per-channel mean", y.mean(axis=(0, 2, 3)), np.zeros(3), 1e-5, 1e-5)


def test_double_casts_running_statistics_but_keeps_the_counter_int64() -> None:
    bn = nn.BatchNorm1d(3).double()
    assert bn.running_mean.dtype == np.float64 and bn.running_var.dtype == np.float64
    assert bn.num_batches_tracked.dtype == np.int64


def test_repr_matches_torch() -> None:
    for options in ({}, {"momentum": None, "affine": False}, {"eps": 1e-3, "track_running_stats": False}):
        assert repr(nn.BatchNorm2d(8, **options)) == repr(torch.nn.BatchNorm2d(8, **options))
    assert repr(nn.BatchNorm1d(4, bias=False)) == repr(torch.nn.BatchNorm1d(4, bias=False))


# ============================================================================ the fused op


@DTYPES
def test_functional_batch_norm_matches_torch_and_updates_the_buffers_in_place(dtype: Any) -> None:
    mean, var = rand(3).astype(dtype), np.random.default_rng(1).uniform(0.5, 2, 3).astype(dtype)
    ours_mean, ours_var = sz.tensor(mean), sz.tensor(var)
    their_mean, their_var = torch.from_numpy(mean.copy()), torch.from_numpy(var.copy())
    assert_matches_torch(lambda x, w, b: F.batch_norm(x, ours_mean, ours_var, w, b, True, 0.2, 1e-3),
                         lambda x, w, b: TF.batch_norm(x, their_mean, their_var, w, b, True, 0.2, 1e-3),
                         [rand(4, 3, 5), rand(3), rand(3)], dtype=dtype)
    tolerance = (1e-6, 1e-7) if dtype == np.float32 else (1e-12, 1e-12)
    assert_close("running_mean", ours_mean.data, their_mean.numpy(), *tolerance)
    assert_close("running_var", ours_var.data, their_var.numpy(), *tolerance)


def test_batch_norm_training_gradcheck() -> None:
    gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [rand(3, 2, 3, 2), rand(2), rand(2)])


def test_batch_norm_eval_gradcheck() -> None:
    mean, var = rand(2), np.array([0.5, 2.0])
    gradcheck(lambda x, w, b: F.batch_norm(x, mean, var, w, b, training=False, eps=1e-3),
              [rand(3, 2, 4), rand(2), rand(2)])


def test_batch_norm_without_affine_gradcheck() -> None:
    gradcheck(lambda x: F.batch_norm(x, None, None, training=True), [rand(4, 3)])


def test_batch_norm_follows_the_input_s_memory_layout() -> None:
    """A convolution's output is channels-last in memory; the op gives the same numbers either way."""
    x = rand(3, 4, 5, 6)
    channels_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    results = []
    for array in (x, channels_last):
        t = sz.Tensor(array, requires_grad=True)
        y = F.batch_norm(t, None, None, training=True)
        y.backward(np.cos(np.arange(y.numel())).reshape(y.shape))
        results.append((y.data, t.grad))
    assert_close("output", results[1][0], results[0][0], 1e-12, 1e-12)
    assert_close("grad", results[1][1], results[0][1], 1e-12, 1e-12)


# ============================================================================ errors


def test_wrong_input_is_a_clear_error() -> None:
    with pytest.raises(ShapeError, match=r"BatchNorm2d\(4\) expected 4-D input \(N, C, H, W\) with 4 channels, "
                                         r"got shape \(2, 3, 5, 5\)"):
        nn.BatchNorm2d(4)(sz.zeros(2, 3, 5, 5))
    with pytest.raises(ShapeError, match=r"BatchNorm1d\(4\) expected 2-D input \(N, C\) or 3-D input \(N, C, L\)"):
        nn.BatchNorm1d(4)(sz.zeros(2, 4, 5, 5))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(4\) expected more than 1 value per channel when training, "
                                         r"got input shape \(1, 4\)"):
        nn.BatchNorm1d(4)(sz.zeros(1, 4))
    with pytest.raises(DTypeError, match="float32 parameters but got float64"):
        nn.BatchNorm1d(4)(sz.tensor(rand(3, 4)))
    with pytest.raises(ValueError, match="eval mode needs running"):
        F.batch_norm(sz.zeros(2, 3), None, None, training=False)


@pytest.mark.parametrize("make, shape", [(lambda m: m.BatchNorm1d(4), (1, 4)), (lambda m: m.BatchNorm1d(3), (1, 3, 1)),
                                         (lambda m: m.BatchNorm2d(2), (1, 2, 1, 1))], ids=["1d N=1", "1d L=1", "2d 1x1"])
def test_one_value_per_channel_in_training_names_the_layer_as_torch_refuses(make: Any, shape: tuple) -> None:
    with pytest.raises(ValueError):
        make(torch.nn)(torch.zeros(shape))
    layer = make(nn)
    with pytest.raises(ValueError, match="^" + re.escape(f"{layer.describe()} expected more than 1 value per channel "
                                                         f"when training, got input shape {shape}")):
        layer(sz.zeros(*shape))
    layer.eval()
    assert layer(sz.zeros(*shape)).shape == shape  # eval uses the running statistics: one sample is fine
