"""Training throughput of the MLP VAE 784-400-20 on static binarized MNIST, side by side.

Contenders, each timed in this one process, interleaved over several rounds (these machines are
shared and noisy, so the ratios measured together are what count):

(a) latentlab's trainer through its public API: ``VAE(...).fit(X)``, wall clock of the whole call;
(b) the loop the PyTorch examples write: DataLoader over a TensorDataset with shuffling, separate
    mean and log-variance layers, sigmoid + binary cross-entropy, Adam;
(c) Pythae's trainer with the same networks (``pip install pythae``; skipped with a message otherwise);
(d) the ceiling: the time the step's own matrix multiplies take alone (the same GEMM shapes in
    the step's order, float32, measured here), i.e. the rate if nothing but GEMMs ran; on the CPU
    each multiply is timed with torch's BLAS (MKL in the x86 wheels) and NumPy's (OpenBLAS) and
    the faster one counts. (d') is the same with torch's BLAS alone, which every contender uses.

All train the same model (784-400-20, ReLU, Bernoulli likelihood, analytic KL, one sample of z),
batch 128, Adam lr 1e-3, for the same number of epochs. Then (a), with its weight averaging off,
and (b) are trained for the same number of steps from several seeds and evaluated on the validation
split with one function, to show they reach the same loss within the seed-to-seed spread; (a) with
its default averaging is shown beside them.

    python benchmarks/throughput.py                 # full: 3 rounds of 2 epochs each
    python benchmarks/throughput.py --quick         # 1 round of 1 epoch, for a smoke check
    python benchmarks/throughput.py --compile       # also (a) with torch.compile
    python benchmarks/throughput.py --device cuda   # same on a GPU (also tries bf16 autocast)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import require_mnist, machine, machine_line, write_section  # noqa: E402
from benchmarks_md import command_line  # noqa: E402

D_IN, D_H, D_Z, BATCH, LR = 784, 400, 20, 128, 1e-3


# ----------------------------------------------------------------------------- (b) reference
class ExampleVAE(nn.Module):
    """As in pytorch/examples vae/main.py: fc1, fc21/fc22 (mean, log-variance), fc3, fc4, sigmoid."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(D_IN, D_H)
        self.fc21 = nn.Linear(D_H, D_Z)
        self.fc22 = nn.Linear(D_H, D_Z)
        self.fc3 = nn.Linear(D_Z, D_H)
        self.fc4 = nn.Linear(D_H, D_IN)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, D_IN))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def example_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, D_IN), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def run_reference(X: torch.Tensor, epochs: int, seed: int, device, max_steps=None):
    torch.manual_seed(seed)
    model = ExampleVAE().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X), batch_size=BATCH, shuffle=True)
    steps = 0
    model.train()
    for _ in range(epochs):
        for (x,) in loader:
            x = x.to(device)
            opt.zero_grad()
            recon, mu, logvar = model(x)
            loss = example_loss(recon, x, mu, logvar)
            loss.backward()
            opt.step()
            steps += 1
            if max_steps is not None and steps >= max_steps:
                return model
    return model


# ----------------------------------------------------------------------------- (a) latentlab
def latentlab_vae(epochs: int, seed: int, device: str, compile_: bool = False, **overrides):
    from latentlab import VAE

    return VAE(
        latent_dim=D_Z, hidden=(D_H,), likelihood="bernoulli", epochs=epochs, batch_size=BATCH, lr=LR,
        validation_fraction=0.0, patience=None, seed=seed, device=device, compile=compile_, verbose=False,
        **overrides,
    )


# ----------------------------------------------------------------------------- (c) Pythae
def pythae_available() -> bool:
    try:
        import pythae  # noqa: F401
    except Exception:
        return False
    return True


