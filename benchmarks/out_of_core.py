"""Training on data larger than the memory the process holds: one epoch from a memory-mapped .npy.

Generates a dataset of binary 784-feature rows (uint8, like binarized MNIST) several times larger
than the resident set the training reports, on disk in a temporary folder (written in small
chunks; removed at the end), drops it from the page cache so that the run starts cold, then
trains a VAE for one epoch on it in a fresh subprocess and reads that process's peak resident set
(``ru_maxrss``). Side by side, in one run: the same model for one epoch on an in-memory slice of
the same rows, for the cost of reading from the file (samples/s ratio).

    python benchmarks/out_of_core.py                     # 3 GiB, one file
    python benchmarks/out_of_core.py --gib 3 --shards 8  # the same as a folder of 8 .npy shards
    python benchmarks/out_of_core.py --gib 0.5 --no-record   # a quick look

The process runs with one thread (``torch.set_num_threads(1)``), as on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import machine_line, write_section  # noqa: E402

F = 784

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from latentlab import VAE
from latentlab.training.data import open_npy

def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith(key + ":"))

path, batch, hidden, mode, n_mem = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
X = open_npy(path)
after_open = status("VmRSS")
if mode == "memory":  # the baseline: the first n_mem rows, read into memory before timing
    X = np.ascontiguousarray(X[:n_mem])
kw = dict(latent_dim=8, hidden=(hidden,), likelihood="bernoulli", epochs=1, batch_size=batch,
          validation_fraction=0.0, patience=None, verbose=False, device="cpu")
t = time.perf_counter()
vae = VAE(**kw).fit(X)
fit_s = time.perf_counter() - t
h = vae.history_[0]
print(json.dumps({
    "rows": int(X.shape[0]), "after_open_mib": after_open, "fit_s": fit_s, "epoch_s": h["time_s"],
    "samples_per_s": h["samples_per_s"], "train_loss": h["train_loss"],
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def generate(folder: Path, rows: int, shards: int, seed: int = 0) -> list[Path]:
    """Binary rows (p = 0.13, MNIST's ink density) written in 32 MiB chunks; never all in memory."""
    rng = np.random.default_rng(seed)
    bounds = np.linspace(0, rows, max(1, shards) + 1).astype(int)
    paths = []
    chunk = (32 << 20) // F
    for k, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        p = folder / f"part{k}.npy"
        with open(p, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (int(hi - lo), F)})
            for s in range(lo, hi, chunk):
                m = min(chunk, hi - s)
                (rng.random((m, F), dtype=np.float32) < 0.13).astype(np.uint8).tofile(f)
            f.flush()
            os.fsync(f.fileno())
        paths.append(p)
    return paths


def drop_from_page_cache(paths) -> None:
    """Ask the kernel to forget the files' cached pages, so that training starts from the disk."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run_child(path: Path, args, mode: str, n_mem: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", CHILD, str(path), str(args.batch_size), str(args.hidden), mode, str(n_mem)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the training process failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=3.0, help="size of the generated data (GiB)")
    ap.add_argument("--shards", type=int, default=1, help="1: one .npy file; more: a folder of shards")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--hidden", type=int, default=64, help="width of the VAE's one hidden layer")
    ap.add_argument("--memory-rows", type=int, default=300_000, help="rows of the in-memory baseline")
    ap.add_argument("--dir", default=None, help="where to write the temporary data (default: the system temp dir)")
    ap.add_argument("--no-record", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args(argv)

    rows = int(args.gib * 2**30) // F
    tmp = Path(tempfile.mkdtemp(prefix="latentlab-ooc-", dir=args.dir))
    try:
        t = time.perf_counter()
        paths = generate(tmp, rows, args.shards)
        gen_s = time.perf_counter() - t
        data = tmp if args.shards > 1 else paths[0]
        size = sum(p.stat().st_size for p in paths)
        print(f"generated {rows:,} rows x {F} uint8 = {size / 2**30:.2f} GiB in {gen_s:.0f} s at {tmp}", flush=True)
        drop_from_page_cache(paths)
        disk = run_child(data, args, "disk", 0)
        n_mem = min(args.memory_rows, rows)
        mem = run_child(data, args, "memory", n_mem)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    ratio_size = size / 2**20 / disk["peak_rss_mib"]
    ratio_speed = disk["samples_per_s"] / mem["samples_per_s"]
    where = f"a folder of {args.shards} .npy shards" if args.shards > 1 else "one .npy file"
    print(f"data: {size / 2**30:.2f} GiB ({rows:,} rows, {where}); peak RSS of the training process: {disk['peak_rss_mib']:.0f} MiB "
          f"(data / peak = {ratio_size:.1f}x; {disk['after_open_mib']:.0f} MiB after import and open)")
    print(f"one epoch from disk: {disk['epoch_s']:.1f} s, {disk['samples_per_s']:,.0f} samples/s (fit with the statistics pass: {disk['fit_s']:.1f} s)")
    print(f"one epoch in memory ({mem['rows']:,} rows): {mem['samples_per_s']:,.0f} samples/s; disk / memory = {ratio_speed:.2f}")
    machine = machine_line()
    print(f"machine: {machine}")

    if not args.no_record:
        cmd = "python benchmarks/out_of_core.py" + (f" --gib {args.gib:g}" if args.gib != 3.0 else "") + (
            f" --shards {args.shards}" if args.shards > 1 else ""
        )
        body = f"""Command: `{cmd}` (VAE 784-{args.hidden}-8, Bernoulli, batch {args.batch_size}, one thread, one epoch; the data is
generated binary uint8 rows, {where}, dropped from the page cache before training so that it starts cold).

| data on disk | rows | peak RSS (ru_maxrss) | data / peak | epoch from disk | in memory ({mem['rows']:,} rows) | disk / memory |
|---|---|---|---|---|---|---|
| {size / 2**30:.2f} GiB | {rows:,} | {disk['peak_rss_mib']:.0f} MiB | {ratio_size:.1f}x | {disk['epoch_s']:.0f} s, {disk['samples_per_s']:,.0f} samples/s | {mem['samples_per_s']:,.0f} samples/s | {ratio_speed:.2f} |

The peak counts everything the process held: Python, torch and the model ({disk['after_open_mib']:.0f} MiB after
import and opening the map). Batches are read from the file with `pread` and whole-data passes through the map
release its pages (`$LATENTLAB_MMAP_RESIDENT_MB`, 256 MiB), so the peak does not grow with the data. This machine
has more RAM than the file, so after the first pages are read the kernel's page cache serves them: the figure is the
cost of the out-of-core path, not of a slow disk.

Machine: {machine}.
"""
        write_section("Out-of-core training (issue 6)", body)
        print("recorded in BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
