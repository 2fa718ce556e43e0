"""The ``latentlab`` command: parses the command line, calls :mod:`latentlab.api`, prints.

Exit status: 0 on success; 2 for bad usage or bad input (one line on stderr naming the problem
and the fix; ``--debug`` adds the traceback); 1 for anything else; 130 when interrupted (Ctrl-C
during training writes a checkpoint first, so ``fit --resume`` continues).

Model options are read from the estimators' constructor signatures and docstrings, so a new
model registered in :mod:`latentlab.models.registry` gets its command-line options without code here.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import sys
import traceback
from typing import Sequence

from .options import UsageError
from .parser import build_parser

__all__ = ["main", "build_parser"]


def _options_of(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """The option strings of the (sub)command named by ``words`` ("fit", "vae")."""
    for w in words:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or w not in sub.choices:
            break
        parser = sub.choices[w]
    return [o for a in parser._actions for o in a.option_strings if o.startswith("--")]


def _unrecognized(args, extra: list[str], parser: argparse.ArgumentParser | None = None) -> str:
    """The one-line error for unknown arguments, naming the models that do take an option, or
    the closest option of this command."""
    import difflib

    from ..models import MODELS

    words = [w for w in (getattr(args, "command", None), getattr(args, "model", None)) if w]
    prog = " ".join(["latentlab", *words])
    cond = [e.split("=", 1)[0] for e in extra if e.split("=", 1)[0] in ("--labels", "--label-column")]
    if cond and getattr(args, "command", None) == "fit" and getattr(args, "model", None):
        from ..runs import conditional_models

        return (f"{prog}: {cond[0]} gives the condition of a conditional model, and {args.model} takes none; "
                f"fit {' or '.join(conditional_models())} to condition on labels, or drop it.")

    hint = ""
    if getattr(args, "command", None) == "fit":
        for e in extra:
            name = e.split("=", 1)[0].lstrip("-").replace("-", "_")
            owners = [m for m, cls in MODELS.items() if name in inspect.signature(cls).parameters]
            if e.startswith("--") and owners:
                hint = f" ({e.split('=', 1)[0]} is an option of {', '.join(owners)})"
                break
    if not hint and parser is not None:
        options = _options_of(parser, words)
        for e in extra:
            close = difflib.get_close_matches(e.split("=", 1)[0], options, n=1, cutoff=0.75) if e.startswith("--") else []
            if close:
                hint = f" (did you mean {close[0]}?)"
                break
    return f"{prog}: unrecognized argument(s) {' '.join(extra)}{hint}; see '{prog} --help'."


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``latentlab`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Under torchrun (``torchrun --nproc-per-node N -m latentlab fit ...``) only rank 0 prints
    results and writes files; the other ranks print only errors of their own (a lost peer, an
    internal error), tagged with the rank.
    """
    from ..training.distributed import is_main_process

    if is_main_process():
        return _main(argv)
    rank = os.environ.get("RANK", "?")
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        return _main(argv, tag=f" (rank {rank})")


def _main(argv: Sequence[str] | None = None, tag: str = "") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        try:
            args, extra = parser.parse_known_args(argv)
        except SystemExit as exc:  # --help and --version
            return int(exc.code or 0)
        if extra:
            raise UsageError(_unrecognized(args, extra, parser))
        if getattr(args, "command", None) is None:
            parser.print_help(sys.stderr)
            return 2
        trust = contextlib.nullcontext()
        if getattr(args, "trust_code", False):
            from ..models.own import trusted_code

            trust = trusted_code()
        with trust:
            return int(args.handler(args, ["latentlab", *argv]) or 0)
    except KeyboardInterrupt:
        if tag:  # rank 0 says it
            return 130
        print("latentlab: interrupted (a checkpoint was written if training; continue with 'latentlab fit --resume RUN_DIR').", file=sys.stderr)
        return 130
    except UsageError as exc:
        if debug:
            traceback.print_exc()
        if not tag:  # every rank sees the same bad usage: rank 0 says it
            print(_one_line(exc), file=sys.stderr)
        return 2
    except Exception as exc:
        from ..errors import DistributedError, DivergenceError, LatentlabError

        if debug:
            traceback.print_exc()
        if isinstance(exc, LatentlabError):
            if not tag or isinstance(exc, DistributedError):  # the others are the same on every rank
                print(f"latentlab{tag}: error: {_one_line(exc)}", file=sys.stderr)
            return 1 if isinstance(exc, (DivergenceError, DistributedError)) else 2
        if isinstance(exc, OSError):
            print(f"latentlab{tag}: error: {_one_line(exc)}", file=sys.stderr)
            return 1
        print(f"latentlab{tag}: internal error: {type(exc).__name__}: {_one_line(exc)} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
