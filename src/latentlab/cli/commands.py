"""The commands' handlers: each takes the parsed arguments, calls :mod:`latentlab.api`, prints."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

from .options import UsageError, given_params

__all__ = ["cmd_fit", "cmd_evaluate", "cmd_encode", "cmd_reconstruct", "cmd_sample", "cmd_interpolate", "cmd_export",
           "cmd_explore", "cmd_compare", "cmd_sweep", "cmd_report", "cmd_demo"]


def _fmt(v: Any) -> str:
    from ..report import format_value

    return format_value(v)


def _print_metrics(metrics: dict[str, Any], *, indent: str = "  ") -> None:
    from ..report import HIDDEN_METRICS

    metrics = {k: v for k, v in metrics.items() if k not in HIDDEN_METRICS}
    if not metrics:
        return
    width = max(len(k) for k in metrics)
    for k, v in metrics.items():
        print(f"{indent}{k.ljust(width)}  {_fmt(v)}")


def _emit(args, obj: dict[str, Any], human: Callable[[], None]) -> None:
    if getattr(args, "json", False):
        from ..io import jsonable

        print(json.dumps(jsonable(obj), allow_nan=True))
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


def _is_table(T) -> bool:
    return bool(getattr(getattr(T, "dtype", None), "names", None)) or hasattr(T, "columns")


def _rows_shape(T) -> list[int]:
    """[rows, columns] of an array or a table."""
    return [len(T), len(T.columns) if hasattr(T, "columns") else len(T.dtype.names)] if _is_table(T) else list(T.shape)


def _split_text(run, split: str | None = None) -> str:
    """One line: how the run's data was split (and which split a command reads)."""
    how = run.info.get("split") or "unknown"
    return f"split: {how}" + (f"; rows used: {split}" if split else "")


# ---------------------------------------------------------------------------------------- commands


def _open(args):
    """The run of a command that reads data, with the condition options it was given (and its
    --out checked: never one of the run's inputs)."""
    from .. import api
    from ..runs import check_output_path

    run = api.open_run(args.run_dir, args.data, labels=args.labels, label_column=args.label_column,
                       allow_changed_data=getattr(args, "allow_changed_data", False))
    if getattr(args, "out", None) is not None:
        check_output_path(args.out, run, args.data)
    return run


def _given(argv, option: str) -> bool:
    return any(a == option or a.startswith(option + "=") for a in argv)


def _resume_changes(args, argv) -> dict[str, Any]:
    """Every setting given with ``fit --resume``: api.resume refuses those it cannot honour."""
    changes = given_params(args)
    if getattr(args, "model", None) is not None:
        changes["model"] = args.model
    for key in ("latent_dim", "data", "labels", "label_column"):
        if getattr(args, key, None) is not None:
            changes[key] = getattr(args, key)
    for option in ("--test-fraction", "--split-seed", "--eval-k"):
        key = option[2:].replace("-", "_")
        if _given(argv, option) and hasattr(args, key):
            changes[key] = getattr(args, key)
    return changes


def _callbacks(args, run_dir) -> list:
    """The callbacks --callback names (built from their specs: the command line asked for that code),
    then the loggers --log asks for."""
    out = []
    for text in getattr(args, "callback", None) or []:
        from ..nn.spec import ModuleSpec

        cb = ModuleSpec.parse(text).instantiate()
        if not any(callable(getattr(cb, h, None)) for h in ("on_fit_start", "on_step_end", "on_epoch_end", "on_fit_end")):
            raise UsageError(f"latentlab fit: --callback {text} built a {type(cb).__name__}, not a latentlab.Callback.")
        out.append(cb)
    return out + _loggers(args, run_dir)


def _loggers(args, run_dir) -> list:
    """The callbacks --log asks for (none without it)."""
    kinds = list(dict.fromkeys(getattr(args, "log", None) or []))
    if not kinds:
        if getattr(args, "log_dir", None) is not None:
            raise UsageError("latentlab fit: --log-dir says where --log writes; add --log tensorboard or --log mlflow.")
        return []
    if len(kinds) > 1 and getattr(args, "log_dir", None) is not None:
        raise UsageError("latentlab fit: one --log-dir for --log tensorboard and --log mlflow; give one --log, or drop --log-dir.")
    from ..training.loggers import make_logger

    return [make_logger(k, run_dir, getattr(args, "log_dir", None)) for k in kinds]


