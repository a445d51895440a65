"""Misuse of ops, losses and tensor helpers gives a clear error naming the op, the expected and the given
(not a NumPy message from deep inside the engine), and array-likes are accepted where a tensor is."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

import scratchzoo as sz
from scratchzoo import functional as F
from scratchzoo.autograd import DTypeError, ShapeError, Tensor
from scratchzoo.functional.routing import softplus


def T(*shape: int) -> Tensor:
    return Tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))


def ints(*shape: int) -> Tensor:
    return Tensor(np.ones(shape, np.int64))


NUMERIC = r"must be numeric \(a number, a sequence of numbers, an array or a tensor\)"

ERRORS = [
    # 1. a 0-d input has no class dim
    ("cross_entropy 0-d", lambda: F.cross_entropy(Tensor(np.float32(1)), np.array(0)), ShapeError,
     r"cross_entropy: input needs a class dim, \(C,\), \(N, C\) or \(N, C, d1, \.\.\.\), got a 0-d tensor"),
    ("cross_entropy 0-d probabilities", lambda: F.cross_entropy(Tensor(np.float32(1)), np.float32(1)), ShapeError,
     r"cross_entropy: input needs a class dim.*0-d"),
    ("nll_loss 0-d", lambda: F.nll_loss(Tensor(np.float32(1)), np.array(0)), ShapeError,
     r"nll_loss: input needs a class dim.*got a 0-d tensor"),
    # 2. nll_loss needs floating-point log-probabilities
    ("nll_loss int input", lambda: F.nll_loss(ints(2, 3), [0, 1]), DTypeError,
     r"nll_loss: needs a floating-point input, got int64"),
    ("cross_entropy int input", lambda: F.cross_entropy(ints(2, 3), [0, 1]), DTypeError,
     r"cross_entropy: needs a floating-point input, got int64"),
    ("bce int input", lambda: F.binary_cross_entropy_with_logits(ints(2), [0.0, 1.0]), DTypeError,
     r"binary_cross_entropy_with_logits: needs a floating-point input, got int64"),
    ("cross_entropy string input", lambda: F.cross_entropy("ab", [0]), DTypeError,
     rf"cross_entropy: operand {NUMERIC}, got str"),
    # 4. a target that is not numeric
    ("mse_loss string target", lambda: F.mse_loss(T(4), "abc"), DTypeError, rf"mse_loss: target {NUMERIC}, got str$"),
    ("l1_loss None target", lambda: F.l1_loss(T(4), None), DTypeError, rf"l1_loss: target {NUMERIC}, got NoneType"),
    ("cross_entropy string target", lambda: F.cross_entropy(T(4, 3), "abcd"), DTypeError,
     rf"cross_entropy: target {NUMERIC}, got str$"),
    ("bce string array target", lambda: F.binary_cross_entropy_with_logits(T(2), np.array(["a", "b"])), DTypeError,
     rf"binary_cross_entropy_with_logits: target {NUMERIC}, got ndarray of dtype <U1"),
    # 5. layer_norm's weight and bias have exactly normalized_shape
    ("layer_norm weight (1,)", lambda: F.layer_norm(T(2, 8), (8,), weight=T(1)), ShapeError,
     r"layer_norm: weight must have normalized_shape \(8,\), got shape \(1,\)"),
    ("layer_norm weight (3,)", lambda: F.layer_norm(T(2, 8), (8,), weight=T(3)), ShapeError,
     r"layer_norm: weight must have normalized_shape \(8,\), got shape \(3,\)"),
    ("layer_norm bias (2, 8)", lambda: F.layer_norm(T(2, 8), (8,), bias=T(2, 8)), ShapeError,
     r"layer_norm: bias must have normalized_shape \(8,\), got shape \(2, 8\)"),
    ("layer_norm 2-D shape", lambda: F.layer_norm(T(2, 3, 4), (3, 4), weight=T(4)), ShapeError,
     r"layer_norm: weight must have normalized_shape \(3, 4\), got shape \(4,\)"),
    # 6. dtype errors name the public op, not the Function class behind it
    ("layer_norm int", lambda: F.layer_norm(ints(2, 8), (8,)), DTypeError,
     r"^layer_norm: needs a floating-point tensor, got int64"),
    ("relu int", lambda: F.relu(ints(2, 3)), DTypeError, r"^relu: needs a floating-point tensor, got int64"),
    ("leaky_relu int", lambda: F.leaky_relu(ints(2)), DTypeError, r"^leaky_relu: needs a floating-point tensor"),
    ("dropout int", lambda: F.dropout(ints(2), 0.5), DTypeError, r"^dropout: needs a floating-point tensor"),
    ("softplus int", lambda: softplus(ints(2)), DTypeError, r"^softplus: needs a floating-point"),
    # 7. matmul's batch dims broadcast
    ("matmul batch dims", lambda: T(2, 3, 4) @ T(3, 4, 5), ShapeError,
     r"matmul: shapes \(2, 3, 4\) and \(3, 4, 5\) cannot be multiplied "
     r"\(batch dims \(2,\) and \(3,\) do not broadcast\)"),
    ("matmul 4-D batch dims", lambda: T(2, 3, 1, 4) @ T(4, 4, 5), ShapeError, r"batch dims \(2, 3\) and \(4,\)"),
    # 8. operands that are not numbers
    ("add None", lambda: T(2) + None, DTypeError, rf"^add: operand {NUMERIC}, got NoneType$"),
    ("mul None", lambda: T(2) * None, DTypeError, rf"^mul: operand {NUMERIC}, got NoneType$"),
    ("radd None", lambda: None + T(2), DTypeError, rf"^add: operand {NUMERIC}, got NoneType$"),
    ("mul string", lambda: T(2) * "a", DTypeError, rf"^mul: operand {NUMERIC}, got str$"),
    ("sub object", lambda: T(2) - object(), DTypeError, rf"^sub: operand {NUMERIC}, got object$"),
    ("div string array", lambda: T(2) / np.array(["a", "b"]), DTypeError, r"^div: .*got ndarray of dtype <U1$"),
    ("matmul None", lambda: F.matmul(T(2, 2), None), DTypeError, rf"^matmul: operand {NUMERIC}, got NoneType$"),
    ("exp string", lambda: F.exp("a"), DTypeError, rf"^exp: operand {NUMERIC}, got str$"),
    # 9. var needs floats, as torch.var
    ("var int", lambda: F.var(Tensor(np.ones(3, np.int64))), DTypeError,
     r"^var: needs a floating-point tensor, got int64"),
    ("std int", lambda: Tensor(np.ones(3, np.int64)).std(), DTypeError, r"^var: needs a floating-point tensor"),
    # 10. embedding weight is (num_embeddings, embedding_dim)
    ("embedding 1-D weight", lambda: F.embedding(np.array([0, 1]), T(4)), ShapeError,
     r"embedding: weight must be 2-D \(num_embeddings, embedding_dim\), got shape \(4,\)"),
    ("embedding 3-D weight", lambda: F.embedding(np.array([0, 1]), T(4, 2, 2)), ShapeError,
     r"embedding: weight must be 2-D.*got shape \(4, 2, 2\)"),
    # 11. tensor helpers
    ("item of many", lambda: T(2, 3).item(), ShapeError,
     r"item: a Tensor with 6 elements \(shape \(2, 3\)\) cannot be converted to Scalar"),
    ("size dim too big", lambda: T(2, 3).size(5), IndexError,
     r"size: dim 5 out of range for a tensor with 2 dims \(expected a dim in \[-2, 1\]\)"),
    ("size dim too small", lambda: T(2, 3).size(-3), IndexError, r"size: dim -3 out of range"),
    ("size of 0-d", lambda: T().size(0), IndexError, r"size: a 0-d tensor has no dims, got dim 0"),
    ("tensor ragged", lambda: sz.tensor([[1, 2], [3]]), ShapeError,
     r"tensor: nested sequences must be rectangular \(the same length at each depth\), got \[\[1, 2\], \[3\]\]"),
    ("tensor None", lambda: sz.tensor(None), DTypeError, rf"tensor: data {NUMERIC}, got NoneType"),
    ("tensor strings", lambda: sz.tensor(["a", "b"]), DTypeError, rf"tensor: data {NUMERIC}, got list"),
    ("zeros negative", lambda: sz.zeros(-1, 3), ShapeError, r"zeros: sizes must be non-negative ints, got \(-1, 3\)"),
    ("ones negative", lambda: sz.ones((2, -4)), ShapeError, r"ones: sizes must be non-negative ints, got \(2, -4\)"),
    ("zeros float size", lambda: sz.zeros(2.5), ShapeError, r"zeros: sizes must be non-negative ints, got \(2\.5,\)"),
    # 12. causal_mask sizes
    ("causal_mask negative tq", lambda: F.causal_mask(-1, 3), ShapeError,
     r"causal_mask: tq, tk and past must be non-negative ints, got \(-1, 3, 0\)"),
    ("causal_mask negative past", lambda: F.causal_mask(2, 3, past=-1), ShapeError, r"got \(2, 3, -1\)"),
]


@pytest.mark.parametrize("make, error, pattern", [pytest.param(*e[1:], id=e[0]) for e in ERRORS])
def test_clear_errors(make: Callable[[], Any], error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        make()


def test_error_classes_follow_the_house_rule() -> None:
    """Shape problems are ValueErrors and type problems TypeErrors, as the builtins' users expect."""
    with pytest.raises(ValueError):
        T(2, 3).item()
    with pytest.raises(TypeError):
        T(2) + None