def run_pythae(X: torch.Tensor, epochs: int, seed: int, device, workdir: Path):
    import logging

    from pythae.data.datasets import BaseDataset
    from pythae.models import VAE as PVAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    logging.getLogger("pythae").setLevel(logging.ERROR)

    class Enc(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(D_IN, D_H)
            self.fc21 = nn.Linear(D_H, D_Z)
            self.fc22 = nn.Linear(D_H, D_Z)

        def forward(self, x):
            h = F.relu(self.fc1(x.reshape(x.shape[0], -1)))
            return ModelOutput(embedding=self.fc21(h), log_covariance=self.fc22(h))

    class Dec(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.fc3 = nn.Linear(D_Z, D_H)
            self.fc4 = nn.Linear(D_H, D_IN)

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.fc4(F.relu(self.fc3(z)))))

    torch.manual_seed(seed)
    cfg = VAEConfig(input_dim=(1, 28, 28), latent_dim=D_Z, reconstruction_loss="bce")
    model = PVAE(cfg, encoder=Enc(), decoder=Dec())
    tcfg = BaseTrainerConfig(
        output_dir=str(workdir), learning_rate=LR, per_device_train_batch_size=BATCH, num_epochs=epochs,
        optimizer_cls="Adam", keep_best_on_train=True, steps_saving=None, seed=seed,
        no_cuda=device.type != "cuda",
    )
    data = BaseDataset(X.reshape(-1, 1, 28, 28), torch.zeros(len(X)))
    trainer = BaseTrainer(model=model, train_dataset=data, training_config=tcfg)
    trainer.train()
    return model


# ----------------------------------------------------------------------------- (d) the ceiling
def gemm_flops_per_sample() -> int:
    """Multiply-add FLOPs of the step's GEMMs per example (forward, weight and input gradients)."""
    layers = [(D_IN, D_H), (D_H, 2 * D_Z), (D_Z, D_H), (D_H, D_IN)]
    fwd = sum(2 * a * b for a, b in layers)
    wgrad = fwd
    dgrad = sum(2 * a * b for a, b in layers[1:])  # no gradient with respect to the data
    return fwd + wgrad + dgrad


def gemm_step_times(device, reps: int = 300) -> dict[str, float]:
    """Seconds per step if only the step's GEMMs ran: every GEMM of one forward + backward, timed
    with each BLAS in this process (torch's, and on the CPU NumPy's too); "best" takes the faster
    library shape by shape, the ceiling that any choice of library allows."""
    g = torch.Generator(device="cpu").manual_seed(0)
    B = BATCH
    shapes = []
    for a, b in [(D_IN, D_H), (D_H, 2 * D_Z), (D_Z, D_H), (D_H, D_IN)]:
        shapes.append((B, a, b))  # forward: (B, a) @ (a, b)
        shapes.append((a, B, b))  # weight gradient: (a, B) @ (B, b)
    for a, b in [(D_H, 2 * D_Z), (D_Z, D_H), (D_H, D_IN)]:
        shapes.append((B, b, a))  # input gradient: (B, b) @ (b, a)
    mats = [(torch.randn(m, k, generator=g).to(device), torch.randn(k, n, generator=g).to(device)) for m, k, n in shapes]
    libs = {"torch": lambda a, b: torch.mm(a, b)}
    if device.type == "cpu":
        from threadpoolctl import threadpool_limits

        threadpool_limits(torch.get_num_threads(), user_api="blas")  # NumPy's OpenBLAS on torch's thread count
        mats_np = {id(a): (a.numpy(), b.numpy()) for a, b in mats}
        libs["numpy"] = lambda a, b: np.matmul(*mats_np[id(a)])
    per = {}
    for name, mm in libs.items():
        for a, b in mats * 20:  # warm-up
            mm(a, b)
        times = [0.0] * len(mats)
        for _ in range(reps):  # the step's sequence of shapes, each multiply timed in place
            for i, (a, b) in enumerate(mats):
                t = time.perf_counter()
                mm(a, b)
                _sync(device)
                times[i] += time.perf_counter() - t
        per[name] = [t / reps for t in times]
    out = {name: sum(t) for name, t in per.items()}
    out["best"] = sum(min(ts) for ts in zip(*per.values()))
    return out


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- loss check
@torch.no_grad()
def neg_elbo(encode, decode_probs, V: torch.Tensor, seed: int = 0) -> float:
    """-ELBO per example on V (Bernoulli, analytic KL, one z per example), the same code for all.

    encode: x -> (mu, logvar); decode_probs: z -> pixel probabilities.
    """
    g = torch.Generator().manual_seed(seed)
    mu, logvar = encode(V)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g)
    rec = F.binary_cross_entropy(decode_probs(z), V, reduction="sum")
    kl = 0.5 * torch.sum(mu.pow(2) + logvar.exp() - logvar - 1)
    return float(rec + kl) / len(V)