def cmd_fit(args, argv) -> int:
    from .. import api

    model = getattr(args, "model", None)
    run_dir = getattr(args, "resume", None)
    if run_dir is not None:
        from pathlib import Path

        if getattr(args, "out", None) is not None and Path(args.out).resolve() != Path(run_dir).resolve():
            raise UsageError(f"latentlab fit --resume: the run goes on in {run_dir}; drop --out {args.out}.")
        run = api.resume(run_dir, command=argv, allow_changed_data=getattr(args, "allow_changed_data", False),
                         callbacks=_callbacks(args, run_dir), **_resume_changes(args, argv))
    else:
        if model is None:
            from ..models import MODELS

            raise UsageError(f"latentlab fit: name a model ({', '.join(MODELS)}) or pass --resume RUN_DIR; see 'latentlab fit --help'.")
        if args.out is None:
            raise UsageError(f"latentlab fit {model}: --out RUN_DIR is required (the folder the run is saved in).")
        params = given_params(args)
        if args.latent_dim is not None:
            params["latent_dim"] = args.latent_dim
        config = api.RunConfig(model, args.data or api.RunConfig.data, params, args.test_fraction, args.split_seed, args.eval_k,
                               labels=getattr(args, "labels", None), label_column=getattr(args, "label_column", None))
        run = api.fit(config, args.out, command=argv, callbacks=_callbacks(args, args.out))

    def human():
        c = run.config
        m = run.metrics
        k, d1 = run.model.code_size, int(run.model.latent_dim)
        size = f"latent size {k}" + (f": [z1 | z2] = {d1} + {k - d1}" if k != d1 else "")
        what = f"{c.model} ({size}) on {c.data}"
        sizes = f"{m.get('n_train')} train" + (f" / {m['n_test']} test" if m.get("n_test") else "")
        ep = f", {m['epochs']} epoch{'s' if m['epochs'] != 1 else ''}" if "epochs" in m else ""
        print(f"fitted {what}: {sizes}{ep}, {m.get('fit_time_s', 0):.1f} s")
        print(_split_text(run))
        rest = {k: v for k, v in m.items() if k not in ("n_train", "n_test", "epochs", "fit_time_s")}
        if rest:
            print("test metrics:")
            _print_metrics(rest)
        print(f"saved to {run.path}")

    _emit(args, {"run_dir": str(run.path), "model": run.config.model, "split": run.info.get("split"), "metrics": run.metrics}, human)
    return 0


def cmd_evaluate(args, argv) -> int:
    from .. import api

    run = _open(args)
    from ..runs import default_split

    split = default_split(run, args.split, args.data)
    metrics = api.evaluate(run, args.data, split=split, k=args.k, seed=args.seed)

    def human():
        print(f"{args.run_dir} on {args.data or 'its data'} ({split} split, k={args.k}):")
        _print_metrics(metrics)
        print(_split_text(run))

    _emit(args, {"run_dir": args.run_dir, "split": split, "how_split": run.info.get("split"), "k": args.k, "metrics": metrics}, human)
    return 0


def cmd_encode(args, argv) -> int:
    from .. import api

    from ..outputs import write_array

    run = _open(args)
    Z = api.encode(run, split=args.split)
    write_array(args.out, Z, columns=[f"z{j}" for j in range(Z.shape[1])])
    _emit(args, {"out": args.out, "shape": list(Z.shape), "split": args.split, "how_split": run.info.get("split")},
          lambda: print(f"wrote {Z.shape[0]} codes of size {Z.shape[1]} to {args.out}\n{_split_text(run, args.split)}"))
    return 0


