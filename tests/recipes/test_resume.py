"""Exact resume and divergence: a run stopped after N steps and resumed for N more ends BIT FOR BIT where
a straight 2N-step run ends (weights, Adam moments and step counts, schedule, generator state), with
dropout on so the generator matters and a cosine schedule so the step count matters; and a loss that
turns NaN stops the run with TrainingDiverged, naming the step, while the last good checkpoint stays.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np
import pytest

from helpers import SimulatedCrash, crash_at_step
from scratchzoo import io, losses, rng
from scratchzoo.autograd import Tensor
from scratchzoo.cli import main
from scratchzoo.models.mlp import MLP, MLPConfig
from scratchzoo.optim import Adam
from scratchzoo.optim.lr_scheduler import CosineAnnealingLR
from scratchzoo.recipes import RECIPES
from scratchzoo.recipes.common import TrainingDiverged, train_loop

N = 10  # steps before the stop; the whole run is 2N


def assert_bitwise_equal(a, b, where="state"):
    """Nested dicts/lists/tuples of arrays and numbers, equal to the last bit (dtype and shape too)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for key in a:
            assert_bitwise_equal(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_bitwise_equal(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), f"{where}: array vs {type(b).__name__}"
        assert (a.dtype, a.shape) == (b.dtype, b.shape), f"{where}: {a.dtype}{a.shape} vs {b.dtype}{b.shape}"
        assert a.tobytes() == b.tobytes(), f"{where}: arrays differ (max |diff| {np.max(np.abs(a - b)):.3g})"
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} vs {b!r}"


# ---- through train_loop ------------------------------------------------------------------------------------
@dataclass
class TinyRun:
    steps: int = 2 * N  # what checkpoint.json records as the config


def data():
    """100 rows, 3 classes; batch 16 gives 6 steps an epoch, so the runs cross epoch boundaries."""
    gen = np.random.default_rng(1)
    return gen.standard_normal((100, 8)).astype(np.float32), gen.integers(0, 3, size=100)


def fresh_run(seed=0):
    """What a new process builds: model with dropout, Adam with L2, a cosine schedule over all 2N steps."""
    rng.manual_seed(seed)
    model = MLP(MLPConfig(8, (16,), 3, "relu", dropout=0.5))
    optimizer = Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    return model, optimizer, CosineAnnealingLR(optimizer, T_max=2 * N)


def loop(model, optimizer, scheduler, run_dir, steps, resume=None, loss_fn=losses.cross_entropy, **kwargs):
    x, y = data()
    return train_loop(model, optimizer, x, y, loss_fn, steps=steps, batch_size=16, seed=0, run_dir=run_dir,
                      config=TinyRun(), resume=resume, scheduler=scheduler, progress=False, **kwargs)


def snapshot(model, optimizer, scheduler):
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "rng": rng.get_rng_state()}


def test_dropout_draws_from_the_generator():
    """The premise of these tests: in train mode the model's output depends on the generator."""
    model, _, _ = fresh_run()
    x = Tensor(data()[0][:4])
    assert not np.array_equal(model(x).data, model(x).data)


def test_train_loop_stop_and_resume_is_bit_identical(tmp_path):
    """Stopping: train_loop's `steps` is the step to train up to (the schedule, built outside the loop,
    spans all 2N), so `steps=N` stops cleanly at N with a checkpoint, and `steps=2N, resume=` goes on."""
    model, optimizer, scheduler = fresh_run()
    straight = loop(model, optimizer, scheduler, tmp_path / "straight", steps=2 * N)
    expected = snapshot(model, optimizer, scheduler)

    model, optimizer, scheduler = fresh_run()
    first = loop(model, optimizer, scheduler, tmp_path / "first", steps=N)
    assert len(first.losses) == N and io.load_checkpoint(tmp_path / "first").step == N

    # a new process: other initial weights and another generator state, all replaced by the checkpoint
    model, optimizer, scheduler = fresh_run(seed=99)
    rest = loop(model, optimizer, scheduler, tmp_path / "second", steps=2 * N, resume=str(tmp_path / "first"))
    assert_bitwise_equal(snapshot(model, optimizer, scheduler), expected)
    assert first.losses + rest.losses == straight.losses
    assert optimizer.state_dict()["state"][0]["step"] == 2 * N

    # and the checkpoints both runs leave on disk agree
    a, b = io.load_checkpoint(tmp_path / "straight"), io.load_checkpoint(tmp_path / "second")
    assert a.step == b.step == 2 * N
    assert_bitwise_equal((a.model_state, a.optimizer_state, a.rng_state, a.extra),
                         (b.model_state, b.optimizer_state, b.rng_state, b.extra))


def test_resume_without_the_saved_generator_state_would_differ(tmp_path):
    """Control: the comparison above can fail. Give the checkpoint another generator state and the
    resumed run draws other dropout masks, so its weights differ from the straight run's."""
    model, optimizer, scheduler = fresh_run()
    loop(model, optimizer, scheduler, tmp_path / "straight", steps=2 * N)
    expected = model.state_dict()

    model, optimizer, scheduler = fresh_run()
    loop(model, optimizer, scheduler, tmp_path / "first", steps=N)
    record_path = tmp_path / "first" / io.CHECKPOINT_FILE
    record = json.loads(record_path.read_text())
    rng.manual_seed(12345)
    record["rng_state"] = rng.get_rng_state()
    record_path.write_text(json.dumps(record))

    model, optimizer, scheduler = fresh_run()
    loop(model, optimizer, scheduler, tmp_path / "second", steps=2 * N, resume=str(tmp_path / "first"))
    assert not np.array_equal(model.state_dict()["0.weight"], expected["0.weight"])