@contextlib.contextmanager
def torch_default_init():
    """Inside the block latentlab's MLPs keep PyTorch's default initialisation instead of starting
    orthogonal (``latentlab.nn.networks.orthogonal_init`` made a no-op): a diagnostic, so that the
    loss check can tell the starting point from the training machinery."""
    import latentlab.nn.networks as nets

    saved, nets.orthogonal_init = nets.orthogonal_init, (lambda module: module)
    try:
        yield
    finally:
        nets.orthogonal_init = saved


def same_loss_check(Xn, X, V, epochs: int, seeds, device) -> dict:
    """The same computation? latentlab with its weight averaging off (``ema=None``): its default
    returns the average over about the last 1/(1 - 0.999) = 1000 steps, which after a few epochs
    lags the running weights; and once more starting from PyTorch's default initialisation, as the
    example does, instead of latentlab's orthogonal one. The timed runs use the defaults."""
    variants = {"latentlab, ema=None, torch's default init": ({"ema": None}, torch_default_init),
                "latentlab, ema=None": ({"ema": None}, contextlib.nullcontext),
                "latentlab (defaults: ema=0.999, orthogonal init)": ({}, contextlib.nullcontext)}
    out = {"pytorch-example": [], **{k: [] for k in variants}}
    for s in seeds:
        for key, (kw, ctx) in variants.items():
            with ctx():
                vae = latentlab_vae(epochs, s, "cpu", **kw).fit(Xn)
            m = vae.module_.cpu().eval()
            out[key].append(neg_elbo(lambda x: (m.encode(x).mean, m.encode(x).logvar),
                                     lambda z: torch.sigmoid(m.decode(z)), V))
        ref = run_reference(X, epochs, s, torch.device("cpu")).eval()
        out["pytorch-example"].append(neg_elbo(ref.encode, ref.decode, V))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="binarized_mnist.npz (default: $LATENTLAB_DATA or ../shared/data)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2, help="epochs per timed run")
    ap.add_argument("--quick", action="store_true", help="1 round of 1 epoch, no loss check")
    ap.add_argument("--compile", action="store_true", help="also time latentlab with compile=True")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--check-epochs", type=int, default=3, help="epochs for the same-loss check (0: skip)")
    ap.add_argument("--check-seeds", type=int, default=3)
    ap.add_argument("--note", default=None, help="a sentence recorded under the table (the machine's load, say)")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.epochs, args.check_epochs = 1, 1, 0

    path = require_mnist(args.data)
    device = torch.device(args.device)
    d = np.load(path)
    Xn = np.ascontiguousarray(d["train"], dtype=np.float32)
    Vn = np.ascontiguousarray(d["valid"], dtype=np.float32)
    X, V = torch.from_numpy(Xn), torch.from_numpy(Vn)
    n = len(X)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}, {machine()['cpu']}")

    import tempfile

    contenders = {"latentlab": lambda s: latentlab_vae(args.epochs, s, args.device).fit(Xn)}
    if args.compile:
        contenders["latentlab+compile"] = lambda s: latentlab_vae(args.epochs, s, args.device, True).fit(Xn)
    contenders["pytorch-example"] = lambda s: run_reference(X, args.epochs, s, device)
    have_pythae = pythae_available()
    if have_pythae:
        tmp = Path(tempfile.mkdtemp())
        contenders["pythae"] = lambda s: run_pythae(X, args.epochs, s, device, tmp)
    else:
        print("(c) Pythae is not installed: pip install pythae to include it", file=sys.stderr)

    # One-time costs that no contender should carry alone: the first torch optimizer of a process
    # imports torch._dynamo (about 1.7 s here), whichever contender builds it first.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    rates: dict[str, list[float]] = {k: [] for k in contenders}
    for r in range(args.rounds):
        for name, fn in contenders.items():
            t = time.perf_counter()
            fn(r)
            _sync(device)
            rates[name].append(args.epochs * n / (time.perf_counter() - t))
            print(f"  round {r + 1} {name:18s} {rates[name][-1]:9.0f} samples/s", flush=True)

    steps_s = gemm_step_times(device)
    step_s = steps_s["best"]
    ceiling = BATCH / step_s
    step_flops = gemm_flops_per_sample() * BATCH
    gflops = step_flops / step_s / 1e9
    lib_rates = {k: step_flops / v / 1e9 for k, v in steps_s.items() if k != "best"}
    lib_text = ", ".join(f"{k} {v:.0f}" for k, v in lib_rates.items())
    torch_ceiling = BATCH / steps_s["torch"]
    print(f"GEMM rate of the step's shapes by library, GFLOP/s: {lib_text} (latentlab multiplies with torch's)")
    med = {k: statistics.median(v) for k, v in rates.items()}
    ours = med["latentlab"]
    print()
    print(f"{'contender':20s} {'samples/s':>10s} {'latentlab / it':>15s}")
    for k, v in med.items():
        print(f"{k:20s} {v:10.0f} {ours / v:15.2f}x")
    print(f"{'(d) GEMM ceiling':20s} {ceiling:10.0f}   (GEMMs alone at {gflops:.0f} GFLOP/s, the faster library per shape); latentlab reaches {ours / ceiling:.0%} of it")
    print(f"{'    torch BLAS only':20s} {torch_ceiling:10.0f}   latentlab reaches {ours / torch_ceiling:.0%} of it")

    check = None
    if args.check_epochs:
        steps = args.check_epochs * -(-n // BATCH)
        print(f"\nsame loss after the same {steps} steps ({args.check_epochs} epochs)? -ELBO on the 10k validation images, nats:")
        check = same_loss_check(Xn, X, V, args.check_epochs, range(args.check_seeds), device)
        for k, v in check.items():
            print(f"  {k:50s} " + "  ".join(f"{x:.2f}" for x in v) + f"   mean {np.mean(v):.2f} +- {np.std(v, ddof=1):.2f} (seed spread)")
        same = "latentlab, ema=None, torch's default init"
        diff = np.mean(check[same]) - np.mean(check["pytorch-example"])
        spread = max(np.std(check[same], ddof=1), np.std(check["pytorch-example"], ddof=1))
        print(f"  {same} against the example: difference of means {diff:+.2f} nats; seed-to-seed spread {spread:.2f}")

    if not args.no_write:
        lines = [
            f"`{command_line()}`",
            "",
            f"Machine: {machine_line()}. Model 784-400-20 MLP VAE, ReLU, Bernoulli likelihood, analytic KL, "
            f"one z sample, batch {BATCH}, Adam lr {LR}; {args.epochs} epoch(s) of the 50,000 training images per "
            f"timed run, {args.rounds} interleaved round(s), median shown; each rate is the wall clock of the whole call.",
            "",
            "| contender | samples/s | latentlab is |",
            "|---|---:|---:|",
        ]
        for k, v in med.items():
            lines.append(f"| {k} | {v:,.0f} | {ours / v:.2f}x |")
        lines.append(f"| (d) GEMM ceiling ({gflops:.0f} GFLOP/s, the faster library per shape) | {ceiling:,.0f} | {ours / ceiling:.0%} of it |")
        lines.append(f"| (d') GEMM ceiling with torch's BLAS alone | {torch_ceiling:,.0f} | {ours / torch_ceiling:.0%} of it |")
        lines.append("")
        lines.append(f"GEMM rates of the step's shapes by library (GFLOP/s): {lib_text}. Every contender multiplies "
                     "with torch's BLAS (MKL in the x86 wheels).")
        if not have_pythae:
            lines.append("\n(c) Pythae was not installed for this run.")
        if check:
            lines.append("")
            lines.append(f"Same loss after the same number of steps ({args.check_epochs} epochs), -ELBO on the validation images (nats), per seed:")
            for k, v in check.items():
                lines.append(f"- {k}: " + ", ".join(f"{x:.2f}" for x in v) + f" (mean {np.mean(v):.2f})")
            lines.append("")
            lines.append("The first latentlab row computes what the example does: weight averaging off (`ema=None`) and "
                         "PyTorch's default initialisation (a diagnostic switch in this script, not an option of latentlab). "
                         "The second starts orthogonal, as latentlab's MLPs do; the last is latentlab's defaults, whose "
                         "`ema=0.999` returns the average over about the last 1000 steps' weights. The timed runs above use "
                         "the defaults. These epochs are the very start of training. Whether the orthogonal start still costs "
                         "anything at early stopping is not measured here (`benchmarks/defaults.py` keeps it in both arms).")
        if args.note:
            lines += ["", args.note]
        title = "Training throughput, MLP VAE 784-400-20, batch 128" + ("" if device.type == "cpu" else f", {device.type.upper()}")
        write_section(title, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
