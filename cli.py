"""Command line: ``python -m comfyui_animate_suite <command>``.

Each command lives in a module with ``register(subparsers)`` that adds its parser and sets
``run=<function(args) -> exit code>``. Heavy imports stay inside the run functions.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from .core.cli_args import add_models_dir_argument, default_models_dir, locator_from_args
from .core.errors import AnimateSuiteError

# Each method's command lives with the method; tools (the queue client) beside them.
_COMMAND_MODULES: tuple[str, ...] = (".pipelines.aniclipart.cli", ".pipelines.training.cli", ".tools.queue_client",
                                     ".pipelines.animate_anyone.cli")


def _run_models(args) -> int:
    from .core import model_registry
    from .core.errors import InputError

    folder = args.models_dir or default_models_dir()
    if not folder.is_dir():
        raise InputError("--models-dir", f"'{folder}' does not exist or is not a folder",
                         "ComfyUI's models folder (or set COMFYUI_MODELS_DIR)")
    rows = model_registry.report(locator_from_args(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    current = None
    # a family whose diffusers folder is found needs no single-file checkpoint (SVD: one or the other)
    with_folder = {row["family"] for row in rows if row["role"] == "diffusers" and row["found"]}
    for row in rows:
        if row["family"] != current:
            current = row["family"]
            print(f"\n{row['title']} [{row['family']}]\n  published at: {row['source']}")
        label = " | ".join(row["names"][:3]) + (" | ..." if len(row["names"]) > 3 else "")
        either = "or a diffusers folder" in row.get("note", "")
        if row["found"]:
            print(f"  ok       {row['role']:<18} {row['found']}")
        elif either and row["family"] in with_folder:
            print(f"  ok       {row['role']:<18} not needed: the diffusers folder below is used instead")
        else:
            status = "MISSING " if row["required"] else "optional"
            note = "; needs this checkpoint OR the diffusers folder below" if either else ""
            print(f"  {status} {row['role']:<18} {label}  (searched {', '.join(row['searched'])}{note})")
    return 0


def _register_models(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list, per model family, which files were found where and what is missing")
    add_models_dir_argument(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(run=_run_models)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m comfyui_animate_suite", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    _register_models(subparsers)
    for name in _COMMAND_MODULES:
        importlib.import_module(name, __package__).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except AnimateSuiteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
