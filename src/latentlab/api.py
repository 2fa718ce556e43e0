"""The verbs: fit, resume, evaluate, encode, reconstruct, sample, interpolate, compare, sweep, report, demo.

fit and resume are :mod:`latentlab.fitting`'s, compare, sweep and demo :mod:`latentlab.studies`'s.

The command line calls these and adds nothing of its own. Each verb works on a *run directory*
(:mod:`latentlab.runs`), and asks the model for what it does (``transform``, ``sample``,
``capabilities``...), never which class it is.

Example
-------
>>> from latentlab import api
>>> run = api.fit(api.RunConfig("pca", "digits", {"latent_dim": 2}), out=None)
>>> run.model.transform(run.test.data).shape
(180, 2)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .errors import CheckpointError, ConfigError, DataError, RunInUseError
from .io import FolderLock, atomic_write_text, jsonable, read_json
from .limits import check_output, check_samples, check_seed
from .models.registry import load, model_name
from .runs import (
    RUN_FILE,
    SPLITS,
    Run,
    RunConfig,
    accepts,
    condition_of,
    default_split,
    model_input,
    open_run,
    pick,
)
from .tables import is_table
from .validation import check_int

from .fitting import fit, measure, resume
from .studies import COMPARE_SET, Comparison, compare, demo, slug, sweep, sweep_points

__all__ = [
    "fit",
    "resume",
    "evaluate",
    "encode",
    "reconstruct",
    "sample",
    "interpolate",
    "compare",
    "sweep",
    "sweep_points",
    "report",
    "demo",
    "measure",
    "Comparison",
    "COMPARE_SET",
    "RunConfig",
    "Run",
    "open_run",
    "SPLITS",
]


def evaluate(run: "Run | str | Path", data: str | None = None, *, split: str | None = None, k: int = 1000, seed: int = 0, record: bool = True) -> dict[str, float]:
    """The metrics of a saved run (a run directory or a :class:`Run` from :func:`open_run`) on
    one split of its data, or of another source ``data``.

    ``split`` None means "test": the run's held-out rows, or for another source its own test
    split if it has one, else all its rows. With ``record``, the result is stored under
    ``evaluations`` in the run's run.json.
    """
    k = check_samples(k, "k", "--k")
    seed = check_seed(seed)
    run = _run(run, data)
    split = default_split(run, split, data)
    ds = pick(run, split)
    metrics = measure(run.model, ds, k=k, seed=seed)
    path = run.path / RUN_FILE if run.path is not None else None
    if record and path is not None and path.is_file():
        try:
            with FolderLock(run.path):
                info = read_json(path)
                key = split if data is None else f"{split}:{data}"
                info.setdefault("evaluations", {})[key] = {"k": k, "seed": seed, **jsonable(metrics)}
                atomic_write_text(path, json.dumps(info, indent=2, allow_nan=True))
        except RunInUseError:
            pass  # a fit is replacing this run: its run.json will not hold the old model's measures
    return metrics


# ---------------------------------------------------------------------------------------- use
def _run(run: "Run | str | Path", data: str | None) -> Run:
    return run if isinstance(run, Run) else open_run(run, data)


def encode(run: "Run | str | Path", data: str | None = None, *, split: str = "all") -> np.ndarray:
    """Codes (n, code_size) of every row of the data (posterior means for a VAE), in order:
    latent_dim columns, or for a hierarchical VAE the means of [z1 | z2]; a conditional VAE
    encodes each row with its own condition. ``run`` is a run directory or a :class:`Run` from
    :func:`open_run`."""
    run = _run(run, data)
    ds = pick(run, split)
    return run.model.transform(model_input(run.model, ds), condition_of(run.model, ds))


def reconstruct(run: "Run | str | Path", data: str | None = None, *, split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(originals, reconstructions), each (n, n_features), in the data's own units (for a
    conditional VAE, each row through its own condition). ``split`` None: the test split (rows the
    model did not train on), or all rows of another source without a test split."""
    run = _run(run, data)
    split = default_split(run, split, data)
    ds = pick(run, split)
    R = run.model.reconstruct(model_input(run.model, ds), condition_of(run.model, ds))
    if is_table(R):  # a mixed-type table: the originals and their reconstructions, as tables
        return ds.data, R
    return np.asarray(ds.data), np.asarray(R).reshape(len(ds), -1)