@pytest.mark.parametrize("loss, input, target", [
    (F.cross_entropy, np.zeros((4, 3), np.float32), np.array([0, 1, 2, 1])),
    (F.cross_entropy, [[0.1, 0.2], [0.3, -0.1]], [0, 1]),
    (F.cross_entropy, [[0.1, 0.2], [0.3, -0.1]], [[0.5, 0.5], [1.0, 0.0]]),
    (F.nll_loss, [[-0.1, -2.0], [-1.5, -0.3]], [0, 1]),
    (F.binary_cross_entropy_with_logits, np.zeros(4, np.float32), np.zeros(4, np.float32)),
    (F.mse_loss, [1.0, 2.0], [0.5, 2.5]),
    (F.l1_loss, np.array([1.0, 2.0]), [0.5, 2.5]),
])
def test_losses_accept_array_likes(loss: Callable[..., Tensor], input: Any, target: Any) -> None:
    """An array or nested list is wrapped in a tensor (its dtype kept; Python floats become float32)."""
    expected = loss(sz.tensor(input) if not isinstance(input, np.ndarray) else Tensor(input), target)
    got = loss(input, target)
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got.data, expected.data)


def test_what_still_works() -> None:
    """The checks reject only what was broken: broadcasting batch dims, exact affine shapes, empty masks."""
    assert (T(2, 1, 3, 4) @ T(5, 4, 6)).shape == (2, 5, 3, 6)
    assert (T(4) @ T(2, 4, 5)).shape == (2, 5)
    x, w, b = T(2, 3, 4), T(3, 4), T(3, 4)
    np.testing.assert_allclose(F.layer_norm(x, (3, 4), w, b).data,
                               (F.layer_norm(x, (3, 4)) * w + b).data, rtol=1e-6)
    assert F.causal_mask(0, 0).shape == (0, 0) and F.causal_mask(2, 4, past=3).all()
    assert sz.zeros(0, 3).shape == (0, 3) and T(2, 3).size(-1) == 3 and T(1, 1).item() == T(1, 1).data[0, 0]
    assert (T(2) * 0.5).dtype == np.float32 and (Tensor(np.ones(2)) * 0.1).data[0] == 0.1  # float64 keeps 0.1
    assert (T(2) + True).dtype == np.float32  # bools are numbers
