"""The Optimizer base class: parameter groups, per-parameter state, and state dicts as in PyTorch.

A subclass only writes `step()`: for every group, for every parameter with a gradient, update
`p.data` in place from `p.grad` and `self.state[p]`. Updates are on the arrays (`p.data -= ...`), so
parameters stay the same objects that the model holds, and float32 stays float32 (scalars are Python
floats, which never upcast an array under NumPy 2's promotion rules).
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Iterable

import numpy as np

from scratchzoo.autograd import ShapeError, Tensor


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
        if isinstance(params, Tensor):
            raise TypeError("params should be an iterable of Tensors or dicts, got a single Tensor; "
                            "pass [tensor] or model.parameters()")
        self.defaults = defaults
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Tensor, dict[str, Any]] = {}
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Append a group; options it leaves out take the optimizer's defaults."""
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__} can only optimize Tensors, got {type(p).__name__}")
        seen = {id(p) for group in self.param_groups for p in group["params"]}
        if any(id(p) in seen for p in params) or len({id(p) for p in params}) != len(params):
            raise ValueError("some parameters appear in more than one parameter group (or twice in one)")
        self.param_groups.append({**self.defaults, **param_group, "params": params})

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
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}: loaded state dict has {len(saved_groups)} parameter group(s), "
                             f"but the optimizer has {len(self.param_groups)}")
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError(f"{name}: parameter group {i}: loaded state dict has {len(saved['params'])} "
                                 f"parameter(s), but the optimizer's group has {len(group['params'])}")
            for option, supported in self.fixed_options.items():
                if option in saved and saved[option] != supported:
                    raise ValueError(f"{name}: parameter group {i} of the loaded state dict sets "
                                     f"{option}={saved[option]!r}, which {name} does not implement "
                                     f"(only {option}={supported!r})")
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
