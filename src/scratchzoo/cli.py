"""`scratchzoo list | train RECIPE [options] | eval RECIPE --ckpt DIR | sample RECIPE --ckpt DIR [options] |
bench [--config NAME] [--json] [--steps N]`.

The options of `train` are the fields of the recipe's config dataclass, spelled with dashes
(`--batch-size 64`, `--show-backward`), so the CLI never drifts from the recipes; `train RECIPE --help`
lists them with their defaults. A value the recipe cannot train with (`--batch-size 0`, `--dropout 1.5`,
`--cell foo`) is a one-line error, exit code 2, as a bad flag is. `sample` continues a prompt with a
generative recipe's checkpoint (`Recipe.sample`: gpt-char, moe-gpt, lstm-charlm, rnn-charlm) and prints
each piece as it is generated:

    scratchzoo sample gpt-char --ckpt runs/gpt-char/DIR --prompt "ROMEO:" --max-new-tokens 300 \
        --temperature 0.8 --top-k 40 --top-p 0.95 --seed 0
"""
from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence


class UsageError(Exception):
    """A bad command line: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _recipes() -> dict[str, Any]:
    from scratchzoo.recipes import RECIPES
    return RECIPES


def _recipe(name: str) -> Any:
    recipes = _recipes()
    if name not in recipes:
        raise UsageError(f"unknown recipe {name!r}; choose from: {', '.join(recipes)}")
    return recipes[name]


def _integers(text: str) -> tuple[int, ...]:
    """'512,256' -> (512, 256)."""
    return tuple(int(v) for v in text.split(","))


_integers.__name__ = "comma-separated integers"  # argparse's "invalid comma-separated integers value: 'x'"


def _shown(value: Any) -> str:
    """A default as a flag would spell it: 512,256 for a sequence, 'stdlib' for a string ('\\n' visible)."""
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else repr(value)


def _config_parser(recipe: Any) -> _Parser:
    """One flag per config field; its help says the default (and the choices of a string field)."""
    from scratchzoo.recipes.common import field_type, flag  # the recipes are loaded already: recipe is one
    parser = _Parser(prog=f"scratchzoo train {recipe.name}", usage=f"scratchzoo train {recipe.name} [options]",
                     description=recipe.description, add_help=False)
    for field in dataclasses.fields(recipe.config_class):
        kind = field_type(recipe.config_class, field.name)
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        names = recipe.allowed_names(field.name)
        described = (f"one of {', '.join(names)}; " if names else "") + f"default: {_shown(default)}"
        options: dict[str, Any] = dict(dest=field.name, default=argparse.SUPPRESS, help=described)
        if kind is bool:
            # --flag / --no-flag: a default of True must be switchable off too (--no-character-lexicon)
            parser.add_argument(flag(field.name), action=argparse.BooleanOptionalAction, **options)
        elif kind == "sequence":
            parser.add_argument(flag(field.name), type=_integers, metavar="N,N,...", **options)
        else:
            parser.add_argument(flag(field.name), type=kind, metavar=kind.__name__.upper(), **options)
    return parser


def _config(recipe: Any, options: list[str]) -> Any:
    """The recipe's config from its flags, checked (ConfigError names the flag, the allowed and the given)."""
    parser = _config_parser(recipe)
    valid = ", ".join(sorted(a.option_strings[0] for a in parser._actions))
    try:
        values, unknown = parser.parse_known_args(options)
    except UsageError as error:
        raise UsageError(f"{recipe.name}: {error}") from None
    if unknown:
        raise UsageError(f"{recipe.name}: unknown option {unknown[0]}; valid options: {valid}")
    config = recipe.config_class(**vars(values))
    recipe.check_config(config)
    return config


def _train(args: argparse.Namespace, options: list[str], train_parser: argparse.ArgumentParser) -> None:
    """`train RECIPE [options]`; with -h/--help, the recipe's options and their defaults (without a recipe,
    the command's own help and the recipes)."""
    if args.recipe is None:
        if not args.help:
            raise UsageError("train: the following arguments are required: recipe")
        print(train_parser.format_help() + "\nrecipes: " + ", ".join(_recipes()))
        return
    recipe = _recipe(args.recipe)
    if args.help:
        print(_config_parser(recipe).format_help())
        return
    _print_metrics(recipe.train(_config(recipe, options)))


def _print_metrics(metrics: dict[str, Any]) -> None:
    for name, value in metrics.items():
        print(f"{name}: {value:.6g}" if isinstance(value, float) else f"{name}: {value}")


