"""The verbs: fit, evaluate, encode, reconstruct, sample, interpolate, compare, report, demo.

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

import dataclasses
import inspect
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .datasets import Dataset
from .datasets.labels import load_dataset
from .datasets.sources import absolute_spec
from .datasets.splits import describe_split, split_data
from .datasets.fingerprint import fingerprint
from .errors import CheckpointError, ConfigError, DataError, DivergenceError, RunInUseError
from .io import FolderLock, atomic_write_text, jsonable, read_json
from .limits import check_output, check_samples, check_seed
from .models.base import LatentModel
from .models.registry import load, model_class, model_name
from .runs import (
    RUN_FILE,
    SPLITS,
    Run,
    RunConfig,
    accepts,
    RunWriter,
    build_estimator,
    check_conditions,
    check_data,
    check_fingerprint,
    check_output_path,
    condition_of,
    default_split,
    model_input,
    open_run,
    pick,
    read_run_json,
    resume_dir,
    run_config_from,
    save_run,
    write_run_json,
)
from .tables import is_table
from .validation import check_int

CHECKPOINT_NAME = "checkpoint.safetensors"

__all__ = [
    "fit",
    "resume",
    "evaluate",
    "encode",
    "reconstruct",
    "sample",
    "interpolate",
    "compare",
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


# ---------------------------------------------------------------------------------------- fit
def fit(
    config: RunConfig,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    command: Sequence[str] | None = None,
    dataset: Dataset | None = None,
    callbacks: Sequence[Any] | None = None,
) -> Run:
    """Load the data, fit the model, measure it on the test split, and save the run.

    Parameters
    ----------
    config : RunConfig
    out : run directory to write (model, checkpoint each epoch, run.json), or None to keep the
        run in memory only. A folder that holds a run already is replaced only when the new fit
        has succeeded (:class:`latentlab.runs.RunWriter`); one process writes it at a time.
    resume : continue from the checkpoint in ``out`` (see :func:`resume`).
    command : the command line, recorded in run.json.
    dataset : ``config.data`` already loaded (to load it once for several fits).
    callbacks : :class:`latentlab.training.Callback` objects for the training loop, e.g. the
        loggers :class:`~latentlab.training.TensorBoardLogger` and :class:`~latentlab.training.MLflowLogger`.
        Every run directory of a network also gets ``history.jsonl``, one line per epoch.

    The whole input (every split, and the labels) is checked before the first epoch.

    Under torchrun (``torchrun --nproc-per-node N -m latentlab fit ...``) every process trains its
    share of each batch (see :func:`latentlab.training.train`); only rank 0 measures the model and
    writes the run directory, the other processes return the fitted model without metrics.

    Returns
    -------
    Run, with ``metrics`` measured on the test split (when there is one).
    """
    ds = dataset if dataset is not None else load_dataset(config.data, labels=config.labels, label_column=config.label_column)
    check_data(ds)
    parts = split_data(ds, config.test_fraction, config.split_seed)
    if out is None:
        return _fit(config, ds, parts, None, resume=resume, command=command, callbacks=callbacks)
    out = Path(out)
    # a path is recorded absolute, so that the run reopens from anywhere
    config = dataclasses.replace(config, data=absolute_spec(config.data))
    if config.labels is not None:
        config = dataclasses.replace(config, labels=absolute_spec(config.labels))
    check_output_path(out / "model.safetensors", Run(None, config))  # never a run folder inside its own data
    with RunWriter(out, resume=resume, command=" ".join(command) if command else None) as tx:
        try:
            run = _fit(config, ds, parts, tx.work, resume=resume, command=command, final=out, callbacks=callbacks)
        except DivergenceError as exc:
            raise _resumable(exc, out, tx.work) from None
        tx.commit()
    run.path = out
    return run


def _fit(config, ds, parts, work, *, resume, command, final=None, callbacks=None) -> Run:
    """Fit and measure ``config`` on the split ``parts``, writing the run into ``work`` (or not)."""
    from .training.distributed import is_main_process

    est = build_estimator(config, ds, checkpoint_dir=work)
    X = model_input(est, parts["train"])
    kw: dict[str, Any] = {}
    args: tuple = (X, condition_of(est, parts["train"]))
    if parts["valid"] is not None and accepts(est.fit, "X_val"):
        kw["X_val"] = model_input(est, parts["valid"])
        if est.conditional:
            kw["y_val"] = condition_of(est, parts["valid"], "the validation split")
    if parts["test"] is not None:  # fails now, not after training, when the test rows have no condition
        model_input(est, parts["test"])
        condition_of(est, parts["test"], "the test split")
    check_conditions(est, parts)
    if callbacks:
        if not accepts(est.fit, "callbacks"):
            raise ConfigError(f"{config.model} is fitted in closed form, with no epochs or steps to call back or log; "
                              "drop the callbacks (--log).")
        kw["callbacks"] = list(callbacks)
    if resume:
        if not accepts(est.fit, "resume"):
            raise ConfigError(f"{config.model} is fitted in closed form and has nothing to resume; run fit again.")
        kw["resume"] = True
    run = Run(est, config, parts["train"], parts["valid"], parts["test"], path=work,
              info={"split": describe_split(ds, config.test_fraction, config.split_seed)})
    run.info["fingerprint"] = fingerprint(ds)
    if work is not None:
        # Written before training, so that `fit --resume` finds the settings after a Ctrl-C.
        write_run_json(run, command, status="training")
    t0 = time.perf_counter()
    est.fit(*args, **kw)
    fit_time = time.perf_counter() - t0
    run.metrics = {"fit_time_s": fit_time, "n_train": len(parts["train"])}
    if getattr(est, "n_epochs_", None) is not None:
        run.metrics["epochs"] = int(est.n_epochs_)
    if not is_main_process():  # the same model on every rank: one measures and writes
        return run
    if parts["test"] is not None:
        run.metrics["n_test"] = len(parts["test"])
        run.metrics.update(measure(est, parts["test"], k=config.eval_k))
    if work is not None:
        if final is not None and accepts(type(est), "checkpoint_dir"):
            est.set_params(checkpoint_dir=str(final))  # where the run will be, not where it was written
        save_run(run, command=command)
    return run


def _resumable(exc: DivergenceError, out: Path, work: Path) -> DivergenceError:
    """The divergence message, with the command that continues from the kept checkpoint."""
    if getattr(exc, "data_scale", False) or not (work / CHECKPOINT_NAME).is_file():
        return exc
    lr = getattr(exc, "lr", None)
    lr_opt = f" --lr {lr / 10:g}" if lr else " --lr LR"
    new = DivergenceError(f"{exc} From the command line: latentlab fit --resume {out}{lr_opt} (or --grad-clip 1) continues from that checkpoint.")
    new.__dict__.update(exc.__dict__)
    return new


#: What ``fit --resume`` may change: training settings that the checkpoint does not fix. Every
#: other setting describes the network, the objective or the data the checkpoint was made with.
RESUMABLE = ("epochs", "lr", "patience", "grad_clip", "device", "eval_k", "verbose")


def resume(run_dir: str | Path, *, epochs: int | None = None, command: Sequence[str] | None = None,
           allow_changed_data: bool = False, callbacks: Sequence[Any] | None = None, trust_code: bool | None = None,
           networks: Mapping[str, Any] | None = None, **changes: Any) -> Run:
    """Continue the training of the run in ``run_dir`` from its last checkpoint, with the same
    data, split and settings.

    ``epochs`` (more epochs in all), ``lr``, ``patience``, ``grad_clip``, ``device`` and
    ``eval_k`` may change (see :data:`RESUMABLE`); any other setting given in ``changes``
    (estimator settings such as ``latent_dim`` or ``hidden``, or ``model``, ``data``,
    ``test_fraction``, ``split_seed``, ``labels``...) must equal the recorded one, else it is a
    ConfigError that names it. A run without a checkpoint is a CheckpointError (resume never
    starts again from epoch 0), as is data that changed since the fit (unless
    ``allow_changed_data``).

    ``callbacks`` as for :func:`fit`. A run fitted with networks of your own needs them as
    :func:`latentlab.load` does: handed back (``networks={"encoder": ..., "decoder": ...}``), or
    rebuilt from their recorded specs with ``trust_code=True``.

    Example
    -------
    >>> run = resume("runs/vae", epochs=200, lr=1e-4)  # doctest: +SKIP
    """
    from .models.own import resolve_saved_networks

    run_dir = Path(run_dir)
    work = resume_dir(run_dir)
    info = read_run_json(work)
    config = run_config_from(info, work)
    if config is None:
        raise CheckpointError(f"{work / RUN_FILE} records no settings to resume with; fit again with `latentlab fit`.")
    if epochs is not None:
        changes["epochs"] = epochs
    config = _resume_config(config, changes)
    params = resolve_saved_networks(model_class(config.model), config.params, networks or {}, trust_code, str(run_dir))
    config = dataclasses.replace(config, params=params)
    ds = load_dataset(config.data, labels=config.labels, label_column=config.label_column)
    if not allow_changed_data:
        check_fingerprint(info, ds, run_dir, verb="resume")
    return fit(config, run_dir, resume=True, command=command, dataset=ds, callbacks=callbacks)


def _resume_config(config: RunConfig, changes: Mapping[str, Any]) -> RunConfig:
    """``config`` with the resumable ``changes``; a ConfigError naming every other setting that differs."""
    cls = model_class(config.model)
    fields = {f.name for f in dataclasses.fields(RunConfig)} - {"params"}
    defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
    refused, params, top = [], dict(config.params), {}
    for k, v in changes.items():
        if k in fields:
            old = getattr(config, k)
            same = (absolute_spec(v) == old if k == "data" else str(Path(v).resolve()) == old if k == "labels" and v else v == old)
        elif k in defaults:
            old = params.get(k, defaults[k])
            same = (tuple(v) if isinstance(v, list) else v) == (tuple(old) if isinstance(old, list) else old)
        else:
            raise ConfigError(f"{config.model} has no setting {k!r}; fit --resume can change {', '.join(RESUMABLE)}.")
        if same:
            continue
        if k not in RESUMABLE:
            refused.append(f"{k} ({old!r} -> {v!r})")
        elif k in fields:
            top[k] = v
        else:
            params[k] = v
    if refused:
        raise ConfigError(
            f"fit --resume cannot change {', '.join(refused)}: the checkpoint holds a {config.model} trained with the "
            f"recorded settings. Only {', '.join(RESUMABLE)} may change on resume; drop the others, or start a new run "
            "with them (latentlab fit MODEL ... --out NEW_DIR)."
        )
    return dataclasses.replace(config, params=params, **top)

# ---------------------------------------------------------------------------------------- measure
def measure(model: LatentModel, ds: Dataset, *, k: int = 1000, seed: int = 0) -> dict[str, float]:
    """latentlab.evaluation.evaluate on a Dataset (the array the model takes, and its condition)."""
    from .evaluation import evaluate as _evaluate

    return _evaluate(model, model_input(model, ds), y=condition_of(model, ds), k=k, seed=seed)


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
           draw: bool = False):
    """``n`` decoded random latent points from the model in ``run_dir`` (``model.sample``),
    (n, n_features); for a model of a mixed-type table, a table with its columns. A conditional
    VAE decodes under ``label``, as ``parse_condition`` reads it (a comma list of classes, shared
    equally; default: every class). ``draw``: x drawn from p(x|z) rather than its mean E[x|z]
    (for a table, each category drawn from its probabilities rather than the most probable one;
    models with a likelihood only). With ``return_labels``, also the conditions used: (n,)
    labels or (n, m) side inputs, or None for other models.

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
    kw: dict[str, Any] = {}
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


