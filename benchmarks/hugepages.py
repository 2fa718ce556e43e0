"""Training with and without transparent huge pages for torch's large CPU tensors, side by side.

PyTorch's CPU allocator asks the kernel for huge pages (``madvise(MADV_HUGEPAGE)``, 2 MiB) for
every tensor of 2 MiB or more when ``THP_MEM_ALLOC_ENABLE=1`` is set before torch loads. Freshly
allocated memory is faulted in page by page on its first write; with 4 KiB pages that is 512
faults per 2 MiB, and a large temporary allocated anew at every step (the IWAE's (k, B, 784)
logits and their gradient, 15.7 MB each at k = 50, batch 100) pays them every step, where
glibc has handed the freed memory back to the kernel. ``import latentlab`` sets the variable
(latentlab.threads) unless the user has, or torch was loaded first; here each child gets it set
explicitly, to 0 or 1, so the two contenders are torch's default and latentlab's.

Each run is a fresh child process (the variable is read as torch loads) that fits one of
``benchmarks/throughput_family.py``'s four models on the first static-MNIST training images, one
epoch, 1 thread, the convergence rule off, and reports the fit's wall clock, the minor page
faults during the fit and the peak resident memory. Contenders alternate within each round (the
order flips every round); the median over rounds of the paired ratio is reported.

    python benchmarks/hugepages.py               # 3 rounds; records its table in BENCHMARKS.md
    python benchmarks/hugepages.py --quick       # 1 round on fewer images, not recorded
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import require_mnist  # noqa: E402
from benchmarks_md import REPO, command_line, git_revision, machine_info, machine_line, update_section  # noqa: E402

HEADING = "Transparent huge pages for large CPU tensors (`benchmarks/hugepages.py`)"
RESULTS = HERE / "results" / "hugepages.json"
CONTENDERS = {"4 KiB pages": "0", "huge pages": "1"}
IMAGES = {"vae": 10000, "vamp": 10000, "hvae": 10000, "iwae": 5000}

CHILD = r"""
import json, resource, sys, time, warnings
sys.path.insert(0, sys.argv[1])
import latentlab  # first, as a user's script would (THP_MEM_ALLOC_ENABLE is as the parent set it)
import numpy as np
import torch
import throughput_family as tf
torch.set_num_threads(1)
warnings.simplefilter("ignore")
model, n, data = sys.argv[2], int(sys.argv[3]), sys.argv[4]
with np.load(data) as d:
    X = np.ascontiguousarray(d["train"][:n], dtype=np.float32)
make = tf.configs()[model][1]
make().set_params(epochs=1, seed=0).fit(X[:300])  # warm-up: first calls, lazy imports
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
t = time.perf_counter()
make().set_params(epochs=1, seed=0).fit(X)
seconds = time.perf_counter() - t
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": seconds, "faults": usage.ru_minflt - faults, "max_rss_mib": usage.ru_maxrss / 1024,
                  "images": len(X)}))
"""


def run_child(value: str, model: str, n: int, data: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("THP_MEM_ALLOC_ENABLE",)}
    env.update(THP_MEM_ALLOC_ENABLE=value, OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", CHILD, str(HERE), model, str(n), data], env=env,
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"the child ({model}, THP_MEM_ALLOC_ENABLE={value}) failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def thp_mode() -> str:
    try:
        return Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
    except OSError:
        return "unavailable"


def render(record: dict) -> str:
    names = list(CONTENDERS)
    lines = [f"Each row: one epoch of `benchmarks/throughput_family.py`'s model on the first static-MNIST training "
             f"images, 1 thread, a fresh process per run; {record['rounds']} rounds, contenders alternating. The kernel's "
             f"THP setting: `{record['thp_mode']}` (madvise: huge pages only where a program asks, as torch does with "
             "the variable set).", "",
             "| model | images | fit, 4 KiB pages (s) | fit, huge pages (s) | huge / 4 KiB, paired median | "
             "page faults during the fit, 4 KiB / huge | peak RSS MiB, 4 KiB / huge |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for m, r in record["models"].items():
        a, b = (r[c] for c in names)
        ratio = statistics.median(y["seconds"] / x["seconds"] for x, y in zip(a, b))
        med = lambda rs, k: statistics.median(x[k] for x in rs)  # noqa: E731
        lines.append(f"| {r['description']} | {r['images']:,} | {med(a, 'seconds'):.2f} | {med(b, 'seconds'):.2f} | "
                     f"{ratio:.2f}x | {med(a, 'faults'):,.0f} / {med(b, 'faults'):,.0f} | "
                     f"{med(a, 'max_rss_mib'):,.0f} / {med(b, 'max_rss_mib'):,.0f} |")
    lines += ["", f"Command: `{record['command']}` (revision {record['revision']}, {record['date']}). "
              f"Machine: {machine_line(record['machine'])}."]
    if record.get("note"):
        lines += ["", record["note"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="all", choices=["all", *IMAGES])
    ap.add_argument("--data", default=None, help="binarized_mnist.npz (default: $LATENTLAB_DATA or ../shared/data)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 round on 1,000 images, not recorded")
    ap.add_argument("--note", default=None)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    data = str(require_mnist(args.data))
    import throughput_family as tf

    models = list(IMAGES) if args.model == "all" else [args.model]
    rounds = 1 if args.quick else args.rounds
    out = {}
    for m in models:
        n = 1000 if args.quick else IMAGES[m]
        res = {c: [] for c in CONTENDERS}
        for r in range(rounds):
            order = list(CONTENDERS) if r % 2 == 0 else list(CONTENDERS)[::-1]
            for c in order:
                res[c].append(run_child(CONTENDERS[c], m, n, data))
                x = res[c][-1]
                print(f"round {r + 1}  {m:<5} {c:<34} {x['seconds']:7.2f} s  {x['faults']:>9,} faults  "
                      f"{x['max_rss_mib']:6.0f} MiB", flush=True)
        out[m] = {"description": tf.configs()[m][0], "images": res["4 KiB pages"][0]["images"], **res}
    import torch

    torch.set_num_threads(1)  # as the children ran: machine_info reports it

    record = {"models": out, "rounds": rounds, "thp_mode": thp_mode(), "command": command_line(),
              "revision": git_revision(), "machine": machine_info(), "date": _dt.date.today().isoformat(),
              "note": args.note}
    print(render(record))
    if not (args.quick or args.no_write):
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(record, indent=1) + "\n")
        update_section(REPO / "BENCHMARKS.md", HEADING, render(record))
        print(f"\nrecorded in {RESULTS.relative_to(REPO)} and BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
