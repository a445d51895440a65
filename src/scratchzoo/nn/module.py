"""Module and Parameter: how layers own their weights, find each other and save themselves.

A Module registers what is assigned to it: a `Parameter` (a learnable tensor), another Module (a
child), or a buffer (`register_buffer`: state that is saved but not learned, such as BatchNorm's
running mean). `state_dict()` walks that tree and names every entry by its path, "0.weight",
"encoder.layers.1.norm1.bias", exactly as torch.nn does, so weights move between the two libraries.
"""
from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, NamedTuple

import numpy as np

from scratchzoo.autograd import DTypeError, ShapeError, Tensor


class Parameter(Tensor):
    """A tensor that a Module learns: it requires grad and is listed by `parameters()`."""

    def __init__(self, data: Any, requires_grad: bool = True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


def empty_parameter(*shape: int) -> Parameter:
    """An uninitialised float32 Parameter of `shape`, for a layer's constructor to fill with an init function."""
    return Parameter(np.empty(shape, dtype=np.float32))


class StateDictError(KeyError):
    """A state dict that does not fit the module: lists missing, unexpected and mis-shaped keys."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


class IncompatibleKeys(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


def to_array(value: Any) -> np.ndarray:
    """Accept our tensors, NumPy arrays and torch tensors (anything with .detach().numpy()); io saves these too."""
    if isinstance(value, Tensor):
        return value.data
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _cast(owner: str, name: str, value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A copy of `value` in the module's `dtype`, or an error naming the key whose value cannot be converted."""
    try:
        return value.astype(dtype, copy=True)
    except (TypeError, ValueError) as error:
        raise DTypeError(f"{owner}: {name}: expected values convertible to {dtype}, got dtype {value.dtype} "
                         f"({error})") from None


class Module:
    """Base class of every layer and model. Subclasses set attributes in __init__ and write forward."""

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ---- registration by attribute -----------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if isinstance(value, (Parameter, Module)):
            registry = self._parameters if isinstance(value, Parameter) else self._modules
            if name not in registry:  # a reassigned slot keeps its place in state_dict(), as in PyTorch
                self._forget(name)  # the name moves to its new registry
            registry[name] = value
        elif name in self._parameters or name in self._modules:
            # a known slot takes its own kind or None (say, no bias); anything else would silently drop
            # the weight or child from parameters() and state_dict(), so it is an error (as in torch)
            registry, kind = ((self._parameters, "Parameter") if name in self._parameters
                              else (self._modules, "Module"))
            if value is not None:
                raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} to '{name}' "
                                f"({kind} or None expected)")
            registry[name] = None
        elif name in self._buffers:
            self.register_buffer(name, value, persistent=name not in self._non_persistent)  # stays a buffer
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str) -> None:
        self.__dict__.pop(name, None)
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        self._non_persistent.discard(name)

    def __getattr__(self, name: str) -> Any:
        for registry in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(registry)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                self._non_persistent.discard(name)
                return
        object.__delattr__(self, name)

    def register_buffer(self, name: str, value: Any, persistent: bool = True) -> None:
        """Keep `value` with the module (saved, moved, cast) without learning it; a non-persistent buffer
        is left out of state_dict()."""
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"{type(self).__name__}: attribute '{name}' already exists")
        self._buffers[name] = None if value is None else (value if isinstance(value, Tensor) else Tensor(value))
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        self._parameters[name] = param

    def add_module(self, name: str, module: "Module | None") -> None:
        self._modules[name] = module

    # ---- running -------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    def train(self, mode: bool = True) -> "Module":
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    # ---- walking the tree --------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """This module and every descendant, each once, depth first (as torch)."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{child_name}" if name else child_name, child)
                        for child_name, child in module._modules.items() if child is not None]
            stack.extend(reversed(children))

    def modules(self) -> Iterator["Module"]:
        return (module for _, module in self.named_modules())

    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        seen: set[int] = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:  # a child registered twice is listed once
                seen.add(id(module))
                yield name, module

    def children(self) -> Iterator["Module"]:
        return (module for _, module in self.named_children())

    def _named_members(self, registry: str, recurse: bool) -> Iterator[tuple[str, Tensor]]:
        seen: set[int] = set()
        modules = self.named_modules() if recurse else iter([("", self)])
        for module_name, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))  # a tied weight is listed once, under its first name
                yield (f"{module_name}.{name}" if module_name else name), value

    def named_parameters(self, recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        return self._named_members("_parameters", recurse)  # type: ignore[return-value]

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        return (p for _, p in self.named_parameters(recurse))

    def named_buffers(self, recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        return self._named_members("_buffers", recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        return (b for _, b in self.named_buffers(recurse))

    def apply(self, fn: Callable[["Module"], None]) -> "Module":
        """Call fn on every submodule (children first) and then on self, as torch.nn.Module.apply."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---- dtype -------------------------------------------------------------------------------
    def to(self, dtype: Any) -> "Module":
        """Cast floating-point parameters and buffers in place (the Parameter objects stay the same)."""
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise DTypeError(f"{type(self).__name__}.to: only float dtypes, got {dtype}")
        for module in self.modules():
            for tensor in list(module._parameters.values()) + list(module._buffers.values()):
                if tensor is not None and tensor.dtype.kind == "f":
                    tensor.data = tensor.data.astype(dtype)
                    if tensor.grad is not None:
                        tensor.grad = tensor.grad.astype(dtype)
        return self

    def float(self) -> "Module":
        return self.to(np.float32)

    def double(self) -> "Module":
        return self.to(np.float64)

    # ---- saving and loading -----------------------------------------------------------------
    def _state_entries(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """Every saved tensor by full name; unlike parameters(), a tied weight (or a module reused in
        two places) appears under each of its names, as in torch's state_dict."""
        for name, param in self._parameters.items():
            if param is not None:
                yield prefix + name, param
        for name, buf in self._buffers.items():
            if buf is not None and name not in self._non_persistent:
                yield prefix + name, buf
        for name, child in self._modules.items():
            if child is not None:
                yield from child._state_entries(f"{prefix}{name}.")

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Name -> a copy of the array, with torch.nn's names and shapes."""
        return OrderedDict((name, tensor.data.copy()) for name, tensor in self._state_entries())

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy values into the existing tensors (keeping their dtype). Accepts arrays, our tensors or
        torch tensors. With strict=True, any missing, unexpected or mis-shaped key is an error that
        lists all of them; with strict=False only mis-shaped keys are."""
        owner = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            hint = " (this is a module: pass its .state_dict())" if hasattr(state_dict, "state_dict") else ""
            raise TypeError(f"{owner}: expected a mapping of name -> array, got {type(state_dict).__name__}{hint}")
        own = dict(self._state_entries())
        given = {name: to_array(value) for name, value in state_dict.items()}
        missing = [name for name in own if name not in given]
        unexpected = [name for name in given if name not in own]
        mis_shaped = [f"{name}: expected {own[name].shape}, got {given[name].shape}"
                      for name in own if name in given and given[name].shape != own[name].shape]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        if mis_shaped:
            problems.append(f"mis-shaped keys: {mis_shaped}")
        if problems:
            raise StateDictError(f"{owner}: " + "; ".join(problems))
        loaded = {name: _cast(owner, name, given[name], tensor.dtype) for name, tensor in own.items() if name in given}
        for name, array in loaded.items():  # only once every value converted: never a half-loaded module
            own[name].data = array
        return IncompatibleKeys(missing, unexpected)

    # ---- printing ----------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def describe(self) -> str:
        """A short name for error messages, e.g. `Linear(64->10)`."""
        return f"{type(self).__name__}({self.extra_repr()})"

    def __repr__(self) -> str:
        """As torch prints it: a one-line extra_repr inline, otherwise one entry per line."""
        extra = self.extra_repr().split("\n") if self.extra_repr() else []
        children = [f"({name}): " + repr(child).replace("\n", "\n  ") for name, child in self._modules.items()]
        if len(extra) == 1 and not children:
            return f"{type(self).__name__}({extra[0]})"
        if not extra and not children:
            return f"{type(self).__name__}()"
        return f"{type(self).__name__}(\n  " + "\n  ".join(extra + children) + "\n)"


@contextmanager
def eval_mode(module: Module) -> Iterator[Module]:
    """`module` in evaluation mode (dropout off, BatchNorm on its running statistics) for the block, then in
    the mode it had before, even if the block raises: decoding or drawing a figure halfway through training
    must not leave the model in eval mode."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


# ---- input checks shared by every layer ------------------------------------------------------

def check_token_ids(ids: Any, owner: str, what: str, vocab_size: int, ndim: int = 2) -> np.ndarray:
    """`ids` (a Tensor or array-like) as an (N, L) int64 array (ndim=1: one sequence (L,)) with L >= 1 and
    every id in [0, vocab_size), else an error naming the model (`owner`) and the argument (`what`): a
    model's entry point calls this before its embedding, so a bad id never surfaces as an index error deep
    inside. An empty `ids` (np.asarray([]) is float64) is reported as too short, not as of the wrong dtype."""
    array = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
    if array.dtype.kind not in "iu" and array.size:
        hint = " (text: encode it into ids first)" if array.dtype.kind in "US" else ""
        raise DTypeError(f"{owner}: {what} must hold integer ids, got dtype {array.dtype}{hint}")
    if array.ndim != ndim or array.shape[-1] == 0:
        layout = "(N, L)" if ndim == 2 else "(L,)"
        raise ShapeError(f"{owner}: {what} must have shape {layout} with L >= 1, got {array.shape}")
    if array.size and (array.min() < 0 or array.max() >= vocab_size):
        raise IndexError(f"{owner}: {what} ids must lie in [0, {vocab_size}), got min {array.min()} max {array.max()}")
    return array.astype(np.int64, copy=False)


def check_input(layer: Module, x: Any, *, last_dim: int | None = None, ndims: tuple[int, ...] | None = None,
                dtype: Any = "float") -> None:
    """Raise a clear error naming the layer, what it expected and what it got.

    dtype="float" requires a floating tensor of the layer's own parameter dtype (if it has one).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{layer.describe()} expected a Tensor, got {type(x).__name__}")
    if ndims is not None and x.ndim not in ndims:
        expected = " or ".join(f"{n}-D" for n in ndims)
        raise ShapeError(f"{layer.describe()} expected {expected} input, got shape {x.shape}")
    if last_dim is not None and (x.ndim == 0 or x.shape[-1] != last_dim):
        raise ShapeError(f"{layer.describe()} expected input with last dim {last_dim}, got shape {x.shape}")
    if dtype == "float":
        param = next(layer.parameters(), None)
        if x.dtype.kind != "f":
            raise DTypeError(f"{layer.describe()} expected floating-point input, got {x.dtype}")
        if param is not None and param.dtype != x.dtype:
            raise DTypeError(f"{layer.describe()} has {param.dtype} parameters but got {x.dtype} input; "
                             f"cast one with .to(dtype)")


@contextmanager
def op_errors(layer: Module, op: str) -> Iterator[None]:
    """Around the functional op a layer's forward calls: the op's own checks run once, but an error it raises
    ("batch_norm: expected more than 1 value per channel ...") comes out naming the layer ("BatchNorm1d(4)
    expected more than 1 value per channel ..."), the same exception type: the learner called the layer, and
    the layer's name and sizes are what they can act on. Other errors pass through untouched."""
    try:
        yield
    except (ValueError, TypeError, IndexError) as error:
        message, prefix = str(error), op + ": "
        if not message.startswith(prefix):
            raise
        rest = message[len(prefix):]
        raise type(error)(f"{layer.describe()}{' ' if rest.startswith('expected') else ': '}{rest}") from None
