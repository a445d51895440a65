"""The command line: `scratchzoo list | train | eval | bench`. Usage errors are one line on stderr with
exit code 2 and say what would have been valid; a failing run (missing checkpoint, diverged loss) is one
line with exit code 1; success is 0."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scratchzoo.cli import main
from scratchzoo.recipes import RECIPES


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scratchzoo: error: "), err
    return lines[0]


def test_list_prints_every_recipe_with_its_description(capsys):
    code, out, err = run(capsys, "list")
    assert code == 0 and err == ""
    lines = out.strip().splitlines()
    assert len(lines) == len(RECIPES)
    for line, (name, recipe) in zip(lines, RECIPES.items()):
        assert line.split(maxsplit=1) == [name, recipe.description]


def test_unknown_recipe_exits_2_listing_the_choices(capsys):
    code, out, err = run(capsys, "train", "no-such-recipe")
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert "no-such-recipe" in line and all(name in line for name in RECIPES)
    code, _, err = run(capsys, "eval", "no-such-recipe", "--ckpt", "x")
    assert code == 2 and all(name in one_line_error(err) for name in RECIPES)


def test_unknown_option_exits_2_listing_the_valid_options(capsys):
    code, out, err = run(capsys, "train", "trainer-quadratic", "--learning-rate", "1")
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert "--learning-rate" in line
    for option in ("--lr", "--steps", "--batch-size", "--hidden", "--out", "--resume", "--show-backward"):
        assert option in line


@pytest.mark.parametrize("argv", [["train", "trainer-quadratic", "--lr", "abc"],
                                  ["train", "mlp-digits", "--steps", "1.5"],
                                  ["train", "mlp-digits", "--hidden", "a,b"]])
def test_a_bad_value_exits_2_in_one_line(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert argv[-2] in line and repr(argv[-1]) in line


@pytest.mark.parametrize("argv", [[], ["nope"], ["train"], ["eval", "mlp-digits"], ["list", "--extra"]])
def test_malformed_commands_exit_2(capsys, argv):
    code, _, err = run(capsys, *argv)
    assert code == 2
    one_line_error(err)


def test_train_then_eval_with_ckpt(tmp_path, capsys):
    code, out, err = run(capsys, "train", "trainer-quadratic", "--steps", "20", "--hidden", "8,8",
                         "--n-train", "128", "--batch-size", "32", "--out", str(tmp_path))
    assert code == 0
    printed = dict(line.split(": ", 1) for line in out.strip().splitlines() if ": " in line)
    assert {"test_mse", "train_seconds", "run_dir"} <= set(printed)
    saved = json.loads((tmp_path / "checkpoint.json").read_text())["extra"]["config"]
    assert (saved["steps"], saved["hidden"], saved["n_train"], saved["batch_size"]) == (20, [8, 8], 128, 32)

    code, out, err = run(capsys, "eval", "trainer-quadratic", "--ckpt", str(tmp_path))
    assert code == 0 and err == ""
    assert out.strip() == f"test_mse: {json.loads((tmp_path / 'metrics.json').read_text())['test_mse']:.6g}"


def test_eval_of_a_missing_checkpoint_exits_1_in_one_line(tmp_path, capsys):
    code, out, err = run(capsys, "eval", "trainer-quadratic", "--ckpt", str(tmp_path / "nothing"))
    assert code == 1 and out == ""
    assert "checkpoint.json" in one_line_error(err)


def test_bench_unknown_config_exits_2(capfd):
    """bench runs benchmarks/vs_torch.py in a subprocess (its stderr goes straight to the fd)."""
    assert main(["bench", "--config", "nope"]) == 2
    err = capfd.readouterr().err
    assert "nope" in err and "Traceback" not in err


def test_bench_passes_steps_on(capfd):
    """--steps reaches benchmarks/vs_torch.py, which refuses fewer than 20 measured steps."""
    assert main(["bench", "--config", "mlp", "--steps", "3"]) == 2
    err = capfd.readouterr().err
    assert "--steps must be at least 20, got 3" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def vs_torch():
    """benchmarks/vs_torch.py as a module (benchmarks/ is not a package: loaded from its path)."""
    import importlib.util
    pytest.importorskip("torch")
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "vs_torch.py"
    if "vs_torch" not in sys.modules:  # gpt_char_reference.py imports it under this name too
        spec = importlib.util.spec_from_file_location("vs_torch", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["vs_torch"] = module  # dataclasses look their module up while the file runs
        spec.loader.exec_module(module)
    return sys.modules["vs_torch"]


@pytest.fixture
def tiny_config(vs_torch, monkeypatch):
    """A config of a Linear(4, 3) step (Adam, cross-entropy), registered as 'tiny', counting each side's steps."""
    import numpy as np
    import torch

    from scratchzoo import nn, rng

    calls = {"ours": 0, "torch": 0}

    def build():
        rng.manual_seed(0)
        batches = [(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), np.arange(8) % 3)]

        def count(side):
            calls[side] += 1
        return vs_torch.adam_cross_entropy_case(nn.Linear(4, 3), torch.nn.Linear(4, 3), batches, before_step=count)

    entry = vs_torch.Config("tiny", 9.0, build, extras=lambda: {"extra_figure": 1.5})
    monkeypatch.setitem(vs_torch.CONFIGS, "tiny", entry)
    return entry, calls