def cmd_reconstruct(args, argv) -> int:
    from .. import api

    from ..outputs import write_array
    from ..plots import pair_rows

    run = _open(args)
    split = api.default_split(run, args.split, args.data)
    X, R = api.reconstruct(run, split=split)
    if args.out.lower().endswith(".png") and not _is_table(R):
        grid, cols = pair_rows(X, R, args.n)
        write_array(args.out, grid, image_shape=_image_shape(run), ncols=cols)
        shape = [len(grid) // 2, R.shape[1]]
    else:
        write_array(args.out, R, columns=_columns(run))
        shape = _rows_shape(R)
    _emit(args, {"out": args.out, "shape": shape, "split": split, "how_split": run.info.get("split")},
          lambda: print(f"wrote {shape[0]} reconstructions to {args.out}\n{_split_text(run, split)}"))
    return 0


def cmd_sample(args, argv) -> int:
    from .. import api

    from ..outputs import write_array, write_figure

    run = api.open_run(args.run_dir, load_data=False)
    from ..runs import check_output_path

    check_output_path(args.out, run)
    S, y = api.sample(args.run_dir, args.n, seed=args.seed, label=args.label, return_labels=True, sampler=args.sampler,
                      draw=args.draw)
    shape = _image_shape(run)
    if y is not None and y.ndim == 1 and args.out.lower().endswith(".png") and shape is not None:
        from .. import plots

        write_figure(args.out, plots.labelled_grid(S, shape, y))  # one row per label
    else:
        write_array(args.out, S, image_shape=shape, columns=(run.info.get("data") or {}).get("feature_names"))
    # A model that is no density (no prior, no likelihood): its samples decode z ~ N(0, I).
    no_prior = not run.model.capabilities & {"prior", "exact_likelihood"} and args.sampler == "prior"
    if no_prior and not getattr(args, "json", False):
        print(f"note: an {type(run.model).__name__} has no prior: these decode z ~ N(0, I), which it was never "
              "trained to map to data.", file=sys.stderr)
    obj: dict[str, Any] = {"out": args.out, "shape": _rows_shape(S)}
    text = f"wrote {S.shape[0]} samples to {args.out}"
    if y is not None and y.ndim == 1:
        import numpy as np

        values, counts = np.unique(y, return_counts=True)
        obj["labels"] = {str(v): int(c) for v, c in zip(values.tolist(), counts)}
        text += " (" + ", ".join(f"{c} of y = {v}" for v, c in obj["labels"].items()) + ")"
    elif y is not None:
        obj["condition"] = y[0].tolist()
    _emit(args, obj, lambda: print(text))
    return 0


def cmd_interpolate(args, argv) -> int:
    from .. import api

    run = _open(args)
    from ..outputs import write_array

    P = api.interpolate(run, start=args.start, end=args.end, steps=args.steps, split=args.split, label=args.label)
    write_array(args.out, P, image_shape=_image_shape(run), ncols=args.steps, columns=_columns(run))
    shape = _rows_shape(P)
    _emit(args, {"out": args.out, "shape": shape, "split": args.split, "how_split": run.info.get("split")},
          lambda: print(f"wrote {len(P)} interpolation steps to {args.out}\n{_split_text(run, args.split)}"))
    return 0


def _shape(spec) -> str:
    return "(" + ", ".join(str(s) for s in spec["shape"]) + ")"


def cmd_export(args, argv) -> int:
    from ..exporter import MANIFEST, export

    info = export(args.run_dir, args.out, args.format, logvar=args.logvar, opset=args.opset)

    def human():
        print(f"wrote {info['encoder']['file']} and {info['decoder']['file']} to {info['path']} ({info['exporter']}); "
              f"{MANIFEST} describes them:")
        for part in ("encoder", "decoder"):
            ins = ", ".join(f"{s['name']} {_shape(s)}" for s in info[part]["inputs"])
            outs = ", ".join(f"{s['name']} {_shape(s)}" for s in info[part]["outputs"])
            print(f"  {part}: {ins} -> {outs}")
        if info["condition"] is not None:
            print(f"  y: {info['condition']['encoding']}")

    _emit(args, info, human)
    return 0


def cmd_explore(args, argv) -> int:
    from ..explorer import explore

    run = _open(args)
    path = explore(run, args.out, split=args.split, dims=args.dims, decoder=args.decoder, grid=args.grid,
                   max_points=args.max_points)
    _emit(args, {"page": str(path)}, lambda: print(path))
    return 0


#: The columns of the printed comparison: (heading, what it is, keys to read, the first present wins).
#: {space} is the feature space the Frechet distances were measured in (``FeatureSpace.description``).
_COLUMNS = [
    ("rec. MSE", "reconstruction error on the test split: squared error per feature", ("reconstruction_mse",)),
    ("rec. NRMSE", "a table's numeric columns: root-mean-square reconstruction error on the test split, in standard "
     "deviations", ("reconstruction_nrmse",)),
    ("rec. acc.", "a table's categorical and 0/1 columns: share of test cells reconstructed right", ("reconstruction_accuracy",)),
    ("angle to PCA", "linear AE: largest principal angle to the PCA subspace, degrees", ("max_principal_angle_deg",)),
    ("FD random", "Frechet distance of decoded random latent points z ~ N(0, I) to the test set, in the "
     "features of {space} (lower: more realistic); N(0, I) is the VAE's prior, the AEs have none",
     ("fd_prior", "fd_standard_normal")),
    ("FD fitted", "the same with z from a Gaussian fitted to the training codes (for PCA: its latent Gaussian)",
     ("fd_fitted_gaussian",)),
    ("FD GMM", "the same with z from a Gaussian mixture fitted to the training codes (sampler='gmm', components by BIC)",
     ("fd_gmm",)),
    ("confidence", "that classifier's mean top probability on those N(0, I) decodes (higher: more recognisable)",
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
    from ..models import model_name

    rows = []
    for r in comparison.runs:
        m = dict(r.metrics)
        if model_name(r.model) == "pca" and not r.model.whiten:  # unwhitened PCA codes are not on N(0, I)'s scale: its column is "fitted"
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
    space = next((m["feature_space"] for _, m in rows if m.get("feature_space")), "unknown")
    space = (f"a {space} trained on the training labels" if space.startswith("classifier ") else
             f"the data's principal components ({space})" if space.startswith("pca") else space)
    for h, d, _ in cols:
        print(f"  {h}: {d.format(space=space)}")
    if ref is not None:
        print("  real data: training rows scored the same way, the best a model can do with this many points")
    if comparison.runs and getattr(comparison.runs[0].model, "table_", None) is not None and any(c[0] == "log p(x)" for c in cols):
        print("  on a mixed-type table, PCA's log p(x) is a Gaussian density of the one-hot code, the VAE's the "
              "probability of the categories times a density of the numbers: the two do not compare")
    split = comparison.runs[0].info.get("split") if comparison.runs else None
    if split:
        print(f"  split: {split}")


def cmd_compare(args, argv) -> int:
    from .. import api

    params = given_params(args)
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
        labels=args.labels,
        label_column=args.label_column,
        command=argv,
        **kw,
    )

    def human():
        _print_comparison(comp)
        print(f"report: {comp.report}")

    _emit(args, {"out": str(comp.path), "report": str(comp.report), "metrics": comp.table}, human)
    return 0


def cmd_sweep(args, argv) -> int:
    from .. import api

    lists = given_params(args)
    grid = {k: v for k, v in lists.items() if len(v) > 1}
    params = {k: v[0] for k, v in lists.items() if len(v) == 1}
    if not grid:
        raise UsageError(f"latentlab sweep {args.model}: give at least one option a list of two or more values "
                         "(e.g. --c 0.1,1,10); see 'latentlab sweep --help'.")
    sw = api.sweep(args.model, args.data or "digits", grid, args.out, params=params, test_fraction=args.test_fraction,
                   split_seed=args.split_seed, eval_k=args.eval_k, jobs=args.jobs, labels=getattr(args, "labels", None),
                   label_column=getattr(args, "label_column", None), command=argv)

    def human():
        keys = ("kl", "rec", "log_likelihood", "active_units", "fd_prior", "fd_gmm")
        width = max(len(n) for n in sw.table) + 2
        print("".ljust(width) + "".join(k.rjust(16) for k in keys))
        for name, m in sw.table.items():
            print(name.ljust(width) + "".join((_fmt(m[k]) if m.get(k) is not None else "").rjust(16) for k in keys))
        print("  kl: the rate, KL(q(z|x) || p(z)); rec: the distortion, -E_q log p(x|z) (nats per test example)")
        print(f"report: {sw.report}")

    _emit(args, {"out": str(sw.path), "report": str(sw.report), "metrics": sw.table}, human)
    return 0


def cmd_report(args, argv) -> int:
    from .. import api

    path = api.report(*args.path, out=args.out)
    _emit(args, {"report": str(path)}, lambda: print(path))
    return 0


def cmd_demo(args, argv) -> int:
    import time

    from .. import api
    from ..studies import DEMO_LATENT_DIM

    t0 = time.perf_counter()
    comp = api.demo(args.out, params={"epochs": args.epochs} if args.epochs is not None else None, command=argv)
    elapsed = time.perf_counter() - t0

    def human():
        print(f"PCA, a linear AE, a deep AE and a VAE on the embedded digits (latent size {DEMO_LATENT_DIM}), "
              f"measured on {comp.runs[0].metrics.get('n_test')} held-out digits:")
        _print_comparison(comp)
        print(f"finished in {elapsed:.0f} s")
        print(f"report: {comp.report}")

    _emit(args, {"out": str(comp.path), "report": str(comp.report), "seconds": elapsed, "metrics": comp.table}, human)
    return 0


# ---------------------------------------------------------------------------------------- parser
