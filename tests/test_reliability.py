"""Nothing lost, nothing silently wrong, nothing unbounded (issue 16).

- One table of hostile inputs and settings (bounds, non-regular files, damaged or edited files,
  misleading tables, resume settings, changed data, outputs over inputs): through the API each
  raises latentlab's own error naming the problem and the fix; through ``latentlab.cli.main`` it
  exits 2 with one line and no traceback.
- Run folders are transactions: a new fit that fails in any of several ways leaves the old run
  whole and consistent, and the unfinished fit resumes (``fit --resume RUN --lr X``) and swaps in.
- ``model.save`` is a unit: a crash between any two of its steps leaves a loadable model.
- One writer per run folder (the second gets an error naming the first); a dead writer's lock is
  taken over.
- The data a run was split from is fingerprinted: changed data is detected and named.
- SIGTERM is handled as Ctrl-C is (checkpoint, status 143); an interrupt at any moment of the
  command exits with one line. Files get the user's umask.
"""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import latentlab
from latentlab.runs import check_output_path
from latentlab import PCA, Autoencoder, api, cli
from latentlab.datasets import load, load_images, load_table
from latentlab.datasets.labels import load_dataset, read_labels
from latentlab.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DivergenceError,
    LatentlabError,
    RunInUseError,
)
from latentlab.evaluation import log_likelihood
from latentlab.io import FolderLock, file_mode, read_json
from latentlab.outputs import write_array
from latentlab.runs import staging_dir

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
GREY = np.random.default_rng(0).random((60, 6)).astype(np.float32)
QUIET = dict(verbose=False)


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header promises width x height grey pixels (a decompression bomb's header)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d))


def _copy_run(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A folder of hostile files, a fitted PCA run (``pca``), a VAE run (``vae``) and edited copies."""
    d = tmp_path_factory.mktemp("hostile")
    np.save(d / "grey.npy", GREY)
    np.save(d / "five_d.npy", GREY.reshape(60, 1, 1, 2, 3))
    os.mkfifo(d / "fifo.csv")
    os.mkfifo(d / "fifo.npz")
    os.mkfifo(d / "fifo.npy")
    os.mkfifo(d / "fifo.amat")
    os.mkfifo(d / "t10k-images-idx3-ubyte")
    os.symlink("/dev/zero", d / "zero.csv")
    (d / "semi.csv").write_text("a;b;c\n1;2;3\n4;5;6\n7;8;9\n")
    (d / "tabs.csv").write_text("a\tb\n1\t2\n3\t4\n")
    (d / "commas.tsv").write_text("a,b\n1,2\n3,4\n")
    (d / "hole.csv").write_text("a,b,c\n1,2,3\n4,,6\n7,8,9\n")
    (d / "nancell.csv").write_text("a,b\n1,2\n3,nan\n5,6\n")
    (d / "trailing.csv").write_text("a,b,c,\n1,2,3,\n4,5,6,\n7,8,9,\n")
    (d / "trailing_rows.csv").write_text("a,b,c\n1,2,3,\n4,5,6,\n")
    (d / "huge_value.csv").write_text("a,b\n1,2\n3,1e39\n")
    (d / "decimal_commas.csv").write_text('a,b\n1,"2,5"\n3,"4,5"\n')
    (d / "label_hole.csv").write_text("x,y,species\n1,2,a\n3,4,\n5,6,b\n")
    (d / "bomb").mkdir()
    (d / "bomb" / "a.png").write_bytes(_png_header(100_000, 100_000))
    np.save(d / "nan_labels.npy", np.array([0.0] * 59 + [np.nan]))
    os.mkfifo(d / "fifo_labels.csv")
    (d / "nested.json").write_text(_nested(100_000))
    np.savez_compressed(d / "zeros.npz", x=np.zeros((1000, 600), np.float32))  # 2.3 MiB once decompressed, a few KiB on disk
    (d / "semi_labels.csv").write_text("".join(f"{i % 2};{i % 3}\n" for i in range(60)))
    (d / "long.csv").write_text("a,b\n" + "1,2\n" * 300_000)
    import gzip

    idx = bytes([0, 0, 8, 2]) + np.array([2000, 600], ">u4").tobytes() + bytes(2000 * 600)
    (d / "zeros-idx2-ubyte.gz").write_bytes(gzip.compress(idx))
    (d / "shards").mkdir()
    np.save(d / "shards" / "part0.npy", GREY)

    assert cli.main(["fit", "pca", "--data", str(d / "grey.npy"), "--latent-dim", "2", "--out", str(d / "pca")]) == 0
    vae = ["fit", "vae", "--hidden", "4", "--epochs", "2", "--patience", "none", "--data", str(d / "grey.npy")]
    assert cli.main([*vae, "--out", str(d / "vae")]) == 0
    assert cli.main(["fit", "pca", "--data", str(d / "shards"), "--latent-dim", "2", "--out", str(d / "pca_shards")]) == 0
    edits = {
        "latent_huge": lambda c: c["params"].update(latent_dim=10**7, hidden=[256]),
        "hidden_huge": lambda c: c["params"].update(hidden=[10**8]),
    }
    for name, edit in edits.items():
        _edit_json(_copy_run(d / "vae", d / name) / "config.json", edit)
    for name, value in (("scale_zero", 0.0), ("scale_nan", float("nan"))):
        def edit(c, value=value):
            c["state"]["scale_factor"][1] = value
        _edit_json(_copy_run(d / "pca", d / name) / "config.json", edit)
    _copy_run(d / "pca", d / "nested_run")
    (d / "nested_run" / "run.json").write_text(_nested(100_000))
    _copy_run(d / "pca", d / "big_run")
    (d / "big_run" / "run.json").write_text(" " * (3 << 20) + "{}")
    _copy_run(d / "vae", d / "no_checkpoint")
    (d / "no_checkpoint" / "checkpoint.safetensors").unlink()
    (d / "foreign").mkdir()
    (d / "foreign" / "config.json").write_text('{"editor": "vim"}')
    (d / "afile").write_text("not a folder")
    (d / "dir.npy").mkdir()
    return d


@dataclass
class Case:
    """One hostile input: the API call, the error and message (problem ... fix), and the command
    line that feeds the same input (None where there is none)."""

    id: str
    call: Callable[[Path], Any]
    error: type
    message: str
    argv: list[str] | None = None
    cli_message: str | None = None
    env: dict[str, str] = field(default_factory=dict)


def _loader(name):
    return lambda d: load(d / name)


def _fit_cfg(model, data, **params):
    return lambda d: api.fit(api.RunConfig(model, str(d / data) if "/" not in data and data != "digits" else data, params), out=None)


CASES = [
    # ---- output sizes, checked before allocating
    Case("sample-n-1e9", lambda d: api.sample(d / "pca", 10**9), ConfigError,
         r"sample of 1000000000 x 6 values would take .*above the limit of .*LATENTLAB_MAX_OUTPUT_MB.*ask for fewer \(-n <= \d+\)",
         ["sample", "{d}/pca", "-n", "1000000000", "--out", "{d}/s.npy"]),
    Case("model-sample-n-1e12", lambda d: latentlab.load(d / "vae").sample(10**12), ConfigError,
         r"VAE.sample of 1000000000000 x 6 values .*above the limit"),
    Case("interpolate-steps-1e9", lambda d: api.interpolate(d / "pca", start=0, end=1, steps=10**9), ConfigError,
         r"interpolate of 1000000000 x 6 values .*above the limit.*--steps <=",
         ["interpolate", "{d}/pca", "--from", "0", "--to", "1", "--steps", "1000000000", "--out", "{d}/i.npy"]),
    Case("output-limit-by-env", lambda d: api.sample(d / "pca", 1000), ConfigError, r"above the limit of 1 KiB",
         ["sample", "{d}/pca", "-n", "1000", "--out", "{d}/s.npy"], env={"LATENTLAB_MAX_OUTPUT_MB": str(1 / 1024)}),
    Case("bad-limit-variable", lambda d: api.sample(d / "pca", 10), ConfigError, r"LATENTLAB_MAX_OUTPUT_MB='lots' is not a positive number",
         ["sample", "{d}/pca", "-n", "10", "--out", "{d}/s.npy"], env={"LATENTLAB_MAX_OUTPUT_MB": "lots"}),
    # ---- network sizes: settings, and an edited config.json, refused before building
    Case("hidden-2e8", _fit_cfg("ae", "grey.npy", hidden=(200_000_000,), epochs=1, **QUIET), ConfigError,
         r"an Autoencoder network would need more than .* parameters .*above the limit of 268435456 \(LATENTLAB_MAX_PARAMETERS\); "
         r"its size settings are hidden=\(200000000,\)", ["fit", "ae", "--hidden", "200000000", "--data", "{d}/grey.npy", "--out", "{d}/o"]),
    Case("latent-dim-1e9", _fit_cfg("vae", "grey.npy", latent_dim=10**9, hidden=(4,), **QUIET), ConfigError,
         r"network would need more than .*latent_dim=1000000000",
         ["fit", "vae", "--latent-dim", "1000000000", "--hidden", "4", "--data", "{d}/grey.npy", "--out", "{d}/o"]),
    Case("config-latent-1e7", lambda d: latentlab.load(d / "latent_huge"), CheckpointError,
         r"latent_huge/config.json: a VAE network would need more than .*LATENTLAB_MAX_PARAMETERS.*latent_dim=10000000",
         ["encode", "{d}/latent_huge", "--out", "{d}/z.npy"]),
    Case("config-hidden-1e8", lambda d: latentlab.load(d / "hidden_huge"), CheckpointError,
         r"hidden_huge/config.json: a VAE network would need more than .*hidden=\(100000000,\)",
         ["sample", "{d}/hidden_huge", "-n", "4", "--out", "{d}/s.npy"]),
    # ---- work per step and per example
    Case("mc-samples-1e8", _fit_cfg("vae", "grey.npy", mc_samples=10**8, hidden=(4,), **QUIET), ConfigError,
         r"one training step would hold .* values in a layer \(batch_size=54 x mc_samples=100000000 .*LATENTLAB_MAX_STEP_VALUES\); lower mc_samples",
         ["fit", "vae", "--mc-samples", "100000000", "--hidden", "4", "--data", "{d}/grey.npy", "--out", "{d}/o"]),
    Case("iwae-k-1e8", _fit_cfg("iwae", "grey.npy", k=10**8, hidden=(4,), **QUIET), ConfigError,
         r"one training step would hold .*k=100000000.*lower mc_samples, k, batch_size",
         ["fit", "iwae", "--k", "100000000", "--hidden", "4", "--data", "{d}/grey.npy", "--out", "{d}/o"]),
    Case("evaluate-k-1e9", lambda d: api.evaluate(d / "vae", k=10**9), ConfigError,
         r"k=1000000000 \(--k\) is above the limit of 100000 samples per example \(LATENTLAB_MAX_SAMPLES",
         ["evaluate", "{d}/vae", "--k", "1000000000"]),
    Case("eval-k-1e9", lambda d: api.RunConfig("vae", eval_k=10**9), ConfigError, r"eval_k=1000000000 \(--eval-k\) is above the limit",
         ["fit", "vae", "--eval-k", "1000000000", "--out", "{d}/o"]),
    Case("log-likelihood-k-1e9", lambda d: log_likelihood(latentlab.load(d / "vae"), GREY, k=10**9),
         ConfigError, r"k=1000000000 is above the limit"),
    # ---- seeds
    Case("seed-2**70", _fit_cfg("vae", "grey.npy", seed=2**70, hidden=(4,), **QUIET), ConfigError,
         r"seed must be an integer from 0 to 2\*\*63 - 1 .*got 1180591620717411303424",
         ["fit", "vae", "--seed", str(2**70), "--data", "{d}/grey.npy", "--out", "{d}/o"]),
    Case("sample-seed-minus-1-pca", lambda d: api.sample(d / "pca", 4, seed=-1), ConfigError, r"seed must be an integer from 0",
         ["sample", "{d}/pca", "-n", "4", "--seed", "-1", "--out", "{d}/s.npy"]),
    Case("model-sample-seed-2**64", lambda d: latentlab.load(d / "vae").sample(3, seed=2**64), ConfigError, r"seed must be an integer from 0"),
    Case("evaluate-seed-minus-1", lambda d: api.evaluate(d / "vae", k=2, seed=-1), ConfigError, r"seed must be an integer",
         ["evaluate", "{d}/vae", "--k", "2", "--seed", "-1"]),
    Case("split-seed-minus-1", lambda d: api.RunConfig("pca", split_seed=-1), ConfigError, r"split_seed must be an integer from 0",
         ["fit", "pca", "--split-seed", "-1", "--out", "{d}/o"]),
    # ---- shapes and saved state
    Case("five-d-npy", lambda d: load(d / "five_d.npy"), DataError,
         r"shape \(60, 1, 1, 2, 3\) \(5 dimensions\); latentlab reads tables .*reshape it",
         ["fit", "vae", "--data", "{d}/five_d.npy", "--out", "{d}/o"]),
    Case("scale-factor-zero", lambda d: latentlab.load(d / "scale_zero"), CheckpointError,
         r"the saved scale_factor holds 0.0 .*finite numbers > 0.*save the model again", ["encode", "{d}/scale_zero", "--out", "{d}/z.npy"]),
    Case("scale-factor-nan", lambda d: latentlab.load(d / "scale_nan"), CheckpointError,
         r"the saved scale_factor holds nan", ["encode", "{d}/scale_nan", "--out", "{d}/z.npy"]),
    # ---- JSON files
    Case("nested-run-json", lambda d: api.open_run(d / "nested_run"), CheckpointError, r"run.json is nested too deeply",
         ["evaluate", "{d}/nested_run"]),
    Case("nested-json", lambda d: read_json(d / "nested.json"), CheckpointError, r"nested too deeply to be a latentlab file"),
    Case("run-json-over-limit", lambda d: api.open_run(d / "big_run"), CheckpointError,
         r"run.json is 3 MiB, above the limit of 2 MiB .*LATENTLAB_MAX_JSON_MB", ["evaluate", "{d}/big_run"],
         env={"LATENTLAB_MAX_JSON_MB": "2"}),
    Case("fifo-run-json", lambda d: read_json(d / "fifo.csv"), CheckpointError, r"fifo.csv is a FIFO \(named pipe\), not a regular file"),
    # ---- files that are not files
    *[Case(f"fifo-{name}", _loader(name), DataError,
           r"is a FIFO \(named pipe\), not a regular file; .*save the data to a file first",
           ["fit", "pca", "--data", f"{{d}}/{name}", "--out", "{d}/o"])
      for name in ("fifo.csv", "fifo.npz", "fifo.npy", "fifo.amat", "t10k-images-idx3-ubyte")],
    Case("dev-zero-as-csv", lambda d: load(d / "zero.csv"), DataError, r"zero.csv is a character device, not a regular file",
         ["fit", "ae", "--data", "{d}/zero.csv", "--out", "{d}/o"]),
    Case("fifo-labels", lambda d: read_labels(d / "fifo_labels.csv"), DataError, r"fifo_labels.csv is a FIFO",
         ["fit", "cvae", "--data", "{d}/grey.npy", "--labels", "{d}/fifo_labels.csv", "--out", "{d}/o"]),
    Case("npz-bomb", lambda d: load(d / "zeros.npz"), DataError,
         r"zeros.npz holds arrays of 2.29 MiB once decompressed, above the limit of 1 MiB .*LATENTLAB_MAX_TEXT_MB",
         ["fit", "pca", "--data", "{d}/zeros.npz", "--out", "{d}/o"], env={"LATENTLAB_MAX_TEXT_MB": "1"}),
    Case("gzip-bomb", lambda d: load(d / "zeros-idx2-ubyte.gz"), DataError,
         r"zeros-idx2-ubyte.gz \(decompressed\) is .*above the limit of 1 MiB for a text table",
         ["fit", "pca", "--data", "{d}/zeros-idx2-ubyte.gz", "--out", "{d}/o"], env={"LATENTLAB_MAX_TEXT_MB": "1"}),
    Case("csv-over-limit", lambda d: load(d / "long.csv"), DataError, r"long.csv is 1.14 MiB, above the limit of 1 MiB .*save it as .npy",
         ["fit", "pca", "--data", "{d}/long.csv", "--out", "{d}/o"], env={"LATENTLAB_MAX_TEXT_MB": "1"}),
    Case("image-bomb", lambda d: load_images(d / "bomb"), DataError,
         r"a.png (is 100000x100000 pixels|decodes to an image too large).*LATENTLAB_MAX_IMAGE_PIXELS",
         ["fit", "pca", "--data", "{d}/bomb", "--out", "{d}/o"]),
    # ---- tables that misled
    Case("semicolon-csv", lambda d: load_table(d / "semi.csv"), DataError,
         r"semi.csv is separated by semicolons \(';'\), and a .csv file is read with commas \(','\)",
         ["fit", "pca", "--data", "{d}/semi.csv", "--out", "{d}/o"]),
    Case("tab-separated-csv", lambda d: load_table(d / "tabs.csv"), DataError, r"tabs.csv is separated by tabs.*give it the .tsv suffix",
         ["fit", "pca", "--data", "{d}/tabs.csv", "--out", "{d}/o"]),
    Case("comma-separated-tsv", lambda d: load_table(d / "commas.tsv"), DataError, r"commas.tsv is separated by commas",
         ["fit", "pca", "--data", "{d}/commas.tsv", "--out", "{d}/o"]),
    Case("empty-cell-line", _fit_cfg("pca", "hole.csv"), DataError,
         r"hole.csv: line 3, column 'b' is empty; latentlab needs a finite number in every cell: fill them in",
         ["fit", "pca", "--data", "{d}/hole.csv", "--out", "{d}/o"]),
    Case("empty-cell-evaluate", lambda d: api.open_run(d / "pca", str(d / "hole.csv")), DataError, r"hole.csv: line 3, column 'b' is empty",
         ["evaluate", "{d}/pca", "--data", "{d}/hole.csv"]),
    Case("nan-cell-line", _fit_cfg("ae", "nancell.csv", epochs=1, **QUIET), DataError, r"nancell.csv: line 3, column 'b' holds 'nan'",
         ["fit", "ae", "--data", "{d}/nancell.csv", "--out", "{d}/o"]),
    Case("trailing-comma", lambda d: load_table(d / "trailing.csv"), DataError,
         r"column 4 \(the last\) is empty on every line - a trailing separator at the end of each line\? remove it",
         ["fit", "pca", "--data", "{d}/trailing.csv", "--out", "{d}/o"]),
    Case("trailing-comma-rows", lambda d: load_table(d / "trailing_rows.csv"), DataError,
         r"line 2 has 4 fields but the table has 3 \(a trailing ',' at the end of the line\?\)",
         ["fit", "pca", "--data", "{d}/trailing_rows.csv", "--out", "{d}/o"]),
    Case("float32-overflow-cell", lambda d: load_table(d / "huge_value.csv"), DataError, r"line 3, column 'b' holds 1e39, beyond the range",
         ["fit", "pca", "--data", "{d}/huge_value.csv", "--out", "{d}/o"]),
    Case("decimal-commas", lambda d: load_table(d / "decimal_commas.csv"), DataError, r"decimal commas\? write decimal points",
         ["fit", "pca", "--data", "{d}/decimal_commas.csv", "--out", "{d}/o"]),
    Case("label-column-empty-cell", lambda d: load_table(d / "label_hole.csv", label_column="species"), DataError,
         r"line 3, column 'species' \(the labels\) is empty",
         ["fit", "cvae", "--data", "{d}/label_hole.csv", "--label-column", "species", "--out", "{d}/o"]),
    Case("semicolon-labels", lambda d: read_labels(d / "semi_labels.csv"), DataError, r"semi_labels.csv is separated by semicolons",
         ["fit", "cvae", "--data", "{d}/grey.npy", "--labels", "{d}/semi_labels.csv", "--out", "{d}/o"]),
    Case("nan-labels", lambda d: read_labels(d / "nan_labels.npy"), DataError, r"holds 1 NaN or infinite label\(s\), the first for row 59",
         ["fit", "cvae", "--data", "{d}/grey.npy", "--labels", "{d}/nan_labels.npy", "--out", "{d}/o"]),
    # ---- resume: refused when it cannot be honoured
    Case("resume-latent-dim", lambda d: api.resume(d / "vae", latent_dim=5), ConfigError,
         r"fit --resume cannot change latent_dim \(2 -> 5\).*Only epochs, lr, patience",
         ["fit", "vae", "--resume", "{d}/vae", "--latent-dim", "5"]),
    Case("resume-other-model", lambda d: api.resume(d / "vae", model="pca"), ConfigError, r"cannot change model \('vae' -> 'pca'\)",
         ["fit", "pca", "--resume", "{d}/vae"]),
    Case("resume-hidden-and-likelihood", lambda d: api.resume(d / "vae", hidden=(8,), likelihood="gaussian"), ConfigError,
         r"cannot change hidden \(\(4,\) -> \(8,\)\), likelihood \('auto' -> 'gaussian'\)",
         ["fit", "vae", "--resume", "{d}/vae", "--hidden", "8", "--likelihood", "gaussian"]),
    Case("resume-other-data", lambda d: api.resume(d / "vae", data="digits"), ConfigError, r"cannot change data",
         ["fit", "vae", "--resume", "{d}/vae", "--data", "digits"]),
    Case("resume-split-seed", lambda d: api.resume(d / "vae", split_seed=3), ConfigError, r"cannot change split_seed \(0 -> 3\)",
         ["fit", "vae", "--resume", "{d}/vae", "--split-seed", "3"]),
    Case("resume-fewer-epochs", lambda d: api.resume(d / "vae", epochs=1), ConfigError,
         r"epochs=1 is fewer than the 2 epochs the checkpoint .* has trained", ["fit", "--resume", "{d}/vae", "--epochs", "1"]),
    Case("resume-no-checkpoint", lambda d: api.resume(d / "no_checkpoint"), CheckpointError,
         r"has no checkpoint.safetensors to resume from .*will not start again from epoch 0.*start afresh with `latentlab fit vae",
         ["fit", "--resume", "{d}/no_checkpoint"]),
    Case("resume-closed-form", lambda d: api.resume(d / "pca"), CheckpointError, r"no checkpoint.safetensors to resume from",
         ["fit", "--resume", "{d}/pca"]),
    # ---- outputs over inputs, folders that are not run folders
    Case("encode-over-the-data", lambda d: check_output_path(d / "grey.npy", api.open_run(d / "pca")), ConfigError,
         r"--out .*grey.npy would overwrite the data", ["encode", "{d}/pca", "--out", "{d}/grey.npy"]),
    Case("encode-into-the-data-folder", lambda d: check_output_path(d / "shards" / "z.npy", api.open_run(d / "pca_shards")),
         ConfigError, r"would overwrite the data", ["encode", "{d}/pca_shards", "--out", "{d}/shards/z.npy"]),
    Case("sample-over-the-data", None, ConfigError, r"would overwrite the data", ["sample", "{d}/pca", "-n", "3", "--out", "{d}/grey.npy"]),
    Case("output-is-a-folder", lambda d: write_array(d / "shards", GREY), ConfigError, r"shards: unknown output type",
         ["sample", "{d}/pca", "-n", "3", "--out", "{d}/shards"]),
    Case("output-is-a-folder-named-npy", lambda d: write_array(d / "dir.npy", GREY), ConfigError, r"dir.npy is a folder; give the name of a file",
         ["sample", "{d}/pca", "-n", "3", "--out", "{d}/dir.npy"]),
    Case("fit-over-a-foreign-config", lambda d: api.fit(api.RunConfig("pca", str(d / "grey.npy")), out=d / "foreign"), ConfigError,
         r"foreign holds a config.json that is not a latentlab model; latentlab will not replace it",
         ["fit", "pca", "--data", "{d}/grey.npy", "--out", "{d}/foreign"]),
    Case("fit-out-is-a-file", lambda d: api.fit(api.RunConfig("pca", str(d / "grey.npy")), out=d / "afile"), ConfigError,
         r"--out .*afile is a file; give the folder", ["fit", "pca", "--data", "{d}/grey.npy", "--out", "{d}/afile"]),
]


def _setenv(monkeypatch, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_gets_one_clear_error(case, hostile, capsys, monkeypatch):
    _setenv(monkeypatch, case.env)
    if case.call is not None:
        with pytest.raises(case.error) as info:
            case.call(hostile)
        err = info.value
        assert isinstance(err, LatentlabError), repr(err)
        assert re.search(case.message, str(err)), str(err)
    if case.argv is None:
        return
    capsys.readouterr()
    rc = cli.main([a.format(d=hostile) for a in case.argv])
    out = capsys.readouterr()
    assert rc == 2, out.err
    assert out.err.count("\n") == 1 and "Traceback" not in out.err, out.err
    assert re.search(case.cli_message or case.message, out.err), out.err
    assert not (hostile / "o").exists(), "a refused fit left a run folder"


def test_text_labels_with_a_header_line_are_not_shifted(tmp_path):
    names = np.array(["a", "b", "c"])[np.arange(60) % 3]
    (tmp_path / "y.csv").write_text("species\n" + "\n".join(names) + "\n")
    np.save(tmp_path / "x.npy", GREY)
    ds = load_dataset(str(tmp_path / "x.npy"), labels=str(tmp_path / "y.csv"))
    assert ds.target.tolist() == names.tolist()  # no class named "species", no shift


# ------------------------------------------------------------------ checked before the first epoch
BEFORE_TRAINING = [  # (id, files to write, fit argv tail, message)
    ("nan-row-anywhere", {"x.npy": GREY.copy()}, [], r"x.npy contains 1 NaN or infinite value\(s\), the first in row 57"),
    ("nan-label-in-test", {"x.npy": GREY, "y.npy": np.r_[np.zeros(57), [np.nan], np.zeros(2)]}, ["--labels", "{d}/y.npy"],
     r"NaN or infinite label\(s\), the first for row 57"),
    # the only 7 on a row of the random test split (split seed 0, test fraction 0.5: the first 30 of the permutation)
    ("class-only-in-test", {"x.npy": GREY, "y.npy": np.where(np.arange(60) == np.random.default_rng(0).permutation(60)[0], 7, 0)},
     ["--labels", "{d}/y.npy", "--test-fraction", "0.5"],
     r"split holds label\(s\) \[7\] that no training row has"),
    ("empty-cell-in-test", {"t.csv": "a,b\n" + "".join(f"{i},{i % 7}\n" for i in range(40)) + "3,\n"}, [],
     r"t.csv: line 42, column 'b' is empty"),
]


@pytest.mark.parametrize("case", BEFORE_TRAINING, ids=[c[0] for c in BEFORE_TRAINING])
def test_the_whole_input_is_checked_before_the_first_epoch(case, tmp_path, capsys):
    _, files, tail, message = case
    for name, content in files.items():
        if isinstance(content, str):
            (tmp_path / name).write_text(content)
        else:
            if name == "x.npy" and tail == []:
                content[57, 2] = np.nan
            np.save(tmp_path / name, content)
    data = tmp_path / next(iter(files))
    t0 = time.perf_counter()
    rc = cli.main(["fit", "cvae", "--data", str(data), "--epochs", "500", "--patience", "none", "--hidden", "64",
                   *[a.format(d=tmp_path) for a in tail], "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and re.search(message, err), err
    assert time.perf_counter() - t0 < 20 and not (tmp_path / "run").exists()  # refused before training, nothing written


# ------------------------------------------------------------------ run folders as transactions
def _fingerprint_of_run(run: Path):
    """What must not change in the old run: its files' bytes and its measured metrics."""
    return {p.name: p.read_bytes() for p in sorted(run.iterdir())}


def _diverge(d, out, monkeypatch=None):  # SGD with momentum at lr 0.1 on unscaled Gaussian data overflows within a few epochs
    return cli.main(["fit", "ae", "--data", str(d / "div.npy"), "--scale", "none", "--optimizer", "sgd", "--lr", "0.1",
                     "--hidden", "16", "--epochs", "30", "--batch-size", "16", "--patience", "none", "--validation-fraction", "0",
                     "--test-fraction", "0", "--out", str(out)])


def _fail_after_training(d, out, monkeypatch):
    def boom(*a, **k):
        raise DataError("measured nothing (a failure after training)")
    monkeypatch.setattr("latentlab.fitting.measure", boom)
    return cli.main(["fit", "ae", "--data", str(d / "div.npy"), "--epochs", "2", "--hidden", "4", "--out", str(out)])


def _interrupt(d, out, monkeypatch):
    from latentlab.training import trainer

    def interrupted(self, *a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(trainer._Loop, "end_epoch", interrupted)
    return cli.main(["fit", "ae", "--data", str(d / "div.npy"), "--epochs", "3", "--hidden", "4", "--out", str(out)])


def _bad_settings(d, out, monkeypatch):
    return cli.main(["fit", "vae", "--likelihood", "bernoulli", "--data", str(d / "div.npy"), "--out", str(out)])


FAILURES = [("diverged", _diverge, 1, "diverged"), ("failed-after-training", _fail_after_training, 2, None),
            ("interrupted", _interrupt, 130, None), ("refused-settings", _bad_settings, 2, None)]


@pytest.mark.parametrize("failure", FAILURES, ids=[f[0] for f in FAILURES])
def test_a_failed_new_fit_leaves_the_old_run_whole(failure, tmp_path, capsys, monkeypatch):
    _, make_fail, code, status = failure
    np.save(tmp_path / "div.npy", np.random.default_rng(0).normal(size=(160, 6)).astype(np.float32))
    out = tmp_path / "run"
    assert cli.main(["fit", "pca", "--data", str(tmp_path / "div.npy"), "--latent-dim", "2", "--out", str(out)]) == 0
    (out / "notes.txt").write_text("the user's own file")
    before = _fingerprint_of_run(out)
    def measured():
        return {k: v for k, v in api.evaluate(out, k=2, record=False).items() if k != "seconds"}

    metrics = measured()
    capsys.readouterr()
    assert make_fail(tmp_path, out, monkeypatch) == code
    monkeypatch.undo()
    assert _fingerprint_of_run(out) == before  # not one byte of the old run changed
    assert measured() == metrics
    st = staging_dir(out)
    if status is not None:  # a checkpoint was written: the unfinished fit is kept for fit --resume
        assert read_json(st / "run.json")["status"] == status
    assert not (tmp_path / ".run.old").exists()


def test_the_divergence_advice_is_followable_and_the_resumed_fit_swaps_in(tmp_path, capsys):
    np.save(tmp_path / "div.npy", np.random.default_rng(0).normal(size=(160, 6)).astype(np.float32))
    out = tmp_path / "run"
    assert cli.main(["fit", "pca", "--data", str(tmp_path / "div.npy"), "--latent-dim", "2", "--out", str(out)]) == 0
    (out / "notes.txt").write_text("kept")
    capsys.readouterr()
    assert _diverge(tmp_path, out) == 1
    err = capsys.readouterr().err
    m = re.search(r"From the command line: (latentlab fit --resume \S+ --lr 0.01) \(or --grad-clip 1\) continues", err)
    assert m, err
    assert m.group(1).split()[3] == str(out)
    assert latentlab.load(out).__class__ is PCA  # still the old run
    argv = m.group(1).split()[1:] + ["--grad-clip", "1"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    model = latentlab.load(out)
    assert isinstance(model, Autoencoder) and model.n_epochs_ == 30
    assert model.history_[-1]["lr"] == 0.01  # the new learning rate took effect
    assert (out / "notes.txt").read_text() == "kept" and not staging_dir(out).exists()
    info = read_json(out / "run.json")
    assert info["status"] == "fitted" and info["config"]["params"]["lr"] == 0.01
    assert not (out / "index.html").exists()


def test_resume_honours_lr_epochs_and_patience(tmp_path):
    rng = np.random.default_rng(0)
    X, V = rng.normal(size=(40, 20)).astype(np.float32), rng.normal(size=(200, 20)).astype(np.float32)
    kw = dict(latent_dim=8, hidden=(256,), lr=1e-2, epochs=300, batch_size=8, patience=3, checkpoint_dir=tmp_path, verbose=False)
    ae = Autoencoder(**kw).fit(X, X_val=V)
    stop = ae.n_epochs_
    assert ae.stopped_early_ and stop < 300
    again = Autoencoder(**kw).fit(X, X_val=V, resume=True)  # same patience: it stays stopped
    assert again.n_epochs_ == stop
    more = Autoencoder(**{**kw, "patience": None, "epochs": stop + 3, "lr": 1e-3}).fit(X, X_val=V, resume=True)
    assert more.n_epochs_ == stop + 3 and [h["lr"] for h in more.history_[stop:]] == [1e-3] * 3


def test_model_save_is_a_unit_at_every_crash_point(tmp_path, monkeypatch):
    old = PCA(latent_dim=2).fit(GREY)
    new = PCA(latent_dim=2, whiten=True).fit(GREY * 2)
    from latentlab.models import base

    def crash(*a, **k):
        raise KeyboardInterrupt

    class OsWithoutReplace:  # base's view of os, whose rename into place "crashes"
        replace = staticmethod(crash)

        def __getattr__(self, name):
            return getattr(os, name)

    # the three steps of a save: pending weights, config.json, the rename of the weights into place
    for step, target, name, value in (("pending", base, "atomic_write_bytes", crash), ("config", base, "atomic_write_text", crash),
                                      ("rename", base, "os", OsWithoutReplace())):
        d = tmp_path / step
        old.save(d)
        with monkeypatch.context() as m:
            m.setattr(target, name, value)
            with pytest.raises(KeyboardInterrupt):
                new.save(d)
        got = latentlab.load(d).transform(GREY)
        want = (new if step == "rename" else old).transform(GREY)
        np.testing.assert_array_equal(got, want)
        new.save(d)  # and the next save completes
        np.testing.assert_array_equal(latentlab.load(d).transform(GREY), new.transform(GREY))
        assert not (d / ".model.safetensors.pending").exists()


_SAVER = """
import os, sys
import numpy as np
from latentlab import PCA
X = np.random.default_rng(0).random((50, 8)).astype(np.float32)
models = [PCA(latent_dim=2).fit(X), PCA(latent_dim=3).fit(X)]
models[0].save(sys.argv[1])
while sys.stdin.readline():
    pid = os.fork()
    if pid == 0:
        i = 0
        while True:
            models[i % 2].save(sys.argv[1])
            i += 1
    print(pid, flush=True)
    os.waitpid(pid, 0)
    print("dead", flush=True)
"""


def test_sigkill_during_saves_leaves_a_loadable_model(tmp_path):
    """Kill a process that saves two models in turn, as fast as it can, at random moments: the
    folder loads after every kill, as one of the two."""
    import random

    rnd = random.Random(3)
    d = tmp_path / "m"
    zygote = subprocess.Popen([sys.executable, "-c", _SAVER, str(d)], env=ENV, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    sizes = []
    try:
        for _ in range(12):
            zygote.stdin.write("go\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            time.sleep(rnd.uniform(0.01, 0.15))
            os.kill(pid, signal.SIGKILL)
            assert zygote.stdout.readline().strip() == "dead"
            sizes.append(latentlab.load(d).latent_dim)  # loads after every kill
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=30)
        zygote.stdout.close()
    assert set(sizes) <= {2, 3} and len(sizes) == 12


# ------------------------------------------------------------------ one writer at a time
_HOLDER = "import sys, time; from latentlab.io import FolderLock; FolderLock(sys.argv[1], 'holder').acquire(); print('held', flush=True); time.sleep(60)"


def test_a_second_writer_gets_an_error_naming_the_first_and_a_dead_ones_lock_is_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunInUseError, match=rf"run is being written by another latentlab process \(pid {holder.pid} on .*holder\)"):
            api.fit(api.RunConfig("pca", "digits", {"latent_dim": 2}), out=out)
        assert cli.main(["fit", "pca", "--latent-dim", "2", "--out", str(out)]) == 2
        assert f"pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert (tmp_path / ".run.lock").exists()  # left by the killed process: free again
    assert api.fit(api.RunConfig("pca", "digits", {"latent_dim": 2}), out=out).path == out
    assert not (tmp_path / ".run.lock").exists()  # removed by the writer that released it
    with FolderLock(out):  # re-entrant within one process, as a fit that saves its model takes it twice
        with FolderLock(out):
            pass


# ------------------------------------------------------------------ data fingerprints
CHANGES = [  # (id, how the data file changes, the message)
    ("rows-appended", lambda a: np.concatenate([a, a[:3]]), r"it had 60 rows and has 63 now"),
    ("rows-removed", lambda a: a[:-1], r"it had 60 rows and has 59 now"),
    ("values-replaced", lambda a: a[::-1].copy(), r"the same 60 rows, but their values \(or labels\) are not the same"),
    ("features-changed", lambda a: np.concatenate([a, a[:, :1]], axis=1), r"examples had shape \(6,\) and have \(7,\) now"),
]


@pytest.mark.parametrize("change", CHANGES, ids=[c[0] for c in CHANGES])
def test_changed_data_is_detected_and_named(change, tmp_path, capsys):
    _, alter, message = change
    np.save(tmp_path / "x.npy", GREY)
    out = tmp_path / "run"
    assert cli.main(["fit", "pca", "--data", str(tmp_path / "x.npy"), "--latent-dim", "2", "--out", str(out)]) == 0
    fp = read_json(out / "run.json")["data"]["fingerprint"]
    assert fp["rows"] == 60 and fp["shape"] == [60, 6] and not fp["sampled"]
    np.save(tmp_path / "x.npy", alter(GREY))
    capsys.readouterr()
    for argv in (["evaluate", str(out)], ["encode", str(out), "--out", str(tmp_path / "z.npy")]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert re.search(rf"the data .*x.npy changed since the run in .* was fitted on it: .*{message}.*--allow-changed-data", err), err
    with pytest.raises(DataError, match=message):
        api.open_run(out)
    if change[0] != "features-changed":
        assert cli.main(["evaluate", str(out), "--allow-changed-data"]) == 0


def test_big_data_is_fingerprinted_by_a_sample_of_rows(tmp_path, monkeypatch):
    import latentlab.datasets.fingerprint as fpm

    monkeypatch.setattr(fpm, "FULL_HASH_BYTES", 1024)
    X = np.random.default_rng(1).random((5000, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    a = fpm.fingerprint(load(tmp_path / "x.npy"))
    assert a["sampled"]
    X[-1, 0] += 1  # the last row is always in the sample
    np.save(tmp_path / "x.npy", X)
    assert fpm.describe_change(a, fpm.fingerprint(load(tmp_path / "x.npy"))) is not None


def test_resume_refuses_changed_data(tmp_path, capsys):
    np.save(tmp_path / "x.npy", GREY)
    out = tmp_path / "run"
    assert cli.main(["fit", "ae", "--hidden", "4", "--epochs", "1", "--data", str(tmp_path / "x.npy"), "--out", str(out)]) == 0
    np.save(tmp_path / "x.npy", np.concatenate([GREY, GREY]))
    capsys.readouterr()
    assert cli.main(["fit", "--resume", str(out), "--epochs", "2"]) == 2
    assert "changed since the run" in capsys.readouterr().err


# ------------------------------------------------------------------ divergence names the data's scale
def test_divergence_on_data_at_1e30_names_the_scale(tmp_path, capsys):
    X = (np.random.default_rng(0).normal(size=(100, 4)) * 1e30).astype(np.float32)
    with pytest.raises(DivergenceError, match=r"the likely cause is the data's scale: the values .* reach [\d.]+e\+30 \(scale=None\).*scale='standard'"):
        Autoencoder(hidden=(4,), epochs=3, verbose=False).fit(X)
    np.save(tmp_path / "big.npy", X)
    assert cli.main(["fit", "ae", "--scale", "none", "--hidden", "4", "--data", str(tmp_path / "big.npy"), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "--scale standard" in err and "fit --resume" not in err and err.count("\n") == 1


# ------------------------------------------------------------------ signals
def _run_until_checkpoint(out: Path, extra=()):
    proc = subprocess.Popen([sys.executable, "-m", "latentlab", "fit", "vae", "--hidden", "16", "--epochs", "100000",
                             "--patience", "none", *extra, "--out", str(out)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.safetensors").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    return proc


def test_sigterm_during_training_checkpoints_and_exits_143(tmp_path):
    out = tmp_path / "run"
    proc = _run_until_checkpoint(out)
    try:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert err.count("\n") == 1 and "terminated (SIGTERM)" in err and "fit --resume" in err
    assert read_json(out / "run.json")["status"] == "interrupted"
    from latentlab.training.trainer import read_checkpoint

    _, ck = read_checkpoint(out / "checkpoint.safetensors")
    assert cli.main(["fit", "--resume", str(out), "--epochs", str(ck["epoch"] + 1)]) == 0
    assert latentlab.load(out).n_epochs_ == ck["epoch"] + 1


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_while_the_command_starts_exits_with_one_line(sig, code, tmp_path):
    """At moments inside the imports (NumPy is imported by the command's parser, torch after it) and
    the loading of the data: counted from the moment NumPy's library is mapped into the process,
    so that a busy machine's slower start of Python itself does not move them."""
    for delay in (0.0, 0.3, 1.0):
        proc = subprocess.Popen([sys.executable, "-m", "latentlab", "fit", "vae", "--epochs", "5", "--out", str(tmp_path / "r")],
                                env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while proc.poll() is None and time.time() < deadline:
            try:
                if "numpy" in Path(f"/proc/{proc.pid}/maps").read_text():
                    break
            except OSError:
                pass
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            continue  # it had finished: nothing to interrupt
        assert proc.returncode == code and err.count("\n") == 1 and "Traceback" not in err, (delay, proc.returncode, err)


# ------------------------------------------------------------------ umask
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_are_created_with_the_users_umask(umask, mode, tmp_path):
    old = os.umask(umask)
    try:
        assert file_mode() == mode
        out = tmp_path / "run"
        api.fit(api.RunConfig("pca", "digits", {"latent_dim": 2}), out=out)
        if umask == 0o022:  # a report that can be served as it is
            api.report(out)
        write_array(tmp_path / "z.csv", GREY)
        files = [*out.iterdir(), tmp_path / "z.csv"]
        assert {p.name for p in files} >= {"config.json", "model.safetensors", "run.json", "z.csv"}
        for p in files:
            assert p.stat().st_mode & 0o777 == mode, (p.name, oct(p.stat().st_mode))
    finally:
        os.umask(old)
