"""Module: registration by attribute, walking the tree (names and order as torch.nn), train/eval, apply,
zero_grad, repr, state_dict/load_state_dict (round trip, torch interchange, strict errors) and casting."""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import scratchzoo as sz
from scratchzoo import nn, optim
from scratchzoo.autograd import DTypeError
from scratchzoo.nn import IncompatibleKeys, Parameter, StateDictError

from helpers import rand


def sz_stack() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 3), nn.LayerNorm(3)))


def torch_stack() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
                               torch.nn.Sequential(torch.nn.Linear(8, 3), torch.nn.LayerNorm(3)))


def shapes(named: Any) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(value.shape)) for name, value in named]


class SzBlock(nn.Module):
    """A parameter, a buffer, a non-persistent buffer, a child and an empty (None) child slot."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = Parameter(np.ones(3, dtype=np.float32))
        self.register_buffer("running", np.zeros(3, dtype=np.float32))
        self.register_buffer("cache", np.zeros(3, dtype=np.float32), persistent=False)
        self.proj = nn.Linear(3, 3)
        self.extra = None


class TorchBlock(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(3))
        self.register_buffer("running", torch.zeros(3))
        self.register_buffer("cache", torch.zeros(3), persistent=False)
        self.proj = torch.nn.Linear(3, 3)
        self.extra = None


# ============================================================================ registration


def test_assigned_parameters_modules_and_buffers_are_registered_as_in_torch() -> None:
    ours, theirs = SzBlock(), TorchBlock()
    assert shapes(ours.named_parameters()) == shapes(theirs.named_parameters())
    assert shapes(ours.named_buffers()) == shapes(theirs.named_buffers())  # non-persistent included
    assert [name for name, _ in ours.named_children()] == [name for name, _ in theirs.named_children()]
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["scale", "running", "proj.weight", "proj.bias"]
    assert ours.extra is None and ours.proj is ours._modules["proj"]


def test_reassigning_replaces_the_registered_entry() -> None:
    block = SzBlock()
    new_scale = Parameter(np.full(3, 2.0, dtype=np.float32))
    block.scale = new_scale
    assert block.scale is new_scale and next(block.parameters()) is new_scale
    block.running = sz.tensor(np.ones(3, dtype=np.float32))  # a buffer stays a buffer
    np.testing.assert_array_equal(block.state_dict()["running"], np.ones(3))
    block.running = np.full(3, 5.0, dtype=np.float32)  # an array is wrapped, as register_buffer does
    assert isinstance(block.running, sz.Tensor) and block.state_dict()["running"][0] == 5.0
    block.cache = sz.tensor(np.ones(3, dtype=np.float32))  # and keeps its persistence
    assert "cache" not in block.state_dict() and "cache" in dict(block.named_buffers())
    new_proj = nn.Linear(3, 3, bias=False)
    block.proj = new_proj
    assert list(block.state_dict()) == ["scale", "running", "proj.weight"]
    block.proj = Parameter(np.zeros(2, dtype=np.float32))  # a name moves to its new kind, as in torch
    assert "proj" not in dict(block.named_children()) and block.state_dict()["proj"].shape == (2,)


def test_setting_a_slot_to_none_keeps_it_empty_and_out_of_state_dict() -> None:
    ours, theirs = nn.Linear(3, 2), torch.nn.Linear(3, 2)
    ours.bias, theirs.bias = None, None
    assert ours.bias is None and "bias" in ours._parameters
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]
    assert len(list(ours.parameters())) == 1
    assert ours(sz.tensor(rand(2, 3).astype(np.float32))).shape == (2, 2)  # forward without bias
    seq = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    setattr(seq, "1", None)
    assert [name for name, _ in seq.named_children()] == ["0"] and "(1): None" in repr(seq)


def test_assigning_the_wrong_kind_to_a_slot_is_an_error() -> None:
    layer = nn.Linear(3, 2)
    with pytest.raises(TypeError, match=r"Linear: cannot assign Tensor to 'weight' \(Parameter or None expected\)"):
        layer.weight = sz.zeros(2, 3)  # would silently drop the weight from parameters() and state_dict()
    seq = nn.Sequential(nn.ReLU())
    with pytest.raises(TypeError, match=r"'0' \(Module or None expected\)"):
        setattr(seq, "0", "relu")


def test_register_buffer_persistence_and_name_clashes() -> None:
    module = nn.Module()
    module.register_buffer("a", np.zeros(2, dtype=np.float32), persistent=False)
    assert "a" not in module.state_dict() and [name for name, _ in module.named_buffers()] == ["a"]
    module.register_buffer("a", np.zeros(2, dtype=np.float32))  # re-registered as persistent: saved again
    assert list(module.state_dict()) == ["a"]
    module.register_buffer("none", None)
    assert module.none is None and list(module.state_dict()) == ["a"]
    module.plain = 3
    with pytest.raises(KeyError, match="attribute 'plain' already exists"):
        module.register_buffer("plain", np.zeros(1))
    del module.a
    assert list(module.state_dict()) == [] and not hasattr(module, "a")


def test_assigning_before_super_init_is_a_clear_error() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            self.layer = nn.Linear(2, 2)

    with pytest.raises(RuntimeError, match=r"call super\(\).__init__\(\)"):
        Broken()


# ============================================================================ walking the tree


def test_named_parameters_buffers_and_modules_follow_torch_names_and_order() -> None:
    ours, theirs = sz_stack(), torch_stack()
    assert shapes(ours.named_parameters()) == shapes(theirs.named_parameters())
    assert [name for name, _ in ours.named_parameters()] == ["0.weight", "0.bias", "2.0.weight", "2.0.bias",
                                                              "2.1.weight", "2.1.bias"]
    assert [p.shape for p in ours.parameters()] == [tuple(p.shape) for p in theirs.parameters()]
    assert [(name, type(m).__name__) for name, m in ours.named_modules()] == \
        [(name, type(m).__name__) for name, m in theirs.named_modules()]
    assert [type(m).__name__ for m in ours.modules()] == [type(m).__name__ for m in theirs.modules()]
    assert [type(m).__name__ for m in ours.children()] == ["Linear", "ReLU", "Sequential"]
    assert shapes(ours.named_parameters(recurse=False)) == [] and len(list(ours[2].parameters())) == 4
    assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())


def test_buffers_are_listed_by_path() -> None:
    outer_ours, outer_theirs = nn.Sequential(SzBlock(), SzBlock()), torch.nn.Sequential(TorchBlock(), TorchBlock())
    assert shapes(outer_ours.named_buffers()) == shapes(outer_theirs.named_buffers())
    assert [name for name, _ in outer_ours.named_buffers()] == ["0.running", "0.cache", "1.running", "1.cache"]
    assert len(list(outer_ours.buffers())) == 4 and list(outer_ours.named_buffers(recurse=False)) == []


class SzTied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight  # weight tying, as GPT-2 does


class TorchTied(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(10, 4)
        self.head = torch.nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight


def test_tied_weight_is_one_parameter_but_saved_under_both_names() -> None:
    ours, theirs = SzTied(), TorchTied()
    assert shapes(ours.named_parameters()) == shapes(theirs.named_parameters()) == [("embed.weight", (10, 4))]
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["embed.weight", "head.weight"]
    ours.load_state_dict(theirs.state_dict())  # both names load into the one shared array
    assert ours.head.weight is ours.embed.weight
    np.testing.assert_array_equal(ours.head.weight.data, theirs.embed.weight.detach().numpy())


def test_module_used_twice_is_walked_once_but_saved_under_both_names() -> None:
    shared_ours, shared_theirs = nn.Linear(3, 3), torch.nn.Linear(3, 3)
    ours = nn.Sequential(shared_ours, nn.ReLU(), shared_ours)
    theirs = torch.nn.Sequential(shared_theirs, torch.nn.ReLU(), shared_theirs)
    assert shapes(ours.named_parameters()) == shapes(theirs.named_parameters())
    assert [name for name, _ in ours.named_modules()] == [name for name, _ in theirs.named_modules()]
    assert [name for name, _ in ours.named_children()] == [name for name, _ in theirs.named_children()]
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_containers_register_members_with_torch_names() -> None:
    ours = nn.ModuleDict({"enc": nn.ModuleList([nn.Linear(2, 3), nn.Linear(3, 3)]), "dec": nn.Linear(3, 2)})
    theirs = torch.nn.ModuleDict({"enc": torch.nn.ModuleList([torch.nn.Linear(2, 3), torch.nn.Linear(3, 3)]),
                                  "dec": torch.nn.Linear(3, 2)})
    assert shapes(ours.state_dict().items()) == shapes(theirs.state_dict().items())
    assert list(ours.keys()) == ["enc", "dec"] and "enc" in ours and len(ours["enc"]) == 2
    seq = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1))
    assert [name for name, _ in seq[1:].named_children()] == ["1", "2"]  # a slice keeps the names, as torch
    assert isinstance(seq[-1], nn.Linear) and len(seq) == 3 and len(list(iter(seq))) == 3


# ============================================================================ modes, apply, zero_grad


def test_train_and_eval_reach_every_submodule() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Dropout(0.5), nn.Sequential(nn.Dropout(0.9))))
    assert model.eval() is model
    assert all(not m.training for m in model.modules())
    x = sz.tensor(rand(3, 4).astype(np.float32))
    np.testing.assert_array_equal(model[1](x).data, x.data)  # dropout is the identity in eval
    model.train()
    assert all(m.training for m in model.modules())
    model[1].train(False)
    assert model.training and model[0].training and not any(m.training for m in model[1].modules())


def test_eval_mode_restores_the_mode_it_found_even_after_an_error() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    with nn.eval_mode(model) as inside:
        assert inside is model and not any(m.training for m in model.modules())
    assert all(m.training for m in model.modules())
    with pytest.raises(RuntimeError, match="boom"), nn.eval_mode(model):
        raise RuntimeError("boom")
    assert all(m.training for m in model.modules())
    model.eval()
    with nn.eval_mode(model):
        pass
    assert not model.training  # a model that was in eval mode stays there


def test_apply_calls_children_first_in_torch_order() -> None:
    def structure(lib: Any) -> Any:
        return lib.Sequential(lib.Linear(2, 2), lib.Sequential(lib.ReLU(), lib.Linear(2, 2)), lib.LayerNorm(2))

    ours, theirs = structure(nn), structure(torch.nn)
    our_order: list[str] = []
    their_order: list[str] = []
    assert ours.apply(lambda m: our_order.append(type(m).__name__)) is ours
    theirs.apply(lambda m: their_order.append(type(m).__name__))
    assert our_order == their_order == ["Linear", "ReLU", "Linear", "Sequential", "LayerNorm", "Sequential"]


def test_apply_can_reinitialise_every_linear_layer() -> None:
    model = sz_stack()

    def zero_linear(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.weight)

    model.apply(zero_linear)
    assert all(not m.weight.data.any() for m in model.modules() if isinstance(m, nn.Linear))
    assert model[0].weight.dtype == np.float32


def test_zero_grad_clears_or_zeroes_every_gradient() -> None:
    model = sz_stack()
    model(sz.tensor(rand(5, 4).astype(np.float32))).sum().backward()
    assert all(p.grad is not None and p.grad.any() for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() and p.grad.dtype == np.float32 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


# ============================================================================ repr


def test_repr_equals_torch_for_a_sequential_of_basic_layers() -> None:
    def build(lib: Any) -> Any:
        return lib.Sequential(lib.Linear(8, 16), lib.ReLU(), lib.Dropout(0.1), lib.LayerNorm(16),
                              lib.GELU(approximate="tanh"), lib.Sequential(lib.Embedding(10, 4, padding_idx=0),
                                                                           lib.Linear(4, 2, bias=False)),
                              lib.LeakyReLU(0.2), lib.Sigmoid(), lib.Tanh(), lib.SiLU(), lib.Softmax(dim=-1),
                              lib.Flatten(), lib.Identity(), lib.Dropout())
    assert repr(build(nn)) == repr(build(torch.nn))


@pytest.mark.parametrize("build", [
    lambda lib: lib.LayerNorm((2, 3), elementwise_affine=False),
    lambda lib: lib.LayerNorm(5, eps=1e-6, bias=False),
    lambda lib: lib.Embedding(10, 4, padding_idx=-1),  # the index is stored (and shown) as 9
    lambda lib: lib.Embedding(7, 3),
    lambda lib: lib.Flatten(0, 2),
    lambda lib: lib.GELU(),
    lambda lib: lib.Linear(3, 5),
    lambda lib: lib.ModuleList([lib.ReLU(), lib.ModuleDict({"a": lib.Linear(1, 1)})]),
], ids=["layernorm-2d", "layernorm-nobias", "embedding-neg-pad", "embedding", "flatten", "gelu", "linear",
        "modulelist"])
def test_repr_of_each_layer_equals_torch(build: Any) -> None:
    assert repr(build(nn)) == repr(build(torch.nn))


def test_repr_puts_extra_repr_above_the_children_as_torch() -> None:
    def build(lib: Any) -> Any:
        class Block(lib.Module):
            def __init__(self) -> None:
                super().__init__()
                self.proj = lib.Linear(2, 2)

            def extra_repr(self) -> str:
                return "heads=4"

        class Multi(lib.Module):
            def extra_repr(self) -> str:
                return "a=1\nb=2"

        return lib.Sequential(Block(), Multi())

    assert repr(build(nn)) == repr(build(torch.nn))


# ============================================================================ state_dict


def test_state_dict_round_trip_gives_the_same_outputs() -> None:
    source, target = sz_stack(), sz_stack()
    state = source.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert target.load_state_dict(state) == IncompatibleKeys([], [])
    x = sz.tensor(rand(5, 4).astype(np.float32))
    np.testing.assert_array_equal(target(x).data, source(x).data)
    state["0.weight"][...] = 0  # state_dict returns copies: changing them changes neither model
    assert source[0].weight.data.any() and target[0].weight.data.any()


def test_state_dicts_interchange_with_torch_both_ways() -> None:
    ours, theirs = sz_stack(), torch_stack()
    assert shapes(ours.state_dict().items()) == shapes(theirs.state_dict().items())
    ours.load_state_dict(theirs.state_dict())  # torch tensors are accepted as they are
    x = rand(5, 4).astype(np.float32)
    np.testing.assert_allclose(ours(sz.tensor(x)).data, theirs(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    other = sz_stack()  # and ours loads into torch
    theirs.load_state_dict({name: torch.from_numpy(value) for name, value in other.state_dict().items()})
    np.testing.assert_allclose(theirs(torch.from_numpy(x)).detach().numpy(), other(sz.tensor(x)).data,
                               rtol=1e-5, atol=1e-6)


def test_strict_load_lists_missing_unexpected_and_mis_shaped_keys_in_one_message() -> None:
    model = sz_stack()
    state = model.state_dict()
    del state["2.0.bias"]
    state["2.9.weight"] = np.zeros(3, dtype=np.float32)
    state["0.weight"] = np.zeros((8, 5), dtype=np.float32)
    with pytest.raises(StateDictError) as error:
        model.load_state_dict(state)
    message = str(error.value)
    assert message.startswith("Sequential.load_state_dict: ")
    assert "missing keys: ['2.0.bias']" in message
    assert "unexpected keys: ['2.9.weight']" in message
    assert "mis-shaped keys: ['0.weight: expected (8, 4), got (8, 5)']" in message
    assert isinstance(error.value, KeyError)  # as DESIGN.md asks: a KeyError subclass


def test_nothing_is_loaded_when_strict_load_fails() -> None:
    model = sz_stack()
    before = model.state_dict()
    state = {name: np.ones_like(value) for name, value in before.items()}
    state["unexpected"] = np.zeros(1)
    with pytest.raises(StateDictError):
        model.load_state_dict(state)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_non_strict_load_returns_the_incompatible_keys() -> None:
    model = sz_stack()
    state = model.state_dict()
    state["0.weight"] = np.ones((8, 4), dtype=np.float32)
    del state["0.bias"]
    state["head.weight"] = np.zeros(2)
    result = model.load_state_dict(state, strict=False)
    assert result == IncompatibleKeys(missing_keys=["0.bias"], unexpected_keys=["head.weight"])
    assert result.missing_keys == ["0.bias"] and result.unexpected_keys == ["head.weight"]
    np.testing.assert_array_equal(model[0].weight.data, np.ones((8, 4)))
    # as in torch, a mis-shaped key is an error even when not strict
    with pytest.raises(StateDictError, match=r"mis-shaped keys: \['0.bias: expected \(8,\), got \(7,\)'\]"):
        model.load_state_dict({"0.bias": np.zeros(7)}, strict=False)


def test_load_keeps_the_module_dtype_and_parameter_identity() -> None:
    model = sz_stack().double()
    params = list(model.parameters())
    float32_state = {name: value.astype(np.float32) + 1 for name, value in model.state_dict().items()}
    model.load_state_dict(float32_state)
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert all(a is b for a, b in zip(params, model.parameters()))
    np.testing.assert_array_equal(model[0].weight.data, float32_state["0.weight"].astype(np.float64))
    model.load_state_dict({name: torch.from_numpy(v) for name, v in float32_state.items()})  # torch float32 too
    assert model[2][1].bias.dtype == np.float64


def test_load_accepts_our_tensors_and_copies_the_values() -> None:
    model = nn.Linear(2, 2)
    weight = sz.tensor(np.ones((2, 2), dtype=np.float32))
    model.load_state_dict({"weight": weight, "bias": np.zeros(2, dtype=np.float32)})
    weight.data[...] = 5  # the model holds its own copy
    np.testing.assert_array_equal(model.weight.data, np.ones((2, 2)))


# ============================================================================ dtype casting


class WithBuffers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.register_buffer("mean", np.zeros(2, dtype=np.float32))
        self.register_buffer("count", np.array(0, dtype=np.int64))


def test_double_float_and_to_cast_params_and_float_buffers_only() -> None:
    model = WithBuffers()
    params = list(model.parameters())
    buffers = list(model.buffers())
    model.linear(sz.tensor(rand(2, 3).astype(np.float32))).sum().backward()
    for cast, dtype in [(lambda m: m.double(), np.float64), (lambda m: m.float(), np.float32),
                        (lambda m: m.to(np.float64), np.float64), (lambda m: m.to("float32"), np.float32)]:
        assert cast(model) is model
        assert all(p.dtype == dtype and p.grad.dtype == dtype for p in model.parameters())
        assert model.mean.dtype == dtype and model.count.dtype == np.int64
        assert all(a is b for a, b in zip(params, model.parameters()))  # the same Parameter objects
        assert all(a is b for a, b in zip(buffers, model.buffers()))
    with pytest.raises(DTypeError, match="only float dtypes, got int32"):
        model.to(np.int32)


def test_an_optimizer_built_before_a_cast_still_trains_the_model() -> None:
    model = sz_stack()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    model.double()
    before = {name: value.copy() for name, value in model.state_dict().items()}
    x = sz.tensor(rand(5, 4))
    model(x).sum().backward()
    optimizer.step()
    after = model.state_dict()
    assert all(after[name].dtype == np.float64 for name in after)
    assert all(not np.array_equal(after[name], before[name]) for name in ["0.weight", "2.0.weight", "2.1.bias"])


def test_a_float64_module_matches_torch_in_float64() -> None:
    ours, theirs = sz_stack().double(), torch_stack().double()
    ours.load_state_dict(theirs.state_dict())
    x = rand(5, 4)
    out = ours(sz.tensor(x))
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.data, theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-12, atol=1e-12)


def test_reassigning_a_parameter_keeps_its_place_in_the_state_dict():
    """Weight tying (generator.weight = embedding.weight) must not move the key, as in torch."""
    layer = nn.Linear(3, 4)
    layer.weight = nn.Parameter(np.zeros((4, 3), dtype=np.float32))
    assert list(layer.state_dict()) == ["weight", "bias"]
