"""`scratchzoo list | train RECIPE [options] | eval RECIPE --ckpt DIR | sample RECIPE --ckpt DIR [options] |
bench [--config NAME] [--json]`.

The options of `train` are the fields of the recipe's config dataclass, spelled with dashes
(`--batch-size 64`, `--show-backward`), so the CLI never drifts from the recipes. `sample` continues a
prompt with a generative recipe's checkpoint (`Recipe.sample`) and prints each piece as it is generated:

    scratchzoo sample gpt-char --ckpt runs/gpt-char/DIR --prompt "ROMEO:" --max-new-tokens 300 \
        --temperature 0.8 --top-k 40 --top-p 0.95 --seed 0
"""
from __future__ import annotations

import argparse
import collections.abc
import dataclasses
import subprocess
import sys
import types
import typing
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


def _field_type(field: dataclasses.Field, config_class: type) -> Any:
    """The Python type a flag parses to, from the dataclass annotation (Optional[int] -> int)."""
    hint = typing.get_type_hints(config_class)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and args:
        hint = args[0]
    if typing.get_origin(hint) in (list, tuple, collections.abc.Sequence):
        return "sequence"
    return hint


def _config_parser(recipe: Any) -> _Parser:
    parser = _Parser(prog=f"scratchzoo train {recipe.name}", add_help=False)
    for field in dataclasses.fields(recipe.config_class):
        flag = "--" + field.name.replace("_", "-")
        kind = _field_type(field, recipe.config_class)
        if kind is bool:
            # --flag / --no-flag: a default of True must be switchable off too (--no-character-lexicon)
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS)
        elif kind == "sequence":
            parser.add_argument(flag, dest=field.name, default=argparse.SUPPRESS,
                                type=lambda text: tuple(int(v) for v in text.split(",")))
        else:
            parser.add_argument(flag, dest=field.name, type=kind, default=argparse.SUPPRESS)
    return parser


def _config(recipe: Any, options: list[str]) -> Any:
    parser = _config_parser(recipe)
    valid = ", ".join(sorted(a.option_strings[0] for a in parser._actions))
    try:
        values, unknown = parser.parse_known_args(options)
    except UsageError as error:
        raise UsageError(f"{recipe.name}: {error}") from None
    if unknown:
        raise UsageError(f"{recipe.name}: unknown option {unknown[0]}; valid options: {valid}")
    return recipe.config_class(**vars(values))


def _print_metrics(metrics: dict[str, Any]) -> None:
    for name, value in metrics.items():
        print(f"{name}: {value:.6g}" if isinstance(value, float) else f"{name}: {value}")


def _bench(config: str | None, as_json: bool) -> int:
    """Run benchmarks/vs_torch.py of the source checkout (it needs PyTorch, which the library never imports)."""
    candidates = [Path(__file__).resolve().parents[2] / "benchmarks" / "vs_torch.py",
                  Path.cwd() / "benchmarks" / "vs_torch.py"]
    script = next((path for path in candidates if path.exists()), None)
    if script is None:
        raise UsageError("bench: benchmarks/vs_torch.py not found; run from a source checkout of scratchzoo")
    flags = (["--config", config] if config else []) + (["--json"] if as_json else [])
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
    train = commands.add_parser("train", help="train a recipe (options: the recipe's config fields)")
    train.add_argument("recipe")
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
    try:
        args, rest = parser.parse_known_args(argv)
        if rest and args.command != "train":
            raise UsageError(f"{args.command}: unknown option {rest[0]}")
        if args.command == "list":
            for name, recipe in _recipes().items():
                print(f"{name:<20} {recipe.description}")
        elif args.command == "train":
            recipe = _recipe(args.recipe)
            metrics = recipe.train(_config(recipe, rest))
            _print_metrics(metrics)
        elif args.command == "eval":
            _print_metrics(_recipe(args.recipe).evaluate(args.ckpt))
        elif args.command == "sample":
            _sample(args)
        elif args.command == "bench":
            return _bench(args.config, args.json)
    except UsageError as error:
        print(f"scratchzoo: error: {error}", file=sys.stderr)
        return 2
    except _run_errors() as error:  # the tuple is built only when an exception is being matched
        print(f"scratchzoo: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
