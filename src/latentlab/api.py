"""Fit, evaluate, compare and report as plain functions: the command line calls these and adds
nothing of its own.

A *run directory* holds one fitted model: ``config.json`` and ``model.safetensors`` (the model,
see :func:`latentlab.load`), ``checkpoint.safetensors`` (the training state, for
``fit(..., resume=True)``) and ``run.json`` (the data source and split, the command, the metrics).

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
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from . import datasets
from ._validation import check_float, check_int
from ._version import __version__
from .datasets import Dataset
from .errors import CheckpointError, ConfigError, DataError
from .io import atomic_open, atomic_write_text, read_json
from .models import IWAE, PCA, VAE, Autoencoder, ConditionalVAE, HierarchicalVAE, LatentModel, VampPriorVAE, load
from .training.data import ShardedArray

__all__ = [
    "MODELS",
    "RunConfig",
    "Run",
    "fit",
    "open_run",
    "evaluate",
    "encode",
    "reconstruct",
    "sample",
    "interpolate",
    "interpolate_codes",
    "compare",
    "report",
    "demo",
    "principal_angle",
    "decode_random",
    "pair_rows",
    "split_data",
    "write_array",
    "RUN_FILE",
    "CONDITIONAL",
    "load_dataset",
    "read_labels",
    "is_conditional",
    "condition_of",
    "condition_source",
    "codes",
    "decode",
    "code_size",
    "parse_labels",
    "sample_labels",
    "write_figure",
]

#: Model names on the command line -> estimator classes. A new model is one line here.
MODELS: dict[str, type[LatentModel]] = {
    "pca": PCA,
    "ae": Autoencoder,
    "vae": VAE,
    "iwae": IWAE,
    "vamp": VampPriorVAE,
    "hvae": HierarchicalVAE,
    "cvae": ConditionalVAE,
}

RUN_FILE = "run.json"
RUN_FORMAT = 1
SPLITS = ("all", "train", "valid", "test")


# ---------------------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class RunConfig:
    """What to fit on which data.

    Parameters
    ----------
    model : str
        A key of :data:`MODELS` ("pca", "ae", "vae", ...).
    data : str
        A data source, as for :func:`latentlab.datasets.load`.
    params : mapping
        Constructor parameters of the estimator (``latent_dim``, ``hidden``, ``epochs``, ...);
        those not given take the estimator's defaults. For tables, ``scale`` defaults to
        "standard".
    test_fraction : float
        Share of the data held out as the test split when the source has no test split of its
        own. In-memory data is split at random (``split_seed``); memory-mapped data takes its last
        rows, so that training data stays on disk.
    split_seed : int
    eval_k : int
        Importance samples for the test log-likelihood recorded at the end of :func:`fit`.
    labels : str or None
        A conditional model's condition: a file (``.npy``, ``.csv``, ``.tsv``) of one label per
        row of the data, or of an (n, m) side-input matrix. None: the source's own labels.
    label_column : str or None
        For a ``.csv``/``.tsv`` source, the column that holds the condition (it is removed from
        the features).
    """

    model: str
    data: str = "digits"
    params: Mapping[str, Any] = field(default_factory=dict)
    test_fraction: float = 0.1
    split_seed: int = 0
    eval_k: int = 100
    labels: str | None = None
    label_column: str | None = None

    def __post_init__(self):
        if not isinstance(self.model, str) or self.model not in MODELS:
            raise ConfigError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}.")
        check_float(self.test_fraction, "test_fraction", low=0.0, high=1.0, low_inclusive=True, high_inclusive=False)
        check_int(self.split_seed, "split_seed", low=0)
        check_int(self.eval_k, "eval_k")
        if not isinstance(self.data, (str, os.PathLike)):
            raise ConfigError(f"data must be a source name or a path, got {self.data!r}; see `latentlab fit --help`.")
        if not isinstance(self.params, Mapping):
            raise ConfigError(f"params must be a mapping of estimator settings, got {self.params!r}.")
        known = set(inspect.signature(MODELS[self.model]).parameters)
        unknown = sorted(set(self.params) - known)
        if unknown:
            raise ConfigError(
                f"{self.model} has no setting(s) {unknown}; its settings are {sorted(known)}."
            )
        check_condition_options(self.model, self.labels, self.label_column)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["params"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.params.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunConfig":
        d = dict(d)
        d["params"] = {k: tuple(v) if isinstance(v, list) else v for k, v in (d.get("params") or {}).items()}
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class Run:
    """A fitted model with its data.

    Attributes
    ----------
    model : the fitted estimator.
    config : RunConfig, or None for a model saved without a run.json.
    train, valid, test : Dataset or None, the splits the model was fitted and tested on.
    metrics : dict of str -> float, measured on ``test``.
    path : the run directory, or None.
    """

    model: LatentModel
    config: RunConfig | None
    train: Dataset | None = None
    valid: Dataset | None = None
    test: Dataset | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.info.get("label") or (self.config.model if self.config else type(self.model).__name__)


# ---------------------------------------------------------------------------------------- data
def _rows(arr, sel):
    """Rows of ``arr``: a slice stays a view (and a memory map stays on disk), an index copies."""
    if arr is None:
        return None
    if isinstance(arr, ShardedArray) and isinstance(sel, slice):
        start, stop, _ = sel.indices(len(arr))
        parts = []
        for k, s in enumerate(arr.shards):
            lo, hi = int(arr.offsets[k]), int(arr.offsets[k + 1])
            a, b = max(start, lo), min(stop, hi)
            if a < b:
                parts.append(s[a - lo : b - lo])
        return ShardedArray(parts)
    if isinstance(arr, ShardedArray):
        return arr.take(np.asarray(sel))
    return arr[sel]


def subset(ds: Dataset, sel) -> Dataset:
    """The rows ``sel`` (a slice or an index array) of a Dataset, without its splits."""
    return Dataset(
        data=_rows(ds.data, sel),
        target=_rows(ds.target, sel),
        images=_rows(ds.images, sel),
        kind=ds.kind,
        name=ds.name,
        feature_names=ds.feature_names,
        info=dict(ds.info),
    )


def split_data(ds: Dataset, test_fraction: float = 0.1, seed: int = 0) -> dict[str, Dataset | None]:
    """{"all", "train", "valid", "test"} -> Dataset (or None): the source's own splits where it
    has them, else a held-out ``test_fraction`` (random rows for in-memory data, the last rows
    for memory-mapped data)."""
    whole = subset(ds, slice(None))
    out: dict[str, Dataset | None] = {"all": whole, "train": whole, "valid": ds.splits.get("valid"), "test": ds.splits.get("test")}
    if out["test"] is None and test_fraction > 0:
        n = len(ds)
        n_test = int(round(n * test_fraction))
        if n - n_test < 2 or n_test < 1:
            return out
        if isinstance(ds.data, (np.memmap, ShardedArray)):
            out["train"], out["test"] = subset(ds, slice(0, n - n_test)), subset(ds, slice(n - n_test, n))
        else:
            perm = np.random.default_rng(seed).permutation(n)
            out["train"], out["test"] = subset(ds, np.sort(perm[n_test:])), subset(ds, np.sort(perm[:n_test]))
    return out


# ---------------------------------------------------------------------------------------- conditions
#: Model names whose estimators take a condition y (labels or side inputs).
CONDITIONAL = tuple(name for name, cls in MODELS.items() if issubclass(cls, ConditionalVAE))


def is_conditional(model: LatentModel) -> bool:
    """Whether ``model`` is conditioned on labels or side inputs (``transform(X, y)``...)."""
    return isinstance(model, ConditionalVAE)


def check_condition_options(model: str, labels=None, label_column=None) -> None:
    """A clear error for a condition given to a model that takes none, or given twice."""
    for opt, v in (("labels", labels), ("label_column", label_column)):
        if v is not None and not isinstance(v, (str, Path)):
            raise ConfigError(f"{opt} must be a file path or a column name, got {v!r}.")
    opts = [o for o, v in (("--labels", labels), ("--label-column", label_column)) if v is not None]
    if opts and model not in CONDITIONAL:
        raise ConfigError(
            f"{' and '.join(opts)} give(s) the condition of a conditional model, and {model} takes none; "
            f"fit {' or '.join(CONDITIONAL)} to condition on labels, or drop {' and '.join(opts)}."
        )
    if len(opts) == 2:
        raise ConfigError("--labels and --label-column both give the condition; pass one of them.")


def read_labels(path: str | Path) -> np.ndarray:
    """Labels from a file: ``.npy`` (an array (n,) of labels or (n, m) of side inputs; never
    unpickled), or ``.csv``/``.tsv``/``.txt`` (one column: labels, numbers or text; several
    columns: an (n, m) matrix of numbers; a header row is detected as for data tables)."""
    from .datasets.files import labels_from_text, load_table

    path = Path(path)
    if not path.is_file():
        raise DataError(f"labels file {path} does not exist; pass --labels FILE.npy or FILE.csv with one label per row.")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            y = np.load(path, allow_pickle=False)
        except Exception as exc:  # NumPy raises many types on damaged or object arrays
            raise DataError(f"{path} is not a readable .npy array ({exc}); save the labels with np.save.") from None
    elif suffix in (".csv", ".tsv", ".txt"):
        import csv

        delim = "\t" if suffix == ".tsv" else ","
        try:
            rows = [r for r in csv.reader(path.read_text("utf-8-sig").splitlines(), delimiter=delim) if r and any(c.strip() for c in r)]
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path} could not be read as text ({exc}); pass a UTF-8 .csv file.") from None
        if not rows:
            raise DataError(f"labels file {path} is empty; give one label per row of the data.")
        if len(rows[0]) > 1:
            y = load_table(path, delimiter=delim).data
        else:
            cells = [r[0] for r in rows]
            y = labels_from_text(cells, str(path))
            if y.dtype.kind == "U" and len(cells) > 1 and labels_from_text(cells[1:], str(path)).dtype.kind != "U":
                y = labels_from_text(cells[1:], str(path))  # a header over numeric labels
    else:
        raise DataError(f"labels file {path.name}: unknown type {suffix or '(none)'}; use .npy or .csv.")
    if y.ndim not in (1, 2) or y.shape[0] == 0:
        raise DataError(f"{path} holds an array of shape {y.shape}; labels are (n,) or side inputs (n, m).")
    return y


def _with_target(ds: Dataset, y: np.ndarray, what: str) -> Dataset:
    """``ds`` with ``y`` as its target: one row per row of the data, then of its valid and test
    splits (in that order) where the source has its own."""
    parts = [ds, *(ds.splits[s] for s in ("valid", "test") if s in ds.splits)]
    n = sum(len(p) for p in parts)
    if y.shape[0] != n:
        where = f" ({' + '.join(f'{len(p)}' for p in parts)} in train, valid, test order)" if len(parts) > 1 else ""
        raise DataError(f"{what} has {y.shape[0]} labels but the data has {n} rows{where}; give one label per row.")
    start = 0
    for p in parts:
        p.target = y[start : start + len(p)]
        start += len(p)
    return ds


def load_dataset(data: str, *, labels: str | None = None, label_column: str | None = None) -> Dataset:
    """Load the source ``data`` (see :func:`latentlab.datasets.load`) with the condition of a
    conditional model as its ``target``: the labels in the file ``labels``, the column
    ``label_column`` of a CSV/TSV source (removed from the features), or the source's own labels.

    Example
    -------
    >>> load_dataset("digits").target[:3]
    array([0, 1, 2])
    """
    if labels is not None and label_column is not None:
        raise ConfigError("--labels and --label-column both give the condition; pass one of them.")
    if label_column is not None:
        path = Path(data)
        if path.suffix.lower() not in (".csv", ".tsv", ".tab", ".txt") or not path.is_file():
            raise DataError(
                f"--label-column names a column of a CSV/TSV file, and the data {data!r} is not one; "
                "pass the labels as a file with --labels FILE.npy|.csv instead."
            )
        return datasets.load_table(path, label_column=label_column)
    ds = datasets.load(data)
    if labels is not None:
        _with_target(ds, read_labels(labels), f"labels file {labels}")
    return ds


def condition_source(config: RunConfig | None, ds: Dataset | None = None) -> str:
    """Where a run's condition comes from, in words (recorded in run.json)."""
    if config is None:
        return "unknown"
    if config.label_column is not None:
        return f"column {config.label_column!r} of {config.data}"
    if config.labels is not None:
        return f"labels file {config.labels}"
    return f"the labels of {config.data}"


