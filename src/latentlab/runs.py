"""The run directory: what was fitted on which data, and everything to reopen it.

A *run directory* holds one fitted model: ``config.json`` and ``model.safetensors`` (the model,
see :func:`latentlab.load`), ``checkpoint.safetensors`` (the training state, for
``fit(..., resume=True)``) and ``run.json`` (the data source and split, with the data's
fingerprint, the command, the metrics). This module reads and writes ``run.json``
(:class:`RunConfig`, :class:`Run`, :func:`open_run`), builds the estimator a run describes, and
knows where a conditional model's condition comes from.

A run directory is written as a transaction (:class:`RunWriter`): a new fit into a folder that
holds a model trains in the sibling ``.NAME.staging`` and replaces the folder only once it has
succeeded, so a fit that fails, diverges or is interrupted leaves the old run whole;
``fit --resume`` finds its checkpoint there. One process writes a run folder at a time (its lock
is ``.NAME.lock``, beside it).

Example
-------
>>> from latentlab.runs import RunConfig
>>> RunConfig("vae", "digits", {"latent_dim": 2}).to_dict()["params"]
{'latent_dim': 2}
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ._version import __version__
from .datasets.core import Dataset
from .datasets.fingerprint import describe_change, fingerprint
from .datasets.labels import load_dataset
from .datasets.sources import NAMED_SOURCES, split_spec
from .datasets.splits import describe_split, split_data
from .errors import CheckpointError, ConfigError, DataError
from .io import atomic_write_text, check_format, jsonable, read_json
from .limits import check_samples, check_seed
from .models.registry import discover, load, model_class, model_name
from .runfolder import RUN_OWN_FILES, RunWriter, resume_dir, staging_dir
from .validation import check_finite, check_float

if TYPE_CHECKING:  # pragma: no cover
    from .models.base import LatentModel

__all__ = [
    "RUN_FILE",
    "SPLITS",
    "RunConfig",
    "Run",
    "open_run",
    "save_run",
    "write_run_json",
    "read_run_json",
    "pick",
    "default_split",
    "build_estimator",
    "model_input",
    "condition_of",
    "condition_source",
    "check_condition_options",
    "check_label_options",
    "conditional_models",
    "accepts",
    "label_runs",
    "settings_label",
    "check_data",
    "check_conditions",
    "check_fingerprint",
    "check_output_path",
    "RunWriter",
    "resume_dir",
    "staging_dir",
    "RUN_OWN_FILES",
]

RUN_FILE = "run.json"
RUN_FORMAT = 1
SPLITS = ("all", "train", "valid", "test")


def conditional_models() -> tuple[str, ...]:
    """The registered names of the models that take a condition y (labels or side inputs)."""
    return tuple(name for name, cls in discover().items() if cls.conditional)


def accepts(fn, name: str) -> bool:
    """Whether the callable (or class) ``fn`` takes a parameter ``name``."""
    return name in inspect.signature(fn).parameters


# ---------------------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class RunConfig:
    """What to fit on which data.

    Parameters
    ----------
    model : str
        A registered model name ("pca", "ae", "vae", ...; :data:`latentlab.models.MODELS`).
    data : str
        A data source, as for :func:`latentlab.datasets.load`.
    params : mapping
        Constructor parameters of the estimator (``latent_dim``, ``hidden``, ``epochs``, ...);
        those not given take the estimator's defaults. For tables, ``scale`` defaults to
        "standard".
    test_fraction : float
        Share of the data held out as the test split when the source has no test split of its
        own: rows drawn at random (``split_seed``), for data on disk too (the splits are then index
        arrays into the file, read as they are used).
    split_seed : int
    eval_k : int
        Importance samples for the test log-likelihood recorded at the end of :func:`fit`.
    labels : str or None
        The labels of the data, as a source of one label per row (``FILE.npy``, ``FILE.npz[:KEY]``,
        ``FILE.csv``/``.tsv``, an IDX file...; see :func:`latentlab.datasets.read_labels`), or of
        an (n, m) side-input matrix. None: the source's own labels. For a conditional model they
        are its condition; for the others (``compare``), what the feature space's classifier is
        trained on and the latent scatter is coloured by.
    label_column : str or None
        For a ``.csv``/``.tsv`` source, the column that holds the labels (it is removed from the
        features).
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
        cls = model_class(self.model)
        check_float(self.test_fraction, "test_fraction", low=0.0, high=1.0, low_inclusive=True, high_inclusive=False)
        check_seed(self.split_seed, "split_seed")
        check_samples(self.eval_k, "eval_k", "--eval-k")
        if not isinstance(self.data, (str, os.PathLike)):
            raise ConfigError(f"data must be a source name or a path, got {self.data!r}; see `latentlab fit --help`.")
        if not isinstance(self.params, Mapping):
            raise ConfigError(f"params must be a mapping of estimator settings, got {self.params!r}.")
        known = set(inspect.signature(cls).parameters)
        unknown = sorted(set(self.params) - known)
        if unknown:
            raise ConfigError(
                f"{self.model} has no setting(s) {unknown}; its settings are {sorted(known)}."
            )
        check_label_options(self.labels, self.label_column)

    def to_dict(self) -> dict[str, Any]:
        """JSON values; a network of your own in ``params`` as its record (:mod:`latentlab.nn.spec`)."""
        from .nn.spec import network_record

        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["params"] = {k: jsonable(network_record(v)) for k, v in self.params.items()}
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


