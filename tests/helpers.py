"""The shared test helpers: PyTorch parity, finite-difference gradient checks, seeded inputs.

    from helpers import assert_matches_torch, gradcheck, rand

    assert_matches_torch(F.gelu, torch.nn.functional.gelu, [rand(2, 3)], dtype=np.float64,
                         kwargs={"approximate": "tanh"})
    assert_matches_torch(sz.nn.Linear(4, 3), torch.nn.Linear(4, 3), [rand(2, 4)])
    gradcheck(lambda a, b: a @ b, [rand(2, 3), rand(3, 4)])

`tests/conftest.py` puts this folder on sys.path (so any test below `tests/` can import it) and resets
the `rand` stream before each test, so a test draws the same numbers alone or in a full run.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

import scratchzoo as sz

# (rtol, atol) per dtype, as DESIGN.md fixes them: |ours - torch| <= atol + rtol * |torch|.
TOLERANCES = {np.dtype(np.float32): (1e-4, 1e-5), np.dtype(np.float64): (1e-9, 1e-9)}

UPSTREAM_SEED = 1234  # the upstream gradient (and gradcheck's weights) are drawn from this seed

_stream = np.random.default_rng(0)


# ============================================================================ random inputs


def reset_rand(seed: int = 0) -> None:
    """Restart the stream that `rand` draws from when given no seed (conftest does this per test)."""
    global _stream
    _stream = np.random.default_rng(seed)


def rand(*shape: Any, seed: int | None = None) -> np.ndarray:
    """A float64 array of standard-normal numbers: `rand(2, 3)` or `rand((2, 3))`; `rand()` is 0-d.

    Without `seed`, successive calls give different numbers from a per-test stream; with `seed`,
    the array depends on the seed and shape only. Cast happens in the helpers (`dtype=`).
    """
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    rng = _stream if seed is None else np.random.default_rng(seed)
    return np.asarray(rng.standard_normal(shape), dtype=np.float64)


def randomize_(module: torch.nn.Module, scale: float = 1.0) -> torch.nn.Module:
    """Fill every parameter of a torch module with `scale * rand(...)`, in place: torch's default ones (LayerNorm)
    and zeros (biases) could hide a wrong gradient in the module compared against it."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.from_numpy(rand(tuple(p.shape))) * scale)
    return module


# ============================================================================ comparing arrays


def _max_diff_message(what: str, actual: np.ndarray, expected: np.ndarray, bad: np.ndarray,
                      rtol: float, atol: float) -> str:
    diff = np.abs(actual - expected)
    diff = np.where(np.isnan(diff), np.inf, diff)
    worst = np.unravel_index(np.argmax(np.where(bad, diff, -1.0)), actual.shape) if actual.ndim else ()
    rel = diff[worst] / max(float(np.abs(expected[worst])), 1e-300)
    return (f"{what}: {int(bad.sum())} of {bad.size} elements differ (rtol={rtol:g}, atol={atol:g}); "
            f"max abs diff {float(np.max(np.where(bad, diff, 0))):.3g} at index {tuple(int(i) for i in worst)}: "
            f"ours {actual[worst].item()!r}, reference {expected[worst].item()!r} (rel diff {rel:.3g})")



