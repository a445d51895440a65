"""The Optimizer base class: parameter groups, per-parameter state, and state dicts as in PyTorch.

A subclass writes `check_options()` (its hyperparameters' types and ranges, with the shared
`check_option`) and `step()`: for every group, for every parameter with a gradient (walked through
`params_with_grad`, which checks each grad's shape and dtype), update `p.data` in place from `p.grad`
and `self.state[p]`. Updates are on the arrays (`p.data -= ...`), so
parameters stay the same objects that the model holds, and float32 stays float32 (scalars are Python
floats, which never upcast an array under NumPy 2's promotion rules).
"""
from __future__ import annotations

import copy
import inspect
import math
import numbers
from collections import abc
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from scratchzoo.autograd import DTypeError, ShapeError, Tensor
from scratchzoo.nn.module import Module, StateDictError


class ParamGroupError(StateDictError):
    """A parameter group (a dict, as in a state dict's 'param_groups') without its 'params' key."""


def check_option(owner: str, option: str, value: Any, low: float = -math.inf, high: float = math.inf, *,
                 low_inclusive: bool = True, high_inclusive: bool = False, integer: bool = False) -> None:
    """Refuse a hyperparameter that is not a real number (an int if `integer`) between low and high.

    TypeError for the wrong kind of value ('0.1', None), ValueError for one out of range (or NaN);
    both messages name the owner (optimizer or scheduler), the option, what it takes and what it got.
    """
    kind = "an integer" if integer else "a real number"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if integer else numbers.Real):
        raise TypeError(f"{owner}: {option} must be {kind}, got {type(value).__name__} {value!r}")
    above = low <= value if low_inclusive else low < value
    below = value <= high if high_inclusive else value < high
    if not (above and below):
        if high == math.inf:
            bounds = "" if low == -math.inf else f" {'>=' if low_inclusive else '>'} {low:g}"
        else:
            bounds = f" in {'[' if low_inclusive else '('}{low:g}, {high:g}{']' if high_inclusive else ')'}"
        raise ValueError(f"{owner}: {option} must be {kind}{bounds}, got {value!r}")


def _expected_params(owner: str, given: str) -> TypeError:
    return TypeError(f"{owner} expects an iterable of Parameters or param-group dicts (e.g. model.parameters()), "
                     f"got {given}")


def _as_list(owner: str, items: Any) -> list[Any]:
    """list(items), or a clear error for a non-iterable (a model, or the unbound `model.parameters`)."""
    if not isinstance(items, abc.Iterable):
        hint = ("; call it: model.parameters()" if inspect.ismethod(items)
                else "; pass model.parameters()" if isinstance(items, Module) else "")
        raise _expected_params(owner, f"{type(items).__name__}{hint}")
    return list(items)