def settings_label(model: str, settings: Mapping[str, Any]) -> str:
    """``"vae c=0.3 hidden=64,32"``: a model name and settings, as the command line writes them."""
    def show(v):
        if isinstance(v, (list, tuple)):
            return ",".join(map(str, v)) or "()"
        return f"{v:g}" if isinstance(v, float) else str(v)

    return " ".join([model, *(f"{k}={show(v)}" for k, v in settings.items())])


def label_runs(runs: Sequence["Run"]) -> None:
    """Name several runs by what tells them apart, for a page that shows them side by side: the
    settings that differ between them ("vae c=0.3"), after their role where they have one
    ("linear AE", from ``compare``) unless the role alone already tells them apart."""
    if len(runs) < 2:
        return
    configs = [r.config.to_dict() if r.config else {} for r in runs]
    keys = sorted({k for c in configs for k in c.get("params", {})})
    differ = [k for k in keys if len({json.dumps(c.get("params", {}).get(k), sort_keys=True, default=str) for c in configs}) > 1]
    models = {c.get("model") for c in configs}
    roles = [r.info.get("role") for r in runs]
    unique_roles = None not in roles and len(set(roles)) == len(roles)
    for r, c, role in zip(runs, configs, roles):
        shown = {k: c["params"][k] for k in differ if k in c.get("params", {})}
        name = settings_label(c.get("model") or type(r.model).__name__, shown) if shown or len(models) > 1 else None
        if unique_roles:
            r.info["label"] = role
        elif role and name:
            r.info["label"] = f"{role} ({name})"
        else:
            r.info["label"] = role or name or c.get("model") or type(r.model).__name__
    names = [r.info["label"] for r in runs]
    for i, r in enumerate(runs):  # still the same name: number them
        if names.count(names[i]) > 1:
            r.info["label"] = f"{names[i]} #{names[:i + 1].count(names[i])}"


# ---------------------------------------------------------------------------------------- conditions
def check_label_options(labels=None, label_column=None) -> None:
    """A clear error for labels given as something else than a path or a column name, or twice."""
    for opt, v in (("labels", labels), ("label_column", label_column)):
        if v is not None and not isinstance(v, (str, Path)):
            raise ConfigError(f"{opt} must be a file path or a column name, got {v!r}.")
    if labels is not None and label_column is not None:
        raise ConfigError("--labels and --label-column both give the labels; pass one of them.")