def sample(run_dir: str | Path, n: int, *, seed: int = 0, label: str | None = None, return_labels: bool = False,
           sampler: str = "prior", draw: bool = False):
    """``n`` decoded random latent points from the model in ``run_dir`` (``model.sample``),
    (n, n_features); for a model of a mixed-type table, a table with its columns. A conditional
    VAE decodes under ``label``, as ``parse_condition`` reads it (a comma list of classes, shared
    equally; default: every class). ``draw``: x drawn from p(x|z) rather than its mean E[x|z]
    (for a table, each category drawn from its probabilities rather than the most probable one;
    models with a likelihood only). With ``return_labels``, also the conditions used: (n,)
    labels or (n, m) side inputs, or None for other models.

    ``sampler``: "prior" (the model's prior; N(0, I) for an autoencoder, which has none), or "gmm" /
    "gaussian", a density fitted to the training codes. A model saved without its training codes
    (by an older latentlab) gets the density fitted from the run's own training split, saved into
    the run.

    Example
    -------
    >>> X, y = sample("runs/cvae", 20, label="3,5", return_labels=True)  # doctest: +SKIP
    >>> X.shape, y.tolist()[:3], y.tolist()[-3:]                          # doctest: +SKIP
    ((20, 64), [3, 3, 3], [5, 5, 5])
    """
    n = check_int(n, "n")
    seed = check_seed(seed)
    model = load(run_dir)
    check_output(n, getattr(model, "n_features_in_", 1), "sample", "-n")
    y = None
    if model.conditional:
        y = model.balanced_conditions(n, None if label is None else model.parse_condition(label))
    elif label is not None:
        raise ConfigError(f"--label gives the condition of a conditional model, and {model_name(model)} takes none; drop --label.")
    if sampler != "prior" and getattr(model, "train_codes_", None) is None and sampler not in getattr(model, "samplers_", {}):
        run = open_run(run_dir)
        model.fit_sampler(model_input(model, run.train), condition_of(model, run.train), sampler=sampler)
        model.save(run_dir)
    kw: dict[str, Any] = {"sampler": sampler}
    if draw:
        if not accepts(model.sample, "mean"):
            raise ConfigError(f"--draw draws x from the model's likelihood p(x|z), and {model_name(model)} has none; drop --draw.")
        kw["mean"] = False
    X = model.sample(n, y, seed=seed, **kw)
    X = X if is_table(X) else np.asarray(X).reshape(n, -1)
    return (X, y) if return_labels else X


def interpolate(run: "Run | str | Path", data: str | None = None, *, start: int, end: int, steps: int = 10, split: str = "all",
                label: str | None = None) -> np.ndarray:
    """Decoded points on the line between the codes of rows ``start`` and ``end``: (steps, n_features).

    For a conditional VAE each row is encoded with its own condition and the path decoded under
    the line between the two conditions, or under ``label`` (one label) when given."""
    steps = check_int(steps, "steps", low=2)
    run = _run(run, data)
    model = run.model
    check_output(steps, getattr(model, "n_features_in_", 1), "interpolate", "--steps")
    ds = pick(run, split)
    for name, i in (("--from", start), ("--to", end)):
        if not (0 <= i < len(ds)):
            raise DataError(f"{name} {i} is out of range; the data has rows 0 to {len(ds) - 1}.")
    X = model_input(model, ds)
    y = condition_of(model, ds)
    y_path = None
    if label is not None:
        if not model.conditional:
            raise ConfigError(f"--label gives the condition of a conditional model, and {model_name(model)} takes none; drop --label.")
        y_path = model.parse_condition(label)
        if model.condition_ == "categorical" and len(y_path) != 1:
            raise ConfigError(f"interpolate decodes under one --label; got {len(y_path)} ({label}).")
    ends = None if y is None else (np.asarray(y)[start], np.asarray(y)[end])
    P = model.interpolate(np.asarray(X[start]), np.asarray(X[end]), steps, ends, y_path=y_path)
    return P if is_table(P) else np.asarray(P).reshape(check_int(steps, "steps", low=2), -1)


# ---------------------------------------------------------------------------------------- report
def report(path: str | Path, *more: str | Path, out: str | Path | None = None) -> Path:
    """Write ``index.html`` for a run directory, for a folder of run directories (as written by
    :func:`compare` or :func:`sweep`), or for several run directories side by side (then into
    ``out``), and return its path. Several runs are named by the settings that tell them apart."""
    from .report import write_report as _write

    if more:
        if out is None:
            raise ConfigError("a report of several runs needs a folder to write it in: pass out=... (--out DIR).")
        runs = [open_run(p) for p in (path, *more)]
        return _write(Path(out), runs, title=f"latentlab: {len(runs)} runs side by side", comparison=True,
                      swept=_swept(runs))
    path = Path(path)
    if (path / RUN_FILE).is_file() or (path / "config.json").is_file():
        run = open_run(path, load_data=(path / RUN_FILE).is_file())
        return _write(Path(out or path), [run], title=f"latentlab: {run.name} ({run.config.data if run.config else path.name})")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory; pass a run directory or a folder of them.")
    subdirs = sorted(d for d in path.iterdir() if (d / RUN_FILE).is_file())
    if not subdirs:
        raise CheckpointError(f"{path} holds no run directories (folders with {RUN_FILE}); pass one written by fit or compare.")
    runs = [open_run(d) for d in subdirs]
    order = {slug(k): i for i, k in enumerate(COMPARE_SET)}
    runs.sort(key=lambda r: (order.get(r.path.name, len(order)), sorted((r.info.get("sweep") or {}).items())))
    data = runs[0].config.data if runs[0].config else path.name
    return _write(Path(out or path), runs, title=f"latentlab: {len(runs)} models on {data}", comparison=True,
                  swept=_swept(runs))


def _swept(runs) -> list[str] | None:
    """The settings a sweep varied, when every run was a point of one."""
    points = [r.info.get("sweep") for r in runs]
    return list(points[0]) if points and all(isinstance(p, dict) and list(p) == list(points[0]) for p in points) else None


