"""Training throughput of the VAE family against the step's matrix-multiply ceiling, side by side.

For each model (``--model vae|vamp|hvae|iwae|all``), in this one process, interleaved over rounds:

- **latentlab**: ``Model(...).fit(X)`` through the public API, default settings except the
  model's shape, the Bernoulli likelihood and the batch size; wall clock of the whole call.
- **plain loop**: the loop one writes by hand for the same model: a DataLoader over a
  TensorDataset with shuffling, Adam, ``loss.backward()``, on latentlab's own module and loss
  (so the model is the same to the last parameter; only the training machinery differs).
- **the ceiling**: the time the step's matrix multiplies take alone. The multiplies are read off
  one step of the plain loop (forward and backward, recorded at the dispatcher:
  ``aten::mm/addmm/bmm/baddbmm`` with their shapes and layouts), then each is timed in place, in
  the step's order, with torch's BLAS (MKL on x86) and with NumPy's (OpenBLAS); the faster
  library shape by shape gives the ceiling that any choice of BLAS allows, torch's alone the
  one every contender here multiplies with.

Then, for latentlab's fit, where the rest of the time goes: torch's profiler over one epoch of a
subset, self time per operator, GEMMs and the largest others, in ms per step.

The four configurations (issue 17):

- ``vae``: VAE 784-512-256-40, batch 128 (benchmarks/static_mnist.py's model);
- ``vamp``: VampPriorVAE K = 500, 784-300-300-40, batch 100 (Tomczak & Welling);
- ``hvae``: HierarchicalVAE z1 = z2 = 40 with a VampPrior (K = 500) on z2, 784-300-300, batch 100;
- ``iwae``: IWAE k = 50, 784-200-200-50, batch 100 (Burda et al.).

    python benchmarks/throughput_family.py --model all          # records its table in BENCHMARKS.md
    python benchmarks/throughput_family.py --model vamp --quick # 1 round, not recorded
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import require_mnist  # noqa: E402
from benchmarks_md import REPO, command_line, git_revision, machine_info, machine_line, update_section  # noqa: E402

sys.path.insert(0, str(REPO / "src"))
import latentlab  # noqa: E402
from latentlab.training import trainer as _trainer  # noqa: E402

HEADING = "Training throughput, the VAE family against its GEMM ceiling (`benchmarks/throughput_family.py`)"
RESULTS = HERE / "results" / "throughput_family.json"
GOAL = 0.80


def configs():
    common = dict(likelihood="bernoulli", lr=1e-3, validation_fraction=0.0, patience=None, tol=0.0, verbose=False)
    return {
        "vae": ("VAE 784-512-256-40, batch 128",
                lambda: latentlab.VAE(latent_dim=40, hidden=(512, 256), batch_size=128, **common)),
        "vamp": ("VampPrior K=500, 784-300-300-40, batch 100",
                 lambda: latentlab.VampPriorVAE(latent_dim=40, n_pseudo_inputs=500, hidden=(300, 300), batch_size=100,
                                                **common)),
        "hvae": ("HVAE z1=z2=40 + VampPrior K=500 on z2, 784-300-300, batch 100",
                 lambda: latentlab.HierarchicalVAE(latent_dim=40, latent_dim2=40, prior="vamp", n_pseudo_inputs=500,
                                                   hidden=(300, 300), batch_size=100, **common)),
        "iwae": ("IWAE k=50, 784-200-200-50, batch 100",
                 lambda: latentlab.IWAE(latent_dim=50, k=50, hidden=(200, 200), batch_size=100, **common)),
    }


# ----------------------------------------------------------------------------- the step's GEMMs
_A = torch.ops.aten
_GEMMS = {_A.mm.default: (0, 1), _A.addmm.default: (1, 2), _A.bmm.default: (0, 1), _A.baddbmm.default: (1, 2)}


class GemmRecorder(TorchDispatchMode):
    """Records every matrix multiply that reaches the dispatcher: (a's shape, a transposed?, b's ...)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in _GEMMS:
            i, j = _GEMMS[func]
            a, b = args[i], args[j]
            self.calls.append((tuple(a.shape), _transposed(a), tuple(b.shape), _transposed(b)))
        return func(*args, **(kwargs or {}))


def _transposed(t: torch.Tensor) -> bool:
    return t.dim() >= 2 and t.stride(-2) == 1 and t.shape[-2] > 1


def gemm_flops(calls) -> float:
    return float(sum(2 * np.prod(a) * b[-1] for a, _, b, _ in calls))


def _operand(shape, transposed, g):
    if not transposed:
        return torch.randn(*shape, generator=g)
    return torch.randn(*shape[:-2], shape[-1], shape[-2], generator=g).transpose(-1, -2)