def test_vs_torch_measure_checks_warms_up_and_reports_what_it_measured(vs_torch, tiny_config):
    entry, calls = tiny_config
    row = vs_torch.measure(entry, 3, blas=(1, "OPENBLAS_NUM_THREADS"))
    steps = vs_torch.CHECKED_STEPS + vs_torch.WARMUP_STEPS + 3
    assert calls == {"ours": steps, "torch": steps}  # interleaved pairs: checked, warm-up, measured
    assert list(row)[:5] == ["config", "ours_ms", "torch_ms", "ratio", "target"]
    assert row["config"] == "tiny" and row["target"] == 9.0 and row["ours_ms"] > 0 and row["torch_ms"] > 0
    assert row["ratio"] > 0  # of the unrounded medians (a step this small rounds to few significant digits)
    assert {key: row[key] for key in ("blas_threads", "blas_threads_from", "checked_steps", "warmup_steps",
                                      "measured_steps", "statistic")} == {
        "blas_threads": 1, "blas_threads_from": "OPENBLAS_NUM_THREADS", "checked_steps": vs_torch.CHECKED_STEPS,
        "warmup_steps": vs_torch.WARMUP_STEPS, "measured_steps": 3, "statistic": "median"}
    assert isinstance(row["torch_threads"], int)
    assert list(row)[-1] == "extra_figure" and row["extra_figure"] == 1.5  # the config's extras come last


def test_vs_torch_json_rows_say_what_was_measured(vs_torch, tiny_config, capsys):
    import torch
    threads = torch.get_num_threads()
    try:
        assert vs_torch.main(["--config", "tiny", "--json", "--steps", "20"]) == 0
    finally:
        torch.set_num_threads(threads)  # main sets PyTorch's threads to NumPy's BLAS count
    out, err = capsys.readouterr()
    row = json.loads(out)  # stdout holds the JSON line only; the header went to stderr
    assert row["measured_steps"] == 20 and row["warmup_steps"] == vs_torch.WARMUP_STEPS
    assert row["torch_threads"] == row["blas_threads"] and row["blas_threads_from"] in err
    assert f"NumPy BLAS {row['blas_threads']} (from {row['blas_threads_from']})" in err


