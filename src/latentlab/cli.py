"""The ``latentlab`` command: parses the command line, calls :mod:`latentlab.api`, prints.

Exit status: 0 on success; 2 for bad usage or bad input (one line on stderr naming the problem
and the fix; ``--debug`` adds the traceback); 1 for anything else; 130 when interrupted (Ctrl-C
during training writes a checkpoint first, so ``fit --resume`` continues).

Model options are read from the estimators' constructor signatures and docstrings, so a new
model in :data:`latentlab.api.MODELS` gets its command-line options without code here.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import re
import sys
import traceback
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["main", "build_parser"]

# Estimator parameters the command line sets itself: --latent-dim is common to every command,
# the checkpoint goes into the run directory, and progress bars follow the terminal.
_NOT_OPTIONS = {"latent_dim", "checkpoint_dir", "verbose"}


class UsageError(Exception):
    """Bad command-line usage (reported as one line, exit status 2)."""


class _Parser(argparse.ArgumentParser):
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
    from .api import MODELS
    from .config import TrainConfig

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


def _add_model_options(parser: argparse.ArgumentParser, classes: dict[str, type], title: str) -> list[str]:
    """Add one option per constructor parameter of ``classes`` (their union); returns the names.

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
            if name in _NOT_OPTIONS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
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
        if isinstance(p.default, bool):
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text)
        else:
            conv = _converter(p.default, p.annotation)
            meta = "SIZES" if conv is _sizes else name.upper()
            group.add_argument(flag, dest=dest, type=conv, default=argparse.SUPPRESS, metavar=meta, help=text)
    return list(params)


def _given_params(args) -> dict[str, Any]:
    return {k[len("param_"):]: v for k, v in vars(args).items() if k.startswith("param_")}


# ---------------------------------------------------------------------------------------- output
def _fmt(v: Any) -> str:
    from .report import _fmt as fmt

    return fmt(v)


def _print_metrics(metrics: dict[str, Any], *, indent: str = "  ") -> None:
    from .report import HIDDEN_METRICS

    metrics = {k: v for k, v in metrics.items() if k not in HIDDEN_METRICS}
    if not metrics:
        return
    width = max(len(k) for k in metrics)
    for k, v in metrics.items():
        print(f"{indent}{k.ljust(width)}  {_fmt(v)}")


def _emit(args, obj: dict[str, Any], human: Callable[[], None]) -> None:
    if getattr(args, "json", False):
        from .api import _jsonable

        print(json.dumps(_jsonable(obj), allow_nan=True))
    else:
        human()


def _image_shape(run) -> tuple[int, ...] | None:
    ds = run.test or run.train
    if ds is not None and ds.image_shape:
        return ds.image_shape
    shape = (run.info.get("data") or {}).get("image_shape")
    return tuple(shape) if shape else None


def _columns(run) -> list[str] | None:
    ds = run.test or run.train
    return ds.feature_names if ds is not None else None


# ---------------------------------------------------------------------------------------- commands
def _open(args):
    """The run of a command that reads data, with the condition options it was given."""
    from . import api

    return api.open_run(args.run_dir, args.data, labels=args.labels, label_column=args.label_column)


def _cmd_fit(args, argv) -> int:
    from . import api

    model = getattr(args, "model", None)
    run_dir = getattr(args, "resume", None)
    if run_dir is not None:
        given = _given_params(args)
        extra = sorted(set(given) - {"epochs"})
        if extra or model is not None and getattr(args, "data", None):
            raise UsageError(
                f"latentlab fit --resume: the settings come from {run_dir}/run.json; drop "
                f"{', '.join('--' + e.replace('_', '-') for e in extra) or '--data'} (only --epochs may change)."
            )
        run = api.resume(run_dir, epochs=given.get("epochs"), command=argv)
    else:
        if model is None:
            raise UsageError(f"latentlab fit: name a model ({', '.join(api.MODELS)}) or pass --resume RUN_DIR; see 'latentlab fit --help'.")
        if args.out is None:
            raise UsageError(f"latentlab fit {model}: --out RUN_DIR is required (the folder the run is saved in).")
        params = _given_params(args)
        if args.latent_dim is not None:
            params["latent_dim"] = args.latent_dim
        config = api.RunConfig(model, args.data or api.RunConfig.data, params, args.test_fraction, args.split_seed, args.eval_k,
                               labels=getattr(args, "labels", None), label_column=getattr(args, "label_column", None))
        run = api.fit(config, args.out, command=argv)

    def human():
        c = run.config
        m = run.metrics
        k, d1 = api.code_size(run.model), int(run.model.latent_dim)
        size = f"latent size {k}" + (f": [z1 | z2] = {d1} + {k - d1}" if k != d1 else "")
        what = f"{c.model} ({size}) on {c.data}"
        sizes = f"{m.get('n_train')} train" + (f" / {m['n_test']} test" if m.get("n_test") else "")
        ep = f", {m['epochs']} epoch{'s' if m['epochs'] != 1 else ''}" if "epochs" in m else ""
        print(f"fitted {what}: {sizes}{ep}, {m.get('fit_time_s', 0):.1f} s")
        rest = {k: v for k, v in m.items() if k not in ("n_train", "n_test", "epochs", "fit_time_s")}
        if rest:
            print("test metrics:")
            _print_metrics(rest)
        print(f"saved to {run.path}")

    _emit(args, {"run_dir": str(run.path), "model": run.config.model, "metrics": run.metrics}, human)
    return 0


