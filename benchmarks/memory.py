"""Peak resident memory of a training run on the 50,000-image static-MNIST training split.

Runs the training in a fresh subprocess (so nothing of this one counts) and reads the child's
peak resident set size (``ru_maxrss``), next to the resident size right after ``import latentlab``
(the interpreter, torch and friends). Goal: peak under 1.5 GiB.

    python benchmarks/memory.py              # MLP VAE 784-400-20, batch 128, 3 epochs
    python benchmarks/memory.py --epochs 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import require_mnist, machine_line, write_section  # noqa: E402

CHILD = r"""
import json, resource, sys, time
import numpy as np
def rss_mib():  # current resident set, from /proc
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
import latentlab
after_import = rss_mib()
X = np.load(sys.argv[1])["train"]  # uint8 (50000, 784), as a user would load it
t = time.perf_counter()
vae = latentlab.VAE(latent_dim=20, hidden=(400,), likelihood="bernoulli", epochs=int(sys.argv[2]),
                    batch_size=128, verbose=False).fit(X)
print(json.dumps({"after_import_mib": after_import, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "fit_s": time.perf_counter() - t, "epochs": len(vae.history_), "data_mib": X.nbytes / 2**20}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    path = require_mnist(args.data)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(args.epochs)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        print(out.stderr, file=sys.stderr)
        return 1
    r = json.loads(out.stdout.strip().splitlines()[-1])
    verdict = "under" if r["peak_mib"] < 1536 else "OVER"
    print(f"after import {r['after_import_mib']:.0f} MiB; peak during fit {r['peak_mib']:.0f} MiB ({verdict} the 1.5 GiB goal); "
          f"data {r['data_mib']:.0f} MiB as uint8; {r['epochs']} epochs in {r['fit_s']:.1f} s")
    if not args.no_write:
        cmd = "`python benchmarks/memory.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip() + "`"
        body = (
            f"{cmd}\n\nMachine: {machine_line()}. A fresh process loads the training split (uint8, {r['data_mib']:.0f} MiB) and fits "
            f"the 784-400-20 MLP VAE (batch 128, {r['epochs']} epochs, 10% validation split).\n\n"
            f"| resident after `import latentlab` | peak resident during the run | goal |\n|---:|---:|---|\n"
            f"| {r['after_import_mib']:.0f} MiB | {r['peak_mib']:.0f} MiB | < 1536 MiB: {'met' if verdict == 'under' else 'missed'} |"
        )
        write_section("Memory, training on the static-MNIST training split", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