def test_vs_torch_refuses_to_time_a_wrong_computation(vs_torch, monkeypatch, capsys):
    with pytest.raises(vs_torch.WrongComputation, match="step 1 loss 1 .ours. != 1.5 .torch."):
        vs_torch.check_losses("wrong", vs_torch.Case(lambda: 1.0, lambda: 1.5))
    losses = iter([2.0, 2.0, 1.0, 1.1])  # ours, torch, ours, torch: the second step differs
    with pytest.raises(vs_torch.WrongComputation, match="step 2"):
        vs_torch.check_losses("late", vs_torch.Case(lambda: next(losses), lambda: next(losses)))
    vs_torch.check_losses("close", vs_torch.Case(lambda: 2.0, lambda: 2.0 + 1e-5))  # within 1e-4: no error

    timed = []
    case = vs_torch.Case(lambda: timed.append("ours") or 1.0, lambda: 2.0)
    monkeypatch.setitem(vs_torch.CONFIGS, "wrong", vs_torch.Config("wrong", 1.0, lambda: case))
    import torch
    threads = torch.get_num_threads()
    try:
        assert vs_torch.main(["--config", "wrong", "--json"]) == 1
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    assert out == "" and "wrong: step 1 loss" in err and "not timed" in err
    assert timed == ["ours"]  # stopped at the first disagreement: no warm-up, no timing


def test_vs_torch_blas_threads_without_threadpoolctl(vs_torch, monkeypatch):
    """Without threadpoolctl: the variables NumPy's BLAS reads, in its order, else the CPU count; the
    source is named. (OpenBLAS reads OPENBLAS_NUM_THREADS before OMP_NUM_THREADS; MKL its own first.)"""
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import threadpoolctl raises ImportError
    monkeypatch.setattr(vs_torch, "cpu_count", lambda: 4)
    for variable in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(vs_torch, "numpy_blas_name", lambda: "scipy-openblas")
    assert vs_torch.blas_threads() == (4, "CPU count")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    assert vs_torch.blas_threads() == (2, "OMP_NUM_THREADS")  # OpenBLAS ignores MKL_NUM_THREADS
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert vs_torch.blas_threads() == (1, "OPENBLAS_NUM_THREADS")
    monkeypatch.setattr(vs_torch, "numpy_blas_name", lambda: "mkl-sdl")
    assert vs_torch.blas_threads() == (3, "MKL_NUM_THREADS")
    monkeypatch.setenv("MKL_NUM_THREADS", "16")
    assert vs_torch.blas_threads() == (4, "MKL_NUM_THREADS")  # never more than the CPUs
    monkeypatch.setattr(vs_torch, "numpy_blas_name", lambda: "")  # unknown BLAS: the common order
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "0")  # not a thread count: skipped
    assert vs_torch.blas_threads() == (4, "MKL_NUM_THREADS")


def test_vs_torch_blas_threads_follow_the_environment(vs_torch):
    """The number the benchmark gives PyTorch is what NumPy's BLAS really uses, whatever the source."""
    import os
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import vs_torch; "
            "print(*vs_torch.blas_threads(), sep=',')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1],
                            env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().split(",")[0] == "1", result.stdout