def check_condition_options(model: str, labels=None, label_column=None) -> None:
    """A clear error for a condition given to a model that takes none, or given twice."""
    for opt, v in (("labels", labels), ("label_column", label_column)):
        if v is not None and not isinstance(v, (str, Path)):
            raise ConfigError(f"{opt} must be a file path or a column name, got {v!r}.")
    opts = [o for o, v in (("--labels", labels), ("--label-column", label_column)) if v is not None]
    conditional = conditional_models()
    if opts and model not in conditional:
        raise ConfigError(
            f"{' and '.join(opts)} give(s) the condition of a conditional model, and {model} takes none; "
            f"fit {' or '.join(conditional)} to condition on labels, or drop {' and '.join(opts)}."
        )
    if len(opts) == 2:
        raise ConfigError("--labels and --label-column both give the condition; pass one of them.")


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
    if not model.conditional:
        return None
    if ds.target is None:
        raise DataError(
            f"{type(model).__name__} needs a condition (a label per row) and {what} ({ds.name or 'this source'}) "
            "has no labels; pass --labels FILE.npy|.csv (one label per row, or an (n, m) side-input matrix), "
            "or --label-column NAME for a CSV/TSV source."
        )
    return ds.target


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


def build_estimator(config: RunConfig, ds: Dataset | None = None, checkpoint_dir=None) -> LatentModel:
    """The estimator of ``config``: its params, ``scale="standard"`` for tables unless given,
    and ``checkpoint_dir`` where the class takes one."""
    cls = model_class(config.model)
    params = dict(config.params)
    if ds is not None and ds.kind == "tabular" and "scale" not in params and accepts(cls, "scale"):
        params["scale"] = "standard"
    if checkpoint_dir is not None and accepts(cls, "checkpoint_dir"):
        params["checkpoint_dir"] = str(checkpoint_dir)
    return cls(**params)


# ---------------------------------------------------------------------------------------- run.json
def save_run(run: Run, *, command: Sequence[str] | None = None) -> Path:
    """Write the model and ``run.json`` into ``run.path``."""
    if run.path is None:
        raise ConfigError("this run has no directory; pass out=... to fit.")
    run.model.save(run.path)
    write_run_json(run, command, status="fitted")
    return run.path


def write_run_json(run: Run, command, status: str) -> None:
    from .training.distributed import is_main_process

    if not is_main_process():
        return
    info = {
        "format": "latentlab-run",
        "format_version": RUN_FORMAT,
        "latentlab_version": __version__,
        "status": status,
        "pid": os.getpid(),
        "config": run.config.to_dict() if run.config else None,
        "data": _data_info(run),
        "command": list(command) if command is not None else None,
        "metrics": jsonable(run.metrics),
        "label": run.info.get("label"),
        "role": run.info.get("role"),
        "sweep": run.info.get("sweep"),
    }
    old = run.path / RUN_FILE
    if old.is_file():
        try:
            prev = read_json(old)  # bounded: a damaged or huge run.json is not read whole
            info["evaluations"] = prev.get("evaluations", {}) if isinstance(prev, dict) else {}
        except (OSError, CheckpointError):
            pass
    run.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(old, json.dumps(info, indent=2, allow_nan=True))


def _data_info(run: Run) -> dict[str, Any]:
    ref = run.train if run.train is not None else run.test
    d: dict[str, Any] = {}
    if ref is not None:
        d = {
            "kind": ref.kind,
            "n_features": len(ref.data.dtype.names) if getattr(ref.data, "dtype", None) is not None and ref.data.dtype.names
            else int(np.prod(ref.data.shape[1:])),
            "image_shape": list(ref.image_shape) if ref.image_shape else None,
            "feature_names": ref.feature_names,
        }
        if run.model.conditional:
            d["condition"] = condition_source(run.config)
        elif run.config is not None and (run.config.labels or run.config.label_column):
            d["labels"] = condition_source(run.config)
    if run.info.get("fingerprint") is not None:
        d["fingerprint"] = run.info["fingerprint"]
    for s in ("train", "valid", "test"):
        part = getattr(run, s)
        d[f"n_{s}"] = None if part is None else len(part)
    if run.info.get("split"):
        d["split"] = run.info["split"]
    return d


