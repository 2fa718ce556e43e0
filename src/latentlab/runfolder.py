"""A run folder written as a transaction, by one process at a time (part of :mod:`latentlab.runs`).

A new fit into a folder that holds a model trains in the sibling ``.NAME.staging`` and replaces
the folder only once it has succeeded (:func:`swap_in`), so a fit that fails, diverges or is
interrupted leaves the old run whole and consistent; ``fit --resume NAME`` finds the unfinished
fit's checkpoint there (:func:`resume_dir`). The folder's lock (``.NAME.lock``, beside it; see
:class:`latentlab.io.FolderLock`) keeps a second writer out with an error naming the first.

Example
-------
>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
>>> with RunWriter(out) as tx:
...     (tx.work / "run.json").write_text("{}") and None
...     tx.commit()
>>> sorted(p.name for p in out.iterdir())
['run.json']
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .errors import CheckpointError, ConfigError, DivergenceError
from .io import FolderLock, atomic_write_text, fsync_dir, read_json

__all__ = ["RUN_OWN_FILES", "RUN_LOGS", "RunWriter", "staging_dir", "resume_dir", "holds_model", "swap_in", "recover"]

RUN_FILE = "run.json"

#: The files a run writes in its folder (the rest, e.g. a user's outputs, are carried over when
#: a new run replaces the folder).
RUN_OWN_FILES = frozenset({"config.json", "model.safetensors", ".model.safetensors.pending", RUN_FILE,
                           "checkpoint.safetensors", "index.html", "history.jsonl"})
#: What the training loggers write in a run folder by default (history.jsonl, the TensorBoard event
#: files, an MLflow file store): a resume of a finished run, which goes on in the staging folder,
#: takes a copy along so that its curves continue.
RUN_LOGS = ("history.jsonl", "tensorboard", "mlruns")


def staging_dir(out: Path) -> Path:
    """Where a new run of the folder ``out`` is written until it replaces ``out``."""
    return out.parent / f".{out.name}.staging"


def _old_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.old"


def _has_checkpoint(folder: Path) -> bool:
    return (folder / "checkpoint.safetensors").is_file() and (folder / RUN_FILE).is_file()


def _status(folder: Path) -> str | None:
    try:
        info = read_json(folder / RUN_FILE)
    except CheckpointError:
        return None
    return info.get("status") if isinstance(info, dict) else None


def holds_model(out: Path) -> bool:
    """Whether the folder ``out`` holds a saved latentlab model (then a new run is staged beside
    it); a ConfigError when it holds another program's config.json, which a run would replace."""
    cfg = out / "config.json"
    if not cfg.exists():
        return False
    try:
        rec = read_json(cfg)
    except CheckpointError:
        rec = None
        if (out / "model.safetensors").exists() or (out / RUN_FILE).exists():
            return True  # a damaged run of ours: replaced whole by the new one
    if not isinstance(rec, dict) or rec.get("format") != "latentlab-model":
        raise ConfigError(
            f"{out} holds a config.json that is not a latentlab model; latentlab will not replace it: "
            "write the run to another folder (--out)."
        )
    return True


def resume_dir(out: str | Path) -> Path:
    """The folder that holds the checkpoint ``fit --resume out`` continues: the staging folder of
    a new fit that did not finish, else ``out``; a CheckpointError saying how to start afresh when
    there is none."""
    out = Path(out)
    st = staging_dir(out)
    if _has_checkpoint(st) and (out.is_dir() or not out.exists()):
        return st
    if not out.is_dir():
        raise CheckpointError(f"{out} is not a directory; pass a run directory written by `latentlab fit --out`.")
    if (out / RUN_FILE).is_file() and not (out / "checkpoint.safetensors").exists():
        info = read_json(out / RUN_FILE)
        cmd = info.get("command") if isinstance(info, dict) and isinstance(info.get("command"), list) else []
        again = " ".join(map(str, cmd)) if cmd and "--resume" not in cmd else f"latentlab fit MODEL ... --out {out}"
        raise CheckpointError(
            f"{out} has no checkpoint.safetensors to resume from (it was deleted, or the model is fitted in closed form); "
            f"fit --resume will not start again from epoch 0 in its place: start afresh with `{again}`."
        )
    return out


