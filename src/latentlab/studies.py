"""Several runs on the same data and split: ``compare`` (PCA, a linear AE, a deep AE and a VAE),
``sweep`` (one model over a grid of settings) and ``demo`` (compare on the embedded digits), with
the regularity of each latent space measured in one feature space. The verbs of the same names in
``latentlab.api`` are these."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .datasets.labels import load_dataset
from .errors import ConfigError
from .io import jsonable
from .models.registry import model_class
from .runs import (
    Run,
    RunConfig,
    accepts,
    model_input,
    open_run,
    save_run,
)
from .validation import check_int

from .fitting import fit
__all__ = ["COMPARE_SET", "Comparison", "compare", "sweep", "sweep_points", "demo", "DEMO_PARAMS", "DEMO_LATENT_DIM",
           "slug"]


# ---------------------------------------------------------------------------------------- compare
#: The four models that `compare` and `demo` put side by side: label -> (model, what makes it that
#: model). Nothing else is set: each trains with the settings a user gets.
COMPARE_SET: dict[str, tuple[str, dict[str, Any]]] = {
    "PCA": ("pca", {}),
    "linear AE": ("ae", {"hidden": ()}),
    "deep AE": ("ae", {}),
    "VAE": ("vae", {}),
}


@dataclass
class Comparison:
    """Several runs on the same data, with their report."""

    runs: list[Run]
    path: Path | None
    table: dict[str, dict[str, Any]]
    report: Path | None = None


def slug(label: str) -> str:
    return label.lower().replace(" ", "-")


def compare(
    data: str = "digits",
    latent_dim: int = 2,
    out: str | Path | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    test_fraction: float = 0.1,
    split_seed: int = 0,
    eval_k: int = 100,
    regularity: bool = True,
    per_model: Mapping[str, Mapping[str, Any]] | None = None,
    labels: str | None = None,
    label_column: str | None = None,
    command: Sequence[str] | None = None,
    write_report: bool = True,
) -> Comparison:
    """Fit PCA, a linear AE (``hidden=()``), a deep AE and a VAE on the same data and split with
    the same latent size; measure them; write their runs and one side-by-side report.

    Parameters
    ----------
    data, latent_dim : the source and the latent size shared by the four.
    out : folder for the four run directories and ``index.html`` (None: in memory, no report).
    params : settings for the networks (e.g. ``epochs``, ``hidden``, ``seed``); ``hidden`` does not
        apply to the linear AE.
    regularity : also measure the regularity of each latent space (latentlab.evaluation.regularity).
    per_model : settings for one model only, by its label ("PCA", "linear AE", "deep AE", "VAE").
    labels, label_column : the labels of the data (default: the source's own), as for
        :class:`RunConfig`: a file of one label per row (any source syntax ``--data`` takes), or a
        column of a CSV/TSV source (taken out of the features). The feature space's classifier is
        trained on them (without labels it is the data's principal components), and the report's
        latent scatter is coloured by them.

    Returns
    -------
    Comparison, whose ``table`` maps each model's label to its metrics.
    """
    params = dict(params or {})
    out = Path(out) if out is not None else None
    ds = load_dataset(data, labels=labels, label_column=label_column)
    runs = []
    for label, (model, extra) in COMPARE_SET.items():
        cls = model_class(model)
        p = {k: v for k, v in params.items() if accepts(cls, k)}
        p.update(extra)
        p.update((per_model or {}).get(label, {}))
        p["latent_dim"] = latent_dim
        cfg = RunConfig(model, data, p, test_fraction, split_seed, eval_k, labels=labels, label_column=label_column)
        run_out = out / slug(label) if out is not None else None
        run = fit(cfg, run_out, command=command, dataset=ds)
        run.info["label"] = run.info["role"] = label
        runs.append(run)
    table = {r.name: dict(r.metrics) for r in runs}
    by = {r.name: r for r in runs}
    from .evaluation import principal_angle

    # A mixed-type table decodes to categories (the most probable one): its decoders are not linear
    # maps to compare by angle, nor its rows examples for a feature space's Frechet distance.
    if getattr(by["PCA"].model, "table_", None) is None:
        table["linear AE"]["max_principal_angle_deg"] = principal_angle(by["PCA"].model, by["linear AE"].model)
        if regularity:
            _add_regularity(runs, table)
    return _finish(runs, table, out, command, write_report, title=f"latentlab: PCA, autoencoders and a VAE on {data}")


def _finish(runs, table, out, command, write_report: bool, **report) -> Comparison:
    """Store each run's measurements (and its run.json), and write the page that shows them side by side."""
    for r in runs:
        r.metrics = table[r.name]
        if r.path is not None:
            save_run(r, command=command)
    result = Comparison(runs, out, table)
    if out is not None and write_report:
        from .report import write_report as _write

        result.report = _write(out, runs, comparison=True, **report)
    return result


def _add_regularity(runs: list[Run], table: dict[str, dict[str, Any]], seed: int = 0) -> None:
    """How regular each latent space is (latentlab.evaluation.regularity): Frechet distance and
    classifier confidence of decoded random latent points, continuity, completeness. One
    feature space (a classifier on the training labels, or the data's PCA without labels) serves
    all models, so their numbers compare."""
    from .evaluation import FeatureSpace, regularity

    ref = runs[0]
    if ref.train is None or ref.test is None or len(ref.test) < 2:
        return
    X_train = np.asarray(ref.train.data)
    features = FeatureSpace(seed=seed).fit(X_train, ref.train.target)
    for r in runs:
        reg = regularity(
            r.model, model_input(r.model, r.train), model_input(r.model, r.test), features=features, seed=seed
        )
        for k, v in reg.items():
            if k in ("model", "latent_dim", "n_test"):
                continue
            table[r.name]["regularity_n_samples" if k == "n_samples" else k] = v


# ---------------------------------------------------------------------------------------- sweep
def sweep_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the values in ``grid`` (name -> list of values), in order: the last
    name varies fastest. ``{"c": [0.1, 1], "latent_dim": [2, 8]}`` gives four points."""
    import itertools

    if not grid:
        raise ConfigError("a sweep needs at least one setting with a list of values, e.g. --c 0.1,1,10.")
    names = list(grid)
    for k in names:
        if not isinstance(grid[k], (list, tuple)) or not grid[k]:
            raise ConfigError(f"the sweep's {k} needs a non-empty list of values; got {grid[k]!r}.")
    return [dict(zip(names, values)) for values in itertools.product(*(grid[k] for k in names))]


def _fit_points(configs: list, dirs: list, command, jobs: int) -> None:
    """Fit sweep points ``jobs`` at a time, each in a fresh Python process (``latentlab.api`` run as
    ``fit``; nothing of this process is re-imported), on cores / jobs threads each."""
    import os
    import subprocess
    import sys
    import tempfile

    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    code = ("import json, sys; from latentlab.api import RunConfig, fit; a = json.load(open(sys.argv[1])); "
            "fit(RunConfig.from_dict(a['config']), a['out'], command=a['command'])")
    with tempfile.TemporaryDirectory() as tmp:
        pending = []
        for i, (c, d) in enumerate(zip(configs, dirs)):
            spec = Path(tmp) / f"point{i}.json"
            spec.write_text(json.dumps({"config": jsonable(c.to_dict()), "out": str(d), "command": command}))
            pending.append((spec, d))
        running: list = []
        while pending or running:
            while pending and len(running) < jobs:
                spec, d = pending.pop(0)
                running.append((subprocess.Popen([sys.executable, "-c", code, str(spec)], env=env,
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True), d))
            proc, d = running.pop(0)
            _, err = proc.communicate()
            if proc.returncode:
                for p, _ in running:
                    p.terminate()
                last = (err.strip().splitlines() or ["(no output)"])[-1]
                raise ConfigError(f"the sweep point {d} failed (exit {proc.returncode}): {last}")


def sweep(model: str, data: str = "digits", grid: Mapping[str, Sequence[Any]] | None = None,
          out: str | Path | None = None, *, params: Mapping[str, Any] | None = None, test_fraction: float = 0.1,
          split_seed: int = 0, eval_k: int = 100, jobs: int = 1, regularity: bool = True,
          labels: str | None = None, label_column: str | None = None, command: Sequence[str] | None = None,
          write_report: bool = True) -> Comparison:
    """Fit one model over a grid of settings on the same data and split; measure each point; write
    one run directory a point (resumable, evaluable, reportable alone) and one report.

    Parameters
    ----------
    model : a registered model name ("vae", ...).
    grid : setting -> list of values, e.g. ``{"c": [0.1, 0.3, 1, 3, 10]}``; several make a grid.
    params : settings shared by every point (``latent_dim``, ``epochs``, ...).
    out : folder for the points (``c=0.3/``, ...) and ``index.html``; None keeps them in memory.
    jobs : points trained at once, as local processes (each on cores / jobs threads).
    regularity : measure each latent space's regularity (FD of decoded prior and GMM samples...).

    Returns
    -------
    Comparison, ``table`` mapping each point's label ("vae c=0.3") to its metrics.

    Example
    -------
    >>> sw = sweep("vae", "digits", {"c": [0.5, 2.0]}, params={"latent_dim": 2, "epochs": 3})  # doctest: +SKIP
    >>> sorted(sw.table)                                                                       # doctest: +SKIP
    ['vae c=0.5', 'vae c=2']
    """
    from .runs import settings_label

    points = sweep_points(grid or {})
    jobs = check_int(jobs, "jobs")
    out = Path(out) if out is not None else None
    base = dict(params or {})
    configs = [RunConfig(model, data, {**base, **p}, test_fraction, split_seed, eval_k, labels=labels,
                         label_column=label_column) for p in points]
    dirs = [None if out is None else out / settings_label("", p).strip().replace(" ", "_").replace("/", "-")
            for p in points]
    if jobs > 1 and out is not None:
        _fit_points(configs, dirs, list(command) if command is not None else None, jobs)
        runs = [open_run(d) for d in dirs]
    else:
        ds = load_dataset(data, labels=labels, label_column=label_column)
        runs = [fit(c, d, command=command, dataset=ds) for c, d in zip(configs, dirs)]
    for r, p in zip(runs, points):
        r.info["label"] = settings_label(model, p)
        r.info["sweep"] = p
    table = {r.name: dict(r.metrics) for r in runs}
    if regularity and not runs[0].model.conditional:
        _add_regularity(runs, table)
    return _finish(runs, table, out, command, write_report,
                   title=f"latentlab: {model} swept over {', '.join(grid)} on {data}", swept=list(grid))


# ---------------------------------------------------------------------------------------- demo
#: The demo's settings, the same for every network it trains: smaller hidden layers than the
#: default, so that it finishes in about a minute; everything else is the estimators' default.
DEMO_PARAMS: dict[str, Any] = {"hidden": (128, 64), "seed": 0}
DEMO_LATENT_DIM = 2


def demo(out: str | Path = "latentlab-demo", *, params: Mapping[str, Any] | None = None, command: Sequence[str] | None = None) -> Comparison:
    """The main job: PCA, a linear AE, a deep AE and a VAE on the embedded digits, compared
    (see :func:`compare`), with the report written into ``out``.

    Its networks have a few thousand parameters and its matrices a few hundred rows, where one
    CPU thread is faster than several: the products are too small to split, and a second thread
    only adds synchronisation, which on a busy machine becomes spinning (measured on a shared
    2-core machine: 3 ms against 49 ms a training step for torch; 13 ms a product for the
    feature classifier's BLAS). So the demo runs torch and BLAS single-threaded, and restores
    both settings afterwards.
    """
    import torch
    from threadpoolctl import threadpool_limits

    p = dict(DEMO_PARAMS)
    p.update(params or {})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            return compare("digits", DEMO_LATENT_DIM, out, params=p, eval_k=1000, command=command)
    finally:
        torch.set_num_threads(threads)