def read_run_json(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a directory; pass a run directory written by `latentlab fit --out`.")
    if not path.is_file():
        raise CheckpointError(
            f"{run_dir} has no {RUN_FILE}; it is not a run directory written by `latentlab fit --out` "
            "(a model saved with .save() needs --data)."
        )
    return check_format(read_json(path), path, name="latentlab-run", version=RUN_FORMAT, what="a latentlab run file")


def run_config_from(info: dict[str, Any], run_dir: Path) -> RunConfig | None:
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
             label_column: str | None = None, allow_changed_data: bool = False, trust_code: bool | None = None,
             networks: Mapping[str, Any] | None = None) -> Run:
    """Reopen a run directory: the model, and (with ``load_data``) the data it was fitted on
    split as it was, or the source ``data`` instead.

    A directory with only a saved model (no run.json) opens too; it then needs ``data``.
    For a conditional model the condition comes with the data: for the run's own data, from
    where the run recorded it; for ``data``, from its own labels; ``labels`` (a file) or
    ``label_column`` (of a CSV/TSV source) replace either.

    The run's own data is checked against the fingerprint recorded at fit: data that changed
    since (rows appended, a file replaced) is a DataError naming the change, since its split would
    no longer be the one the model was fitted on; ``allow_changed_data`` opens it all the same.

    ``trust_code`` and ``networks`` (``{"encoder": ..., "decoder": ...}``) are handed to
    :func:`latentlab.load`, for a model fitted with networks of your own.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a directory; pass a run directory written by `latentlab fit --out`.")
    if not (run_dir / "config.json").is_file():
        what = "training was interrupted before a model was saved: continue it with `latentlab fit --resume`" if (
            run_dir / RUN_FILE).is_file() else "it is not a run directory written by `latentlab fit --out`"
        raise CheckpointError(f"{run_dir} holds no saved model (config.json); {what}.")
    model = load(run_dir, trust_code=trust_code, **dict(networks or {}))
    info: dict[str, Any] = {}
    config = None
    if (run_dir / RUN_FILE).is_file():
        info = read_run_json(run_dir)
        config = run_config_from(info, run_dir)
    run = Run(model, config, path=run_dir, metrics=info.get("metrics") or {}, info=info)
    if not load_data:
        return run
    source = data if data is not None else (config.data if config else None)
    if source is None:
        raise DataError(f"{run_dir} has no {RUN_FILE} naming its data; pass --data SOURCE.")
    own = data is None or data == (config.data if config else None)
    check_condition_options(config.model if config else model_name(model), labels, label_column)
    if own and labels is None and label_column is None and config is not None:
        labels, label_column = config.labels, config.label_column
    ds = load_dataset(source, labels=labels, label_column=label_column)
    if ds.info.get("missing"):  # a table's empty cell, named by its line in the file
        raise DataError(ds.info["missing"])
    if data is not None and data != (config.data if config else None):
        parts = split_data(ds, 0.0)
        split = (f"another source, {describe_split(ds)}" if ds.splits else
                 f"another source, without a split of its own: all {len(ds)} rows")
    else:
        if not allow_changed_data:
            check_fingerprint(info, ds, run_dir)
        parts = split_data(ds, config.test_fraction, config.split_seed)
        split = describe_split(ds, config.test_fraction, config.split_seed)
    run.train, run.valid, run.test = parts["train"], parts["valid"], parts["test"]
    run.info["split"] = split
    run.info["all"] = parts["all"]
    return run


def pick(run: Run, split: str) -> Dataset:
    """One split of a reopened run; a clear error when the source has no such split."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}; got {split!r}.")
    ds = run.info.get("all") if split == "all" else getattr(run, split)
    if ds is None:
        have = [s for s in SPLITS if (run.info.get("all") if s == "all" else getattr(run, s)) is not None]
        raise DataError(f"this data has no {split!r} split; use --split with one of {', '.join(have)}.")
    return ds


def default_split(run: Run, split: str | None, data: str | None) -> str:
    """``split``, or when None: "test", except for another source without a test split: "all"."""
    if split is not None:
        return split
    return "test" if run.test is not None or data is None else "all"