def _operands(calls):
    """Random operands of the recorded shapes and layouts, seeded."""
    g = torch.Generator().manual_seed(0)
    return [(_operand(a, ta, g), _operand(b, tb, g)) for a, ta, b, tb in calls]


def gemm_times(calls, reps: int) -> dict[str, float]:
    """Seconds per step if only these multiplies ran, by library; "best" takes the faster per shape."""
    from threadpoolctl import threadpool_limits

    mats = _operands(calls)
    np_mats = [(a.numpy(), b.numpy()) for a, b in mats]
    libs = {"torch": lambda i: torch.matmul(*mats[i]), "numpy": lambda i: np.matmul(*np_mats[i])}
    per = {}
    with threadpool_limits(torch.get_num_threads(), user_api="blas"):
        for name, mm in libs.items():
            for _ in range(5):
                for i in range(len(mats)):
                    mm(i)
            times = [0.0] * len(mats)
            for _ in range(reps):
                for i in range(len(mats)):
                    t = time.perf_counter()
                    mm(i)
                    times[i] += time.perf_counter() - t
            per[name] = [t / reps for t in times]
    out = {name: sum(t) for name, t in per.items()}
    out["best"] = sum(min(ts) for ts in zip(*per.values()))
    return out


def gemm_times_after_adam(calls, n_params: int, reps: int) -> dict[str, float]:
    """The step's multiplies as a trainer meets them: each pass over them (torch's BLAS) follows one
    fused Adam update of ``n_params`` parameters, the update every Adam trainer makes between two
    steps, which streams parameters, gradients and both moments through the caches. Returns the
    seconds per step of the multiplies so timed ("gemm") and of the Adam update alone ("adam")."""
    g = torch.Generator().manual_seed(1)
    mats = _operands(calls)
    w = torch.randn(n_params, generator=g, requires_grad=True)
    w.grad = torch.randn(n_params, generator=g) * 1e-3
    try:
        opt = torch.optim.Adam([w], lr=1e-3, fused=True)
    except (RuntimeError, ValueError, TypeError):
        opt = torch.optim.Adam([w], lr=1e-3, foreach=True)
    gemm, adam = [], []
    for r in range(reps + 5):
        t = time.perf_counter()
        opt.step()
        t1 = time.perf_counter()
        for a, b in mats:
            torch.matmul(a, b)
        t2 = time.perf_counter()
        if r >= 5:
            adam.append(t1 - t)
            gemm.append(t2 - t1)
    return {"gemm": statistics.median(gemm), "adam": statistics.median(adam)}


# ----------------------------------------------------------------------------- the plain loop
def built(make, X):
    """A fitted-for-one-step estimator: its module and objective, for the plain loop to train."""
    est = make().set_params(epochs=1, seed=0)
    bs = est.batch_size
    est.fit(X[: 2 * bs])
    return est


def plain_loop(est, X: torch.Tensor, epochs: int, seed: int) -> None:
    torch.manual_seed(seed)
    module, objective = est.module_, est._objective()
    module.train()
    opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=est.lr)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X), batch_size=est.batch_size, shuffle=True)
    for e in range(epochs):
        for s, batch in enumerate(loader):  # batch: (x,), as latentlab's objectives take it
            opt.zero_grad()
            loss, _ = objective(module, batch, e + s / len(loader))
            loss.backward()
            opt.step()


def plain_step_gemms(est, X: torch.Tensor):
    module, objective = est.module_, est._objective()
    x = X[: est.batch_size]
    for p in module.parameters():
        p.grad = None
    rec = GemmRecorder()
    with rec:
        loss, _ = objective(module, (x,), 1.0)
        loss.backward()
    return rec.calls


def latentlab_step_gemms(make, X):
    """The multiplies of one of latentlab's own training steps (its fused path where it has one)."""
    seen = {}
    original = _trainer.make_step

    def recording_make_step(*a, **kw):
        step = original(*a, **kw)

        class Recording:
            flat = step.flat

            def __call__(self, batch, progress):
                if "calls" in seen:
                    return step(batch, progress)
                rec = GemmRecorder()
                with rec:
                    out = step(batch, progress)
                seen["calls"] = rec.calls
                return out

        return Recording()

    _trainer.make_step = recording_make_step
    try:
        est = make().set_params(epochs=1, seed=0)
        est.fit(X[: est.batch_size])
    finally:
        _trainer.make_step = original
    return seen["calls"]


