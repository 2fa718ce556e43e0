"""Fitting a run: the data loaded, checked and split; the model trained, measured and saved into
its run folder as a transaction (:class:`latentlab.runs.RunWriter`); resuming it. The verbs
``latentlab.api.fit`` and ``latentlab.api.resume`` are these."""

from __future__ import annotations

import dataclasses
import inspect
import time
from pathlib import Path
from typing import Any, Mapping, Sequence


from .datasets import Dataset
from .datasets.labels import load_dataset
from .datasets.sources import absolute_spec
from .datasets.splits import describe_split, split_data
from .datasets.fingerprint import fingerprint
from .errors import CheckpointError, ConfigError, DivergenceError
from .models.base import LatentModel
from .models.registry import model_class
from .runs import (
    RUN_FILE,
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
    model_input,
    read_run_json,
    resume_dir,
    run_config_from,
    save_run,
    write_run_json,
)

__all__ = ["fit", "resume", "measure", "RESUMABLE"]

CHECKPOINT_NAME = "checkpoint.safetensors"


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
RESUMABLE = ("epochs", "lr", "patience", "grad_clip", "device", "threads", "eval_k", "verbose")


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