# ---------------------------------------------------------------------------------------- the data
def check_fingerprint(info: dict[str, Any], ds: Dataset, run_dir: Path, verb: str = "use it") -> None:
    """A DataError when ``ds`` is not the data the run in ``run_dir`` was split from (by the
    fingerprint its run.json recorded; runs without one are not checked)."""
    old = (info.get("data") or {}).get("fingerprint")
    if not isinstance(old, dict):
        return
    change = describe_change(old, fingerprint(ds))
    if change is None:
        return
    source = (info.get("config") or {}).get("data", ds.name)
    raise DataError(
        f"the data {source} changed since the run in {run_dir} was fitted on it: {change}. Its train/test "
        "split would no longer be the one the model was fitted with (the 'test' rows could include training "
        f"rows). Fit again on the data as it is now, restore the data, or {verb} anyway with --allow-changed-data "
        "(allow_changed_data=True)."
    )


def check_data(ds: Dataset) -> None:
    """Every value of the data and of its own valid/test splits finite, and every numeric label
    too: checked before the first epoch, so that a bad row that lands in the test split does not
    throw the training away. Rows are counted in the source (or in its split), from 0."""
    parts = [(f"the data {ds.name}", ds)] + [(f"the {s} split of {ds.name}", ds.splits[s]) for s in ("valid", "test") if s in ds.splits]
    for what, part in parts:
        if part.info.get("missing"):  # a table's empty cell, named by its line in the file
            raise DataError(part.info["missing"])
        check_finite(part.data, name=what)
        y = part.target
        if y is not None and np.asarray(y).dtype.kind == "f":
            bad = ~np.isfinite(np.asarray(y, dtype=np.float64).reshape(len(y), -1)).all(axis=1)
            if bad.any():
                raise DataError(
                    f"the labels of {what[4:]} hold {int(bad.sum())} NaN or infinite value(s), the first for row "
                    f"{int(np.argmax(bad))}; give every row a finite label (or side input)."
                )


def check_conditions(model: LatentModel, parts: Mapping[str, Dataset | None]) -> None:
    """Before training a conditional model on labels (one per row, not side inputs): every label of
    the validation and test splits is one that training rows have, else a DataError now, rather
    than one when the model is measured after training."""
    train = parts.get("train")
    if not model.conditional or train is None or train.target is None or getattr(model, "condition", "auto") == "continuous":
        return
    y = np.asarray(train.target)
    if y.ndim != 1:
        return
    known = set(np.unique(y).tolist())
    for split in ("valid", "test"):
        part = parts.get(split)
        if part is None or part.target is None:
            continue
        unseen = sorted(set(np.unique(np.asarray(part.target).reshape(-1)).tolist()) - known, key=str)
        if unseen:
            raise DataError(
                f"the {split} split holds label(s) {unseen[:5]} that no training row has (a class too rare to be "
                "split); the model could not be measured on them: give each class more rows, or change --test-fraction "
                "or --split-seed."
            )


def check_output_path(out: str | Path, run: Run | None = None, data: str | None = None) -> Path:
    """``out`` as a path, or a ConfigError when writing it would overwrite an input: the data
    (``data`` or the run's own; a file, or a file inside a data folder), the labels file, or a
    file of the run directory."""
    target = Path(out).resolve()
    config = run.config if run is not None else None
    inputs = [s for s in (data, config.data if config else None) if s and s not in NAMED_SOURCES]
    named = [("the data", split_spec(s)[0]) for s in inputs]
    if config is not None and config.labels:
        named.append(("the labels file", Path(config.labels)))
    for what, path in named:
        path = path.resolve()
        if target == path or (path.is_dir() and path in target.parents):
            raise ConfigError(f"--out {out} would overwrite {what} ({path}); write the output to another file.")
    if run is not None and run.path is not None and target.parent == run.path.resolve() and target.name in RUN_OWN_FILES:
        raise ConfigError(f"--out {out} would overwrite a file of the run {run.path}; write the output to another file.")
    return Path(out)