def assert_close(what: str, actual: Any, expected: Any, rtol: float, atol: float) -> None:
    """|actual - expected| <= atol + rtol * |expected| elementwise; NaN matches NaN, inf matches inf.

    `what` names the thing compared ("output[1]", "grad of input[0]") for the failure message.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape} differs from the reference's {expected.shape}")
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    with np.errstate(invalid="ignore"):
        same = (a == e) | (np.isnan(a) & np.isnan(e))
        bad = ~same & ~(np.abs(a - e) <= atol + rtol * np.abs(e))
    if bad.any():
        raise AssertionError(_max_diff_message(what, a, e, bad, rtol, atol))


def _tolerances(dtype: np.dtype, rtol: float | None, atol: float | None) -> tuple[float, float]:
    if dtype not in TOLERANCES:
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    default_rtol, default_atol = TOLERANCES[dtype]
    return (default_rtol if rtol is None else rtol), (default_atol if atol is None else atol)


# ============================================================================ outputs


def _flatten(out: Any) -> list[Any]:
    """Leaves of nested tuples/lists (named tuples such as max's (values, indices) included)."""
    if isinstance(out, (tuple, list)):
        return [leaf for item in out for leaf in _flatten(item)]
    return [out]


def _as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, sz.Tensor):
        return value.data
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _is_float(array: np.ndarray) -> bool:
    return array.dtype.kind == "f"


def _compare_output(what: str, ours: Any, theirs: Any, dtype: np.dtype, rtol: float, atol: float) -> None:
    a, t = _as_numpy(ours), _as_numpy(theirs)
    if _is_float(a) != _is_float(t):
        raise AssertionError(f"{what}: dtype {a.dtype} but torch's is {t.dtype}")
    if _is_float(a):
        if isinstance(ours, sz.Tensor) and ours.dtype != dtype:
            raise AssertionError(f"{what}: dtype {ours.dtype}, expected {dtype}")
        assert_close(what, a, t, rtol, atol)
        return
    if a.shape != t.shape:
        raise AssertionError(f"{what}: shape {a.shape} differs from torch's {t.shape}")
    if isinstance(ours, sz.Tensor) and isinstance(theirs, torch.Tensor) and a.dtype != t.dtype:
        raise AssertionError(f"{what}: dtype {a.dtype} differs from torch's {t.dtype}")
    if not np.array_equal(a, t):
        wrong = np.argwhere(a != t) if a.ndim else np.zeros((1, 0), dtype=int)
        first = tuple(int(i) for i in wrong[0])
        raise AssertionError(f"{what}: {len(wrong)} of {a.size} values differ; first at {first}: "
                             f"ours {a[first].item()!r}, torch {t[first].item()!r}")


def _compare_grads(what: str, ours: np.ndarray | None, theirs: Any, dtype: np.dtype, rtol: float,
                   atol: float) -> None:
    """None on one side matches an all-zero gradient on the other (an input that did not matter)."""
    theirs = None if theirs is None else _as_numpy(theirs)
    if ours is None and theirs is None:
        return
    if ours is None:
        if np.any(theirs != 0):
            raise AssertionError(f"{what}: ours is None, torch's is nonzero (max |g| {np.abs(theirs).max():.3g})")
        return
    if ours.dtype != dtype:
        raise AssertionError(f"{what}: dtype {ours.dtype}, expected {dtype}")
    if theirs is None:
        if np.any(ours != 0):
            raise AssertionError(f"{what}: torch's is None, ours is nonzero (max |g| {np.abs(ours).max():.3g})")
        return
    assert_close(what, ours, theirs, rtol, atol)


