"""Optimizers against torch.optim: same parameters, same gradient sequence, same trajectory."""
import numpy as np
import pytest
import torch

import scratchzoo as sz
from scratchzoo import optim

SHAPES = [(7,), (3, 4), (2, 3, 5)]
STEPS = 100

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, weight_decay=0.1)),
    ("Adam", dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, betas=(0.85, 0.95), weight_decay=0.3)),
]


def make_params(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]


def gradients(seed=1, steps=STEPS, dtype=np.float64):
    """The same pseudo-random gradient sequence for both libraries: steps lists, one array per shape."""
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(shape).astype(dtype) for shape in SHAPES] for _ in range(steps)]


def run_ours(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.copy()
        opt.step()


def run_torch(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = torch.from_numpy(g.copy())
        opt.step()


def pair(name, options, arrays):
    ours = [sz.Tensor(a.copy(), requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    return ours, getattr(optim, name)(ours, **options), theirs, getattr(torch.optim, name)(theirs, **options)


@pytest.mark.parametrize("name,options", CASES)
def test_trajectory_matches_torch(name, options):
    ours, opt, theirs, topt = pair(name, options, make_params())
    for step_grads in gradients():
        run_ours(opt, ours, [step_grads])
        run_torch(topt, theirs, [step_grads])
        for p, t in zip(ours, theirs):
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_param_groups_with_their_own_lr(name):
    arrays = make_params()
    ours = [sz.Tensor(a.copy(), requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    opt = getattr(optim, name)([{"params": ours[:1]}, {"params": ours[1:], "lr": 0.003}], lr=0.02, weight_decay=0.01)
    topt = getattr(torch.optim, name)([{"params": theirs[:1]}, {"params": theirs[1:], "lr": 0.003}], lr=0.02,
                                      weight_decay=0.01)
    assert [g["lr"] for g in opt.param_groups] == [0.02, 0.003]
    grads = gradients(steps=20)
    run_ours(opt, ours, grads)
    run_torch(topt, theirs, grads)
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-9)


def test_parameters_stay_the_same_objects_and_none_grads_are_skipped():
    p, q = sz.Tensor(np.ones(3), requires_grad=True), sz.Tensor(np.ones(2), requires_grad=True)
    array = p.data
    opt = optim.Adam([p, q], lr=0.1)
    p.grad = np.ones(3)
    opt.step()
    assert p.data is array and not np.allclose(p.data, 1.0)
    np.testing.assert_array_equal(q.data, np.ones(2))
    assert q not in opt.state


@pytest.mark.parametrize("name,options", [CASES[1], CASES[6], CASES[9]])
def test_state_dict_round_trip_is_bit_exact(name, options):
    grads = gradients()
    straight = [sz.Tensor(a, requires_grad=True) for a in make_params()]
    run_ours(getattr(optim, name)(straight, **options), straight, grads)

    params = [sz.Tensor(a, requires_grad=True) for a in make_params()]
    first = getattr(optim, name)(params, **options)
    run_ours(first, params, grads[:50])
    saved = first.state_dict()
    run_ours(first, params, grads[50:51])  # stepping on must not change the saved snapshot
    params = [sz.Tensor(a, requires_grad=True) for a in make_params()]
    run_ours(getattr(optim, name)(params, **options), params, grads[:50])  # same weights as at the save
    resumed = getattr(optim, name)(params, **options)
    resumed.load_state_dict(saved)
    run_ours(resumed, params, grads[50:])
    for p, s in zip(params, straight):
        np.testing.assert_array_equal(p.data, s.data)


@pytest.mark.parametrize("name,options", [CASES[1], CASES[6], CASES[9]])
def test_loads_a_torch_state_dict(name, options):
    grads = gradients()
    ours, _, theirs, topt = pair(name, options, make_params())
    run_torch(topt, theirs, grads[:50])
    torch_state = topt.state_dict()
    converted = {
        "state": {i: {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
                  for i, s in torch_state["state"].items()},
        "param_groups": torch_state["param_groups"],
    }
    for p, t in zip(ours, theirs):
        p.data[...] = t.detach().numpy()
    opt = getattr(optim, name)(ours, **options)
    opt.load_state_dict(converted)
    run_ours(opt, ours, grads[50:])
    run_torch(topt, theirs, grads[50:])
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-6, atol=1e-12)


def test_state_dict_layout_is_torchs():
    params = [sz.Tensor(a, requires_grad=True) for a in make_params()]
    opt = optim.Adam([{"params": params[:2]}, {"params": params[2:], "lr": 0.1}])
    run_ours(opt, params, gradients(steps=2))
    sd = opt.state_dict()
    assert sorted(sd["state"]) == [0, 1, 2]
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq"} and sd["state"][0]["step"] == 2
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sd["param_groups"][1]["lr"] == 0.1 and sd["param_groups"][0]["betas"] == (0.9, 0.999)


def test_load_state_dict_rejects_mismatched_groups():
    params = [sz.Tensor(a, requires_grad=True) for a in make_params()]
    saved = optim.SGD(params, lr=0.1).state_dict()
    with pytest.raises(ValueError, match="group"):
        optim.SGD([{"params": params[:1]}, {"params": params[1:]}], lr=0.1).load_state_dict(saved)
    with pytest.raises(ValueError, match="parameter"):
        optim.SGD(params[:2], lr=0.1).load_state_dict(saved)


def test_bad_construction_is_a_clear_error():
    p = sz.Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError):
        optim.SGD(p, lr=0.1)
    with pytest.raises(ValueError, match="more than one"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)


def test_add_param_group_takes_defaults():
    p, q = (sz.Tensor(np.ones(2), requires_grad=True) for _ in range(2))
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": [q], "lr": 0.5})
    assert opt.param_groups[1] == {"params": [q], "lr": 0.5, "momentum": 0.9, "dampening": 0.0,
                                   "weight_decay": 0.0, "nesterov": False}


def test_zero_grad():
    p = sz.Tensor(np.ones(2), requires_grad=True)
    opt = optim.SGD([p], lr=0.1)
    p.grad = np.ones(2)
    grad = p.grad
    opt.zero_grad(set_to_none=False)
    assert p.grad is grad and not p.grad.any()
    opt.zero_grad()
    assert p.grad is None


@pytest.mark.parametrize("name,options", [CASES[4], CASES[6], CASES[9]])
def test_float32_stays_float32(name, options):
    params = [sz.Tensor(a, requires_grad=True) for a in make_params(dtype=np.float32)]
    opt = getattr(optim, name)(params, **options)
    run_ours(opt, params, gradients(steps=3, dtype=np.float32))
    assert all(p.data.dtype == np.float32 for p in params)
    assert all(v.dtype == np.float32 for s in opt.state.values() for v in s.values() if isinstance(v, np.ndarray))


def torch_state_dict_as_arrays(topt):
    """torch's optimizer state dict with its tensors as NumPy arrays (what load_state_dict takes)."""
    sd = topt.state_dict()
    return {"state": {i: {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in s.items()}
                      for i, s in sd["state"].items()},
            "param_groups": sd["param_groups"]}


@pytest.mark.parametrize("name,torch_options,fragments", [
    ("Adam", dict(amsgrad=True), ["amsgrad=True", "Adam"]),
    ("Adam", dict(maximize=True), ["maximize=True", "Adam"]),
    ("Adam", dict(decoupled_weight_decay=True), ["decoupled_weight_decay=True", "Adam"]),
    ("AdamW", dict(amsgrad=True), ["amsgrad=True", "AdamW"]),
    ("SGD", dict(momentum=0.9, maximize=True), ["maximize=True", "SGD"]),
])
def test_load_state_dict_refuses_options_it_does_not_implement(name, torch_options, fragments):
    """Loading torch's Adam(amsgrad=True) and stepping as plain Adam would silently diverge: refuse it,
    and leave the optimizer as it was."""
    arrays = make_params()
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    topt = getattr(torch.optim, name)(theirs, lr=0.01, **torch_options)
    run_torch(topt, theirs, gradients(steps=3))
    ours = [sz.Tensor(a.copy(), requires_grad=True) for a in arrays]
    opt = getattr(optim, name)(ours, lr=0.05)
    before = [dict(g) for g in opt.param_groups]
    with pytest.raises(ValueError) as info:
        opt.load_state_dict(torch_state_dict_as_arrays(topt))
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"
    assert opt.state == {} and opt.param_groups == before


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_load_state_dict_accepts_torchs_implementation_only_options(name):
    """foreach / fused / differentiable choose how torch computes, not what: they load, and the
    trajectory still matches torch's."""
    options = dict(lr=0.01, momentum=0.9) if name == "SGD" else dict(lr=0.01)
    arrays, grads = make_params(), gradients(steps=20)
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in arrays]
    topt = getattr(torch.optim, name)(theirs, foreach=False, **options)
    run_torch(topt, theirs, grads[:10])
    ours = [sz.Tensor(t.detach().numpy().copy(), requires_grad=True) for t in theirs]
    opt = getattr(optim, name)(ours, **options)
    opt.load_state_dict(torch_state_dict_as_arrays(topt))
    run_ours(opt, ours, grads[10:])
    run_torch(topt, theirs, grads[10:])
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name,options,key", [("Adam", dict(lr=0.01), "exp_avg_sq"),
                                              ("AdamW", dict(lr=0.01), "exp_avg"),
                                              ("SGD", dict(lr=0.01, momentum=0.9), "momentum_buffer")])
def test_load_state_dict_checks_state_shapes(name, options, key):
    """A state array of the wrong shape is refused at load time, naming the parameter and both shapes
    (not a NumPy broadcast error at the next step)."""
    params = [sz.Tensor(a, requires_grad=True) for a in make_params()]
    opt = getattr(optim, name)(params, **options)
    run_ours(opt, params, gradients(steps=2))
    saved = opt.state_dict()
    saved["state"][1][key] = np.zeros((4, 3))  # parameter 1 has shape (3, 4)
    fresh = getattr(optim, name)(params, **options)
    with pytest.raises(ValueError) as info:
        fresh.load_state_dict(saved)
    message = str(info.value)
    for fragment in [name, repr(key), "parameter 1", "(4, 3)", "(3, 4)"]:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert fresh.state == {}


def test_load_state_dict_refuses_state_for_an_unknown_parameter():
    params = [sz.Tensor(a, requires_grad=True) for a in make_params()]
    opt = optim.Adam(params, lr=0.01)
    run_ours(opt, params, gradients(steps=1))
    saved = opt.state_dict()
    saved["state"][7] = saved["state"].pop(2)
    with pytest.raises(KeyError, match="parameter 7"):
        optim.Adam(params, lr=0.01).load_state_dict(saved)
