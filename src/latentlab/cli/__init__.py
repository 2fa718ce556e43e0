"""The ``latentlab`` command: parses the command line, calls :mod:`latentlab.api`, prints.

Exit status: 0 on success; 2 for bad usage or bad input (one line on stderr naming the problem
and the fix; ``--debug`` adds the traceback); 1 for anything else; 130 when interrupted by Ctrl-C
and 143 by SIGTERM, at any moment of the command (training writes a checkpoint first, so
``fit --resume`` continues), with one line and no traceback.

Nothing heavy is imported before :func:`main` runs (the parser, NumPy and torch are imported
inside it), so that a Ctrl-C while the command starts is handled too.

Model options are read from the estimators' constructor signatures and docstrings, so a new
model registered in :mod:`latentlab.models.registry` gets its command-line options without code here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from ..interrupts import Terminated

if TYPE_CHECKING:  # pragma: no cover
    import argparse
    from typing import Sequence

__all__ = ["main", "build_parser"]


def __getattr__(name: str):
    if name == "build_parser":  # imported on first use: the parser imports NumPy
        from .parser import build_parser

        return build_parser
    raise AttributeError(f"module 'latentlab.cli' has no attribute {name!r}")


def _options_of(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """The option strings of the (sub)command named by ``words`` ("fit", "vae")."""
    import argparse
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
    import inspect

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


@contextlib.contextmanager
def _warnings_as_lines(tag: str):
    """Warnings (a ConvergenceWarning, ...) as one line each on stderr: ``latentlab: warning: ...``."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        if tag:  # every torchrun process sees the same warning: rank 0 says it
            return
        print(f"latentlab: warning: {_one_line(message) if isinstance(message, Warning) else message}",
              file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _terminate(signum, frame):
    _SIGNALLED.append(signum)
    raise Terminated()


def _keyboard(signum, frame):
    _SIGNALLED.append(signum)
    raise KeyboardInterrupt


#: The signals received while the command ran: an interrupt inside an import that C code turned
#: into an ImportError (NumPy's does) is still an interrupt.
_SIGNALLED: list[int] = []


_terminate.latentlab_terminate = True  # the trainer may take SIGTERM over from this handler (it checkpoints first)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``latentlab`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Under torchrun (``torchrun --nproc-per-node N -m latentlab fit ...``) only rank 0 prints
    results and writes files; the other ranks print only errors of their own (a lost peer, an
    internal error), tagged with the rank.

    SIGTERM is handled as Ctrl-C is (exit status 143 instead of 130) while the command runs; the
    signal handlers are restored when it returns.
    """
    _INTERRUPTED.clear()
    _SIGNALLED.clear()
    main_thread = threading.current_thread() is threading.main_thread()
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    tag = ""
    try:
        if main_thread and old[signal.SIGTERM] in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _terminate)
        if main_thread and old[signal.SIGINT] is signal.default_int_handler:
            signal.signal(signal.SIGINT, _keyboard)
        world = os.environ.get("WORLD_SIZE", "1").strip()
        if not (world.isdigit() and int(world) > 1) or os.environ.get("RANK", "0").strip() in ("", "0"):
            return _main(argv)  # one process, or torchrun's rank 0 (as training.distributed.is_main_process decides)
        tag = f" (rank {os.environ.get('RANK', '?')})"
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            return _main(argv, tag=tag)
    except KeyboardInterrupt as exc:  # before or after _main's own handler
        return _interrupted(exc, tag)
    finally:
        if argv is None and sys.exc_info()[0] is None and _INTERRUPTED:
            # The process's own command was interrupted and has said so: its files are written, and
            # it ends now with its status, so that no later Ctrl-C, and no interpreter shutdown
            # after an import that a signal cut short, turns status 130/143 into a death by signal.
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(_INTERRUPTED[-1])
        for sig, handler in old.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


_INTERRUPTED: list[int] = []  # the status of an interrupted command, for main's exit


def _interrupted(exc: BaseException, tag: str) -> int:
    """Status 130 (Ctrl-C) or 143 (SIGTERM), and one line; further Ctrl-C are ignored meanwhile."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    term = getattr(exc, "signum", None) == signal.SIGTERM
    if not tag:  # rank 0 says it
        what = "terminated (SIGTERM)" if term else "interrupted"
        print(f"latentlab: {what} (a checkpoint was written if training; continue with 'latentlab fit --resume RUN_DIR').",
              file=sys.stderr)
    _INTERRUPTED.append(143 if term else 130)
    return _INTERRUPTED[-1]


def _main(argv: Sequence[str] | None = None, tag: str = "") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    import traceback

    from .options import UsageError

    try:
        from .parser import build_parser

        parser = build_parser(argv)
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
        with trust, _warnings_as_lines(tag):
            return int(args.handler(args, ["latentlab", *argv]) or 0)
    except KeyboardInterrupt as exc:
        return _interrupted(exc, tag)
    except UsageError as exc:
        if debug:
            traceback.print_exc()
        if not tag:  # every rank sees the same bad usage: rank 0 says it
            print(_one_line(exc), file=sys.stderr)
        return 2
    except Exception as exc:
        if _SIGNALLED:  # the signal's exception was turned into another by the code it interrupted
            return _interrupted(Terminated() if _SIGNALLED[-1] == signal.SIGTERM else KeyboardInterrupt(), tag)
        return _error(exc, tag, debug)


def _error(exc: Exception, tag: str, debug: bool) -> int:
    import traceback

    from ..errors import DistributedError, DivergenceError, LatentlabError

    if debug:
        traceback.print_exc()
    if isinstance(exc, LatentlabError):
        if not tag or isinstance(exc, DistributedError):  # the others are the same on every rank
            print(f"latentlab{tag}: error: {_one_line(exc)}", file=sys.stderr)
        return 1 if isinstance(exc, (DivergenceError, DistributedError)) else 2
    if isinstance(exc, MemoryError):
        print(f"latentlab{tag}: error: out of memory ({_one_line(exc)}); ask for less (fewer rows, a smaller network "
              "or batch), or use a machine with more memory.", file=sys.stderr)
        return 1
    if isinstance(exc, RecursionError):
        print(f"latentlab{tag}: error: an input is nested too deeply to be read ({_one_line(exc)}).", file=sys.stderr)
        return 2
    if isinstance(exc, OSError):
        print(f"latentlab{tag}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    print(f"latentlab{tag}: internal error: {type(exc).__name__}: {_one_line(exc)} (rerun with --debug for the traceback)", file=sys.stderr)
    return 1
