"""Training on a busy machine: latentlab's thread settings against one thread, with competitors.

A training run (a fixed number of epochs, the convergence rule off) is timed in a fresh child
process, so that each contender's OpenMP settings are read as torch loads, while N = 0, 1, 2 other
processes spin on the cores (pure-Python busy loops, as other jobs on a laptop or a CI runner).
Each timing is divided by the same run on one thread with the same competitors. Rounds are
interleaved (every contender, for each N, in each round) and the median ratio is reported, so
the machine's drift touches all contenders alike.

Contenders:

- ``1 thread``: OMP_NUM_THREADS=1 (the reference);
- ``latentlab default``: ``import latentlab`` first, nothing set: OMP_WAIT_POLICY=PASSIVE, and the
  thread count follows the free cores (at most one per core; ``latentlab.threads``);
- ``fixed, passive``: the same with OMP_NUM_THREADS = the usable cores, so the count stays torch's
  own: latentlab's default before it followed the free cores;
- ``spinning, fixed``: torch imported before latentlab and OMP_NUM_THREADS = the usable cores:
  libgomp's default policy (idle threads spin) on torch's own count, what a plain PyTorch loop
  does and what latentlab did before this benchmark.

Workloads: the embedded digits, ``VAE(latent_dim=8)`` with every other setting at its default; and,
where static binarized MNIST is on disk, a ``VampPriorVAE(latent_dim=40, n_pseudo_inputs=500,
hidden=(300, 300), likelihood="bernoulli")`` on its first 5,000 training images (the model whose
step was 5.9x slower on 2 threads than on 1 under load, issue 17).

    python benchmarks/busy_machine.py              # 3 rounds; records its table in BENCHMARKS.md
    python benchmarks/busy_machine.py --quick      # 1 round, digits only, not recorded

The figures mean something only if nothing else runs on the machine meanwhile (the competitors
are the load): check with ``uptime`` before.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import find_mnist  # noqa: E402
from benchmarks_md import REPO, command_line, git_revision, machine_info, machine_line, update_section  # noqa: E402

HEADING = "Training on a busy machine: threads and OpenMP wait policy (`benchmarks/busy_machine.py`)"
RESULTS = HERE / "results" / "busy_machine.json"
CONTENDERS = ("1 thread", "latentlab default", "fixed, passive", "spinning, fixed")
CORES = str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
SPIN = "while True:\n    pass\n"

# The child: load torch the contender's way, build the workload, time the fit alone.
CHILD = r"""
import json, sys, time, warnings
torch_first = sys.argv[1] == "torch-first"
if torch_first:
    import torch
import latentlab
import numpy as np
import torch
spec = json.loads(sys.argv[2])
if spec["data"] == "digits":
    from latentlab.datasets import load_digits
    X = load_digits().data.astype(np.float32)
    model = latentlab.VAE(latent_dim=8, epochs=spec["epochs"], tol=0.0, patience=None, verbose=False)
else:
    with np.load(spec["data"]) as d:
        X = np.ascontiguousarray(d["train"][:5000], dtype=np.float32)
    model = latentlab.VampPriorVAE(latent_dim=40, n_pseudo_inputs=500, hidden=(300, 300), likelihood="bernoulli",
                                   epochs=spec["epochs"], tol=0.0, patience=None, verbose=False)
warnings.simplefilter("ignore")
t = time.perf_counter()
model.fit(X)
used = sorted({h.get("threads") for h in model.history_})
print(json.dumps({"seconds": time.perf_counter() - t, "threads": "/".join(map(str, used)),
                  "policy": latentlab.threads.wait_policy()}))