def _cmd_evaluate(args, argv) -> int:
    from . import api

    run = _open(args)
    split = api.default_split(run, args.split, args.data)
    metrics = api.evaluate(run, args.data, split=split, k=args.k, seed=args.seed)

    def human():
        print(f"{args.run_dir} on {args.data or 'its data'} ({split} split, k={args.k}):")
        _print_metrics(metrics)

    _emit(args, {"run_dir": args.run_dir, "split": split, "k": args.k, "metrics": metrics}, human)
    return 0


def _cmd_encode(args, argv) -> int:
    from . import api

    Z = api.encode(_open(args), split=args.split)
    api.write_array(args.out, Z, columns=[f"z{j}" for j in range(Z.shape[1])])
    _emit(args, {"out": args.out, "shape": list(Z.shape)}, lambda: print(f"wrote {Z.shape[0]} codes of size {Z.shape[1]} to {args.out}"))
    return 0


def _cmd_reconstruct(args, argv) -> int:
    from . import api

    run = _open(args)
    X, R = api.reconstruct(run, split=args.split)
    if args.out.lower().endswith(".png"):
        grid, cols = api.pair_rows(X, R, args.n)
        api.write_array(args.out, grid, image_shape=_image_shape(run), ncols=cols)
        shape = [len(grid) // 2, R.shape[1]]
    else:
        api.write_array(args.out, R, columns=_columns(run))
        shape = list(R.shape)
    _emit(args, {"out": args.out, "shape": shape}, lambda: print(f"wrote {shape[0]} reconstructions to {args.out}"))
    return 0


def _cmd_sample(args, argv) -> int:
    from . import api

    run = api.open_run(args.run_dir, load_data=False)
    S, y = api.sample(args.run_dir, args.n, seed=args.seed, label=args.label, return_labels=True)
    shape = _image_shape(run)
    if y is not None and y.ndim == 1 and args.out.lower().endswith(".png") and shape is not None:
        from . import plots

        api.write_figure(args.out, plots.labelled_grid(S, shape, y))  # one row per label
    else:
        api.write_array(args.out, S, image_shape=shape, columns=(run.info.get("data") or {}).get("feature_names"))
    if not hasattr(run.model, "sample") and not isinstance(run.model, api.PCA) and not getattr(args, "json", False):
        print(f"note: an {type(run.model).__name__} has no prior: these decode z ~ N(0, I), which it was never "
              "trained to map to data.", file=sys.stderr)
    obj: dict[str, Any] = {"out": args.out, "shape": list(S.shape)}
    text = f"wrote {S.shape[0]} samples to {args.out}"
    if y is not None and y.ndim == 1:
        values, counts = np.unique(y, return_counts=True)
        obj["labels"] = {str(v): int(c) for v, c in zip(values.tolist(), counts)}
        text += " (" + ", ".join(f"{c} of y = {v}" for v, c in obj["labels"].items()) + ")"
    elif y is not None:
        obj["condition"] = y[0].tolist()
    _emit(args, obj, lambda: print(text))
    return 0


def _cmd_interpolate(args, argv) -> int:
    from . import api

    run = _open(args)
    P = api.interpolate(run, start=args.start, end=args.end, steps=args.steps, split=args.split, label=args.label)
    api.write_array(args.out, P, image_shape=_image_shape(run), ncols=args.steps, columns=_columns(run))
    _emit(args, {"out": args.out, "shape": list(P.shape)}, lambda: print(f"wrote {P.shape[0]} interpolation steps to {args.out}"))
    return 0


#: The columns of the printed comparison: (heading, what it is, keys to read, the first present wins).
_COLUMNS = [
    ("rec. MSE", "reconstruction error on the test split: squared error per feature", ("reconstruction_mse",)),
    ("angle to PCA", "linear AE: largest principal angle to the PCA subspace, degrees", ("max_principal_angle_deg",)),
    ("FD random", "Frechet distance of decoded random latent points z ~ N(0, I) to the test set, in a digit "
     "classifier's feature space (lower: more realistic); N(0, I) is the VAE's prior, the AEs have none",
     ("fd_prior", "fd_standard_normal")),
    ("FD fitted", "the same with z from a Gaussian fitted to the training codes (for PCA: its latent Gaussian)",
     ("fd_fitted_gaussian",)),
    ("confidence", "a digit classifier's mean top probability on those N(0, I) decodes (higher: more recognisable)",
     ("confidence_prior", "confidence_standard_normal")),
    ("ELBO", "evidence lower bound per test example, nats", ("elbo",)),
    ("log p(x)", "test log-likelihood per example, nats (VAE: importance-sampled; PCA: exact)", ("log_likelihood",)),
]


def _pick(m: dict, keys) -> Any:
    for k in keys:
        if m.get(k) is not None:
            return m[k]
    return None


def _print_comparison(comparison) -> None:
    from .api import PCA

    rows = []
    for r in comparison.runs:
        m = dict(r.metrics)
        if isinstance(r.model, PCA):  # unwhitened PCA codes are not on N(0, I)'s scale: its column is "fitted"
            m.pop("fd_standard_normal", None)
            m.pop("confidence_standard_normal", None)
        rows.append((r.name, m))
    ref = next((m for _, m in rows if m.get("fd_real") is not None), None)
    if ref is not None:
        rows.append(("real data", {"fd_prior": ref["fd_real"], "confidence_prior": ref.get("confidence_real")}))
    cols = [c for c in _COLUMNS if any(_pick(m, c[2]) is not None for _, m in rows)]
    w0 = max(len(n) for n, _ in rows) + 2
    widths = [max(len(h), 8) + 2 for h, _, _ in cols]
    print("".ljust(w0) + "".join(h.rjust(w) for (h, _, _), w in zip(cols, widths)))
    for name, m in rows:
        cells = [_fmt(v) if (v := _pick(m, keys)) is not None else "" for _, _, keys in cols]
        print(name.ljust(w0) + "".join(c.rjust(w) for c, w in zip(cells, widths)))
    for h, d, _ in cols:
        print(f"  {h}: {d}")
    if ref is not None:
        print("  real data: training digits scored the same way, the best a model can do with this many points")


def _cmd_compare(args, argv) -> int:
    from . import api

    params = _given_params(args)
    kw = {}
    if args.latent_dim is not None:
        kw["latent_dim"] = args.latent_dim
    comp = api.compare(
        args.data or "digits",
        out=args.out,
        params=params,
        test_fraction=args.test_fraction,
        split_seed=args.split_seed,
        eval_k=args.eval_k,
        command=argv,
        **kw,
    )

    def human():
        _print_comparison(comp)
        print(f"report: {comp.report}")

    _emit(args, {"out": str(comp.path), "report": str(comp.report), "metrics": comp.table}, human)
    return 0


def _cmd_report(args, argv) -> int:
    from . import api

    path = api.report(args.path)
    _emit(args, {"report": str(path)}, lambda: print(path))
    return 0


def _cmd_demo(args, argv) -> int:
    import time

    from . import api

    t0 = time.perf_counter()
    comp = api.demo(args.out, params={"epochs": args.epochs} if args.epochs is not None else None, command=argv)
    elapsed = time.perf_counter() - t0

    def human():
        print(f"PCA, a linear AE, a deep AE and a VAE on the embedded digits (latent size {api.DEMO_LATENT_DIM}), "
              f"measured on {comp.runs[0].metrics.get('n_test')} held-out digits:")
        _print_comparison(comp)
        print(f"finished in {elapsed:.0f} s")
        print(f"report: {comp.report}")

    _emit(args, {"out": str(comp.path), "report": str(comp.report), "seconds": elapsed, "metrics": comp.table}, human)
    return 0


# ---------------------------------------------------------------------------------------- parser
_EPILOG_MAIN = """examples:
  latentlab demo                                   # the main job: four models on the digits, one report
  latentlab fit vae --data digits --latent-dim 2 --out runs/vae
  latentlab fit cvae --data digits --latent-dim 2 --out runs/cvae   # conditioned on the digit labels
  latentlab sample runs/cvae -n 30 --label 3 --out threes.png
  latentlab evaluate runs/vae --json
  latentlab sample runs/vae -n 64 --out samples.png
  latentlab compare --data mnist --latent-dim 16 --out runs/mnist
  latentlab report runs/vae

exit status: 0 success, 2 bad usage or input, 1 other errors, 130 interrupted."""


#: Examples in `latentlab fit MODEL --help`, where the default one is not enough.
_FIT_EXAMPLES = {
    "iwae": ["latentlab fit iwae --data binarized-mnist --latent-dim 50 --k 50 --out runs/iwae"],
    "vamp": ["latentlab fit vamp --data binarized-mnist --latent-dim 40 --n-pseudo-inputs 500 --out runs/vamp"],
    "hvae": ["latentlab fit hvae --data binarized-mnist --latent-dim 40 --latent-dim2 40 --out runs/hvae   # codes: [z1 | z2]"],
    "cvae": [
        "latentlab fit cvae --data digits --latent-dim 2 --out runs/cvae            # condition: the digit labels",
        "latentlab fit cvae --data x.npy --labels y.npy --latent-dim 4 --out runs/c  # labels (n,) or side inputs (n, m)",
        "latentlab fit cvae --data table.csv --label-column species --out runs/t     # a CSV column as the condition",
        "latentlab sample runs/cvae -n 30 --label 3,5 --out threes-and-fives.png",
    ],
}


def _condition_options(p, *, fit: bool = False) -> None:
    """--labels and --label-column: where a conditional model's condition comes from."""
    from .api import CONDITIONAL

    g = p.add_argument_group("condition (conditional models: " + ", ".join(CONDITIONAL) + ")")
    default = ("the source's own labels (digits, mnist, fashion-mnist, image folders with one subfolder a class)"
               if fit else "what the run was fitted with for its own data, the labels of --data for another source")
    g.add_argument("--labels", metavar="FILE", default=None,
                   help="FILE.npy or FILE.csv: one label per row of the data (numbers or text), or an (n, m) matrix of "
                   f"side inputs (default: {default})")
    g.add_argument("--label-column", metavar="NAME", default=None,
                   help="for a .csv/.tsv source: the column that holds the condition (removed from the features)")


def _common(json_flag: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="print the traceback of an error")
    if json_flag:
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object instead of text")
    return p


def _data_option(p, default_text: str = "digits") -> None:
    from .datasets.sources import describe_sources

    p.add_argument("--data", metavar="SOURCE", default=None, help=f"the data (default: {default_text}). {describe_sources()}")


def _split_options(p) -> None:
    from .api import RunConfig

    fields = {f.name: f.default for f in __import__("dataclasses").fields(RunConfig)}
    p.add_argument("--test-fraction", type=float, default=fields["test_fraction"], metavar="F",
                   help="share held out as the test split when the data has none of its own (default: %(default)s)")
    p.add_argument("--split-seed", type=int, default=fields["split_seed"], metavar="S", help="seed of that split (default: %(default)s)")
    p.add_argument("--eval-k", type=int, default=fields["eval_k"], metavar="K",
                   help="importance samples for the test log-likelihood recorded at the end (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``latentlab`` command (subcommands and their options)."""
    from . import api

    common = _common()
    parser = _Parser(
        prog="latentlab",
        description="From PCA to variational autoencoders: fit, evaluate, compare and report latent-variable "
        "models on your data.",
        epilog=_EPILOG_MAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"latentlab {api.__version__}")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    fmt = argparse.RawDescriptionHelpFormatter

    # fit
    fit = sub.add_parser("fit", parents=[common], help="fit a model and save the run", formatter_class=fmt,
                         description="Fit a model on a data source and save the run directory (model, checkpoint, run.json).",
                         epilog="examples:\n  latentlab fit vae --data digits --latent-dim 2 --out runs/vae\n"
                         "  latentlab fit ae --data table.csv --latent-dim 3 --hidden 64,32 --out runs/ae\n"
                         "  latentlab fit --resume runs/vae            # continue after Ctrl-C or with more --epochs")
    fit.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue the run in RUN_DIR from its last checkpoint")
    fit.add_argument("--epochs", dest="param_epochs", type=int, default=argparse.SUPPRESS, metavar="N",
                     help="with --resume: train up to N epochs in all (the run's own setting otherwise)")
    models = fit.add_subparsers(dest="model", metavar="MODEL", parser_class=_Parser)
    for name, cls in api.MODELS.items():
        summary = (inspect.getdoc(cls) or name).splitlines()[0]
        mp = models.add_parser(name, parents=[common], help=summary, description=f"{name}: {summary}", formatter_class=fmt,
                               epilog="example" + ("s" if name in _FIT_EXAMPLES else "") + ":\n  " + "\n  ".join(
                                   _FIT_EXAMPLES.get(name, [f"latentlab fit {name} --data digits --latent-dim 2 --out runs/{name}"])))
        _data_option(mp)
        default_k = inspect.signature(cls).parameters["latent_dim"].default
        what = ("size of z1, the layer next to the data (codes are [z1 | z2], see --latent-dim2)"
                if "latent_dim2" in inspect.signature(cls).parameters else "latent size")
        mp.add_argument("--latent-dim", type=int, default=None, metavar="K", help=f"{what} (default: {default_k})")
        mp.add_argument("--out", metavar="RUN_DIR", default=None, help="run directory to write (required)")
        mp.add_argument("--resume", metavar="RUN_DIR", default=argparse.SUPPRESS, help="continue the run in RUN_DIR")
        _split_options(mp)
        if name in api.CONDITIONAL:
            _condition_options(mp, fit=True)
        _add_model_options(mp, {name: cls}, f"{name} options")
    fit.set_defaults(handler=_cmd_fit)

    # evaluate
    k_default = inspect.signature(api.evaluate).parameters["k"].default
    ev = sub.add_parser("evaluate", parents=[common], help="measure a saved run", formatter_class=fmt,
                        description="Measure a run: reconstruction error, ELBO, importance-sampled log-likelihood, "
                        "bits per dimension, active units (latentlab.evaluation).",
                        epilog="examples:\n  latentlab evaluate runs/vae\n  latentlab evaluate runs/vae --split train --k 5000 --json")
    ev.add_argument("run_dir", metavar="RUN_DIR")
    _data_option(ev, "the run's own data")
    ev.add_argument("--split", choices=api.SPLITS, default=None, help="which rows (default: test)")
    ev.add_argument("--k", type=int, default=k_default, help="importance samples per example (default: %(default)s)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the Monte-Carlo estimates (default: %(default)s)")
    _condition_options(ev)
    ev.set_defaults(handler=_cmd_evaluate)

    def use_cmd(name, help_, desc, example, handler, *, data=True, split_default="all"):
        p = sub.add_parser(name, parents=[common], help=help_, description=desc, formatter_class=fmt, epilog=f"example:\n  {example}")
        p.add_argument("run_dir", metavar="RUN_DIR")
        if data:
            _data_option(p, "the run's own data")
            p.add_argument("--split", choices=api.SPLITS, default=split_default,
                           help="which rows: all (every row of the source, in order; for sources with their own splits, "
                           "the training set), train, valid or test (default: %(default)s)")
            _condition_options(p)
        p.set_defaults(handler=handler)
        return p

    p = use_cmd("encode", "write the codes of the data", "Encode every row of the data (posterior means for a VAE); "
                "a CSV gets one row per input row. A hierarchical VAE (hvae) writes its codes [z1 | z2], "
                "latent_dim + latent_dim2 columns, as its transform gives them; a conditional VAE encodes each row "
                "with its own condition.", "latentlab encode runs/vae --data digits --out codes.csv", _cmd_encode)
    p.add_argument("--out", required=True, metavar="FILE", help="FILE.npy or FILE.csv")
    p = use_cmd("reconstruct", "write reconstructions of the data", "Reconstruct the data through the model: .npy/.csv "
                "hold every row (in the data's own units); .png shows the first -n originals above their reconstructions.",
                "latentlab reconstruct runs/vae --data digits --out rec.png", _cmd_reconstruct)
    p.add_argument("--out", required=True, metavar="FILE", help="FILE.npy, FILE.csv or FILE.png")
    p.add_argument("-n", type=int, default=32, help="examples in a PNG (default: %(default)s)")
    p = use_cmd("sample", "decode random latent points", "Generate by decoding random latent points: z ~ N(0, I) for a "
                "VAE (its prior; the VampPrior's mixture; the hierarchical VAE's p(z2) p(z1|z2)); for PCA, probabilistic "
                "PCA's latent Gaussian; an autoencoder has no prior, so z ~ N(0, I) shows how it fails. A conditional VAE "
                "decodes under --label.", "latentlab sample runs/vae -n 64 --out samples.png --seed 1", _cmd_sample, data=False)
    p.add_argument("-n", type=int, default=64, help="how many (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="FILE", help="FILE.npy, FILE.csv or FILE.png")
    p.add_argument("--seed", type=int, default=0, help="same seed, same samples (default: %(default)s)")
    p.add_argument("--label", metavar="L[,L...]", default=None,
                   help="conditional models: the class(es) to sample, shared equally, e.g. --label 3 or --label 3,5 "
                   "(default: an equal share of every class; a .png shows one row per class); for side inputs, the m "
                   "values of one, v1,...,vm")
    p = use_cmd("interpolate", "decode the line between two examples' codes", "Decode the straight line between the "
                "codes of rows I and J of the data.", "latentlab interpolate runs/vae --data digits --from 0 --to 7 --steps 10 --out line.png",
                _cmd_interpolate)
    p.add_argument("--from", dest="start", type=int, required=True, metavar="I", help="row of the first example")
    p.add_argument("--to", dest="end", type=int, required=True, metavar="J", help="row of the second example")
    p.add_argument("--steps", type=int, default=10, help="points on the line, ends included (default: %(default)s)")
    p.add_argument("--label", metavar="L", default=None,
                   help="conditional models: decode the whole line under this class (default: the condition moves "
                   "along the line between the two rows' own)")
    p.add_argument("--out", required=True, metavar="FILE", help="FILE.png, FILE.npy or FILE.csv")

    # compare
    cp = sub.add_parser("compare", parents=[common], help="PCA, linear AE, deep AE and VAE side by side", formatter_class=fmt,
                        description="Fit PCA, a linear autoencoder (hidden=()), a deep autoencoder and a VAE on the same data, "
                        "split and latent size; measure them; write their runs and one report (DIR/index.html).",
                        epilog="example:\n  latentlab compare --data digits --latent-dim 2 --epochs 50 --out runs/cmp")
    _data_option(cp)
    cp.add_argument("--latent-dim", type=int, default=None, metavar="K",
                    help=f"latent size of all four (default: {inspect.signature(api.compare).parameters['latent_dim'].default})")
    cp.add_argument("--out", required=True, metavar="DIR", help="folder for the four runs and the report")
    _split_options(cp)
    classes = {}
    for label, (model, _) in api.COMPARE_SET.items():
        classes.setdefault(model, api.MODELS[model])
    _add_model_options(cp, classes, "model options (each applies to the models that take it; --hidden not to the linear AE)")
    cp.set_defaults(handler=_cmd_compare)

    rp = sub.add_parser("report", parents=[common], help="write the HTML report of a run or a comparison", formatter_class=fmt,
                        description="Write index.html (self-contained: figures embedded) for a run directory, or for a folder "
                        "of runs side by side, and print its path.", epilog="example:\n  latentlab report runs/vae")
    rp.add_argument("path", metavar="RUN_DIR_OR_DIR")
    rp.set_defaults(handler=_cmd_report)

    dm = sub.add_parser("demo", parents=[common], help="the main job: four models on the digits, compared", formatter_class=fmt,
                        description="Fit PCA, a linear AE, a deep AE and a VAE on the embedded digits, print a comparison "
                        "table and write the report. Takes about a minute on two CPU cores.",
                        epilog="example:\n  latentlab demo --out demo && xdg-open demo/index.html")
    dm.add_argument("--out", default=inspect.signature(api.demo).parameters["out"].default, metavar="DIR",
                    help="folder for the runs and the report (default: %(default)s)")
    dm.add_argument("--epochs", type=int, default=None, metavar="N",
                    help=f"at most N epochs for the networks, for a quicker look (default: {api.DEMO_PARAMS['epochs']}, with early stopping)")
    dm.set_defaults(handler=_cmd_demo)
    return parser


# ---------------------------------------------------------------------------------------- main
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

    from .api import MODELS

    words = [w for w in (getattr(args, "command", None), getattr(args, "model", None)) if w]
    prog = " ".join(["latentlab", *words])
    cond = [e.split("=", 1)[0] for e in extra if e.split("=", 1)[0] in ("--labels", "--label-column")]
    if cond and getattr(args, "command", None) == "fit" and getattr(args, "model", None):
        from .api import CONDITIONAL

        return (f"{prog}: {cond[0]} gives the condition of a conditional model, and {args.model} takes none; "
                f"fit {' or '.join(CONDITIONAL)} to condition on labels, or drop it.")

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
    from .training.distributed import is_main_process

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
        from .errors import DistributedError, DivergenceError, LatentlabError

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
