"""Static binarized MNIST: the literature's VAE likelihood protocol, with latentlab's public API.

Train on the 50,000 training images, early-stop on the 10,000 validation images (their ELBO),
and report the test negative log-likelihood estimated by importance sampling with K = 5000
samples per image (Burda et al., 2016), with its standard error; Bernoulli likelihood, one
stochastic layer, MLP encoder and decoder, the N(0, I) prior, trained on the ELBO.

Goal: test NLL <= 88.0 nats. Anchors: 88.56 (Tomczak & Welling 2018, VampPrior paper, VAE with
the standard prior), 89.78 (Pythae's VAE, 784-400-40).

    python benchmarks/static_mnist.py                 # the full protocol (an hour or more on 2 cores)
    python benchmarks/static_mnist.py --quick         # a few minutes: fewer epochs, 1000 test images

Data: ``--data PATH`` or ``$LATENTLAB_DATA`` (the .npz file or its folder), else
shared/data/binarized_mnist.npz beside the repository (or above it). The results go into BENCHMARKS.md
(this benchmark's section only; every run is kept in benchmarks/results/static_mnist.json) and
the model into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchmarks_md import REPO, command_line, git_revision, machine_info, machine_line, update_section  # noqa: E402

sys.path.insert(0, str(REPO / "src"))

HEADING = "Static binarized MNIST: VAE test NLL (`benchmarks/static_mnist.py`)"
RESULTS = HERE / "results" / "static_mnist.json"
GOAL = 88.0
ANCHORS = "88.56 (VampPrior paper, VAE with the standard prior), 89.78 (Pythae's VAE 784-400-40)"


def find_data(arg: str | None) -> Path | None:
    """--data if given, else $LATENTLAB_DATA if set, else shared/data/binarized_mnist.npz in the
    folder that holds the repository (or one above it, for a git worktree)."""
    src = arg or os.environ.get("LATENTLAB_DATA")
    if src:
        p = Path(src)
        cand = p if p.suffix == ".npz" else p / "binarized_mnist.npz"
        return cand if cand.is_file() else None
    for parent in REPO.parents:
        cand = parent / "shared" / "data" / "binarized_mnist.npz"
        if cand.is_file():
            return cand
    return None


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="binarized_mnist.npz (keys train/valid/test) or its folder")
    p.add_argument("--quick", action="store_true", help="a few minutes: --epochs 10 and 1000 random test images")
    p.add_argument("--latent-dim", type=int, default=40)
    p.add_argument("--hidden", default="512,256", help="encoder hidden sizes, comma-separated; the decoder mirrors them")
    p.add_argument("--activation", default="relu")
    p.add_argument("--epochs", type=int, default=500, help="upper bound; early stopping decides")
    p.add_argument("--patience", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-schedule", default="plateau", choices=["constant", "cosine", "plateau"])
    p.add_argument("--warmup-epochs", type=float, default=10.0, help="linear KL warm-up")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--ema", type=float, default=0.999, help="decay of the moving average of the weights (0: off)")
    p.add_argument("--k", type=int, default=5000, help="importance samples per test image")
    p.add_argument("--n-test", type=int, default=None,
                   help="evaluate on N test images drawn at random (seed 0; the file's test set is ordered by "
                        "class, so its first N are not representative). Default: all 10,000")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", default=str(REPO / "runs" / "static_mnist"), help="where the model is saved")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--no-record", action="store_true", help="do not touch BENCHMARKS.md or the results file")
    p.add_argument("--benchmarks-file", default=str(REPO / "BENCHMARKS.md"))
    p.add_argument("--results-file", default=str(RESULTS), help="JSON list of every recorded run")
    a = p.parse_args(argv)
    if a.quick:
        a.epochs = min(a.epochs, 10)
        a.n_test = a.n_test or 1000
    return a


def load(path: Path):
    import numpy as np

    with np.load(path) as d:
        missing = {"train", "valid", "test"} - set(d.files)
        if missing:
            raise SystemExit(f"error: {path} lacks the array(s) {sorted(missing)}; it needs train, valid and test.")
        # The arrays may be stored in Fortran order: make them C-contiguous rows once, here.
        return [np.ascontiguousarray(d[k], dtype=np.float32) for k in ("train", "valid", "test")]


def run(a, path: Path) -> dict:
    import torch

    from latentlab import VAE
    from latentlab.evaluation import evaluate

    if a.threads:
        torch.set_num_threads(a.threads)
    import numpy as np

    train, valid, test = load(path)
    subset = "all"
    if a.n_test and a.n_test < len(test):
        test = test[np.sort(np.random.default_rng(0).choice(len(test), a.n_test, replace=False))]
        subset = f"{a.n_test} drawn at random (seed 0)"
    hidden = tuple(int(h) for h in a.hidden.split(",") if h.strip())
    out = Path(a.out)
    vae = VAE(latent_dim=a.latent_dim, hidden=hidden, activation=a.activation, likelihood="bernoulli",
              epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, lr_schedule=a.lr_schedule,
              warmup_epochs=a.warmup_epochs, weight_decay=a.weight_decay, patience=a.patience,
              ema=a.ema or None,
              seed=a.seed, device="cpu" if not torch.cuda.is_available() else "auto", verbose=False,
              checkpoint_dir=str(out / "checkpoint"))
    print(f"training {vae!r} on {len(train)} images, early stopping on {len(valid)}", flush=True)
    t0 = time.perf_counter()
    vae.fit(train, X_val=valid, resume=a.resume)
    train_s = time.perf_counter() - t0
    # A resumed run's wall time is only its last part: the epochs' own times add up the whole.
    train_s = max(train_s, sum(h.get("time_s", 0.0) for h in vae.history_))
    vae.save(out / "model")
    best = vae.history_[vae.best_epoch_ - 1]
    print(f"trained {vae.n_epochs_} epochs in {train_s:.0f} s; best epoch {vae.best_epoch_}: "
          f"valid ELBO {best['val_elbo']:.2f}", flush=True)
    t1 = time.perf_counter()
    m = evaluate(vae, test, k=a.k, seed=a.seed)
    eval_s = time.perf_counter() - t1
    res = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "mode": "quick" if a.quick else "full",
        "command": command_line(),
        "revision": git_revision(),
        "machine": machine_info(),
        "model": f"784-{'-'.join(map(str, hidden))}-{a.latent_dim} ({a.activation}), Bernoulli, N(0, I) prior",
        "settings": {k: v for k, v in vars(a).items() if k not in ("no_record", "benchmarks_file", "results_file", "data")},
        "test_images": len(test),
        "test_subset": subset,
        "k": a.k,
        "test_nll": -m["log_likelihood"],
        "test_nll_se": m["log_likelihood_se"],
        "test_elbo": m["elbo"],
        "test_rec": m["rec"],
        "test_kl": m["kl"],
        "active_units": m["active_units"],
        "kl_per_dim": m["kl_per_dim"],
        "bits_per_dim": m["bits_per_dim"],
        "valid_elbo_best": best["val_elbo"],
        "train_elbo_best_epoch": best["train_elbo"],
        "best_epoch": vae.best_epoch_,
        "epochs": vae.n_epochs_,
        "stopped_early": bool(vae.stopped_early_),
        "train_seconds": train_s,
        "eval_seconds": eval_s,
        "model_dir": str(out / "model"),
    }
    (out / "results.json").write_text(json.dumps(res, indent=2))
    return res


def _subset(r) -> str:
    sub = r.get("test_subset", "all")
    return "" if sub == "all" else f", {sub}"


def _row(r) -> str:
    s = r["settings"]
    return (f"| {r['date'][:16].replace('T', ' ')} | {r['mode']} | {r['model']}; lr {s['lr']:g} {s['lr_schedule']}, "
            f"warm-up {s['warmup_epochs']:g}, wd {s['weight_decay']:g}, EMA {s.get('ema') or 'off'}, batch {s['batch_size']} | "
            f"{r['epochs']} ({r['best_epoch']}) | {r['test_images']}{_subset(r)} | **{r['test_nll']:.2f}** ± {r['test_nll_se']:.2f} | "
            f"{-r['test_elbo']:.2f} | {r['test_kl']:.2f} | {r['active_units']} | {r['train_seconds'] / 60:.0f} + "
            f"{r['eval_seconds'] / 60:.0f} | `{r['command']}` |")


def render(runs) -> str:
    lines = [
        "The literature's protocol: train on the 50,000 training images, early-stop on the 10,000 validation "
        "images (their ELBO), report the test negative log-likelihood by importance sampling with K = 5000 "
        "samples per image, with its standard error over the images. Bernoulli likelihood, one stochastic "
        "layer, MLP encoder and decoder, N(0, I) prior, trained on the ELBO (with KL warm-up and a moving "
        "average of the weights, `ema`) through "
        "latentlab's public API (`VAE(...).fit`, `latentlab.evaluation.evaluate`).",
        "",
        f"**Goal: test NLL <= {GOAL} nats.** Anchors: {ANCHORS}.",
        "",
    ]
    for mode in ("full", "quick"):
        last = [r for r in runs if r["mode"] == mode]
        if not last:
            continue
        r = last[-1]
        verdict = "meets the goal" if r["test_nll"] <= GOAL else "misses the goal"
        if mode == "quick" or r["test_images"] < 10000:
            verdict = "a quick check, not comparable with the goal"
        lines += [
            f"### Latest {mode} run ({r['date'][:10]})",
            "",
            f"- test NLL (K = {r['k']}, {r['test_images']} test images{_subset(r)}): **{r['test_nll']:.2f} ± {r['test_nll_se']:.2f} nats** ({verdict})",
            f"- test ELBO {r['test_elbo']:.2f} (reconstruction {r['test_rec']:.2f}, KL {r['test_kl']:.2f}); "
            f"{r['bits_per_dim']:.4f} bits/dim; active units {r['active_units']} of {r['settings']['latent_dim']}",
            f"- best validation ELBO {r['valid_elbo_best']:.2f} at epoch {r['best_epoch']} of {r['epochs']} "
            f"({'early-stopped' if r['stopped_early'] else 'epoch limit reached'})",
            f"- model {r['model']}; training {r['train_seconds'] / 60:.1f} min, evaluation {r['eval_seconds'] / 60:.1f} min",
            f"- command: `{r['command']}` (revision {r['revision']})",
            f"- machine: {machine_line(r['machine'])}",
            "",
        ]
    lines += [
        "### Every run",
        "",
        "| date | mode | model and training | epochs (best) | test images | test NLL ± SE | -ELBO | KL | active units | minutes (train + eval) | command |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(_row(r) for r in runs),
    ]
    return "\n".join(lines)


def record(res: dict, benchmarks_file: Path, results_file: Path) -> None:
    from latentlab.io import atomic_write_text

    runs = json.loads(results_file.read_text()) if results_file.exists() else []
    runs.append(res)
    atomic_write_text(results_file, json.dumps(runs, indent=1) + "\n")
    update_section(benchmarks_file, HEADING, render(runs))


def main(argv=None) -> int:
    a = parse(argv)
    path = find_data(a.data)
    if path is None:
        print("error: binarized_mnist.npz not found; pass --data PATH or set LATENTLAB_DATA to the file "
              "or its folder (keys train/valid/test, 0/1 arrays of shape (n, 784)).", file=sys.stderr)
        return 2
    res = run(a, path)
    print(json.dumps({k: res[k] for k in ("test_nll", "test_nll_se", "test_elbo", "test_kl", "active_units",
                                          "best_epoch", "epochs", "train_seconds", "eval_seconds")}, indent=1))
    if not a.no_record:
        record(res, Path(a.benchmarks_file), Path(a.results_file))
        print(f"recorded in {a.benchmarks_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