def condition_of(model: LatentModel, ds: Dataset, what: str = "the data"):
    """The condition rows of ``ds`` for ``model``: its target for a conditional model (a clear
    error when it has none), else None."""
    if not is_conditional(model):
        return None
    if ds.target is None:
        raise DataError(
            f"{type(model).__name__} needs a condition (a label per row) and {what} ({ds.name or 'this source'}) "
            "has no labels; pass --labels FILE.npy|.csv (one label per row, or an (n, m) side-input matrix), "
            "or --label-column NAME for a CSV/TSV source."
        )
    return ds.target


def codes(model: LatentModel, X, y=None) -> np.ndarray:
    """``model.transform(X)``, with the condition ``y`` for a conditional model."""
    return model.transform(X, y) if is_conditional(model) else model.transform(X)


def decode(model: LatentModel, Z, y=None) -> np.ndarray:
    """``model.inverse_transform(Z)``, with the condition ``y`` for a conditional model."""
    return model.inverse_transform(Z, y) if is_conditional(model) else model.inverse_transform(Z)


def code_size(model: LatentModel) -> int:
    """The width of the codes ``transform`` returns: latent_dim, or for a hierarchical VAE
    latent_dim + latent_dim2 (its codes are [z1 | z2])."""
    return int(model._n_features_out)