"""


def run_child(contender: str, spec: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS", "GOMP_SPINCOUNT")}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    if contender == "1 thread":
        env["OMP_NUM_THREADS"] = "1"
    if contender in ("fixed, passive", "spinning, fixed"):
        env["OMP_NUM_THREADS"] = CORES
    order = "torch-first" if contender == "spinning, fixed" else "latentlab-first"
    out = subprocess.run([sys.executable, "-c", CHILD, order, json.dumps(spec)], env=env, capture_output=True,
                         text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"the child for {contender!r} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def competitors(n: int) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(n)]
    time.sleep(0.5 if n else 0.0)
    return procs


def measure(workloads: dict, rounds: int, loads: tuple[int, ...]) -> dict:
    times = {w: {n: {c: [] for c in CONTENDERS} for n in loads} for w in workloads}
    seen = {}
    for r in range(rounds):
        for w, spec in workloads.items():
            for n in loads:
                procs = competitors(n)
                try:
                    order = CONTENDERS if r % 2 == 0 else CONTENDERS[::-1]
                    for c in order:
                        res = run_child(c, spec)
                        times[w][n][c].append(res["seconds"])
                        seen.setdefault(c, {}).setdefault(str(n), (res["threads"], res["policy"]))
                        print(f"round {r + 1}  {w:<8} {n} busy  {c:<18} {res['seconds']:7.2f} s", flush=True)
                finally:
                    for p in procs:
                        p.kill()
                        p.wait()
    return {"times": times, "seen": seen}


def render(record: dict) -> str:
    lines = ["Each cell: the median over rounds of (the contender's training time) / (the same run on 1 thread, "
             "with the same competitors); below 1 is faster than one thread. Competitors: pure-Python busy loops.", "",
             "| workload | busy competitors | " + " | ".join(CONTENDERS[1:]) + " | 1 thread (s) |",
             "|---|---|" + "---|" * (len(CONTENDERS) - 1) + "---|"]
    for w, by_n in record["times"].items():
        for n, t in by_n.items():
            ref = t["1 thread"]
            cells = [f"{statistics.median(a / b for a, b in zip(t[c], ref)):.2f}x" for c in CONTENDERS[1:]]
            lines.append(f"| {record['descriptions'][w]} | {n} | " + " | ".join(cells) + f" | {statistics.median(ref):.2f} |")
    idle = []
    for w, by_n in record["times"].items():
        t = by_n.get("0") or by_n.get(0)
        if t:
            ratio = statistics.median(a / b for a, b in zip(t["latentlab default"], t["fixed, passive"]))
            idle.append(f"{record['descriptions'][w]}: {ratio:.2f}x")
    seen = "; ".join(f"{c}: " + ", ".join(f"{n} busy {th} thread(s)" for n, (th, _) in by_n.items())
                     + f", wait policy {next(iter(by_n.values()))[1]}" for c, by_n in record["seen"].items())
    lines += ["", "Idle machine, latentlab default / fixed, passive (the default before it followed the free cores): "
              + "; ".join(idle) + ".",
              "", f"As the children saw it: {seen}.", "",
              f"Command: `{record['command']}` (revision {record['revision']}, {record['date']}, {record['rounds']} rounds). "
              f"Machine: {machine_line(record['machine'])}."]
    if record.get("note"):
        lines += ["", record["note"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 round, digits only, not recorded")
    ap.add_argument("--data", default=None, help="binarized_mnist.npz (default: $LATENTLAB_DATA or ../shared/data)")
    ap.add_argument("--digits-epochs", type=int, default=30)
    ap.add_argument("--vamp-epochs", type=int, default=2)
    ap.add_argument("--note", default=None, help="a line for the record (e.g. what else ran)")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args(argv)
    workloads = {"digits": {"data": "digits", "epochs": a.digits_epochs}}
    descriptions = {"digits": f"digits, VAE(latent_dim=8), defaults, {a.digits_epochs} epochs"}
    mnist = None if a.quick else find_mnist(a.data)
    if mnist is not None:
        workloads["vamp"] = {"data": str(mnist), "epochs": a.vamp_epochs}
        descriptions["vamp"] = f"MNIST 5,000 images, VampPrior 784-300-300-40 K=500, {a.vamp_epochs} epochs"
    elif not a.quick:
        print("binarized_mnist.npz not found (--data or LATENTLAB_DATA): the digits workload only.")
    rounds = 1 if a.quick else a.rounds
    res = measure(workloads, rounds, (0, 1, 2))
    record = {"date": _dt.date.today().isoformat(), "command": command_line(), "revision": git_revision(),
              "machine": machine_info(), "rounds": rounds, "descriptions": descriptions,
              "times": {w: {str(n): t for n, t in by_n.items()} for w, by_n in res["times"].items()},
              "seen": res["seen"], "note": a.note}
    print(render(record))
    if a.quick or a.no_write:
        return 0
    sys.path.insert(0, str(REPO / "src"))
    from latentlab.io import atomic_write_text

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS, json.dumps(record, indent=1) + "\n")
    update_section(REPO / "BENCHMARKS.md", HEADING, render(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