def _upstream_grads(upstream: Any, shapes: list[tuple[int, ...]], dtype: np.dtype) -> list[np.ndarray]:
    """One upstream gradient per differentiable output: given, or seeded standard normal."""
    if upstream is None:
        rng = np.random.default_rng(UPSTREAM_SEED)
        return [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    given = [upstream] if not isinstance(upstream, (list, tuple)) else list(upstream)
    if len(given) != len(shapes):
        raise ValueError(f"upstream: {len(given)} gradients for {len(shapes)} differentiable outputs")
    grads = []
    for i, (g, shape) in enumerate(zip(given, shapes)):
        g = np.asarray(g, dtype=dtype)
        if g.shape != shape:
            raise ValueError(f"upstream[{i}]: shape {g.shape}, but the output has shape {shape}")
        grads.append(g)
    return grads


# ============================================================================ inputs


def _normalize(inputs: Sequence[Any]) -> list[Any]:
    """NumPy scalars (what arithmetic on 0-d arrays gives) count as 0-d arrays."""
    return [np.asarray(x) if isinstance(x, np.generic) else x for x in inputs]


def _wants_grad(inputs: Sequence[Any], requires_grad: Sequence[bool] | None) -> list[bool]:
    floats = [isinstance(x, np.ndarray) and x.dtype.kind == "f" for x in inputs]
    if requires_grad is None:
        return floats
    if len(requires_grad) != len(inputs):
        raise ValueError(f"requires_grad: {len(requires_grad)} flags for {len(inputs)} inputs")
    for i, (flag, is_float) in enumerate(zip(requires_grad, floats)):
        if flag and not is_float:
            raise ValueError(f"requires_grad[{i}]: only float arrays can require grad")
    return [bool(flag) for flag in requires_grad]


def _make_inputs(inputs: Sequence[Any], dtype: np.dtype, wants: list[bool]) -> tuple[list[Any], list[Any]]:
    """Float arrays -> tensors of `dtype` on both sides; int/bool arrays as they are; anything else
    (Python numbers, None, tuples) is passed unchanged to both functions."""
    ours, theirs = [], []
    for x, wanted in zip(inputs, wants):
        if isinstance(x, np.ndarray) and x.dtype.kind == "f":
            x = x.astype(dtype)
            ours.append(sz.Tensor(x.copy(), requires_grad=wanted))
            theirs.append(torch.tensor(x, requires_grad=wanted))
        elif isinstance(x, np.ndarray):
            ours.append(sz.Tensor(x.copy()))
            theirs.append(torch.from_numpy(x.copy()))
        else:
            ours.append(x)
            theirs.append(x)
    return ours, theirs


# ============================================================================ modules


def _is_module(obj: Any) -> bool:
    return hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict") and hasattr(obj, "named_parameters")


def _prepare_modules(ours: Any, theirs: torch.nn.Module, dtype: np.dtype) -> None:
    """Cast both to `dtype`, copy torch's state dict into ours (interchange), clear old gradients."""
    if not isinstance(theirs, torch.nn.Module):
        raise TypeError(f"ours is a module, so theirs must be a torch.nn.Module, got {type(theirs).__name__}")
    if hasattr(ours, "training") and ours.training != theirs.training:
        raise AssertionError(f"modes differ: ours training={ours.training}, torch training={theirs.training}")
    ours.double() if dtype == np.float64 else ours.float()
    theirs.double() if dtype == np.float64 else theirs.float()
    their_state = {name: value.detach().cpu().numpy().copy() for name, value in theirs.state_dict().items()}
    our_state = ours.state_dict()
    missing = sorted(set(their_state) - set(our_state))
    extra = sorted(set(our_state) - set(their_state))
    if missing or extra:
        raise AssertionError(f"state_dict keys differ from torch's: missing {missing}, not in torch {extra}")
    shapes = [f"{name}: ours {np.shape(our_state[name])}, torch {value.shape}"
              for name, value in their_state.items() if np.shape(our_state[name]) != value.shape]
    if shapes:
        raise AssertionError("state_dict shapes differ from torch's: " + "; ".join(shapes))
    ours.load_state_dict(their_state)
    for name, value in ours.state_dict().items():
        value = np.asarray(value)
        if value.dtype.kind == "f" and value.dtype != dtype:
            raise AssertionError(f"state_dict[{name!r}]: dtype {value.dtype} after .to({dtype}), expected {dtype}")
        if not np.array_equal(value, their_state[name]):
            raise AssertionError(f"state_dict[{name!r}]: load_state_dict did not copy torch's values")
    for _, param in ours.named_parameters():
        param.grad = None
    theirs.zero_grad(set_to_none=True)


# ============================================================================ the parity helper


def assert_matches_torch(ours: Callable[..., Any], theirs: Callable[..., Any], inputs: Sequence[Any],
                         dtype: Any = np.float32, upstream: Any = None, atol: float | None = None,
                         rtol: float | None = None, kwargs: dict[str, Any] | None = None,
                         check_params: bool = True, requires_grad: Sequence[bool] | None = None) -> None:
    """Run `ours` (scratchzoo function or nn.Module) and `theirs` (its PyTorch counterpart) on the same
    inputs; compare outputs, then backward with the same upstream gradient and compare the gradients.

    inputs: NumPy arrays. Float arrays are cast to `dtype` and require grad on both sides (unless
        `requires_grad`, one flag per input, says otherwise, e.g. for a target that our op treats as
        a constant); int/bool arrays become integer/bool tensors; other values pass through as-is.
    Modules: both are cast to `dtype`, torch's state dict is loaded into ours (so the test proves
        the two interchange), and with `check_params` every parameter gradient is compared by name.
    Outputs may be nested tuples/lists; float outputs must have dtype `dtype` and match within
        rtol/atol (float32: 1e-4/1e-5, float64: 1e-9/1e-9 unless given); other outputs match exactly.
    upstream: the gradient for the float outputs (an array, or a list with one per output);
        default a seeded standard normal. kwargs: passed to both callables.
    """
    dtype = np.dtype(dtype)
    rtol, atol = _tolerances(dtype, rtol, atol)
    kwargs = kwargs or {}
    is_module = _is_module(ours)
    if is_module:
        _prepare_modules(ours, theirs, dtype)
    inputs = _normalize(inputs)
    wants = _wants_grad(inputs, requires_grad)
    our_inputs, their_inputs = _make_inputs(inputs, dtype, wants)

    our_outs = _flatten(ours(*our_inputs, **kwargs))
    their_outs = _flatten(theirs(*their_inputs, **kwargs))
    if len(our_outs) != len(their_outs):
        raise AssertionError(f"ours returned {len(our_outs)} outputs, torch {len(their_outs)}")
    single = len(our_outs) == 1
    differentiable = []
    for i, (o, t) in enumerate(zip(our_outs, their_outs)):
        what = "output" if single else f"output[{i}]"
        _compare_output(what, o, t, dtype, rtol, atol)
        if isinstance(t, torch.Tensor) and t.requires_grad:
            if not (isinstance(o, sz.Tensor) and o.requires_grad):
                raise AssertionError(f"{what}: torch's requires grad, ours does not (graph not recorded)")
            differentiable.append((o, t))
        elif isinstance(o, sz.Tensor) and o.requires_grad:
            raise AssertionError(f"{what}: ours requires grad, torch's does not")

    if not differentiable:
        return
    grads = _upstream_grads(upstream, [tuple(t.shape) for _, t in differentiable], dtype)
    for (o, _), g in zip(differentiable, grads):
        o.backward(g)
    torch.autograd.backward([t for _, t in differentiable], [torch.from_numpy(g) for g in grads])

    for i, (o, t, wanted) in enumerate(zip(our_inputs, their_inputs, wants)):
        if wanted:
            _compare_grads(f"grad of input[{i}]", o.grad, t.grad, dtype, rtol, atol)
    if is_module and check_params:
        their_params = dict(theirs.named_parameters())
        our_params = dict(ours.named_parameters())
        if set(our_params) != set(their_params):
            raise AssertionError(f"named_parameters differ: ours {sorted(our_params)}, torch {sorted(their_params)}")
        for name, param in our_params.items():
            _compare_grads(f"grad of parameter {name!r}", param.grad, their_params[name].grad, dtype, rtol, atol)


# ============================================================================ finite differences


def gradcheck(fn: Callable[..., Any], inputs: Sequence[Any], eps: float = 1e-6, atol: float = 1e-6,
              rtol: float = 1e-5, requires_grad: Sequence[bool] | None = None) -> None:
    """Compare the engine's gradients with float64 central differences.

    The scalar checked is L = sum_k sum(out_k * w_k) over the float outputs of `fn(*inputs)`, with
    fixed random weights w_k (so every output element and every gradient entry matters). For every
    float input (or those flagged in `requires_grad`) and each of its elements,
    dL/dx ~ (L(x + eps) - L(x - eps)) / (2 eps) must match the engine's x.grad within atol + rtol*|fd|.
    Inputs are handled as in `assert_matches_torch` (floats become float64; others pass through).
    """
    inputs = _normalize(inputs)
    wants = _wants_grad(inputs, requires_grad)
    tensors, _ = _make_inputs(inputs, np.dtype(np.float64), wants)
    outs = [o for o in _flatten(fn(*tensors)) if isinstance(o, sz.Tensor) and o.dtype.kind == "f"]
    if not outs:
        raise AssertionError("gradcheck: fn returned no float tensor")
    for k, o in enumerate(outs):
        if o.dtype != np.float64:
            raise AssertionError(f"gradcheck: output[{k}] has dtype {o.dtype} for float64 inputs")
    rng = np.random.default_rng(UPSTREAM_SEED)
    weights = [rng.standard_normal(o.shape) for o in outs]
    for o, w in zip(outs, weights):
        if o.requires_grad:
            o.backward(w)

    def objective() -> float:
        with sz.no_grad():
            values = [o for o in _flatten(fn(*tensors)) if isinstance(o, sz.Tensor) and o.dtype.kind == "f"]
            return float(sum(np.sum(v.data * w) for v, w in zip(values, weights)))

    for i, (t, wanted) in enumerate(zip(tensors, wants)):
        if not wanted:
            continue
        analytic = np.zeros(t.shape) if t.grad is None else t.grad
        if analytic.dtype != np.float64 or analytic.shape != t.shape:
            raise AssertionError(f"gradcheck: grad of input[{i}] has {analytic.dtype} {analytic.shape}, "
                                 f"expected float64 {t.shape}")
        numeric = np.zeros(t.shape)
        flat = t.data.reshape(-1)  # a view: perturbing it perturbs the input
        assert np.shares_memory(flat, t.data)
        for j in range(flat.size):
            original = flat[j]
            flat[j] = original + eps
            plus = objective()
            flat[j] = original - eps
            minus = objective()
            flat[j] = original
            numeric.flat[j] = (plus - minus) / (2 * eps)
        assert_close(f"gradcheck: engine grad of input[{i}] vs finite differences", analytic, numeric, rtol, atol)


class SimulatedCrash(Exception):
    """Stands in for a killed process."""


def crash_at_step(monkeypatch, step: int) -> None:
    """Make training die during `step` (1-based): the step-th training call of cross_entropy (reduction
    'mean') raises after that step's forward pass and before anything is saved, as a kill at that moment
    would. Evaluation losses with other reductions pass through."""
    from scratchzoo import losses
    calls = []
    real = losses.cross_entropy

    def dying(*args, **kwargs):
        if kwargs.get("reduction", "mean") == "mean":
            calls.append(1)
            if len(calls) == step:
                raise SimulatedCrash(f"killed during step {step}")
        return real(*args, **kwargs)

    monkeypatch.setattr(losses, "cross_entropy", dying)


def record_losses(monkeypatch, owner: Any, name: str, into: list[float] | None = None,
                  training_only: bool = False) -> list[float]:
    """Wrap the loss function (or method) `owner.name` so that every loss it returns is appended to `into`
    (a new list by default), which is returned: a test then asserts that training lowered the loss.
    training_only: record only calls with the default reduction 'mean' (not the summed evaluation losses)."""
    seen = [] if into is None else into
    real = getattr(owner, name)

    def recording(*args, **kwargs):
        loss = real(*args, **kwargs)
        if not training_only or kwargs.get("reduction", "mean") == "mean":
            seen.append(loss.item())
        return loss

    monkeypatch.setattr(owner, name, recording)
    return seen
