"""The optimisation defaults against the previous ones, on the deep models they also train.

The defaults (lr 2e-3, batches of 64, weight averaging 0.999, a budget of 1000 epochs with the
convergence rule at tol 1e-5) were chosen so that a linear autoencoder gets close to PCA's
subspace (benchmarks/linear_ae_pca.py). They must not make the deep models worse or much slower:
this fits each model twice, with today's defaults and with the previous settings (lr 1e-3, batches
of 128, no averaging, 100 epochs, tol 0: the old rule), and reports the held-out figure, the epochs
and the seconds. Both use today's initialisation (orthogonal), which is not a setting.

- the embedded digits (80/20 split, seed 0): a deep ``Autoencoder(latent_dim=8)`` (test MSE per
  feature) and a ``VAE(latent_dim=8)`` (test ELBO, nats);
- binarized MNIST, the first 10,000 training images and 2,000 test images: ``VAE(latent_dim=20,
  likelihood="bernoulli")`` (test ELBO, nats).

    python benchmarks/defaults.py              # records its table in BENCHMARKS.md
    python benchmarks/defaults.py --quick      # the digits only, not recorded
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchmarks_md import REPO, command_line, git_revision, machine_info, machine_line, update_section  # noqa: E402

sys.path.insert(0, str(REPO / "src"))

HEADING = "Optimisation defaults against the previous ones (`benchmarks/defaults.py`)"
RESULTS = HERE / "results" / "defaults.json"
PREVIOUS = {"lr": 1e-3, "batch_size": 128, "ema": None, "epochs": 100, "tol": 0.0}


def cases(a):
    import numpy as np

    from latentlab import VAE, Autoencoder
    from latentlab.datasets import load_digits

    X = load_digits().data
    p = np.random.default_rng(0).permutation(len(X))
    tr, te = X[p[:1437]], X[p[1437:]]
    yield "digits", "deep AE, latent 8: test MSE per feature (lower is better)", lambda kw: Autoencoder(latent_dim=8, **kw), tr, te
    yield "digits", "VAE, latent 8: test ELBO, nats (higher is better)", lambda kw: VAE(latent_dim=8, **kw), tr, te
    if a.quick:
        return
    from _common import require_mnist

    with np.load(require_mnist(a.data)) as d:
        mtr = np.ascontiguousarray(d["train"][:10000], dtype=np.float32)
        mte = np.ascontiguousarray(d["test"][:2000], dtype=np.float32)
    yield ("binarized MNIST (10,000 + 2,000)", "VAE, latent 20, Bernoulli: test ELBO, nats (higher is better)",
           lambda kw: VAE(latent_dim=20, likelihood="bernoulli", **kw), mtr, mte)


def score(model, te) -> float:
    import numpy as np

    if hasattr(model, "c"):  # a VAE
        return float(model.score(te))
    return float(np.mean((model.reconstruct(te) - te) ** 2))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="binarized_mnist.npz or its folder")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    import torch
    from sklearn.exceptions import ConvergenceWarning

    torch.set_num_threads(a.threads)
    rows = []
    for data, what, make, tr, te in cases(a):
        for name, kw in (("defaults", {}), ("previous", PREVIOUS)):
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                m = make({"verbose": False, **kw}).fit(tr)
            secs = time.perf_counter() - t0
            rows.append({"data": data, "what": what, "settings": name, "score": score(m, te), "epochs": m.n_epochs_,
                         "converged": bool(m.converged_), "seconds": secs})
            print(f"{data:34s} {what[:40]:40s} {name:9s} {rows[-1]['score']:10.4f} {m.n_epochs_:5d} ep {secs:7.1f} s",
                  flush=True)
    if a.quick:
        return 0
    record = {"date": _dt.date.today().isoformat(), "command": command_line(), "revision": git_revision(),
              "machine": machine_info(), "rows": rows}
    from latentlab.io import atomic_write_text

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS, json.dumps(record, indent=1) + "\n")
    lines = ["Each model fitted with today's defaults and with the previous settings "
             f"({', '.join(f'{k}={v!r}' for k, v in PREVIOUS.items())}), the rest equal (orthogonal initialisation in both).",
             "", "| data | model: figure | settings | figure | epochs | converged | seconds |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['data']} | {r['what']} | {r['settings']} | {r['score']:.4f} | {r['epochs']} | "
                     f"{'yes' if r['converged'] else 'no'} | {r['seconds']:.0f} |")
    lines += ["", f"Command: `{record['command']}` (revision {record['revision']}, {record['date']}).",
              f"Machine: {machine_line(record['machine'])}; other jobs shared its cores (seconds are wall time under load)."]
    update_section(REPO / "BENCHMARKS.md", HEADING, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
