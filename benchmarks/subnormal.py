"""Subnormal importance weights in the backward pass: torch's logsumexp against latentlab's.

The gradient of logsumexp is the softmax of its inputs. An IWAE's k = 50 log-weights spread over
more than 87 nats once training is under way, and exp(-87) is below float32's smallest normal
number: the weights, and every product the backward pass makes with them (the decoder's gradient
for that sample, the multiplies through its layers), are subnormal, which CPUs compute on through
slow microcode. ``latentlab.nn.distributions.logsumexp`` gives weights below 2^-64 no gradient
(a change far below float32's resolution, since the weights sum to 1).

This trains ``IWAE(k=50)`` on static binarized MNIST images and times each epoch, alternating the
two logsumexps epoch by epoch in one process (same model, same run), after ``--burn-in`` epochs on
latentlab's. It also counts, on one batch at the end, the share of the decoder output's gradient
that is subnormal under each.

    OMP_NUM_THREADS=1 python benchmarks/subnormal.py            # records its table in BENCHMARKS.md
    OMP_NUM_THREADS=1 python benchmarks/subnormal.py --no-write
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import find_mnist  # noqa: E402
from benchmarks_md import REPO, command_line, git_revision, machine_info, machine_line, update_section  # noqa: E402

sys.path.insert(0, str(REPO / "src"))
import latentlab  # noqa: E402  (first: OMP_WAIT_POLICY before torch loads)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from latentlab.nn import distributions as D  # noqa: E402
from latentlab.objectives import bound  # noqa: E402
from latentlab.training import Callback  # noqa: E402

HEADING = "Subnormal importance weights: the IWAE's logsumexp gradient (`benchmarks/subnormal.py`)"
RESULTS = HERE / "results" / "subnormal.json"
OURS, TORCHS = D.logsumexp, (lambda x, dim: torch.logsumexp(x, dim))


def use(which: str) -> None:
    f = OURS if which == "latentlab" else TORCHS
    bound.logsumexp = f
    D.logsumexp = f


class Alternate(Callback):
    """From epoch ``burn_in`` on, switch the logsumexp before every epoch; note each epoch's."""

    def __init__(self, burn_in: int):
        self.burn_in, self.used, self.current = burn_in, [], "latentlab"

    def on_epoch_end(self, record):
        self.used.append(self.current)
        if record["epoch"] >= self.burn_in:
            self.current = "torch" if self.current == "latentlab" else "latentlab"
        use(self.current)


def subnormal_share(model, x: torch.Tensor) -> dict:
    """The share of d(loss)/d(logits) entries that are subnormal (nonzero, below float32's tiny)."""
    module, objective = model.module_, model._objective()
    out = {}
    for which in ("torch", "latentlab"):
        use(which)
        seen = []
        torch.manual_seed(0)
        handle = module.decoder.register_full_backward_hook(lambda m, gi, go: seen.append(go[0].detach().clone()))
        try:
            module.zero_grad(set_to_none=True)
            loss, _ = objective(module, (x,), 1e9)
            loss.backward()
        finally:
            handle.remove()
        g = seen[0]
        tiny = torch.finfo(torch.float32).tiny
        out[which] = float(((g != 0) & (g.abs() < tiny)).float().mean())
    use("latentlab")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--burn-in", type=int, default=4)
    ap.add_argument("--pairs", type=int, default=3, help="(torch, latentlab) epoch pairs timed after the burn-in")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args(argv)
    path = find_mnist(a.data)
    if path is None:
        print("binarized_mnist.npz not found (--data or LATENTLAB_DATA): nothing to measure.")
        return 0
    torch.set_num_threads(a.threads)
    with np.load(path) as d:
        X = np.ascontiguousarray(d["train"][: a.images], dtype=np.float32)
    warnings.simplefilter("ignore")
    use("latentlab")
    cb = Alternate(a.burn_in)
    epochs = a.burn_in + 2 * a.pairs
    model = latentlab.IWAE(latent_dim=50, hidden=(200, 200), k=50, likelihood="bernoulli", epochs=epochs,
                           patience=None, validation_fraction=0.05, threads=a.threads, verbose=False)
    t0 = time.perf_counter()
    model.fit(X, callbacks=[cb])
    wall = time.perf_counter() - t0
    times = {"torch": [], "latentlab": []}
    for rec, which in zip(model.history_[a.burn_in:], cb.used[a.burn_in:]):
        times[which].append(rec["time_s"])
    share = subnormal_share(model, torch.from_numpy(X[:100]))
    record = {"date": _dt.date.today().isoformat(), "command": command_line(), "revision": git_revision(),
              "machine": machine_info(), "images": a.images, "burn_in": a.burn_in, "threads": a.threads,
              "epoch_s": times, "subnormal_share": share, "wall_s": wall}
    ratio = statistics.median(times["torch"]) / statistics.median(times["latentlab"])
    text = "\n".join([
        f"`IWAE(latent_dim=50, hidden=(200, 200), k=50)` on the first {a.images} static-MNIST training images, "
        f"{a.threads} thread(s); after {a.burn_in} epochs on latentlab's logsumexp, the two alternate epoch by epoch "
        "in the same run.", "",
        "| logsumexp | epoch times (s) | median (s) | subnormal share of d(loss)/d(logits), one batch at the end |",
        "|---|---|---:|---:|",
        *[f"| {w} | {', '.join(f'{t:.2f}' for t in times[w])} | {statistics.median(times[w]):.2f} | "
          f"{share[w]:.1%} |" for w in ("torch", "latentlab")],
        "", f"torch's / latentlab's median epoch: **{ratio:.2f}x**.", "",
        f"Command: `{record['command']}` (revision {record['revision']}, {record['date']}). "
        f"Machine: {machine_line(record['machine'])}."])
    print(text)
    if a.no_write:
        return 0
    from latentlab.io import atomic_write_text

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS, json.dumps(record, indent=1) + "\n")
    update_section(REPO / "BENCHMARKS.md", HEADING, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