# ---- through the CLI -----------------------------------------------------------------------------------------


def test_cli_resume_is_bit_identical(tmp_path, monkeypatch):
    """mlp-digits (dropout 0.5, cosine schedule over --steps) run straight for 2N steps, against the same
    command killed during step N+1 and then resumed with `--resume` of its step-N checkpoint.

    Why a crash and not `--steps N` then `--steps 2N --resume`: the cosine schedule's length is --steps
    and travels in the checkpoint, so a run configured for N steps is not the first half of a 2N-step
    run. Killing the 2N-step run just after its mid-run checkpoint (--checkpoint-every N) is the honest
    way to get that first half.
    """
    common = ["train", "mlp-digits", "--hidden", "16", "--dropout", "0.5", "--batch-size", "64", "--lr", "1e-2",
              "--steps", str(2 * N), "--checkpoint-every", str(N)]
    straight, crashed, resumed = tmp_path / "straight", tmp_path / "crashed", tmp_path / "resumed"
    assert main([*common, "--out", str(straight)]) == 0

    with monkeypatch.context() as mp:
        crash_at_step(mp, N + 1)
        with pytest.raises(SimulatedCrash):
            main([*common, "--out", str(crashed)])
    assert io.load_checkpoint(crashed).step == N
    assert not (crashed / "metrics.json").exists()

    assert main([*common, "--resume", str(crashed), "--out", str(resumed)]) == 0
    a, b = io.load_checkpoint(straight), io.load_checkpoint(resumed)
    assert a.step == b.step == 2 * N
    assert_bitwise_equal((a.model_state, a.optimizer_state, a.rng_state, a.extra["scheduler"]),
                         (b.model_state, b.optimizer_state, b.rng_state, b.extra["scheduler"]))
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (straight, resumed)]
    assert metrics[0]["test_accuracy"] == metrics[1]["test_accuracy"]
    assert metrics[0]["test_loss"] == metrics[1]["test_loss"]


# ---- a loss that becomes NaN ---------------------------------------------------------------------------------
def poisoned_at(step, value=float("nan")):
    """Cross-entropy, except that the loss of training step `step` (1-based) is multiplied by `value`."""
    calls = []

    def loss_fn(prediction, target):
        calls.append(1)
        loss = losses.cross_entropy(prediction, target)
        return loss * value if len(calls) == step else loss

    return loss_fn


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    """The loss turns NaN at step 7; checkpoints every 3 steps: the error names step 7, and the step-6
    checkpoint loads, holds exactly the weights the model had when it stopped, and resumes."""
    model, optimizer, scheduler = fresh_run()
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 7\b") as caught:
        loop(model, optimizer, scheduler, tmp_path, steps=2 * N, checkpoint_every=3, loss_fn=poisoned_at(7))
    assert f"checkpoint (step 6) is in {tmp_path}" in str(caught.value)

    checkpoint = io.load_checkpoint(tmp_path)
    assert checkpoint.step == 6
    assert_bitwise_equal(checkpoint.model_state, model.state_dict())  # the NaN step changed nothing
    assert all(np.isfinite(v).all() for v in checkpoint.model_state.values())

    model, optimizer, scheduler = fresh_run()
    rest = loop(model, optimizer, scheduler, tmp_path / "resumed", steps=2 * N, resume=str(tmp_path))
    assert len(rest.losses) == 2 * N - 6 and np.all(np.isfinite(rest.losses))


def test_divergence_message_points_at_the_checkpoint_that_really_exists(tmp_path):
    """Before any save there is none to point at; after a resume into another directory, and before the
    first save there, the good checkpoint is the one resumed from."""
    model, optimizer, scheduler = fresh_run()
    with pytest.raises(TrainingDiverged, match="loss became inf at step 2; .*No checkpoint was saved"):
        loop(model, optimizer, scheduler, tmp_path / "a", steps=2 * N, loss_fn=poisoned_at(2, float("inf")))

    model, optimizer, scheduler = fresh_run()
    loop(model, optimizer, scheduler, tmp_path / "first", steps=N)
    model, optimizer, scheduler = fresh_run()
    with pytest.raises(TrainingDiverged) as caught:
        loop(model, optimizer, scheduler, tmp_path / "second", steps=2 * N, resume=str(tmp_path / "first"),
             loss_fn=poisoned_at(3))
    assert f"at step {N + 3}; " in str(caught.value)
    assert f"checkpoint (step {N}) is in {tmp_path / 'first'}" in str(caught.value)
    assert not (tmp_path / "second" / io.CHECKPOINT_FILE).exists()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow on the way to inf is the point
def test_huge_learning_rate_diverges_and_the_checkpoint_before_stays_loadable(tmp_path, capsys):
    recipe = RECIPES["trainer-quadratic"]
    config = recipe.config_class(hidden=(8, 8), steps=50, lr=1e30, n_train=128, checkpoint_every=1,
                                 out=str(tmp_path))
    with pytest.raises(TrainingDiverged) as caught:
        recipe.train(config)
    step = int(re.search(r"at step (\d+)", str(caught.value)).group(1))
    assert 1 < step <= 50
    assert io.load_checkpoint(tmp_path).step == step - 1
    assert not (tmp_path / "metrics.json").exists()

    # the CLI reports it in one line (exit 1), not as a traceback
    assert main(["train", "trainer-quadratic", "--hidden", "8,8", "--steps", "50", "--lr", "1e30",
                 "--n-train", "128", "--out", str(tmp_path / "cli")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(r"at step \d+", err) and "Traceback" not in err
