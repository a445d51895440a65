"""The shared helpers must catch what they promise to catch: a test that cannot fail proves nothing."""
import numpy as np
import pytest
import torch

import scratchzoo as sz
from scratchzoo import functional as F

from helpers import assert_close, assert_matches_torch, gradcheck, rand

try:  # nn is written in parallel with these tests
    from scratchzoo import nn as sz_nn
except ImportError:
    sz_nn = None


class TinyLinear:
    """A hand-written stand-in with the nn.Module API the helper relies on (state_dict,
    load_state_dict, named_parameters, float/double), so the module branch is tested on its own."""

    def __init__(self, in_features, out_features, wrong_bias_grad=False):
        self.weight = sz.Tensor(np.zeros((out_features, in_features), np.float32), requires_grad=True)
        self.bias = sz.Tensor(np.zeros(out_features, np.float32), requires_grad=True)
        self.wrong_bias_grad = wrong_bias_grad

    def named_parameters(self):
        yield "weight", self.weight
        yield "bias", self.bias

    def state_dict(self):
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state):
        for name, p in self.named_parameters():
            p.data = np.array(state[name], dtype=p.dtype)

    def _cast(self, dtype):
        for _, p in self.named_parameters():
            p.data = p.data.astype(dtype)
        return self

    def float(self):
        return self._cast(np.float32)

    def double(self):
        return self._cast(np.float64)

    def __call__(self, x):
        bias = self.bias * 2.0 if self.wrong_bias_grad else self.bias
        y = F.linear(x, self.weight, None) + bias
        return y - self.bias.detach() if self.wrong_bias_grad else y  # same values, doubled bias grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_module_branch_copies_torch_weights_and_compares_param_grads(dtype):
    # ours starts at zero: outputs only match if the helper copied torch's weights across
    assert_matches_torch(TinyLinear(4, 3), torch.nn.Linear(4, 3), [rand(2, 4)], dtype=dtype)


def test_module_branch_catches_a_wrong_parameter_gradient():
    with pytest.raises(AssertionError, match="parameter 'bias'"):
        assert_matches_torch(TinyLinear(4, 3, wrong_bias_grad=True), torch.nn.Linear(4, 3), [rand(2, 4)])


def test_module_branch_catches_missing_state_dict_keys():
    with pytest.raises(AssertionError, match="state_dict keys differ"):
        assert_matches_torch(TinyLinear(4, 3), torch.nn.Linear(4, 3, bias=False), [rand(2, 4)])


@pytest.mark.skipif(not hasattr(sz_nn, "Linear"), reason="scratchzoo.nn.Linear not written yet")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_module_branch_with_the_real_linear(dtype):
    assert_matches_torch(sz_nn.Linear(4, 3), torch.nn.Linear(4, 3), [rand(2, 5, 4)], dtype=dtype)


def test_catches_wrong_output():
    with pytest.raises(AssertionError, match=r"output: .*max abs diff"):
        assert_matches_torch(lambda x: x * 1.001, lambda x: x, [rand(3)], dtype=np.float64)


def test_catches_wrong_input_gradient():
    def ours(x):  # right values, gradient of exp twice too big
        return F.exp(x) * 2.0 - F.exp(x).detach()
    with pytest.raises(AssertionError, match=r"grad of input\[0\]"):
        assert_matches_torch(ours, torch.exp, [rand(3)], dtype=np.float64)


def test_catches_wrong_output_dtype():
    with pytest.raises(AssertionError, match="dtype float64, expected float32"):
        assert_matches_torch(lambda x: x.double().float().double(), lambda x: x, [rand(3)])


def test_catches_wrong_indices_and_output_count():
    with pytest.raises(AssertionError, match=r"output\[1\]"):
        assert_matches_torch(lambda x: (F.max(x, 0).values, F.argmin(x, 0)),
                             lambda x: (torch.max(x, 0).values, torch.argmax(x, 0)), [np.array([[1.0, 2], [3, 0]])])
    with pytest.raises(AssertionError, match="returned 2 outputs, torch 1"):
        assert_matches_torch(lambda x: (x, x), lambda x: x, [rand(2)])


def test_nested_outputs_upstream_and_passthrough_inputs():
    upstream = [np.ones(2), np.full(3, 2.0)]
    assert_matches_torch(lambda x, n: F.split(x, n), lambda x, n: torch.split(x, n), [rand(5), [2, 3]],
                         dtype=np.float64, upstream=upstream)


def test_requires_grad_flags():
    # our mse target is differentiable too; a flag turns the comparison of its grad off
    assert_matches_torch(F.mse_loss, torch.nn.functional.mse_loss, [rand(3), rand(3)], requires_grad=[True, False])
    with pytest.raises(ValueError, match="only float arrays"):
        assert_matches_torch(F.embedding, torch.nn.functional.embedding, [np.array([0]), rand(2, 2)],
                             requires_grad=[True, True])


def test_gradcheck_catches_a_wrong_backward():
    class WrongSquare(sz.Function):
        def forward(self, x):
            self.x = x
            return x * x

        def backward(self, grad):
            return grad * self.x  # should be 2x

    gradcheck(lambda x: x * x, [rand(2, 3)])
    with pytest.raises(AssertionError, match="finite differences"):
        gradcheck(lambda x: WrongSquare.apply(x), [rand(2, 3)])


def test_assert_close_nan_inf_and_message():
    assert_close("x", np.array([np.nan, np.inf, 1.0]), np.array([np.nan, np.inf, 1.0]), 0, 0)
    with pytest.raises(AssertionError, match=r"1 of 3 elements differ.*index \(2,\)"):
        assert_close("x", np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 2.5]), 1e-9, 1e-9)


def test_rand_is_reproducible():
    assert rand(2, 3).shape == (2, 3) and rand((4,)).shape == (4,) and rand().shape == ()
    assert not np.array_equal(rand(3), rand(3))
    np.testing.assert_array_equal(rand(3, seed=7), rand(3, seed=7))