def _bench(config: str | None, as_json: bool, steps: int | None = None) -> int:
    """Run benchmarks/vs_torch.py of the source checkout (it needs PyTorch, which the library never imports);
    `steps` (measured steps per library) is passed on when given, and the script checks it."""
    candidates = [Path(__file__).resolve().parents[2] / "benchmarks" / "vs_torch.py",
                  Path.cwd() / "benchmarks" / "vs_torch.py"]
    script = next((path for path in candidates if path.exists()), None)
    if script is None:
        raise UsageError("bench: benchmarks/vs_torch.py not found; run from a source checkout of scratchzoo")
    flags = ((["--config", config] if config else []) + (["--json"] if as_json else [])
             + (["--steps", str(steps)] if steps is not None else []))
    return subprocess.call([sys.executable, str(script), *flags])


def _check_sampling(args: argparse.Namespace) -> None:
    if args.max_new_tokens < 0:
        raise UsageError(f"sample: --max-new-tokens must be >= 0, got {args.max_new_tokens}")
    if args.temperature < 0:
        raise UsageError(f"sample: --temperature must be >= 0 (0: greedy), got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise UsageError(f"sample: --top-k must be >= 1, got {args.top_k}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise UsageError(f"sample: --top-p must lie in (0, 1], got {args.top_p}")


def _sample(args: argparse.Namespace) -> None:
    """Print the prompt, then each piece of text as the recipe's sampler yields it (flushed: it streams)."""
    recipe = _recipe(args.recipe)
    if recipe.sample is None:
        can = [name for name, r in _recipes().items() if r.sample is not None]
        raise UsageError(f"sample: recipe {recipe.name!r} does not generate; recipes that do: {', '.join(can)}")
    _check_sampling(args)
    pieces = recipe.sample(args.ckpt, args.prompt, args.max_new_tokens, temperature=args.temperature,
                           top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    sys.stdout.write(args.prompt)
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


def _config_errors() -> tuple[type[Exception], ...]:
    """Config values a recipe cannot train with: a usage problem like a bad flag, so exit code 2.
    Imported only when an exception is being matched (see _run_errors)."""
    from scratchzoo.recipes.common import ConfigError
    return (ConfigError,)


def _run_errors() -> tuple[type[Exception], ...]:
    """Failures of a well-formed command (a missing checkpoint, a diverged run, an unavailable data set):
    their messages say what happened and what to do, so they print as one line, exit code 1.
    Imported only when an exception is being matched, so that `bench` never loads the recipes."""
    from scratchzoo.data.datasets import DatasetUnavailable
    from scratchzoo.io import CheckpointError
    from scratchzoo.recipes.common import PromptError, TrainingDiverged
    return CheckpointError, DatasetUnavailable, PromptError, TrainingDiverged


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="scratchzoo", description="Classic deep-learning models on a NumPy autograd engine.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("list", help="recipes and what they do")
    train = commands.add_parser("train", help="train a recipe (options: the recipe's config fields)", add_help=False,
                                description="Train a recipe; `scratchzoo train RECIPE --help` lists its options.")
    train.add_argument("recipe", nargs="?")
    train.add_argument("-h", "--help", action="store_true", help="the recipe's options and their defaults")
    evaluate = commands.add_parser("eval", help="evaluate a checkpoint directory")
    evaluate.add_argument("recipe")
    evaluate.add_argument("--ckpt", required=True)
    sample = commands.add_parser("sample", help="continue a prompt from a checkpoint, printing as it goes")
    sample.add_argument("recipe")
    sample.add_argument("--ckpt", required=True)
    sample.add_argument("--prompt", default="\n")
    sample.add_argument("--max-new-tokens", type=int, default=500)
    sample.add_argument("--temperature", type=float, default=0.8, help="0: greedy (always the most likely)")
    sample.add_argument("--top-k", type=int, default=None, help="sample among the k most likely only")
    sample.add_argument("--top-p", type=float, default=None, help="... among the fewest holding probability p")
    sample.add_argument("--seed", type=int, default=None)
    bench = commands.add_parser("bench", help="time a training step against PyTorch CPU")
    bench.add_argument("--config", default=None)
    bench.add_argument("--json", action="store_true")
    bench.add_argument("--steps", type=int, default=None, help="measured steps per library (default: the script's)")
    try:
        args, rest = parser.parse_known_args(argv)
        if rest and args.command != "train":
            raise UsageError(f"{args.command}: unknown option {rest[0]}")
        if args.command == "list":
            for name, recipe in _recipes().items():
                print(f"{name:<20} {recipe.description}")
        elif args.command == "train":
            _train(args, rest, train)
        elif args.command == "eval":
            _print_metrics(_recipe(args.recipe).evaluate(args.ckpt))
        elif args.command == "sample":
            _sample(args)
        elif args.command == "bench":
            return _bench(args.config, args.json, args.steps)
    except UsageError as error:
        return _report(error, 2)
    except _config_errors() as error:  # the tuples are built only when an exception is being matched
        return _report(error, 2)
    except _run_errors() as error:
        return _report(error, 1)
    return 0


def _report(error: Exception, code: int) -> int:
    print(f"scratchzoo: error: {error}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
