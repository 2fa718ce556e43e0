"""Static binarized MNIST for the VAE family: IWAE, VampPrior, hierarchical VAEs.

The protocol of benchmarks/static_mnist.py (issue 4): train on ``train`` (50,000), early-stop
on ``valid`` (10,000), report the test negative log-likelihood with K = 5000 importance samples
(latentlab.evaluation.log_likelihood); Bernoulli likelihood, MLP networks.

Two phases, so that a long training run can be stopped, resumed and evaluated at any point:

    # train (resumable: rerun the same command to continue; progress is printed per chunk)
    python benchmarks/static_mnist_models.py train --model hvae-vamp --out runs/hvae-vamp
    # evaluate the best weights so far and append the result to BENCHMARKS.md
    python benchmarks/static_mnist_models.py evaluate --out runs/hvae-vamp --k 5000

Training runs in chunks of ``--chunk`` epochs: each chunk resumes the checkpoint in
``OUT/checkpoint`` (the trainer's resume reproduces an uninterrupted CPU run exactly), then
saves the early-stopping-best weights so far to ``OUT/model``. ``--max-hours`` stops after the
chunk that crosses the time budget; the record says how far training went.

Models (``--model``), with the settings of the papers where the CPU allows:
- ``iwae``: IWAE, k = 50, 1 stochastic layer of 50, MLP 200-200 (Burda et al., 2016).
- ``vamp``: VampPriorVAE, 40 latent, K = 500 pseudo-inputs, MLP 300-300 (Tomczak & Welling, 2018).
- ``hvae``: HierarchicalVAE, z1 = z2 = 40, N(0, I) on z2, MLP 300-300.
- ``hvae-vamp``: HierarchicalVAE with a VampPrior (K = 500) on z2.
- ``vae``: the plain VAE with the same networks as ``vamp`` (a reference).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _data_path() -> Path:
    env = os.environ.get("LATENTLAB_DATA")
    for c in ([Path(env) if env.endswith(".npz") else Path(env) / "binarized_mnist.npz"] if env else []) + [
        REPO.parent / "shared" / "data" / "binarized_mnist.npz",
        Path("/work/shared/data/binarized_mnist.npz"),
    ]:
        if c.is_file():
            return c
    sys.exit("binarized_mnist.npz not found: set LATENTLAB_DATA to the file or its folder.")


def load_split(name: str, n: int | None = None) -> np.ndarray:
    with np.load(_data_path()) as d:
        a = d[name] if n is None else d[name][:n]
        return np.ascontiguousarray(a, dtype=np.float32)  # stored in Fortran order


def make_model(name: str, args):
    from latentlab import IWAE, VAE, HierarchicalVAE, VampPriorVAE

    common = dict(
        likelihood="bernoulli",
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        patience=args.patience,
        warmup_epochs=args.warmup,
        seed=args.seed,
        verbose=False,
        epochs=0,  # set per chunk
    )
    if name == "iwae":
        return IWAE(latent_dim=50, k=args.k_train or 50, hidden=(200, 200), **common)
    if name == "vae":
        return VAE(latent_dim=40, hidden=(300, 300), **common)
    if name == "vamp":
        return VampPriorVAE(latent_dim=40, n_pseudo_inputs=500, k=args.k_train or 1, hidden=(300, 300), **common)
    if name in ("hvae", "hvae-vamp"):
        prior = "vamp" if name == "hvae-vamp" else "standard"
        return HierarchicalVAE(latent_dim=40, latent_dim2=40, prior=prior, n_pseudo_inputs=500,
                               k=args.k_train or 1, hidden=(300, 300), **common)
    raise SystemExit(f"unknown --model {name!r}")


def _machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores (shared), torch {torch.__version__}, {torch.get_num_threads()} thread(s)"


def train(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    X = load_split("train", args.subset)
    V = load_split("valid", None if args.subset is None else max(1000, args.subset // 5))
    settings = {k: v for k, v in vars(args).items() if k not in ("func",)}
    (out / "settings.json").write_text(json.dumps(settings, indent=2))
    est = make_model(args.model, args)
    est.set_params(checkpoint_dir=str(out / "checkpoint"))
    t0 = time.perf_counter()
    done = 0
    ck = out / "checkpoint" / "checkpoint.safetensors"
    if ck.exists():
        from latentlab.io import load_tensors

        _, meta = load_tensors(ck)
        done = int(meta["epoch"])
        print(f"resuming at epoch {done}", flush=True)
    while done < args.epochs:
        target = min(args.epochs, done + args.chunk)
        est.set_params(epochs=target)
        est.fit(X, X_val=V, resume=True)
        hist = est.history_
        for r in hist[done:]:
            keys = ("val_loss", "train_elbo", "val_elbo", "val_kl", "val_iw_bound")
            print(f"epoch {r['epoch']:4d}  " + "  ".join(f"{k} {r[k]:.3f}" for k in keys if k in r)
                  + f"  {r['time_s']:.0f}s", flush=True)
        done = len(hist)
        est.save(out / "model")
        print(f"[{(time.perf_counter() - t0) / 3600:.2f} h] saved best weights (epoch {est.best_epoch_}) to "
              f"{out / 'model'}", flush=True)
        if est.stopped_early_:
            print("early stopping: validation loss has not improved for "
                  f"{args.patience} epochs", flush=True)
            break
        if args.max_hours and (time.perf_counter() - t0) / 3600 >= args.max_hours:
            print(f"time budget of {args.max_hours} h reached", flush=True)
            break


def evaluate(args) -> None:
    import torch

    from latentlab import load
    from latentlab.evaluation import log_likelihood

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    model = load(out / "model")
    settings = json.loads((out / "settings.json").read_text())
    T = load_split("test", args.n_test)
    t0 = time.perf_counter()
    ll = log_likelihood(model, T, k=args.k, seed=0)
    secs = time.perf_counter() - t0
    hist = model.history_
    best = hist[model.best_epoch_ - 1] if model.best_epoch_ else hist[-1]
    train_s = sum(r["time_s"] for r in hist)
    result = {
        "model": settings["model"],
        "class": type(model).__name__,
        "test_nll": -ll.mean,
        "test_nll_se": ll.stderr,
        "test_elbo": float(np.mean(ll.elbo)) if getattr(ll, "elbo", None) is not None else None,
        "k": args.k,
        "n_test": len(T),
        "epochs_run": len(hist),
        "best_epoch": model.best_epoch_,
        "best_val_loss": best.get("val_loss"),
        "train_hours": train_s / 3600,
        "eval_minutes": secs / 60,
        "machine": _machine(),
        "settings": {k: settings[k] for k in ("lr", "batch_size", "warmup", "patience", "lr_schedule", "k_train",
                                              "seed", "subset", "threads") if k in settings},
        "params": model.get_params(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: result[k] for k in ("model", "test_nll", "test_nll_se", "test_elbo", "epochs_run",
                                               "best_epoch", "train_hours", "eval_minutes")}, indent=2))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(required=True)
    t = sub.add_parser("train", help="train (or resume) a model; saves OUT/model after every chunk")
    t.add_argument("--model", required=True, choices=["iwae", "vae", "vamp", "hvae", "hvae-vamp"])
    t.add_argument("--out", required=True)
    t.add_argument("--epochs", type=int, default=2000, help="the most epochs (early stopping usually ends first)")
    t.add_argument("--chunk", type=int, default=10, help="epochs between progress reports and saves")
    t.add_argument("--max-hours", type=float, default=None, help="stop after the chunk that crosses this budget")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--lr-schedule", default="plateau", choices=["constant", "plateau"])
    t.add_argument("--batch-size", type=int, default=100)
    t.add_argument("--warmup", type=float, default=10.0, help="KL warm-up epochs")
    t.add_argument("--patience", type=int, default=50)
    t.add_argument("--k-train", type=int, default=None, help="importance samples in training (model default)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--subset", type=int, default=None, help="train on the first N examples (quick runs)")
    t.add_argument("--threads", type=int, default=1)
    t.set_defaults(func=train)
    e = sub.add_parser("evaluate", help="test NLL of OUT/model with K importance samples")
    e.add_argument("--out", required=True)
    e.add_argument("--k", type=int, default=5000)
    e.add_argument("--n-test", type=int, default=None, help="first N test examples (quick checks)")
    e.add_argument("--threads", type=int, default=1)
    e.set_defaults(func=evaluate)
    args = p.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