def parse_labels(model: LatentModel, text: str) -> np.ndarray:
    """``--label`` text for a conditional model: for class labels, a comma list of labels (each
    one of ``model.classes_``), returned as an array of them; for side inputs, the m values of
    one side input, returned as (1, m)."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ConfigError("--label is empty; pass a label (e.g. --label 3) or a comma list (--label 3,5).")
    if model.condition_ != "categorical":
        try:
            v = np.array([float(t) for t in items], dtype=np.float32)[None, :]
        except ValueError:
            raise ConfigError(f"--label {text!r}: this model's condition is a vector of {model.n_cond_} numbers; "
                              f"pass them as --label v1,...,v{model.n_cond_}.") from None
        if v.shape[1] != model.n_cond_:
            raise ConfigError(f"--label gives {v.shape[1]} value(s); this model's side input has {model.n_cond_}: "
                              f"pass --label v1,...,v{model.n_cond_}.")
        return v
    classes = np.asarray(model.classes_)
    by_text = {str(c): c for c in classes.tolist()}
    out, bad = [], []
    for t in items:
        key = t
        if t not in by_text and classes.dtype.kind in "iuf":
            try:  # "3.0" for the class 3, "3" for 3.0
                key = next((k for k, c in by_text.items() if float(c) == float(t)), t)
            except ValueError:
                pass
        (out if key in by_text else bad).append(by_text.get(key, t))
    if bad:
        shown = ", ".join(map(str, classes.tolist()[:20])) + (", ..." if len(classes) > 20 else "")
        raise ConfigError(f"--label {bad[0]} is not a class this model was trained on; its classes are {shown}.")
    return np.asarray(out, dtype=classes.dtype)


def sample_labels(model: LatentModel, n: int, labels=None) -> np.ndarray:
    """The conditions of ``n`` samples of a conditional model: an equal share of each of
    ``labels`` (default: every class of the model), in blocks of one label, (n,); for side
    inputs, the one vector ``labels`` (1, m) repeated, (n, m)."""
    n = check_int(n, "n")
    if model.condition_ != "categorical":
        if labels is None:
            raise ConfigError(
                f"this model is conditioned on side inputs of {model.n_cond_} number(s), so samples need one: "
                f"pass --label v1,...,v{model.n_cond_}."
            )
        return np.repeat(np.asarray(labels, dtype=np.float32).reshape(1, -1), n, axis=0)
    labels = np.asarray(model.classes_ if labels is None else labels)
    counts = np.full(len(labels), n // len(labels)) + (np.arange(len(labels)) < n % len(labels))
    return np.repeat(labels, counts)


def model_input(model: LatentModel, ds: Dataset):
    """The array to hand to ``model``: images (n, H, W) / (n, C, H, W) for a convolutional
    network, else the flat data (n, n_features)."""
    if getattr(model, "architecture", "mlp") == "conv":
        if ds.images is None:
            raise DataError(
                f"architecture='conv' needs images, but {ds.name} is a table of shape "
                f"{tuple(ds.data.shape)}; use --architecture mlp."
            )
        return ds.images
    return ds.data


def _source_spec(data: str) -> str:
    """Named sources stay names; paths become absolute, so a run can be reopened from anywhere."""
    if data in datasets.NAMED_SOURCES:
        return data
    head, sep, key = data.rpartition(":")
    if sep and not Path(data).exists() and Path(head).suffix.lower() == ".npz":
        return f"{Path(head).resolve()}:{key}"
    return str(Path(data).resolve())


# ---------------------------------------------------------------------------------------- fit
def _accepts(fn, name: str) -> bool:
    return name in inspect.signature(fn).parameters


def build_estimator(config: RunConfig, ds: Dataset | None = None, checkpoint_dir=None) -> LatentModel:
    """The estimator of ``config``: its params, ``scale="standard"`` for tables unless given,
    and ``checkpoint_dir`` where the class takes one."""
    cls = MODELS[config.model]
    params = dict(config.params)
    if ds is not None and ds.kind == "tabular" and "scale" not in params and _accepts(cls, "scale"):
        params["scale"] = "standard"
    if checkpoint_dir is not None and _accepts(cls, "checkpoint_dir"):
        params["checkpoint_dir"] = str(checkpoint_dir)
    return cls(**params)


def fit(
    config: RunConfig,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    command: Sequence[str] | None = None,
    dataset: Dataset | None = None,
) -> Run:
    """Load the data, fit the model, measure it on the test split, and save the run.

    Parameters
    ----------
    config : RunConfig
    out : run directory to write (model, checkpoint each epoch, run.json), or None to keep the
        run in memory only.
    resume : continue from the checkpoint in ``out`` (see :func:`resume`).
    command : the command line, recorded in run.json.
    dataset : ``config.data`` already loaded (to load it once for several fits).

    Under torchrun (``torchrun --nproc-per-node N -m latentlab fit ...``) every process trains its
    share of each batch (see :func:`latentlab.training.train`); only rank 0 measures the model and
    writes the run directory, the other processes return the fitted model without metrics.

    Returns
    -------
    Run, with ``metrics`` measured on the test split (when there is one).
    """
    from .training.distributed import is_main_process

    ds = dataset if dataset is not None else load_dataset(config.data, labels=config.labels, label_column=config.label_column)
    parts = split_data(ds, config.test_fraction, config.split_seed)
    out = Path(out) if out is not None else None
    if out is not None:  # a path is recorded absolute, so that the run reopens from anywhere
        config = dataclasses.replace(config, data=_source_spec(config.data))
        if config.labels is not None:
            config = dataclasses.replace(config, labels=str(Path(config.labels).resolve()))
    est = build_estimator(config, ds, checkpoint_dir=out)
    X = model_input(est, parts["train"])
    kw: dict[str, Any] = {}
    args: tuple = (X,)
    if is_conditional(est):
        args = (X, condition_of(est, parts["train"]))
    if parts["valid"] is not None and _accepts(est.fit, "X_val"):
        kw["X_val"] = model_input(est, parts["valid"])
        if is_conditional(est):
            kw["y_val"] = condition_of(est, parts["valid"], "the validation split")
    if resume:
        if not _accepts(est.fit, "resume"):
            raise ConfigError(f"{config.model} is fitted in closed form and has nothing to resume; run fit again.")
        kw["resume"] = True
    run = Run(est, config, parts["train"], parts["valid"], parts["test"], path=out)
    if out is not None:
        # Written before training, so that `fit --resume` finds the settings after a Ctrl-C.
        _write_run_json(run, command, status="training")
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
    if out is not None:
        save_run(run, command=command)
    return run


def resume(run_dir: str | Path, *, epochs: int | None = None, command: Sequence[str] | None = None) -> Run:
    """Continue the training of the run in ``run_dir`` from its last checkpoint, with the same
    data, split and settings (``epochs`` may raise the number of epochs)."""
    run_dir = Path(run_dir)
    info = _read_run_json(run_dir)
    config = _run_config(info, run_dir)
    if config is None:
        raise CheckpointError(f"{run_dir / RUN_FILE} records no settings to resume with; fit again with `latentlab fit`.")
    if epochs is not None:
        config = dataclasses.replace(config, params={**config.params, "epochs": epochs})
    return fit(config, run_dir, resume=True, command=command)


def save_run(run: Run, *, command: Sequence[str] | None = None) -> Path:
    """Write the model and ``run.json`` into ``run.path``."""
    if run.path is None:
        raise ConfigError("this run has no directory; pass out=... to fit.")
    run.model.save(run.path)
    _write_run_json(run, command, status="fitted")
    return run.path


def _write_run_json(run: Run, command, status: str) -> None:
    from .training.distributed import is_main_process

    if not is_main_process():
        return
    info = {
        "format": "latentlab-run",
        "format_version": RUN_FORMAT,
        "latentlab_version": __version__,
        "status": status,
        "config": run.config.to_dict() if run.config else None,
        "data": _data_info(run),
        "command": list(command) if command is not None else None,
        "metrics": _jsonable(run.metrics),
        "label": run.info.get("label"),
    }
    old = run.path / RUN_FILE
    if old.is_file():
        try:
            prev = json.loads(old.read_text("utf-8"))
            info["evaluations"] = prev.get("evaluations", {})
        except (OSError, json.JSONDecodeError):
            pass
    run.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(old, json.dumps(info, indent=2, allow_nan=True))


def _data_info(run: Run) -> dict[str, Any]:
    ref = run.train if run.train is not None else run.test
    d: dict[str, Any] = {}
    if ref is not None:
        d = {
            "kind": ref.kind,
            "n_features": int(np.prod(ref.data.shape[1:])),
            "image_shape": list(ref.image_shape) if ref.image_shape else None,
            "feature_names": ref.feature_names,
        }
        if is_conditional(run.model):
            d["condition"] = condition_source(run.config)
    for s in ("train", "valid", "test"):
        part = getattr(run, s)
        d[f"n_{s}"] = None if part is None else len(part)
    return d


def _jsonable(d):
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_jsonable(v) for v in d]
    if isinstance(d, np.generic):
        return d.item()
    if isinstance(d, np.ndarray):
        return d.tolist()
    return d


def _read_run_json(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a directory; pass a run directory written by `latentlab fit --out`.")
    if not path.is_file():
        raise CheckpointError(
            f"{run_dir} has no {RUN_FILE}; it is not a run directory written by `latentlab fit --out` "
            "(a model saved with .save() needs --data)."
        )
    info = read_json(path)
    if not isinstance(info, dict) or info.get("format") != "latentlab-run":
        raise CheckpointError(f"{path} is not a latentlab run file.")
    if info.get("format_version") != RUN_FORMAT:
        raise CheckpointError(
            f"{path} was written by latentlab {info.get('latentlab_version')} in run format "
            f"{info.get('format_version')}; this latentlab ({__version__}) reads format {RUN_FORMAT}. "
            "Open it with the matching latentlab version, or refit with this one."
        )
    return info


def _run_config(info: dict[str, Any], run_dir: Path) -> RunConfig | None:
    """The RunConfig recorded in run.json (None if none); a damaged one is a CheckpointError."""
    if not info.get("config"):
        return None
    try:
        return RunConfig.from_dict(info["config"])
    except (ConfigError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(
            f"{run_dir / RUN_FILE} holds settings latentlab cannot use ({exc}); the file is damaged "
            "or from another version: fit again."
        ) from None


def open_run(run_dir: str | Path, data: str | None = None, *, load_data: bool = True, labels: str | None = None,
             label_column: str | None = None) -> Run:
    """Reopen a run directory: the model, and (with ``load_data``) the data it was fitted on
    split as it was, or the source ``data`` instead.

    A directory with only a saved model (no run.json) opens too; it then needs ``data``.
    For a conditional model the condition comes with the data: for the run's own data, from
    where the run recorded it; for ``data``, from its own labels; ``labels`` (a file) or
    ``label_column`` (of a CSV/TSV source) replace either.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a directory; pass a run directory written by `latentlab fit --out`.")
    if not (run_dir / "config.json").is_file():
        what = "training was interrupted before a model was saved: continue it with `latentlab fit --resume`" if (
            run_dir / RUN_FILE).is_file() else "it is not a run directory written by `latentlab fit --out`"
        raise CheckpointError(f"{run_dir} holds no saved model (config.json); {what}.")
    model = load(run_dir)
    info: dict[str, Any] = {}
    config = None
    if (run_dir / RUN_FILE).is_file():
        info = _read_run_json(run_dir)
        config = _run_config(info, run_dir)
    run = Run(model, config, path=run_dir, metrics=info.get("metrics") or {}, info=info)
    if not load_data:
        return run
    source = data if data is not None else (config.data if config else None)
    if source is None:
        raise DataError(f"{run_dir} has no {RUN_FILE} naming its data; pass --data SOURCE.")
    own = data is None or data == (config.data if config else None)
    check_condition_options(config.model if config else _model_name(model), labels, label_column)
    if own and labels is None and label_column is None and config is not None:
        labels, label_column = config.labels, config.label_column
    ds = load_dataset(source, labels=labels, label_column=label_column)
    if data is not None and data != (config.data if config else None):
        parts = split_data(ds, 0.0)
    else:
        parts = split_data(ds, config.test_fraction, config.split_seed)
    run.train, run.valid, run.test = parts["train"], parts["valid"], parts["test"]
    run.info["all"] = parts["all"]
    return run