def where_time_goes(make, X, epochs: int = 1) -> dict:
    """torch's profiler over the epochs of latentlab's fit (steps, optimizer, moving average; not the
    set-up): self time per operator, ms per step."""
    from torch.profiler import ProfilerActivity, profile

    est = make().set_params(epochs=epochs, seed=0)
    steps = epochs * -(-len(X) // est.batch_size)
    original = _trainer._Loop.run_epoch
    spent = {"wall": 0.0}
    prof = profile(activities=[ProfilerActivity.CPU])

    def profiled(self, *a, **kw):
        prof.start()
        t = time.perf_counter()
        try:
            return original(self, *a, **kw)
        finally:
            spent["wall"] += time.perf_counter() - t
            prof.stop()

    _trainer._Loop.run_epoch = profiled
    try:
        est.fit(X)
    finally:
        _trainer._Loop.run_epoch = original
    gemm_ops = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
    rows = [(e.key, e.self_cpu_time_total / 1e3 / steps) for e in prof.key_averages()]
    gemm = sum(ms for k, ms in rows if k in gemm_ops)
    others = sorted(((k, ms) for k, ms in rows if k not in gemm_ops), key=lambda r: -r[1])
    total = sum(ms for _, ms in rows)
    return {"ms_per_step_profiled": spent["wall"] * 1e3 / steps, "gemm_ms": gemm, "other_ms": total - gemm,
            "top_other": [[k, round(ms, 3)] for k, ms in others[:6]]}


# ----------------------------------------------------------------------------- main
def measure(name, desc, make, Xn, args) -> dict:
    X = torch.from_numpy(Xn)
    n = len(Xn)
    print(f"\n== {desc}: {n} training images, {args.epochs} epoch(s) per timed run", flush=True)
    est0 = built(make, Xn)
    rates = {"latentlab": [], "plain loop": []}
    for r in range(args.rounds):
        order = list(rates) if r % 2 == 0 else list(rates)[::-1]
        for c in order:
            t = time.perf_counter()
            if c == "latentlab":
                make().set_params(epochs=args.epochs, seed=r).fit(Xn)
            else:
                plain_loop(built(make, Xn), X, args.epochs, r)
            rates[c].append(args.epochs * n / (time.perf_counter() - t))
            print(f"  round {r + 1} {c:12s} {rates[c][-1]:8.0f} samples/s", flush=True)
    calls = plain_step_gemms(est0, X)
    own = latentlab_step_gemms(make, Xn)
    times = gemm_times(calls, args.reps)
    n_params = sum(p.numel() for p in est0.module_.parameters() if p.requires_grad)
    after = gemm_times_after_adam(calls, n_params, args.reps)
    bs = est0.batch_size
    med = {k: statistics.median(v) for k, v in rates.items()}
    prof = where_time_goes(make, Xn[: args.profile_rows])
    rec = {
        "model": name, "description": desc, "batch": bs, "images": n, "epochs": args.epochs, "rounds": args.rounds,
        "samples_per_s": med, "rounds_samples_per_s": rates,
        "gemm_calls": len(calls), "gemm_gflop_per_step": gemm_flops(calls) / 1e9,
        "latentlab_gemm_calls": len(own), "latentlab_gemm_gflop_per_step": gemm_flops(own) / 1e9,
        "gemm_step_s": times, "ceiling_best": bs / times["best"], "ceiling_torch": bs / times["torch"],
        "profile": prof, "parameters": n_params, "after_adam_s": after,
        "ceiling_with_adam": bs / (after["gemm"] + after["adam"]),
    }
    rec["of_best"] = med["latentlab"] / rec["ceiling_best"]
    rec["of_torch"] = med["latentlab"] / rec["ceiling_torch"]
    rec["vs_plain"] = med["latentlab"] / med["plain loop"]
    rec["of_with_adam"] = med["latentlab"] / rec["ceiling_with_adam"]
    print(f"  GEMMs of the step: {len(calls)} multiplies, {rec['gemm_gflop_per_step']:.3f} GFLOP "
          f"(latentlab's own step: {len(own)}, {rec['latentlab_gemm_gflop_per_step']:.3f} GFLOP)")
    print(f"  ceiling {rec['ceiling_best']:.0f} samples/s (faster BLAS per shape), {rec['ceiling_torch']:.0f} (torch's BLAS)")
    print(f"  latentlab {med['latentlab']:.0f} samples/s: {rec['of_best']:.0%} of the ceiling, {rec['of_torch']:.0%} of "
          f"torch's; {rec['vs_plain']:.2f}x the plain loop")
    print(f"  after one fused Adam update of {n_params:,} parameters ({after['adam'] * 1e3:.2f} ms): the GEMMs take "
          f"{after['gemm'] * 1e3:.2f} ms against {times['torch'] * 1e3:.2f} ms warm; GEMMs + Adam "
          f"{rec['ceiling_with_adam']:.0f} samples/s, latentlab at {rec['of_with_adam']:.0%} of that", flush=True)
    print(f"  profiled fit: {prof['ms_per_step_profiled']:.1f} ms/step, GEMMs {prof['gemm_ms']:.1f} ms, the rest "
          f"{prof['other_ms']:.1f} ms; largest: " + ", ".join(f"{k} {ms:.2f}" for k, ms in prof["top_other"]), flush=True)
    return rec


def render(record) -> str:
    lines = [f"Goal: >= {GOAL:.0%} of the ceiling for every model (issue 17). Samples/s: the median over interleaved "
             "rounds, the wall clock of the whole fit call (latentlab) or loop (plain). The ceiling: the same step's "
             "matrix multiplies alone, read off one plain-loop step at the dispatcher and timed in place; "
             "'faster BLAS' takes torch's MKL or NumPy's OpenBLAS, whichever is faster shape by shape.", "",
             "| model | latentlab samples/s | plain loop samples/s | latentlab / plain | ceiling, faster BLAS | "
             "% of it | ceiling, torch's BLAS | % of it | goal |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in record["models"]:
        s = r["samples_per_s"]
        lines.append(f"| {r['description']} | {s['latentlab']:,.0f} | {s['plain loop']:,.0f} | {r['vs_plain']:.2f}x | "
                     f"{r['ceiling_best']:,.0f} | {r['of_best']:.0%} | {r['ceiling_torch']:,.0f} | {r['of_torch']:.0%} | "
                     f"{'met' if r['of_best'] >= GOAL else 'missed'} |")
    if all("after_adam_s" in r for r in record["models"]):
        lines += ["", "The same multiplies as a trainer meets them: each pass over them (torch's BLAS) follows one fused "
                  "Adam update of the model's parameters, which every Adam trainer makes between two steps and which "
                  "streams parameters, gradients and both moments through the caches. The second ceiling adds that "
                  "update's own time: no Adam trainer, latentlab's or the plain loop, can pass it.", "",
                  "| model | parameters | Adam update (ms) | GEMMs warm (ms) | GEMMs after the update (ms) | "
                  "ceiling, GEMMs + Adam (samples/s) | latentlab, % of it |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in record["models"]:
            a = r["after_adam_s"]
            lines.append(f"| {r['description']} | {r['parameters']:,} | {a['adam'] * 1e3:.2f} | "
                         f"{r['gemm_step_s']['torch'] * 1e3:.2f} | {a['gemm'] * 1e3:.2f} | "
                         f"{r['ceiling_with_adam']:,.0f} | {r['of_with_adam']:.0%} |")
    lines += ["", "Where latentlab's time goes (torch's profiler over one epoch of a subset, self time per step; the "
              "profiler's own overhead inflates the small operators):", ""]
    for r in record["models"]:
        p = r["profile"]
        top = ", ".join(f"`{k}` {ms:.2f}" for k, ms in p["top_other"])
        lines.append(f"- {r['description']}: {p['ms_per_step_profiled']:.1f} ms per step profiled; GEMMs "
                     f"{p['gemm_ms']:.1f} ms, everything else {p['other_ms']:.1f} ms; the largest others (ms): {top}. "
                     f"Step GEMMs: {r['gemm_calls']} multiplies, {r['gemm_gflop_per_step']:.3f} GFLOP (latentlab's own "
                     f"step: {r['latentlab_gemm_calls']}, {r['latentlab_gemm_gflop_per_step']:.3f} GFLOP).")
    lines += ["", f"Command: `{record['command']}` (revision {record['revision']}, {record['date']}, torch threads "
              f"{record['threads']}). Machine: {machine_line(record['machine'])}."]
    if record.get("note"):
        lines += ["", record["note"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="all", choices=["all", *configs()])
    ap.add_argument("--data", default=None, help="binarized_mnist.npz (default: $LATENTLAB_DATA or ../shared/data)")
    ap.add_argument("--images", type=int, default=10000, help="training images per timed run")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=30, help="repetitions of the GEMM sequence for the ceiling")
    ap.add_argument("--profile-rows", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument("--quick", action="store_true", help="1 round on 2,000 images, not recorded")
    ap.add_argument("--note", default=None)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.images, args.reps, args.profile_rows, args.no_write = 1, 2000, 5, 500, True
    if args.threads:
        torch.set_num_threads(args.threads)
    with np.load(require_mnist(args.data)) as d:
        Xn = np.ascontiguousarray(d["train"][: args.images], dtype=np.float32)
    import warnings

    warnings.simplefilter("ignore")  # the fits end at their epoch budget by design
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # the first optimizer imports torch._dynamo: pay it once
    names = list(configs()) if args.model == "all" else [args.model]
    models = [measure(k, *configs()[k], Xn, args) for k in names]
    record = {"models": models, "command": command_line(), "revision": git_revision(), "machine": machine_info(),
              "threads": torch.get_num_threads(), "date": _dt.date.today().isoformat(), "note": args.note}
    if not args.no_write:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(record, indent=1) + "\n")
        update_section(REPO / "BENCHMARKS.md", HEADING, render(record))
        print(f"\nrecorded in {RESULTS.relative_to(REPO)} and BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
