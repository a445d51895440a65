"""Layers: parity with torch.nn (forward and backward, float32 and float64), finite-difference gradients
for the layers with parameters, dropout statistics, and clear errors naming the layer."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import scratchzoo as sz
from scratchzoo import nn
from scratchzoo.autograd import DTypeError, ShapeError

from helpers import assert_matches_torch, gradcheck, rand, randomize_

DTYPES = [np.float32, np.float64]
DTYPE_IDS = ["float32", "float64"]



def ids(*shape: int, high: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, size=shape).astype(np.int64)


def check_layer_gradients(layer: nn.Module, *inputs: Any) -> None:
    """Finite differences in float64 for the input and every parameter of `layer`."""
    layer.double()
    names = [name for name, _ in layer.named_parameters()]
    values = [p.data.copy() for p in layer.parameters()]

    def run(*args: Any) -> Any:
        for name, tensor in zip(names, args[len(inputs):]):
            layer.register_parameter(name, tensor)  # the tensors gradcheck perturbs become the parameters
        return layer(*args[:len(inputs)])

    gradcheck(run, [*inputs, *values])


# ============================================================================ Linear


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape", [(4,), (3, 4), (2, 3, 4)], ids=["1d", "2d", "3d"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_linear_matches_torch(bias: bool, shape: tuple[int, ...], dtype: Any) -> None:
    assert_matches_torch(nn.Linear(4, 5, bias=bias), torch.nn.Linear(4, 5, bias=bias), [rand(shape)], dtype=dtype)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_linear_gradcheck(bias: bool) -> None:
    check_layer_gradients(nn.Linear(3, 2, bias=bias), rand(2, 2, 3))


def test_linear_state_dict_layout_is_torch_s() -> None:
    assert {k: v.shape for k, v in nn.Linear(3, 5).state_dict().items()} == {"weight": (5, 3), "bias": (5,)}
    assert list(nn.Linear(3, 5, bias=False).state_dict()) == ["weight"]


# ============================================================================ shape layers


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_identity_matches_torch(dtype: Any) -> None:
    assert_matches_torch(nn.Identity(), torch.nn.Identity(), [rand(2, 3)], dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("dims", [(), (0, -1), (1, 2), (2, 3), (-3, -2)], ids=str)
def test_flatten_matches_torch(dims: tuple[int, ...], dtype: Any) -> None:
    assert_matches_torch(nn.Flatten(*dims), torch.nn.Flatten(*dims), [rand(2, 3, 4, 5)], dtype=dtype)


# ============================================================================ Dropout


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_dropout_in_eval_is_the_identity(p: float) -> None:
    assert_matches_torch(nn.Dropout(p).eval(), torch.nn.Dropout(p).eval(), [rand(4, 5)], dtype=np.float64)


def test_dropout_in_training_zeroes_p_and_scales_the_rest() -> None:
    sz.manual_seed(0)
    p = 0.3
    x = sz.tensor(rand(200, 500) + 3.0, requires_grad=True)  # no element is 0 by chance
    y = nn.Dropout(p)(x)
    kept = y.data != 0
    assert abs(1 - kept.mean() - p) < 0.005  # 100k draws: std of the zero fraction ~0.0015
    np.testing.assert_allclose(y.data[kept], x.data[kept] / (1 - p), rtol=1e-12)
    upstream = rand(200, 500)
    y.backward(upstream)  # the gradient passes through the same mask with the same scale
    np.testing.assert_allclose(x.grad, np.where(kept, upstream / (1 - p), 0.0), rtol=1e-12)


def test_dropout_masks_differ_between_calls_and_repeat_under_manual_seed() -> None:
    layer, x = nn.Dropout(0.5), sz.ones(1000)
    sz.manual_seed(3)
    first, second = layer(x).data, layer(x).data
    assert not np.array_equal(first, second)
    sz.manual_seed(3)
    np.testing.assert_array_equal(layer(x).data, first)


def test_dropout_probability_must_lie_in_0_1() -> None:
    with pytest.raises(ValueError, match=r"Dropout: probability must lie in \[0, 1\], got 1.5"):
        nn.Dropout(1.5)


# ============================================================================ Embedding


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("padding_idx", [None, 0, -1], ids=["nopad", "pad0", "pad-1"])
def test_embedding_matches_torch(padding_idx: int | None, dtype: Any) -> None:
    # ids repeat (so gradients accumulate) and contain the padding rows 0 and 9
    assert_matches_torch(nn.Embedding(10, 4, padding_idx=padding_idx),
                         torch.nn.Embedding(10, 4, padding_idx=padding_idx),
                         [np.array([[0, 3, 9, 3], [9, 0, 5, 3]], dtype=np.int64)], dtype=dtype)


def test_embedding_padding_row_starts_at_zero_and_gets_no_gradient() -> None:
    layer = nn.Embedding(6, 3, padding_idx=2)
    np.testing.assert_array_equal(layer.weight.data[2], np.zeros(3))
    assert np.all(np.delete(layer.weight.data, 2, axis=0) != 0)
    layer(sz.tensor(np.array([2, 2, 1, 2]))).sum().backward()
    np.testing.assert_array_equal(layer.weight.grad[2], np.zeros(3))
    np.testing.assert_array_equal(layer.weight.grad[1], np.ones(3))
    assert layer.padding_idx == 2 and nn.Embedding(6, 3, padding_idx=-1).padding_idx == 5


def test_embedding_gradcheck() -> None:
    # no padding_idx here: its row does reach the output, but by design gets no gradient
    check_layer_gradients(nn.Embedding(5, 3), ids(2, 4, high=5))


def test_embedding_rejects_float_ids_and_ids_out_of_range() -> None:
    layer = nn.Embedding(10, 4)
    with pytest.raises(DTypeError, match=r"Embedding\(10, 4\) expected integer ids, got float32"):
        layer(sz.tensor(np.array([1.0, 2.0], dtype=np.float32)))
    with pytest.raises(IndexError, match=r"Embedding\(10, 4\) expected ids in \[0, 10\), got min 0 max 10"):
        layer(sz.tensor(np.array([0, 10])))
    with pytest.raises(IndexError, match=r"expected ids in \[0, 10\), got min -1 max 3"):
        layer(sz.tensor(np.array([3, -1])))
    with pytest.raises(ValueError, match=r"padding_idx must lie in \[-10, 10\), got 10"):
        nn.Embedding(10, 4, padding_idx=10)


# ============================================================================ LayerNorm


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("shape, options", [
    ((8,), {}),
    ((3, 8), {"eps": 1e-3}),
    ((3, 8), {"elementwise_affine": False}),
    ((8,), {"bias": False}),
], ids=["1d", "2d-eps", "no-affine", "no-bias"])
def test_layernorm_matches_torch(shape: tuple[int, ...], options: dict[str, Any], dtype: Any) -> None:
    ours = nn.LayerNorm(shape, **options)
    theirs = randomize_(torch.nn.LayerNorm(shape, **options))
    assert_matches_torch(ours, theirs, [rand(2, 5, 3, 8)], dtype=dtype)


@pytest.mark.parametrize("options", [{}, {"bias": False}, {"elementwise_affine": False}],
                         ids=["affine", "no-bias", "no-affine"])
def test_layernorm_gradcheck(options: dict[str, Any]) -> None:
    layer = nn.LayerNorm((2, 3), **options)
    for p in layer.parameters():
        p.data = rand(p.shape).astype(np.float32)
    check_layer_gradients(layer, rand(2, 2, 3))


def test_layernorm_parameters_follow_the_options() -> None:
    assert list(nn.LayerNorm(4).state_dict()) == ["weight", "bias"]
    assert list(nn.LayerNorm(4, bias=False).state_dict()) == ["weight"]
    assert list(nn.LayerNorm(4, elementwise_affine=False).state_dict()) == []
    assert nn.LayerNorm((2, 3)).weight.shape == (2, 3)


def test_layernorm_rejects_a_wrong_trailing_shape() -> None:
    layer = nn.LayerNorm((3, 8))
    with pytest.raises(ShapeError, match=r"LayerNorm\(\(3, 8\), eps=1e-05, elementwise_affine=True, bias=True\) "
                                         r"expected input ending in \(3, 8\), got shape \(2, 8, 3\)"):
        layer(sz.tensor(rand(2, 8, 3).astype(np.float32)))
    with pytest.raises(ShapeError, match=r"got shape \(8,\)"):
        layer(sz.tensor(rand(8).astype(np.float32)))


# ============================================================================ activations

ACTIVATIONS = [
    (lambda: nn.ReLU(), lambda: torch.nn.ReLU()),
    (lambda: nn.LeakyReLU(), lambda: torch.nn.LeakyReLU()),
    (lambda: nn.LeakyReLU(0.2), lambda: torch.nn.LeakyReLU(0.2)),
    (lambda: nn.Sigmoid(), lambda: torch.nn.Sigmoid()),
    (lambda: nn.Tanh(), lambda: torch.nn.Tanh()),
    (lambda: nn.GELU(), lambda: torch.nn.GELU()),
    (lambda: nn.GELU("tanh"), lambda: torch.nn.GELU("tanh")),
    (lambda: nn.SiLU(), lambda: torch.nn.SiLU()),
    (lambda: nn.Softmax(dim=-1), lambda: torch.nn.Softmax(dim=-1)),
    (lambda: nn.Softmax(dim=1), lambda: torch.nn.Softmax(dim=1)),
    (lambda: nn.Softmax(dim=0), lambda: torch.nn.Softmax(dim=0)),
]
ACTIVATION_IDS = ["relu", "leaky_relu", "leaky_relu-0.2", "sigmoid", "tanh", "gelu", "gelu-tanh", "silu",
                  "softmax-1", "softmax1", "softmax0"]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("ours, theirs", ACTIVATIONS, ids=ACTIVATION_IDS)
def test_activation_matches_torch(ours: Any, theirs: Any, dtype: Any) -> None:
    assert_matches_torch(ours(), theirs(), [rand(2, 3, 5) * 3], dtype=dtype)


def test_gelu_rejects_an_unknown_approximation() -> None:
    with pytest.raises(ValueError, match="GELU: approximate must be 'none' or 'tanh', got 'erf'"):
        nn.GELU("erf")


# ============================================================================ clear errors


def test_linear_names_itself_and_the_shapes_on_a_wrong_last_dim() -> None:
    with pytest.raises(ShapeError) as error:
        nn.Linear(64, 10)(sz.zeros(32, 63))
    assert str(error.value) == "Linear(64->10) expected input with last dim 64, got shape (32, 63)"
    assert isinstance(error.value, ValueError)


def test_linear_rejects_a_0d_input_and_a_non_tensor() -> None:
    with pytest.raises(ShapeError, match=r"Linear\(3->2\) expected input with last dim 3, got shape \(\)"):
        nn.Linear(3, 2)(sz.tensor(np.float32(1.0)))
    with pytest.raises(TypeError, match=r"Linear\(3->2\) expected a Tensor, got ndarray"):
        nn.Linear(3, 2)(np.zeros((1, 3), dtype=np.float32))


@pytest.mark.parametrize("layer, x", [
    (lambda: nn.Linear(4, 2), lambda dtype: rand(3, 4).astype(dtype)),
    (lambda: nn.LayerNorm(4), lambda dtype: rand(3, 4).astype(dtype)),
], ids=["linear", "layernorm"])
def test_mixing_float32_and_float64_names_the_layer_and_both_dtypes(layer: Any, x: Any) -> None:
    with pytest.raises(DTypeError) as error:
        layer()(sz.tensor(x(np.float64)))
    message = str(error.value)
    assert message.startswith(layer().describe()) and "float32 parameters" in message and "float64 input" in message
    with pytest.raises(DTypeError, match="float64 parameters but got float32 input"):
        layer().double()(sz.tensor(x(np.float32)))
    with pytest.raises(DTypeError, match="expected floating-point input, got int64"):
        layer()(sz.tensor(np.zeros((3, 4), dtype=np.int64)))


def test_layers_follow_the_input_dtype_after_a_cast() -> None:
    for layer, x in [(nn.Linear(4, 2), rand(3, 4)), (nn.LayerNorm(4), rand(3, 4)),
                     (nn.Embedding(5, 4), ids(3, high=5))]:
        assert layer.double()(sz.tensor(x)).dtype == np.float64
        assert layer.float()(sz.tensor(x if x.dtype.kind == "i" else x.astype(np.float32))).dtype == np.float32


def test_dropout_layer_gradcheck_with_the_mask_fixed_by_the_seed() -> None:
    layer = nn.Dropout(0.4)

    def fn(x):
        sz.manual_seed(7)  # the same mask on every call
        return layer(x)
    dropped = fn(sz.tensor(np.ones((3, 5)))).data == 0
    assert dropped.any() and not dropped.all()  # the mask both keeps and drops: the check is not trivial
    gradcheck(fn, [rand(3, 5)])