def _model_name(model: LatentModel) -> str:
    return next((k for k, cls in MODELS.items() if type(model) is cls), type(model).__name__)


def pick(run: Run, split: str) -> Dataset:
    """One split of a reopened run; a clear error when the source has no such split."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}; got {split!r}.")
    ds = run.info.get("all") if split == "all" else getattr(run, split)
    if ds is None:
        have = [s for s in SPLITS if (run.info.get("all") if s == "all" else getattr(run, s)) is not None]
        raise DataError(f"this data has no {split!r} split; use --split with one of {', '.join(have)}.")
    return ds


# ---------------------------------------------------------------------------------------- measure
def measure(model: LatentModel, ds: Dataset, *, k: int = 1000, seed: int = 0) -> dict[str, float]:
    """latentlab.evaluation.evaluate on a Dataset (the array the model takes, and its labels)."""
    from .evaluation import evaluate as _evaluate

    y = condition_of(model, ds) if is_conditional(model) else ds.target
    return _evaluate(model, model_input(model, ds), y=y, k=k, seed=seed)


def default_split(run: Run, split: str | None, data: str | None) -> str:
    """``split``, or when None: "test", except for another source without a test split: "all"."""
    if split is not None:
        return split
    return "test" if run.test is not None or data is None else "all"


def evaluate(run: "Run | str | Path", data: str | None = None, *, split: str | None = None, k: int = 1000, seed: int = 0, record: bool = True) -> dict[str, float]:
    """The metrics of a saved run (a run directory or a :class:`Run` from :func:`open_run`) on
    one split of its data, or of another source ``data``.

    ``split`` None means "test": the run's held-out rows, or for another source its own test
    split if it has one, else all its rows. With ``record``, the result is stored under
    ``evaluations`` in the run's run.json.
    """
    run = _run(run, data)
    split = default_split(run, split, data)
    ds = pick(run, split)
    metrics = measure(run.model, ds, k=k, seed=seed)
    path = run.path / RUN_FILE if run.path is not None else None
    if record and path is not None and path.is_file():
        info = read_json(path)
        key = split if data is None else f"{split}:{data}"
        info.setdefault("evaluations", {})[key] = {"k": k, "seed": seed, **_jsonable(metrics)}
        atomic_write_text(path, json.dumps(info, indent=2, allow_nan=True))
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
    return codes(run.model, model_input(run.model, ds), condition_of(run.model, ds))


def reconstruct(run: "Run | str | Path", data: str | None = None, *, split: str = "all") -> tuple[np.ndarray, np.ndarray]:
    """(originals, reconstructions), each (n, n_features), in the data's own units (for a
    conditional VAE, each row through its own condition)."""
    run = _run(run, data)
    ds = pick(run, split)
    X = model_input(run.model, ds)
    y = condition_of(run.model, ds)
    R = decode(run.model, codes(run.model, X, y), y)
    return np.asarray(ds.data), np.asarray(R).reshape(len(ds), -1)


def pair_rows(X: np.ndarray, R: np.ndarray, n: int = 32, ncols: int = 16) -> tuple[np.ndarray, int]:
    """Interleave rows of originals X and reconstructions R for an image grid: each row of up to
    ``ncols`` originals is followed by their reconstructions. Returns (array, columns); ``n`` is
    rounded down to whole rows."""
    n = min(check_int(n, "n"), len(X))
    cols = min(n, ncols)
    n -= n % cols
    blocks = []
    for start in range(0, n, cols):
        blocks += [X[start : start + cols], R[start : start + cols]]
    return np.vstack(blocks), cols


def decode_random(model: LatentModel, n: int, seed: int = 0, *, y=None) -> np.ndarray:
    """Decode ``n`` random latent points, (n, n_features): the model's own ``sample`` where it has
    one (a VAE: z ~ its prior); for PCA, z from probabilistic PCA's latent Gaussian
    N(0, diag(explained_variance_)); for an autoencoder, which has no prior, z ~ N(0, I).

    A conditional VAE decodes under the conditions ``y`` (one per sample, or one for all;
    default: :func:`sample_labels`, an equal share of each class)."""
    n = check_int(n, "n")
    if is_conditional(model):
        X = model.sample(n, sample_labels(model, n) if y is None else y, seed=seed)
    elif hasattr(model, "sample"):
        X = model.sample(n, seed=seed)
    else:
        z = np.random.default_rng(seed).standard_normal((n, int(model.latent_dim))).astype(np.float32)
        if isinstance(model, PCA) and not model.whiten:
            z = z * np.sqrt(model.explained_variance_).astype(np.float32)
        X = model.inverse_transform(z)
    return np.asarray(X).reshape(n, -1)


def sample(run_dir: str | Path, n: int, *, seed: int = 0, label: str | None = None, return_labels: bool = False):
    """``n`` decoded random latent points from the model in ``run_dir`` (see :func:`decode_random`),
    (n, n_features). A conditional VAE decodes under ``label``, as for :func:`parse_labels` (a
    comma list of classes, shared equally; default: every class). With ``return_labels``, also
    the conditions used: (n,) labels or (n, m) side inputs, or None for other models.

    Example
    -------
    >>> X, y = sample("runs/cvae", 20, label="3,5", return_labels=True)  # doctest: +SKIP
    >>> X.shape, y.tolist()[:3], y.tolist()[-3:]                          # doctest: +SKIP
    ((20, 64), [3, 3, 3], [5, 5, 5])
    """
    model = load(run_dir)
    y = None
    if is_conditional(model):
        y = sample_labels(model, n, None if label is None else parse_labels(model, label))
    elif label is not None:
        raise ConfigError(f"--label gives the condition of a conditional model, and {_model_name(model)} takes none; drop --label.")
    X = decode_random(model, n, seed, y=y)
    return (X, y) if return_labels else X


def _cond_features(model: LatentModel, y) -> np.ndarray:
    """Conditions as the networks take them, (n, m) floats: one-hot rows for class labels."""
    c = model.encode_condition(y)
    if model.condition_ == "categorical":
        return np.eye(model.n_cond_, dtype=np.float32)[c]
    return c


def interpolate_codes(model: LatentModel, a: np.ndarray, b: np.ndarray, steps: int, ya=None, yb=None, *, y=None) -> np.ndarray:
    """Decode the straight line between the codes of examples ``a`` and ``b`` (each (n_features,)
    or an image) in ``steps`` points, ends included: (steps, n_features).

    For a conditional VAE, ``ya`` and ``yb`` are the two examples' conditions; the path is
    decoded under the condition ``y`` when given, else under the straight line between the two
    conditions (one-hot vectors for labels: soft labels in between), so its ends are the two
    reconstructions."""
    steps = check_int(steps, "steps", low=2)
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
    if not is_conditional(model):
        za, zb = model.transform(np.stack([a, b]))
        Z = (1 - t) * za[None, :] + t * zb[None, :]
        return np.asarray(model.inverse_transform(Z.astype(np.float32))).reshape(steps, -1)
    ends = np.stack([np.asarray(ya), np.asarray(yb)])  # (2,) labels or (2, m) side inputs
    za, zb = model.transform(np.stack([a, b]), ends)
    Z = ((1 - t) * za[None, :] + t * zb[None, :]).astype(np.float32)
    if y is not None:
        return np.asarray(model.inverse_transform(Z, y)).reshape(steps, -1)
    ca, cb = _cond_features(model, ends)
    C = ((1 - t) * ca[None, :] + t * cb[None, :]).astype(np.float32)
    return np.asarray(model.inverse_transform(Z, C)).reshape(steps, -1)


def interpolate(run: "Run | str | Path", data: str | None = None, *, start: int, end: int, steps: int = 10, split: str = "all",
                label: str | None = None) -> np.ndarray:
    """Decoded points on the line between the codes of rows ``start`` and ``end``: (steps, n_features).

    For a conditional VAE each row is encoded with its own condition and the path decoded under
    the line between the two conditions, or under ``label`` (as for :func:`parse_labels`, one
    label) when given."""
    run = _run(run, data)
    ds = pick(run, split)
    for name, i in (("--from", start), ("--to", end)):
        if not (0 <= i < len(ds)):
            raise DataError(f"{name} {i} is out of range; the data has rows 0 to {len(ds) - 1}.")
    X = model_input(run.model, ds)
    if not is_conditional(run.model):
        if label is not None:
            raise ConfigError(f"--label gives the condition of a conditional model, and {_model_name(run.model)} takes none; drop --label.")
        return interpolate_codes(run.model, np.asarray(X[start]), np.asarray(X[end]), steps)
    y = np.asarray(condition_of(run.model, ds))
    fixed = None
    if label is not None:
        fixed = parse_labels(run.model, label)
        if run.model.condition_ == "categorical" and len(fixed) != 1:
            raise ConfigError(f"interpolate decodes under one --label; got {len(fixed)} ({label}).")
    return interpolate_codes(run.model, np.asarray(X[start]), np.asarray(X[end]), steps, y[start], y[end], y=fixed)


def write_array(path: str | Path, X: np.ndarray, *, image_shape=None, columns: Sequence[str] | None = None, ncols: int | None = None) -> Path:
    """Write ``X`` (n, n_features) by the suffix of ``path``: ``.npy``, ``.csv`` (one row per
    example, with a header), or ``.png`` (a grid of images; needs ``image_shape``). Atomic."""
    path = Path(path)
    suffix = path.suffix.lower()
    X = np.asarray(X)
    if suffix == ".npy":
        with atomic_open(path) as f:
            np.save(f, X, allow_pickle=False)
    elif suffix in (".csv", ".tsv"):
        sep = "\t" if suffix == ".tsv" else ","
        cols = list(columns) if columns is not None else [f"x{j}" for j in range(X.shape[1])]
        lines = [sep.join(cols)] + [sep.join(f"{v:.9g}" for v in row) for row in X.reshape(len(X), -1)]
        atomic_write_text(path, "\n".join(lines) + "\n")
    elif suffix == ".png":
        if image_shape is None:
            raise DataError(f"{path.name}: a PNG needs image data, and this data is a table; write .npy or .csv instead.")
        from . import plots

        write_figure(path, plots.image_grid(X, image_shape, ncols=ncols))
    else:
        raise ConfigError(f"{path.name}: unknown output type {suffix or '(none)'}; use .npy, .csv or .png.")
    return path


def write_figure(path: str | Path, fig, dpi: int = 100) -> Path:
    """Save a matplotlib Figure as a PNG at ``path``, atomically."""
    import io as _io

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    with atomic_open(path) as f:
        f.write(buf.getvalue())
    return Path(path)


# ---------------------------------------------------------------------------------------- compare
def principal_angle(a: LatentModel, b: LatentModel) -> float:
    """The largest principal angle, in degrees, between the spans of two linear decoders
    (``scipy.linalg.subspace_angles``): 0 when they decode to the same subspace.

    The span is read from the decoders themselves, column j being D(e_j) - D(0), so it works
    for PCA and for a linear autoencoder alike.
    """
    from scipy.linalg import subspace_angles

    def span(m):
        k = int(m.latent_dim)
        Z = np.vstack([np.zeros((1, k)), np.eye(k)]).astype(np.float32)
        D = np.asarray(m.inverse_transform(Z), dtype=np.float64).reshape(k + 1, -1)
        return (D[1:] - D[0]).T  # (F, k)

    return float(np.degrees(subspace_angles(span(a), span(b)).max()))


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

    Returns
    -------
    Comparison, whose ``table`` maps each model's label to its metrics.
    """
    params = dict(params or {})
    out = Path(out) if out is not None else None
    ds = datasets.load(data)
    runs = []
    for label, (model, extra) in COMPARE_SET.items():
        cls = MODELS[model]
        p = {k: v for k, v in params.items() if _accepts(cls, k)}
        p.update(extra)
        p.update((per_model or {}).get(label, {}))
        p["latent_dim"] = latent_dim
        cfg = RunConfig(model, data, p, test_fraction, split_seed, eval_k)
        run_out = out / _slug(label) if out is not None else None
        run = fit(cfg, run_out, command=command, dataset=ds)
        run.info["label"] = label
        runs.append(run)
    table = {r.name: dict(r.metrics) for r in runs}
    by = {r.name: r for r in runs}
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