def test_console_script_is_installed():
    exe = shutil.which("scratchzoo") or str(Path(sys.executable).with_name("scratchzoo"))
    result = subprocess.run([exe, "list"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == list(RECIPES)


def test_boolean_options_switch_both_ways():
    """--flag sets a boolean field, --no-flag clears it: a default of True can be turned off."""
    from scratchzoo.cli import _config
    recipe = RECIPES["transformer-pinyin"]
    assert recipe.config_class().character_lexicon is True and recipe.config_class().subphrases is False
    config = _config(recipe, ["--no-character-lexicon", "--subphrases"])
    assert config.character_lexicon is False and config.subphrases is True
    assert _config(recipe, []).character_lexicon is True


def test_recipe_help_lists_its_options_with_their_defaults(capsys):
    code, out, err = run(capsys, "train", "mlp-digits", "--help")
    assert code == 0 and err == ""
    assert out.startswith("usage: scratchzoo train mlp-digits [options]")
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip().startswith("--")}
    assert "default: 64" in lines["--batch-size"] and "default: 512,256" in lines["--hidden"]
    assert "one of relu, tanh" in lines["--activation"] and "default: 'relu'" in out
    code, out, _ = run(capsys, "train", "transformer-pinyin", "-h", "--steps", "3")
    assert code == 0 and "--no-character-lexicon" in out and "default: 9000" in out
    code, out, _ = run(capsys, "train", "-h")
    assert code == 0 and "scratchzoo train RECIPE --help" in out and all(name in out for name in RECIPES)


def test_a_bad_sequence_value_names_the_expected_format(capsys):
    code, _, err = run(capsys, "train", "cnn-digits", "--channels", "8,x")
    assert code == 2 and "invalid comma-separated integers value: '8,x'" in one_line_error(err)


DIGITS_TINY = ["--steps", "4", "--batch-size", "32", "--checkpoint-every", "0"]


def test_a_checkpoint_of_another_recipe_is_refused_on_eval_and_resume(tmp_path, capsys):
    mlp = tmp_path / "mlp"
    assert run(capsys, "train", "mlp-digits", *DIGITS_TINY, "--hidden", "8", "--out", str(mlp))[0] == 0
    assert json.loads((mlp / "checkpoint.json").read_text())["extra"]["recipe"] == "mlp-digits"
    code, out, err = run(capsys, "eval", "cnn-digits", "--ckpt", str(mlp))
    assert code == 1 and out == ""
    assert one_line_error(err).endswith(f"{mlp} was trained by recipe mlp-digits, not cnn-digits")
    code, _, err = run(capsys, "train", "cnn-digits", *DIGITS_TINY, "--resume", str(mlp), "--out", str(tmp_path / "c"))
    assert code == 1 and "was trained by recipe mlp-digits, not cnn-digits" in one_line_error(err)

    # a checkpoint from before the recipe was recorded still loads, and a foreign one is still one line
    record = json.loads((mlp / "checkpoint.json").read_text())
    del record["extra"]["recipe"]
    (mlp / "checkpoint.json").write_text(json.dumps(record))
    assert run(capsys, "eval", "mlp-digits", "--ckpt", str(mlp))[0] == 0
    code, _, err = run(capsys, "eval", "cnn-digits", "--ckpt", str(mlp))
    assert code == 1 and f"{mlp} does not fit recipe cnn-digits (trained by another recipe?)" in one_line_error(err)


@pytest.mark.parametrize("name, flags", [
    ("trainer-quadratic", ["--steps", "6", "--hidden", "8", "--n-train", "64", "--batch-size", "32"]),
    ("lstm-charlm", ["--steps", "3", "--embedding-dim", "8", "--hidden-size", "8", "--seq-len", "8",
                     "--batch-size", "4", "--sample-chars", "5"]),
])
def test_resuming_a_finished_run_leaves_checkpoint_and_curves(name, flags, tmp_path, capsys, monkeypatch):
    from scratchzoo.data import datasets
    monkeypatch.setattr(datasets, "text_corpus", lambda corpus: "def f(x):\n    return x + 1\n" * 200)
    done, again = tmp_path / "done", tmp_path / "again"
    assert run(capsys, "train", name, *flags, "--out", str(done))[0] == 0
    assert run(capsys, "train", name, *flags, "--resume", str(done), "--out", str(again))[0] == 0
    first, second = (json.loads((d / "checkpoint.json").read_text()) for d in (done, again))
    assert first["step"] == second["step"] == int(flags[1])
    assert first["extra"]["scheduler"] == second["extra"]["scheduler"]
    assert (again / "metrics.json").is_file()
    if (done / "curves.png").exists():  # matplotlib installed
        assert (again / "curves.png").read_bytes() == (done / "curves.png").read_bytes()