# ---------------------------------------------------------------------------------------- compare
#: The four models that `compare` and `demo` put side by side: label -> (model, extra params).
#: The linear AE trains on every training row, as PCA does (no validation split, so no early
#: stopping): its angle to PCA's subspace then measures the optimisation alone, not the sampling
#: difference of two row sets (which is itself 3.6 degrees on the digits' 90%).
COMPARE_SET: dict[str, tuple[str, dict[str, Any]]] = {
    "PCA": ("pca", {}),
    "linear AE": ("ae", {"hidden": (), "validation_fraction": 0.0}),
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


def _slug(label: str) -> str:
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
        run_out = out / _slug(label) if out is not None else None
        run = fit(cfg, run_out, command=command, dataset=ds)
        run.info["label"] = label
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
    for r in runs:
        r.metrics = table[r.name]
        if r.path is not None:
            save_run(r, command=command)
    result = Comparison(runs, out, table)
    if out is not None and write_report:
        from .report import write_report as _write

        result.report = _write(out, runs, title=f"latentlab: PCA, autoencoders and a VAE on {data}", comparison=True)
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


# ---------------------------------------------------------------------------------------- report
def report(path: str | Path) -> Path:
    """Write ``index.html`` for a run directory, or for a folder of run directories (as
    written by :func:`compare`), and return its path."""
    from .report import write_report as _write

    path = Path(path)
    if (path / RUN_FILE).is_file() or (path / "config.json").is_file():
        run = open_run(path, load_data=(path / RUN_FILE).is_file())
        return _write(path, [run], title=f"latentlab: {run.name} ({run.config.data if run.config else path.name})")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory; pass a run directory or a folder of them.")
    subdirs = sorted(d for d in path.iterdir() if (d / RUN_FILE).is_file())
    if not subdirs:
        raise CheckpointError(f"{path} holds no run directories (folders with {RUN_FILE}); pass one written by fit or compare.")
    runs = [open_run(d) for d in subdirs]
    order = {_slug(k): i for i, k in enumerate(COMPARE_SET)}
    runs.sort(key=lambda r: order.get(r.path.name, len(order)))
    data = runs[0].config.data if runs[0].config else path.name
    return _write(path, runs, title=f"latentlab: {len(runs)} models on {data}", comparison=True)


# ---------------------------------------------------------------------------------------- demo
#: The demo's settings: small networks that train in seconds on the embedded digits. The linear
#: AE gets a larger step, as it converges slowly towards the PCA subspace (measured on the digits,
#: 150 epochs: 41 degrees away at lr 1e-3, under 1 degree at 1e-2 with batches of 128).
DEMO_PARAMS: dict[str, Any] = {"hidden": (128, 64), "epochs": 150, "patience": 15, "batch_size": 64, "seed": 0}
DEMO_PER_MODEL: dict[str, dict[str, Any]] = {"linear AE": {"lr": 1e-2, "batch_size": 128}}
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
            return compare("digits", DEMO_LATENT_DIM, out, params=p, per_model=DEMO_PER_MODEL, eval_k=1000, command=command)
    finally:
        torch.set_num_threads(threads)