class Optimizer:
    """Holds `param_groups` (a list of dicts: 'params' plus options such as 'lr') and `state[param]`.

    `params` is an iterable of tensors (one group that takes `defaults`) or of dicts (one group
    each; options a dict leaves out come from `defaults`), as in `torch.optim.Optimizer`.
    """

    # Options of the torch counterpart that this optimizer implements at one value only (Adam's
    # amsgrad=False, ...). `load_state_dict` refuses a group that sets one to another value: stepping
    # on would silently run a different algorithm. torch's options that only choose an implementation
    # (foreach, fused, capturable, differentiable) change no number, so they load with any value.
    fixed_options: dict[str, Any] = {}

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], defaults: dict[str, Any]):
        name = type(self).__name__
        self.check_options(defaults, name)
        if isinstance(params, (Tensor, dict)):
            raise _expected_params(name, f"a single {type(params).__name__}; wrap it in a list")
        self.defaults = defaults
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Tensor, dict[str, Any]] = {}
        groups = _as_list(name, params)
        if not groups:
            raise ValueError(f"{name} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def check_options(self, options: dict[str, Any], owner: str) -> None:
        """Check the types and ranges of a group's options with `check_option` (subclasses: theirs).

        Called for the defaults, for every added group and for every loaded group, so a bad value is
        refused where it is given, not as a NumPy error at some later step.
        """

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Append a group; options it leaves out take the optimizer's defaults."""
        name = type(self).__name__
        where = f"{name} parameter group {len(self.param_groups)}"
        if not isinstance(param_group, dict):
            raise TypeError(f"{where} must be a dict with a 'params' key, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ParamGroupError(f"{where} has no 'params' key (a group is {{'params': [tensors], 'lr': ...}}), "
                                  f"got keys {sorted(map(str, param_group))}")
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else _as_list(where, params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise _expected_params(where, f"{type(p).__name__} at position {i}")
            if not p.is_leaf:  # as torch: its update would be lost, the next forward recomputes it
                raise ValueError(f"{where}: can't optimize a non-leaf Tensor (position {i}, computed by "
                                 f"{type(p._ctx).__name__}); pass the leaf it comes from, "
                                 "or t.detach().requires_grad_()")
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        if any(id(p) in seen for p in params) or len({id(p) for p in params}) != len(params):
            raise ValueError("some parameters appear in more than one parameter group (or twice in one)")
        group = {**self.defaults, **param_group, "params": params}
        self.check_options(group, where)
        self.param_groups.append(group)

    def params_with_grad(self, group: dict[str, Any]) -> Iterator[Tensor]:
        """The group's parameters that have a gradient, each grad checked against its parameter's shape
        and dtype (one comparison each, no copy): a wrong grad would otherwise broadcast silently into
        the update, or fail deep inside NumPy. Every `step()` walks its parameters through this."""
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            if grad.shape != p.data.shape or grad.dtype != p.data.dtype:
                raise self._grad_mismatch(p)
            yield p

    def _grad_mismatch(self, p: Tensor) -> Exception:
        params = [q for group in self.param_groups for q in group["params"]]
        index = next(i for i, q in enumerate(params) if q is p)  # as in state_dict()
        where = f"{type(self).__name__}.step(): parameter {index}"
        if p.grad.shape != p.data.shape:
            return ShapeError(f"{where} has shape {p.data.shape}, but its grad has shape {p.grad.shape}")
        return DTypeError(f"{where} is {p.data.dtype}, but its grad is {p.grad.dtype}")

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: `grad = None` (the default, as torch), or zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        raise NotImplementedError

    # ---- state dicts -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A snapshot in torch's layout: parameters become their index in the order of the groups.

        {'state': {index: {name: array or number}}, 'param_groups': [{options..., 'params': [indices]}]}.
        Arrays are copied, so stepping on afterwards never changes a saved dict.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index[id(p)] = len(index)
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {index[id(p)]: copy.deepcopy(s) for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore options and state from `state_dict()` (ours, or torch's with tensors as arrays).

        Arrays are copied into each parameter's dtype; 'step' becomes a Python int (torch keeps it
        as a float tensor), as torch's own loader special-cases 'step'. Everything is checked before
        anything changes: group and parameter counts, options this optimizer does not implement
        (`fixed_options`), and each state array's shape against its parameter's.
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict):
            raise TypeError(f"{name}.load_state_dict expects a dict from optimizer.state_dict(), "
                            f"got {type(state_dict).__name__}")
        if not {"state", "param_groups"} <= state_dict.keys():
            raise StateDictError(f"{name}.load_state_dict expects an optimizer state dict with keys 'state' and "
                                 f"'param_groups' (from optimizer.state_dict(); a model's goes to "
                                 f"model.load_state_dict), got keys {sorted(map(str, state_dict))[:8]}")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}: loaded state dict has {len(saved_groups)} parameter group(s), "
                             f"but the optimizer has {len(self.param_groups)}")
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if "params" not in saved:
                raise ParamGroupError(f"{name}: parameter group {i} of the loaded state dict has no 'params' key, "
                                      f"got keys {sorted(map(str, saved))}")
            if len(group["params"]) != len(saved["params"]):
                raise ValueError(f"{name}: parameter group {i}: loaded state dict has {len(saved['params'])} "
                                 f"parameter(s), but the optimizer's group has {len(group['params'])}")
            for option, supported in self.fixed_options.items():
                if option in saved and saved[option] != supported:
                    raise ValueError(f"{name}: parameter group {i} of the loaded state dict sets "
                                     f"{option}={saved[option]!r}, which {name} does not implement "
                                     f"(only {option}={supported!r})")
            self.check_options({**group, **saved}, f"{name} loaded parameter group {i}")
        by_index = {int(saved_index): p for group, saved in zip(self.param_groups, saved_groups)
                    for saved_index, p in zip(saved["params"], group["params"])}
        state = {}
        for saved_index, saved_state in state_dict["state"].items():
            if int(saved_index) not in by_index:
                raise KeyError(f"{name}: loaded state dict has state for parameter {saved_index}, "
                               f"but its param_groups list only {sorted(by_index)}")
            p = by_index[int(saved_index)]
            for key, value in saved_state.items():
                if key != "step" and isinstance(value, np.ndarray) and value.shape != p.shape:
                    raise ShapeError(f"{name}: state {key!r} of parameter {saved_index} has shape {value.shape}, "
                                     f"but the parameter has shape {p.shape}")
            state[p] = {key: _load_value(key, value, p) for key, value in saved_state.items()}
        self.state = state
        for group, saved in zip(self.param_groups, saved_groups):
            group.update({k: v for k, v in saved.items() if k != "params"})


def _load_value(name: str, value: Any, param: Tensor) -> Any:
    if name == "step":
        return int(np.asarray(value).item())
    if isinstance(value, np.ndarray):
        return np.array(value, dtype=param.dtype if value.dtype.kind == "f" else value.dtype)
    return copy.deepcopy(value)
