"""Command-line options read from the estimators' constructor signatures and docstrings, so a
new model gets its options without code here; and the parser's one-line errors."""

from __future__ import annotations

import argparse
import inspect
import re
from typing import Any, Callable

__all__ = ["UsageError", "Parser", "add_model_options", "given_params", "as_list", "NOT_OPTIONS"]

NOT_OPTIONS = {"latent_dim", "checkpoint_dir", "verbose"}
#: Option placeholders where the parameter's name says too little: a network of your own is a spec's text.
_METAVARS = {"encoder": "MODULE:NAME(K=V)", "decoder": "MODULE:NAME(K=V)"}


class UsageError(Exception):
    """Bad command-line usage (reported as one line, exit status 2)."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of argparse's usage block
        raise UsageError(f"{self.prog}: {message}; see '{self.prog} --help'.")


# ---------------------------------------------------------------------------------------- options
def _none_or(conv: Callable[[str], Any], what: str) -> Callable[[str], Any]:
    def parse(s: str):
        if s.strip().lower() == "none":
            return None
        try:
            return conv(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} or 'none', got {s!r}") from None

    parse.__name__ = what
    return parse


def _sizes(s: str) -> tuple[int, ...]:
    """'256,128' -> (256, 128); '' or 'none' -> () (no hidden layer: linear)."""
    s = s.strip()
    if s.lower() in ("", "none", "linear", "()"):
        return ()
    try:
        return tuple(int(p) for p in s.replace(" ", ",").split(",") if p)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected layer sizes such as 256,128 (or 'none' for linear), got {s!r}") from None


def _bool(s: str) -> bool:
    t = s.strip().lower()
    if t in ("true", "yes", "1", "on"):
        return True
    if t in ("false", "no", "0", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def _auto(s: str):
    """A number when it reads as one, 'none' -> None, else the string."""
    if s.strip().lower() == "none":
        return None
    for conv in (int, float):
        try:
            return conv(s)
        except ValueError:
            pass
    return s


def _converter(default: Any, annotation: Any):
    ann = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    toks = {t.strip() for t in ann.split("|")} if ann and ann != "_empty" else set()
    if isinstance(default, tuple):
        return _sizes
    if "float" in toks:
        return _none_or(float, "a number")
    if "int" in toks:
        return _none_or(int, "an integer")
    if "str" in toks and default is not None:
        return str
    return _auto


def _param_docs(cls) -> dict[str, str]:
    """name -> description, from the numpydoc 'Parameters' section of ``cls``'s docstring."""
    doc = inspect.getdoc(cls) or ""
    m = re.search(r"^Parameters\n-+\n(.*?)(?:\n\n[A-Z][A-Za-z ]+\n-+\n|\Z)", doc, re.S | re.M)
    if not m:
        return {}
    out: dict[str, str] = {}
    names: list[str] = []
    pending = ""
    desc: list[str] = []

    def flush():
        text = " ".join(desc).strip()
        for n in names:
            out[n] = text
    for line in m.group(1).splitlines():
        if line and not line[0].isspace():
            if names and not pending:
                flush()
                names, desc = [], []
            pending += " " + line.strip()
            if " :" in pending or pending.endswith(":"):
                head, _, typ = pending.partition(" :")
                names = [n.strip() for n in head.split(",") if n.strip()]
                desc = [f"[{typ.strip()}]"] if typ.strip() else []
                pending = ""
        elif line.strip():
            desc.append(line.strip())
    if names:
        flush()
    return {k: re.sub(r":(?:class|func|meth):`~?([^`]+)`", r"\1", v).replace("``", "") for k, v in out.items()}


def _docs_for(cls) -> dict[str, str]:
    """Descriptions for ``cls``; "as for X" entries are filled from the other models' docs."""
    from ..config import TrainConfig
    from ..models import MODELS

    def reference(text: str) -> bool:  # "as for Autoencoder", "see latentlab.TrainConfig"
        return "as for" in text or "latentlab.TrainConfig" in text

    own = _param_docs(cls)
    pool: dict[str, str] = {}
    for other in [TrainConfig, *MODELS.values()]:  # the training settings' own words first
        for k, v in _param_docs(other).items():
            if not reference(v) and k not in pool:
                pool[k] = v
    return {k: (pool.get(k, v) if reference(v) else v) for k, v in own.items()} | {k: v for k, v in pool.items() if k not in own}


def _show_default(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, tuple):
        return ",".join(map(str, v)) or "none"
    return str(v)


def as_list(conv: Callable[[str], Any]) -> Callable[[str], list]:
    """A converter of a list of values: comma-separated, or ';'-separated for layer sizes (whose
    own values are comma-separated: "--hidden '64;128,64'" is two settings)."""
    sep = ";" if conv is _sizes else ","

    def parse(s: str) -> list:
        items = [t for t in s.split(sep) if t.strip() or conv is _sizes]
        if not items:
            raise argparse.ArgumentTypeError(f"expected one or more values separated by {sep!r}, got {s!r}")
        return [conv(t) for t in items]

    parse.__name__ = f"list of {getattr(conv, '__name__', 'values')}"
    return parse


def add_model_options(parser: argparse.ArgumentParser, classes: dict[str, type], title: str,
                      exclude: tuple[str, ...] = (), *, lists: bool = False) -> list[str]:
    """Add one option per constructor parameter of ``classes`` (their union); returns the names.
    With ``lists``, each option takes a list of values (:func:`as_list`; for ``latentlab sweep``).

    Defaults are left to the estimators (argparse.SUPPRESS): only options given on the command
    line reach the constructor, so defaults are defined once, in the signatures.
    """
    group = parser.add_argument_group(title)
    seen: dict[str, list[str]] = {}
    params: dict[str, inspect.Parameter] = {}
    docs: dict[str, str] = {}
    for label, cls in classes.items():
        d = _docs_for(cls)
        for name, p in inspect.signature(cls).parameters.items():
            if name in NOT_OPTIONS or name in exclude or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            seen.setdefault(name, []).append(label)
            params.setdefault(name, p)
            docs.setdefault(name, d.get(name, ""))
    for name, p in params.items():
        flag = "--" + name.replace("_", "-")
        text = docs[name]
        if len(classes) > 1 and len(seen[name]) < len(classes):
            text += f" (for {', '.join(seen[name])})"
        text += f" (default: {_show_default(p.default)})"
        text = text.replace("%", "%%")
        dest = "param_" + name
        if isinstance(p.default, bool) and not lists:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text)
        else:
            conv = _bool if isinstance(p.default, bool) else _converter(p.default, p.annotation)
            meta = "SIZES" if conv is _sizes else _METAVARS.get(name, name.upper())
            if lists:
                conv, meta = as_list(conv), ("S1;S2" if conv is _sizes else f"{meta}[,{meta}...]")
            group.add_argument(flag, dest=dest, type=conv, default=argparse.SUPPRESS, metavar=meta, help=text)
    return list(params)


def given_params(args) -> dict[str, Any]:
    return {k[len("param_"):]: v for k, v in vars(args).items() if k.startswith("param_")}


# ---------------------------------------------------------------------------------------- output
