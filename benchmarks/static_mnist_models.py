"""Static binarized MNIST for the VAE family: IWAE, VampPrior, hierarchical VAEs.

The protocol of benchmarks/static_mnist.py: train on ``train`` (50,000 images), early-stop on
``valid`` (10,000; the validation loss is the model's training objective: -ELBO, or -bound for
k > 1), report the test negative log-likelihood by importance sampling with K = 5000 samples per
image (``latentlab.evaluation.evaluate``) with its standard error; Bernoulli likelihood, MLPs.

Goals (issue 8): IWAE (k = 50) <= 86.5 nats (anchors 87.10 Burda et al., 86.82 Pythae);
VampPrior <= 85.5 (anchors 85.57 Tomczak & Welling, 85.79 Pythae); the best model <= 84.0.

Two phases, so that a long run can be stopped, resumed and evaluated at any point:

    # train (resumable: the same command continues from OUT/checkpoint)
    python benchmarks/static_mnist_models.py train --model hvae-vamp --out benchmarks/runs/hvae-vamp
    # test NLL of the best weights so far, recorded in BENCHMARKS.md
    python benchmarks/static_mnist_models.py evaluate --out benchmarks/runs/hvae-vamp

Training runs in chunks of ``--chunk`` epochs; each chunk resumes the checkpoint (the trainer's
resume reproduces an uninterrupted CPU run exactly), prints the epochs, saves the early-stopping
best weights so far to OUT/model, and updates this run's record in
benchmarks/results/static_mnist_models.json (so runs that are never evaluated are recorded too).
``--max-hours`` stops after the chunk that crosses the budget.

Models (``--model``; the papers' settings where the CPU allows):
- ``iwae``: IWAE, k = 50, one stochastic layer of 50, MLP 200-200 (Burda et al., 2016).
- ``vamp``: VampPriorVAE, 40 latent, K = 500 pseudo-inputs, MLP 300-300 (Tomczak & Welling, 2018).
- ``hvae``: HierarchicalVAE, z1 = z2 = 40, N(0, I) on z2, MLP 300-300.
- ``hvae-vamp``: HierarchicalVAE with a VampPrior (K = 500) on z2 (Tomczak & Welling's HVAE).
- ``vae``: the plain VAE with vamp's networks (a reference).
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

HEADING = "Static binarized MNIST: the VAE family (`benchmarks/static_mnist_models.py`)"
RESULTS = HERE / "results" / "static_mnist_models.json"
GOALS = [
    ("iwae", "IWAE (k = 50)", 86.5, "87.10 (Burda et al.), 86.82 (Pythae)"),
    ("vamp", "VampPrior", 85.5, "85.57 (Tomczak & Welling), 85.79 (Pythae)"),
    (None, "best latentlab model", 84.0, "83.19 (Tomczak & Welling's HVAE + VampPrior)"),
]
MODELS = ("iwae", "vae", "vamp", "hvae", "hvae-vamp")


def find_data(arg: str | None = None) -> Path:
    src = arg or os.environ.get("LATENTLAB_DATA")
    if src:
        p = Path(src)
        cand = p if p.suffix == ".npz" else p / "binarized_mnist.npz"
    else:
        cand = REPO.parent / "shared" / "data" / "binarized_mnist.npz"
    if not cand.is_file():
        raise SystemExit("error: binarized_mnist.npz not found; pass --data PATH or set LATENTLAB_DATA.")
    return cand


def load_split(path: Path, name: str, n: int | None = None):
    import numpy as np

    with np.load(path) as d:
        a = d[name] if n is None else d[name][:n]
        return np.ascontiguousarray(a, dtype=np.float32)  # stored in Fortran order


def make_model(a):
    from latentlab import IWAE, VAE, HierarchicalVAE, VampPriorVAE

    common = dict(likelihood="bernoulli", batch_size=a.batch_size, lr=a.lr, lr_schedule=a.lr_schedule,
                  patience=a.patience, warmup_epochs=a.warmup, seed=a.seed, verbose=False, epochs=1,
                  activation=getattr(a, "activation", "relu"), ema=getattr(a, "ema", None))
    if a.model == "iwae":
        return IWAE(latent_dim=50, k=a.k_train or 50, hidden=(200, 200), **common)
    if a.model == "vae":
        return VAE(latent_dim=40, hidden=(300, 300), **common)
    if a.model == "vamp":
        return VampPriorVAE(latent_dim=40, n_pseudo_inputs=500, k=a.k_train or 1, hidden=(300, 300), **common)
    prior = "vamp" if a.model == "hvae-vamp" else "standard"
    return HierarchicalVAE(latent_dim=40, latent_dim2=40, prior=prior, n_pseudo_inputs=500, k=a.k_train or 1,
                           hidden=(300, 300), **common)


def describe(est) -> str:
    p = est.get_params()
    net = "784-" + "-".join(map(str, p["hidden"])) + (" gated" if p["activation"] == "gated" else "")
    name = type(est).__name__
    if name == "IWAE":
        return f"IWAE k={p['k']}, {net}-{p['latent_dim']}"
    if name == "VampPriorVAE":
        return f"VampPrior K={p['n_pseudo_inputs']}, {net}-{p['latent_dim']}" + (f", k={p['k']}" if p["k"] > 1 else "")
    if name == "HierarchicalVAE":
        prior = f"VampPrior K={p['n_pseudo_inputs']}" if p["prior"] == "vamp" else "N(0, I)"
        return (f"2-layer HVAE z1={p['latent_dim']} z2={p['latent_dim2']}, {prior} on z2, {net}"
                + (f", k={p['k']}" if p["k"] > 1 else ""))
    return f"VAE {net}-{p['latent_dim']}"


# ------------------------------------------------------------------------------ the record
def _load_runs(path: Path) -> list:
    return json.loads(path.read_text()) if path.exists() else []


def _save_run(entry: dict, results: Path, benchmarks: Path | None) -> None:
    from latentlab.io import atomic_write_text

    results.parent.mkdir(parents=True, exist_ok=True)
    runs = [r for r in _load_runs(results) if r["id"] != entry["id"]] + [entry]
    runs.sort(key=lambda r: r["started"])
    atomic_write_text(results, json.dumps(runs, indent=1) + "\n")
    if benchmarks is not None:
        update_section(benchmarks, HEADING, render(runs))


def _fmt(v, nd=2):
    return "" if v is None else f"{v:.{nd}f}"


def _units(r) -> str:
    if "active_units_z1_z2" in r:
        a, b = r["active_units_z1_z2"]
        return f"{r['active_units']} (z1 {a}, z2 {b})"
    return str(r.get("active_units", ""))


def render(runs) -> str:
    full = [r for r in runs if "test_nll" in r and r.get("test_images") == 10000 and r.get("k") == 5000
            and not r["settings"].get("subset")]
    lines = [
        "The literature's protocol (as `benchmarks/static_mnist.py`): train on the 50,000 training images, "
        "early-stop on the 10,000 validation images (validation loss = the training objective), test negative "
        "log-likelihood by importance sampling with K = 5000 samples per image (`latentlab.evaluation.evaluate`), "
        "± its standard error over the 10,000 test images. Bernoulli likelihood, MLP networks, Adam.",
        "",
        "| goal | target (nats) | anchors | best full run | verdict |",
        "|---|---|---|---|---|",
    ]
    for key, label, target, anchors in GOALS:
        cands = [r for r in full if key is None or r["model"] == key]
        if key == "iwae":
            cands = [r for r in cands if r["params"].get("k") == 50]
        best = min(cands, key=lambda r: r["test_nll"], default=None)
        if best is None:
            lines.append(f"| {label} | <= {target} | {anchors} | no full run evaluated yet | not met |")
        else:
            verdict = "met" if best["test_nll"] <= target else "missed"
            lines.append(f"| {label} | <= {target} | {anchors} | {best['test_nll']:.2f} ± {best['test_nll_se']:.2f} "
                         f"({best['description']}, {best.get('eval_epochs', best['epochs'])} epochs) | {verdict} |")
    lines += [
        "",
        "Every run, evaluated or not (training status as last recorded; test columns empty until evaluated):",
        "",
        "| started | model | training | epochs (best) | status | best valid -objective | test NLL ± SE (K, images) | test -ELBO | KL | active units | hours (train + eval) | commands |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        s = r["settings"]
        train = (f"lr {s['lr']:g} {s['lr_schedule']}, batch {s['batch_size']}, warm-up {s['warmup']:g}, "
                 f"patience {s['patience']}" + (f", EMA {s['ema']:g}" if s.get("ema") else "")
                 + (f", first {s['subset']} train images" if s.get("subset") else ""))
        test = (f"**{r['test_nll']:.2f}** ± {r['test_nll_se']:.2f} (K={r['k']}, {r['test_images']})"
                if "test_nll" in r else "")
        if test and r.get("eval_best_epoch") is not None:
            test += f", weights of epoch {r['eval_best_epoch']}"
            if r["eval_best_epoch"] != r["best_epoch"]:
                test += f" (best is now epoch {r['best_epoch']}: not evaluated yet)"
        hours = f"{r['train_hours']:.2f}" + (f" + {r['eval_minutes'] / 60:.2f}" if "eval_minutes" in r else "")
        cmds = "; ".join(f"`{c}`" for c in [r["train_command"], *r.get("resume_commands", [])])
        cmds += f"; `{r['eval_command']}`" if "eval_command" in r else ""
        note = f"; note: {r['note']}" if r.get("note") else ""
        lines.append(
            f"| {r['started'][:16].replace('T', ' ')} | {r['description']} | {train} | {r['epochs']} ({r['best_epoch']}) | "
            f"{r['status']}{note} | {_fmt(r.get('best_val_loss'))} | {test} | {_fmt(-r['test_elbo'] if 'test_elbo' in r else None)} | "
            f"{_fmt(r.get('test_kl'))} | {_units(r)} | {hours} | {cmds} |")
    machines = sorted({machine_line(r["machine"]) for r in runs if "machine" in r})
    lines += ["", "Machine(s): " + "; ".join(machines) if machines else "", "",
              "The machine's 2 cores were shared with other jobs during these runs, so the hours are wall time "
              "under contention, not the cost of the computation alone."]
    return "\n".join(l for l in lines if l is not None)


# ------------------------------------------------------------------------------ the phases
def train(a) -> None:
    import warnings

    import torch
    from sklearn.exceptions import ConvergenceWarning

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = find_data(a.data)
    X = load_split(data, "train", a.subset)
    V = load_split(data, "valid", None if a.subset is None else max(1000, a.subset // 5))
    est = make_model(a)
    est.set_params(checkpoint_dir=str(out / "checkpoint"))
    results, bench = Path(a.results_file), (None if a.no_record else Path(a.benchmarks_file))
    run_id = str(out.resolve().relative_to(REPO)) if out.resolve().is_relative_to(REPO) else str(out.resolve())
    old = next((r for r in _load_runs(results) if r["id"] == run_id), None)
    settings = {k: v for k, v in vars(a).items() if k not in ("func", "no_record", "benchmarks_file", "results_file", "data")}
    cmd = command_line()
    entry = old or {"id": run_id, "model": a.model, "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                    "train_command": cmd, "settings": settings}
    if old is not None and cmd not in [old["train_command"], *old.get("resume_commands", [])]:
        entry.setdefault("resume_commands", []).append(cmd)
    entry.update(description=describe(est), params={k: v for k, v in est.get_params().items() if k != "checkpoint_dir"},
                 machine=machine_info(), revision=git_revision())
    t0 = time.perf_counter()
    done = 0
    ck = out / "checkpoint" / "checkpoint.safetensors"
    if ck.exists():
        from latentlab.io import load_tensors

        done = int(load_tensors(ck)[1]["epoch"])
        print(f"resuming at epoch {done}", flush=True)
    status = "epoch limit reached"
    while done < a.epochs:
        est.set_params(epochs=min(a.epochs, done + a.chunk))
        with warnings.catch_warnings():  # each chunk ends at its budget by design: not worth a warning
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, X_val=V, resume=True)
        hist = est.history_
        for r in hist[done:]:
            keys = ("val_loss", "train_elbo", "val_elbo", "val_kl", "val_iw_bound")
            print(f"epoch {r['epoch']:4d}  " + "  ".join(f"{k} {r[k]:.3f}" for k in keys if k in r)
                  + f"  {r['time_s']:.0f}s", flush=True)
        done = len(hist)
        est.save(out / "model")
        best = hist[est.best_epoch_ - 1]
        status = "training"
        if est.stopped_early_:
            status = f"early-stopped (patience {a.patience})"
        elif done >= a.epochs:
            status = "epoch limit reached"
        elif a.max_hours and (time.perf_counter() - t0) / 3600 >= a.max_hours:
            status = f"stopped at the {a.max_hours:g} h budget"
        entry.update(epochs=done, best_epoch=est.best_epoch_, best_val_loss=best["val_loss"],
                     best_val_elbo=best.get("val_elbo"), train_hours=sum(r["time_s"] for r in hist) / 3600,
                     status=status, updated=_dt.datetime.now().astimezone().isoformat(timespec="seconds"))
        _save_run(entry, results, bench)
        print(f"saved the best weights (epoch {est.best_epoch_}, valid loss {best['val_loss']:.3f}) to {out / 'model'}; "
              f"{status}", flush=True)
        if status != "training":
            break


def evaluate(a) -> None:
    import torch

    from latentlab import load
    from latentlab.evaluation import evaluate as evaluate_model

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    results, bench = Path(a.results_file), (None if a.no_record else Path(a.benchmarks_file))
    run_id = str(out.resolve().relative_to(REPO)) if out.resolve().is_relative_to(REPO) else str(out.resolve())
    entry = next((r for r in _load_runs(results) if r["id"] == run_id), None)
    if entry is None:
        raise SystemExit(f"error: no training record for {run_id} in {results}; train it with this script first.")
    model = load(out / "model")
    T = load_split(find_data(a.data), "test", a.n_test)
    t0 = time.perf_counter()
    m = evaluate_model(model, T, k=a.k, seed=a.seed)
    hist = model.history_
    entry.update(
        epochs=len(hist), best_epoch=model.best_epoch_, eval_epochs=len(hist), eval_best_epoch=model.best_epoch_,
        k=a.k, test_images=len(T),
        test_nll=-m["log_likelihood"], test_nll_se=m["log_likelihood_se"], test_elbo=m["elbo"], test_kl=m["kl"],
        test_rec=m["rec"], active_units=m["active_units"], bits_per_dim=m["bits_per_dim"],
        eval_minutes=(time.perf_counter() - t0) / 60, eval_command=command_line(), eval_machine=machine_info(),
        eval_revision=git_revision(),
    )
    if type(model).__name__ == "HierarchicalVAE":  # active units per layer: is the top layer in use?
        from latentlab.evaluation import active_units

        _, activity = active_units(model, T)
        d1 = int(model.latent_dim)
        entry["active_units_z1_z2"] = [int((activity[:d1] > 0.01).sum()), int((activity[d1:] > 0.01).sum())]
    if entry.get("status") == "training":
        entry["status"] = "stopped by hand (training process ended before its budget)" if a.stopped else "training"
    if a.note:
        entry["note"] = a.note
    _save_run(entry, results, bench)
    print(json.dumps({k: entry[k] for k in ("description", "test_nll", "test_nll_se", "test_elbo", "test_kl",
                                             "active_units", "epochs", "best_epoch", "eval_minutes")}, indent=1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="binarized_mnist.npz (keys train/valid/test) or its folder")
    p.add_argument("--benchmarks-file", default=str(REPO / "BENCHMARKS.md"))
    p.add_argument("--results-file", default=str(RESULTS))
    p.add_argument("--no-record", action="store_true", help="update the JSON record only, not BENCHMARKS.md")
    sub = p.add_subparsers(required=True)
    t = sub.add_parser("train", help="train (or resume) a model; saves OUT/model after every chunk")
    t.add_argument("--model", required=True, choices=MODELS)
    t.add_argument("--out", required=True)
    t.add_argument("--epochs", type=int, default=2000, help="upper bound (early stopping usually ends first)")
    t.add_argument("--chunk", type=int, default=10, help="epochs between progress reports and saves")
    t.add_argument("--max-hours", type=float, default=None, help="stop after the chunk that crosses this budget")
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--lr-schedule", default="plateau", choices=["constant", "plateau"])
    t.add_argument("--batch-size", type=int, default=100)
    t.add_argument("--warmup", type=float, default=10.0, help="KL warm-up epochs")
    t.add_argument("--patience", type=int, default=50)
    t.add_argument("--ema", type=float, default=None, help="decay of the moving average of the weights (default: off)")
    t.add_argument("--activation", default="relu", help="hidden layers: relu, or gated (Tomczak & Welling's networks)")
    t.add_argument("--k-train", type=int, default=None, help="importance samples in the training bound (model default)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--subset", type=int, default=None, help="train on the first N images (quick runs)")
    t.add_argument("--threads", type=int, default=1)
    t.set_defaults(func=train)
    e = sub.add_parser("evaluate", help="test metrics of OUT/model, recorded")
    e.add_argument("--out", required=True)
    e.add_argument("--k", type=int, default=5000)
    e.add_argument("--n-test", type=int, default=None, help="the first N test images (quick checks)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--stopped", action="store_true", help="the training process was stopped by hand")
    e.add_argument("--note", default=None, help="a note for the record (e.g. why training stopped)")
    e.set_defaults(func=evaluate)
    a = p.parse_args(argv)
    a.func(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