class RunWriter:
    """Write the run folder ``out`` as a transaction, holding its lock.

    ``work`` is where the run is written: ``out`` itself when it holds no model yet, else the
    sibling staging folder, which :meth:`commit` swaps in whole (the files in ``out`` that are
    not the run's own are carried over). On an exception the old run is left as it was; a new run
    that wrote a checkpoint stays in ``work`` for ``fit --resume`` (its run.json says why it
    stopped), and one that wrote none is removed. With ``resume``, ``work`` is the folder
    :func:`resume_dir` finds (a finished run's checkpoint is copied to the staging folder first).

    Under torchrun (every process runs this) the folder is written in place, by rank 0.
    """

    def __init__(self, out: str | Path, *, resume: bool = False, command: str | None = None):
        self.out = Path(os.path.abspath(out))  # "." has a parent and a name, as its siblings need
        self.resume = resume
        self.lock = FolderLock(self.out, command)
        self.work = self.out
        self.staged = self.created = self.committed = False
        self._copied: tuple | None = None
        self._wrote: list[Path] = []

    def __enter__(self) -> "RunWriter":
        from .training.distributed import env_local_rank, is_main_process

        if env_local_rank() is not None:  # several processes: the folder is the same for all, written in place
            self.work = resume_dir(self.out) if self.resume else self.out
            if is_main_process():
                self.lock.acquire()
            return self
        self.lock.acquire()
        try:
            recover(self.out)
            self.work = self._choose()
        except BaseException:
            self.lock.release()
            raise
        return self

    def _choose(self) -> Path:
        out, st = self.out, staging_dir(self.out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file; give the folder to write the run in.")
        if self.resume:
            work = resume_dir(out)
            if work == out and holds_model(out):  # a finished run goes on beside itself
                self._fresh(st)
                shutil.copy2(out / "checkpoint.safetensors", st / "checkpoint.safetensors")
                self._copied = _stamp(st / "checkpoint.safetensors")
                _copy_logs(out, st)
                work = st
            self.staged = work == st
            return work
        if st.exists():
            shutil.rmtree(st)  # an earlier fit that did not finish: replaced by this one
        if out.is_dir() and holds_model(out):
            self._fresh(st)
            self.staged = True
            return st
        if not out.exists():
            out.mkdir(parents=True)
            self.created = True
        for name in ("checkpoint.safetensors", RUN_FILE):  # what is left of a fit that did not finish
            (out / name).unlink(missing_ok=True)
        return out

    @staticmethod
    def _fresh(st: Path) -> None:
        if st.exists():
            shutil.rmtree(st)
        st.mkdir()

    def commit(self) -> None:
        """Make the run in ``work`` the run of ``out`` (swap it in when staged)."""
        if self.staged:
            swap_in(self.work, self.out)
        self.work = self.out
        self.committed = True

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is not None and not self.committed and self.lock.acquired:
                self._failed(exc)
        finally:
            self.lock.release()
        return False

    def _failed(self, exc: BaseException) -> None:
        work = self.work
        if self.staged and self._copied is not None and _stamp(work / "checkpoint.safetensors") == self._copied:
            shutil.rmtree(work, ignore_errors=True)  # a resume that went nowhere: nothing new to keep
            return
        if _has_checkpoint(work):  # kept for fit --resume; run.json says why it stopped
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "diverged" if isinstance(exc, DivergenceError) else "failed"
            try:
                info = read_json(work / RUN_FILE)
                info["status"] = status
                atomic_write_text(work / RUN_FILE, json.dumps(info, indent=2, allow_nan=True))
            except (CheckpointError, OSError, TypeError):
                pass
            return
        if self.staged:
            shutil.rmtree(work, ignore_errors=True)
            return
        for name in RUN_OWN_FILES:
            (work / name).unlink(missing_ok=True)
        if self.created:
            try:
                work.rmdir()
            except OSError:
                pass


def _copy_logs(src: Path, dst: Path) -> None:
    for name in RUN_LOGS:
        p = src / name
        if p.is_dir() and not p.is_symlink():
            shutil.copytree(p, dst / name, symlinks=True)
        elif p.is_file() and not p.is_symlink():
            shutil.copy2(p, dst / name)


def _stamp(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def swap_in(staging: Path, out: Path) -> None:
    """Replace the folder ``out`` by ``staging``: two renames (``out`` -> ``.NAME.old``, staging ->
    ``out``), then the files of the old folder that are not the run's are moved into the new one and
    the old one is removed. A crash at any point is finished by :func:`recover` under the lock."""
    old = _old_dir(out)
    if old.exists():
        shutil.rmtree(old)
    if not out.exists():
        os.rename(staging, out)
        fsync_dir(out.parent)
        return
    os.rename(out, old)
    os.rename(staging, out)
    fsync_dir(out.parent)
    _carry_over(out)


def _carry_over(out: Path) -> None:
    old = _old_dir(out)
    for p in old.iterdir():
        if p.name in RUN_OWN_FILES or p.name.endswith(".tmp"):
            continue
        if not (out / p.name).exists():
            os.rename(p, out / p.name)
    shutil.rmtree(old)


def recover(out: Path) -> None:
    """Finish a swap that a crash interrupted (called under the folder's lock)."""
    old, st = _old_dir(out), staging_dir(out)
    if not old.exists():
        return
    if not out.exists():
        if (st / "config.json").is_file() and _status(st) == "fitted":
            os.rename(st, out)  # the new run was complete: go forward
        else:
            os.rename(old, out)  # go back
            return
    _carry_over(out)
