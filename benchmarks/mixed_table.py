"""A mixed-type table: how faithful are a VAE's samples of the Palmer penguins, column by column?

The table is the one the ``palmerpenguins`` package ships (344 penguins: species, island and sex
as text, four measurements as numbers; its ``year`` column is left out). latentlab refuses
missing values, so the 11 rows with one are dropped first (said on stdout). The rows are split at
random into a training three quarters and a held-out quarter; a VAE is fitted on the training
DataFrame as it is (``likelihood="auto"`` picks the mixed likelihood: a categorical over each
text column's categories, a Gaussian with its own learned sigma for each measurement), and
``n`` rows are drawn from it (z from the prior, then x from p(x|z): ``sample(n, mean=False)``).

Side by side, each against the held-out rows:

- **VAE**: its samples;
- **independent columns** (the baseline): each column drawn on its own from its training
  marginal (rows resampled column by column), so every marginal is right and every dependence
  between columns is lost;
- **training rows**: the training rows themselves, the floor that sampling noise of this many
  held-out rows allows.

Per categorical column the total variation distance between category frequencies, and the same
for the joint frequencies of (species, island, sex); per numeric column the mean and standard
deviation; for the numbers together the largest and the mean absolute difference between
correlation matrices. Also the held-out log-likelihood per row, in the table's own units: the
VAE's (importance-sampled) and the baseline's (each column's training frequencies, and a Gaussian
fitted to each measurement). Mean ± sd over seeds (each seed: its own split and its own training).

    python benchmarks/mixed_table.py                  # seeds 0 1 2, records in BENCHMARKS.md
    python benchmarks/mixed_table.py --seeds 0 --no-record
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchmarks_md import REPO, command_line, git_revision, machine_info, machine_line, update_section  # noqa: E402

sys.path.insert(0, str(REPO / "src"))

HEADING = "Mixed-type table: Palmer penguins, VAE samples column by column (`benchmarks/mixed_table.py`)"
RESULTS = HERE / "results" / "mixed_table.json"
CATEGORICAL = ["species", "island", "sex"]
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
SOURCES = [("vae", "VAE"), ("independent", "independent columns"), ("train", "training rows")]


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--latent-dim", type=int, default=2)
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    p.add_argument("--epochs", type=int, default=1000, help="upper bound; early stopping (patience 50) decides")
    p.add_argument("--n-samples", type=int, default=5000, help="rows drawn from the VAE and from the baseline")
    p.add_argument("--k", type=int, default=1000, help="importance samples for the VAE's log-likelihood")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-record", action="store_true")
    p.add_argument("--benchmarks-file", default=str(REPO / "BENCHMARKS.md"))
    p.add_argument("--results-file", default=str(RESULTS))
    return p.parse_args(argv)


def load_table():
    """The penguins without the year, rows with a missing value dropped (latentlab refuses them)."""
    import palmerpenguins

    raw = palmerpenguins.load_penguins()
    df = raw[CATEGORICAL[:2] + NUMERIC + CATEGORICAL[2:]]
    complete = df.dropna().reset_index(drop=True)
    print(f"penguins: {len(raw)} rows; {len(raw) - len(complete)} with a missing value dropped, {len(complete)} used", flush=True)
    return complete, len(raw)


def fidelity(S, ref) -> dict:
    """Per-column fidelity of the table S against the held-out rows ref."""
    import numpy as np

    out = {}
    for c in CATEGORICAL:
        cats = sorted(set(ref[c]) | set(S[c]))
        p = S[c].value_counts(normalize=True).reindex(cats, fill_value=0.0).to_numpy()
        q = ref[c].value_counts(normalize=True).reindex(cats, fill_value=0.0).to_numpy()
        out[f"tv_{c}"] = 0.5 * float(np.abs(p - q).sum())
    a = S.groupby(CATEGORICAL).size() / len(S)
    b = ref.groupby(CATEGORICAL).size() / len(ref)
    idx = a.index.union(b.index)
    out["tv_joint"] = 0.5 * float((a.reindex(idx, fill_value=0) - b.reindex(idx, fill_value=0)).abs().sum())
    for c in NUMERIC:
        out[f"mean_{c}"], out[f"sd_{c}"] = float(S[c].mean()), float(S[c].std())
    d = np.abs(S[NUMERIC].corr().to_numpy() - ref[NUMERIC].corr().to_numpy())[np.triu_indices(len(NUMERIC), 1)]
    out["corr_max"], out["corr_mean"] = float(d.max()), float(d.mean())
    return out


def baseline_loglik(train, test) -> float:
    """Held-out log-likelihood per row of independent columns: training frequencies for the
    categories, a Gaussian fitted to the training values for each measurement."""
    import numpy as np

    ll = np.zeros(len(test))
    for c in CATEGORICAL:
        freq = train[c].value_counts(normalize=True)
        ll += np.log(test[c].map(freq).fillna(1e-12).to_numpy())
    for c in NUMERIC:
        m, s = train[c].mean(), train[c].std(ddof=0)
        ll += -0.5 * ((test[c].to_numpy() - m) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)
    return float(ll.mean())


def measure(a) -> dict:
    import numpy as np
    import pandas as pd
    import torch

    from latentlab import VAE
    from latentlab.evaluation import evaluate

    if a.threads:
        torch.set_num_threads(a.threads)
    df, n_raw = load_table()
    runs = []
    for seed in a.seeds:
        perm = np.random.default_rng(seed).permutation(len(df))
        n_test = len(df) // 4
        test, train = df.iloc[perm[:n_test]].reset_index(drop=True), df.iloc[perm[n_test:]].reset_index(drop=True)
        t = time.perf_counter()
        vae = VAE(latent_dim=a.latent_dim, hidden=tuple(a.hidden), epochs=a.epochs, patience=50, batch_size=32,
                  seed=seed, verbose=False).fit(train)
        fit_s = time.perf_counter() - t
        rng = np.random.default_rng(seed + 100)
        indep = pd.DataFrame({c: train[c].to_numpy()[rng.integers(0, len(train), a.n_samples)] for c in df.columns})
        samples = {"vae": vae.sample(a.n_samples, seed=seed, mean=False), "independent": indep, "train": train}
        e = evaluate(vae, test, k=a.k, seed=seed)
        run = {"seed": seed, "n_train": len(train), "n_test": len(test), "epochs": vae.n_epochs_, "fit_seconds": fit_s,
               "likelihood": vae.likelihood_, "loglik_vae": e["log_likelihood"], "loglik_vae_se": e["log_likelihood_se"],
               "loglik_independent": baseline_loglik(train, test),
               "reconstruction_accuracy": e["reconstruction_accuracy"], "reconstruction_nrmse": e["reconstruction_nrmse"],
               "held_out": {f"mean_{c}": float(test[c].mean()) for c in NUMERIC} | {f"sd_{c}": float(test[c].std()) for c in NUMERIC},
               **{src: fidelity(S, test) for src, S in samples.items()}}
        runs.append(run)
        print(f"seed {seed}: {vae.n_epochs_} epochs, {fit_s:.1f} s; held-out log p(x) VAE {run['loglik_vae']:.2f}, "
              f"independent {run['loglik_independent']:.2f}; TV species VAE {run['vae']['tv_species']:.3f} "
              f"independent {run['independent']['tv_species']:.3f}; joint TV VAE {run['vae']['tv_joint']:.3f} "
              f"independent {run['independent']['tv_joint']:.3f}; corr max diff VAE {run['vae']['corr_max']:.3f} "
              f"independent {run['independent']['corr_max']:.3f}", flush=True)
    return {"runs": runs, "n_rows": len(df), "n_raw": n_raw}


def _ms(vals, fmt="{:.3f}") -> str:
    import numpy as np

    if len(vals) == 1:
        return fmt.format(vals[0])
    return f"{fmt.format(float(np.mean(vals)))} ± {fmt.format(float(np.std(vals, ddof=1)))}"


def render(res, a, seconds: float, info: dict) -> str:
    runs = res["runs"]
    seeds = [r["seed"] for r in runs]
    r0 = runs[0]

    def cells(key, fmt="{:.3f}"):
        return [_ms([r[src][key] for r in runs], fmt) for src, _ in SOURCES]

    lines = [
        f"The Palmer penguins as `palmerpenguins.load_penguins()` ships them ({res['n_raw']} rows; the {res['n_raw'] - res['n_rows']} "
        f"with a missing value dropped, as latentlab refuses them; the `year` column left out): species, island, sex (text) "
        f"and four measurements. Each seed splits the {res['n_rows']} rows at random, {r0['n_train']} train / {r0['n_test']} "
        f"held out, and fits `VAE(latent_dim={a.latent_dim}, hidden={tuple(a.hidden)}, batch_size=32, epochs<={a.epochs}, "
        "patience=50)` on the training DataFrame as it is (`likelihood=\"auto\"` picked "
        f"\"{r0['likelihood']}\": a categorical over each text column, a Gaussian with a learned sigma for each "
        f"measurement, standardized). {a.n_samples} rows drawn from it (z from the prior, x from p(x|z)) and "
        f"{a.n_samples} from the baseline (each column drawn alone from its training marginal) are compared with the "
        "held-out rows; the training rows themselves show the floor that the held-out rows' own sampling noise allows. "
        f"Mean ± sd over seeds {seeds}.",
        "",
        "| against the held-out rows | " + " | ".join(h for _, h in SOURCES) + " |",
        "|---|" + "---|" * len(SOURCES),
    ]
    for c in CATEGORICAL:
        lines.append(f"| {c}: TV distance of category frequencies | " + " | ".join(cells(f"tv_{c}")) + " |")
    lines.append("| species × island × sex: TV distance of joint frequencies | " + " | ".join(cells("tv_joint")) + " |")
    for c in NUMERIC:
        held = _ms([r["held_out"][f"mean_{c}"] for r in runs], "{:.1f}")
        lines.append(f"| {c}: mean (held out: {held}) | " + " | ".join(cells(f"mean_{c}", "{:.1f}")) + " |")
        held = _ms([r["held_out"][f"sd_{c}"] for r in runs], "{:.2f}")
        lines.append(f"| {c}: sd (held out: {held}) | " + " | ".join(cells(f"sd_{c}", "{:.2f}")) + " |")
    lines.append("| measurements: largest abs. difference of correlations | " + " | ".join(cells("corr_max")) + " |")
    lines.append("| measurements: mean abs. difference of correlations | " + " | ".join(cells("corr_mean")) + " |")
    lines.append(f"| held-out log-likelihood per row, nats (K={a.k} for the VAE) | {_ms([r['loglik_vae'] for r in runs], '{:.2f}')} "
                 f"| {_ms([r['loglik_independent'] for r in runs], '{:.2f}')} | |")

    def mean(src, key):
        return sum(r[src][key] for r in runs) / len(runs)

    def gap(key):  # share of the baseline-to-floor distance the VAE closes (1: as good as the training rows)
        return (mean("independent", key) - mean("vae", key)) / (mean("independent", key) - mean("train", key))

    lines += [
        "",
        f"- Marginals: the baseline draws each column from its own training marginal, so its category frequencies "
        f"are as close as the training rows' (species TV {mean('independent', 'tv_species'):.3f} against "
        f"{mean('train', 'tv_species'):.3f}); the VAE's are {mean('vae', 'tv_species'):.3f}.",
        f"- Dependence: the baseline loses it by construction (mean correlation error "
        f"{mean('independent', 'corr_mean'):.2f}, joint category TV {mean('independent', 'tv_joint'):.3f}); the VAE's are "
        f"{mean('vae', 'corr_mean'):.2f} and {mean('vae', 'tv_joint'):.3f}, against the floor's "
        f"{mean('train', 'corr_mean'):.2f} and {mean('train', 'tv_joint'):.3f}: it closes {gap('corr_mean'):.0%} and "
        f"{gap('tv_joint'):.0%} of the distance from the baseline to the floor.",
        f"- The VAE reconstructs {_ms([r['reconstruction_accuracy'] for r in runs])} of the held-out categorical cells "
        f"right, and the measurements with an RMSE of {_ms([r['reconstruction_nrmse'] for r in runs])} standard "
        f"deviations; it trained {_ms([r['epochs'] for r in runs], '{:.0f}')} epochs in "
        f"{_ms([r['fit_seconds'] for r in runs], '{:.1f}')} s.",
        "",
        f"- command: `{command_line()}` (revision {git_revision()}, {_dt.date.today().isoformat()})",
        f"- machine: {machine_line(info)}; {seconds:.0f} s in all",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    a = parse(argv)
    t0 = time.perf_counter()
    res = measure(a)
    info = machine_info()
    body = render(res, a, time.perf_counter() - t0, info)
    print(body)
    if not a.no_record:
        Path(a.results_file).parent.mkdir(parents=True, exist_ok=True)
        Path(a.results_file).write_text(json.dumps({"args": vars(a), "machine": info, **res}, indent=2))
        update_section(Path(a.benchmarks_file), HEADING, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
