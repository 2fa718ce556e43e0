"""The HTML report: one self-contained ``index.html`` (figures embedded as base64 PNG, no
scripts, nothing fetched), for one run or several side by side.

Example
-------
>>> from latentlab import api
>>> from latentlab.report import write_report
>>> import tempfile
>>> run = api.fit(api.RunConfig("pca", "digits", {"latent_dim": 2}))
>>> write_report(tempfile.mkdtemp(), [run]).name
'index.html'
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from matplotlib.figure import Figure

from . import plots
from ._version import __version__
from .io import atomic_write_text
from .runs import condition_source, label_runs, model_input

__all__ = ["write_report", "render_html", "run_figures", "example_rows", "format_value", "METRIC_NOTES", "HIDDEN_METRICS", "GROUPS"]

#: What each metric means, shown beside it in the table (keys of latentlab.evaluation's dicts).
METRIC_NOTES: dict[str, str] = {
    "reconstruction_mse": "squared reconstruction error per feature, in the data's units (VAE: decoded posterior means)",
    "reconstruction_nrmse": "a table's numeric columns: root-mean-square reconstruction error, in standard deviations of each",
    "reconstruction_accuracy": "a table's categorical and 0/1 columns: share of cells reconstructed right",
    "reconstruction_nll": "-log p(x | decoded code), nats, where the model has a likelihood",
    "elbo": "evidence lower bound, nats (higher is better)",
    "elbo_se": "its standard error over the examples",
    "rec": "reconstruction term -E_q log p(x|z), nats",
    "kl": "KL(q(z|x) || p(z)), nats",
    "log_likelihood": "log p(x), nats: importance-sampled (VAE) or exact (PCA)",
    "log_likelihood_se": "its standard error over the examples",
    "log_likelihood_method": "how log p(x) was computed",
    "bits_per_dim": "-log2 p(x) per feature",
    "kl_per_dim": "KL per latent dimension, nats",
    "active_units": "latent dimensions in use (Burda et al.'s covariance criterion)",
    "max_principal_angle_deg": "largest principal angle to PCA's subspace, degrees (0: the same subspace)",
    "fd_real": "Frechet distance, training examples vs the test set: the floor at this sample size",
    "fd_reconstruction": "Frechet distance, test reconstructions vs the test set",
    "fd_prior": "Frechet distance, decodes of z ~ prior vs the test set (lower: more realistic)",
    "fd_standard_normal": "Frechet distance, decodes of z ~ N(0, I) vs the test set (lower: more realistic)",
    "fd_fitted_gaussian": "Frechet distance, decodes of z ~ a Gaussian fitted to the training codes",
    "fd_gmm": "Frechet distance, decodes of z ~ a Gaussian mixture fitted to the training codes (sampler='gmm')",
    "confidence_gmm": "classifier's mean top probability on decodes of the Gaussian mixture",
    "gmm_components": "components of that mixture, chosen by BIC",
    "confidence_real": "classifier's mean top probability on training examples",
    "confidence_reconstruction": "classifier's mean top probability on test reconstructions",
    "confidence_prior": "classifier's mean top probability on decodes of z ~ prior",
    "confidence_standard_normal": "classifier's mean top probability on decodes of z ~ N(0, I)",
    "confidence_fitted_gaussian": "classifier's mean top probability on decodes of the fitted Gaussian",
    "continuity_max_step": "largest step along decoded interpolations, as a share of the path (lower: smoother)",
    "continuity_max_step_p90": "its 90th percentile over pairs",
    "continuity_path_ratio": "decoded path length / distance between its ends (1: straight)",
    "continuity_midpoint_confidence": "classifier's mean top probability on decoded midpoints",
    "completeness_mmd2": "MMD^2 between the codes and N(0, I) (0: codes distributed like the prior)",
    "completeness_gauss_kl": "KL between a Gaussian fitted to the codes and N(0, I)",
    "completeness_mmd2_fitted": "MMD^2 between the codes and the Gaussian fitted to them",
    "feature_space": "the space the Frechet distances are measured in",
    "k": "importance samples per example for log p(x)",
    "fit_time_s": "training time, seconds",
    "epochs": "epochs trained",
    "n_train": "training examples",
    "n_test": "test examples",
}

#: Bookkeeping keys of the evaluation dicts, kept in run.json but not shown.
HIDDEN_METRICS = {
    "model", "n_examples", "n_features", "latent_dim", "seconds", "active_unit_threshold",
    "continuity_n_pairs", "continuity_n_steps", "completeness_bandwidth", "regularity_n_samples",
}

#: The metrics table's groups, in order: (heading, keys). Keys in no group go under "other".
GROUPS: list[tuple[str, list[str]]] = [
    ("Reconstruction", ["reconstruction_mse", "reconstruction_nrmse", "reconstruction_accuracy", "reconstruction_nll",
                        "max_principal_angle_deg"]),
    ("Density", ["elbo", "elbo_se", "rec", "kl", "log_likelihood", "log_likelihood_se", "log_likelihood_method", "k",
                 "bits_per_dim", "active_units", "kl_per_dim"]),
    ("Decoded random latent points (generation)", [
        "fd_prior", "fd_standard_normal", "fd_fitted_gaussian", "fd_gmm", "confidence_prior", "confidence_standard_normal",
        "confidence_fitted_gaussian", "confidence_gmm", "gmm_components", "fd_reconstruction", "confidence_reconstruction", "fd_real", "confidence_real",
        "feature_space"]),
    ("Continuity", ["continuity_max_step", "continuity_max_step_p90", "continuity_path_ratio", "continuity_midpoint_confidence"]),
    ("Completeness", ["completeness_mmd2", "completeness_gauss_kl", "completeness_mmd2_fitted"]),
    ("Training", ["epochs", "fit_time_s", "n_train", "n_test"]),
]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       color: #1d2330; background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: 22px 32px; }
header h1 { margin: 0 0 6px 0; font-size: 24px; font-weight: 600; }
header p { margin: 0; color: #c5cad6; font-size: 14px; }
main { max-width: 1400px; margin: 0 auto; padding: 8px 32px 40px; }
section { margin-top: 28px; }
h2 { font-size: 19px; margin: 0 0 4px 0; }
p.note { margin: 0 0 12px 0; color: #4a5263; font-size: 14px; max-width: 1000px; }
.grid { display: grid; gap: 14px; }
.card { background: #fff; border: 1px solid #dde1e8; border-radius: 8px; padding: 10px 12px; }
.card h3 { font-size: 14px; margin: 0 0 6px 0; color: #2b3550; }
.card img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
.card p.missing { color: #8a93a6; font-size: 13px; margin: 6px 0; }
table.metrics { border-collapse: collapse; background: #fff; font-size: 14px; width: 100%; }
table.metrics th, table.metrics td { border: 1px solid #dde1e8; padding: 5px 10px; text-align: right; }
table.metrics th { background: #eef0f4; }
table.metrics td.name, table.metrics th.name { text-align: left; font-family: "DejaVu Sans Mono", monospace; }
table.metrics tr.group th { background: #dfe3ea; text-align: left; font-size: 13px; }
table.metrics td.what { text-align: left; color: #5a6275; font-size: 12px; width: 34%; }
footer { color: #8a93a6; font-size: 12px; margin-top: 36px; }
"""


def _png(fig: Figure, dpi: int = 100) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def format_value(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4g}" if abs(v) < 100 else f"{v:.1f}"
    if isinstance(v, (list, tuple)):
        items = ", ".join(format_value(x) for x in v[:8])
        return f"[{items}{', …' if len(v) > 8 else ''}]"
    return str(v)


# Each figure: (key, section title, note, builder(run, X, y, image_shape) -> Figure or None)
def _train_fig(run, X, y, shape):
    if hasattr(run.model, "explained_variance_ratio_"):
        return plots.explained_variance(run.model, X)
    hist = getattr(run.model, "history_", None)
    return plots.training_curves(hist) if hist else None


def _cond(run, y):
    """The rows' conditions for a conditional model (its labels or side inputs), else None."""
    return y if run.model.conditional else None


def _one_cond(run, y):
    """The one condition a conditional model's chosen latent points are decoded under: its most
    frequent training class, or the first held-out row's side input; None for other models."""
    m = run.model
    if not m.conditional:
        return None
    if m.condition_ == "categorical":
        return np.asarray(m.classes_)[np.argmax(m.class_prior_)]
    return None if y is None else np.asarray(y)[0]


def _rec_fig(run, X, y, shape):
    return None if X is None else plots.reconstructions(run.model, X, shape, n=10, feature_names=_names(run), y=_cond(run, y))


def _sample_fig(run, X, y, shape):
    m = run.model
    if m.conditional:
        if m.condition_ == "categorical":
            return plots.samples_by_label(m, shape, per_label=10, seed=0, X_ref=X)
        if y is None:
            return None
        return plots.samples(m, shape, n=min(64, len(y)), seed=0, X_ref=X, y=np.asarray(y)[:64])
    return plots.samples(m, shape, n=64, seed=0, X_ref=X)


def _interp_fig(run, X, y, shape):
    if X is None or len(X) < 2:
        return None
    return plots.interpolations(run.model, X, shape, feature_names=_names(run), y=_cond(run, y))


def _trav_fig(run, X, y, shape):
    if X is None and "prior" not in run.model.capabilities or run.model.conditional and _one_cond(run, y) is None:
        return None
    return plots.latent_traversals(run.model, X, shape, feature_names=_names(run), y=_one_cond(run, y))


def _scatter_fig(run, X, y, shape):
    if X is None or run.model.code_size != 2:
        return None
    colour = y if y is not None and np.asarray(y).ndim == 1 else None
    return plots.latent_scatter(run.model, X, colour, cond=_cond(run, y))


def _manifold_fig(run, X, y, shape):
    if shape is None or run.model.code_size != 2 or (X is None and "prior" not in run.model.capabilities):
        return None
    if run.model.conditional and _one_cond(run, y) is None:
        return None
    return plots.manifold(run.model, shape, X=X, y=_one_cond(run, y))


def _names(run):
    ds = run.test or run.train
    return ds.feature_names if ds is not None else None


FIGURES: list[tuple[str, str, str, Callable]] = [
    ("reconstructions", "Reconstructions", "Held-out examples (top row) above their reconstructions "
     "(bottom row).", _rec_fig),
    ("samples", "Decoded random latent points", "For the VAE, z drawn from its prior (N(0, I); the VampPrior's "
     "mixture; the hierarchical VAE's p(z2) p(z1|z2)); for the conditional VAE, z ~ N(0, I) decoded under each "
     "class, one row per class (its label on the left); for an autoencoder, which has no prior, also z ~ N(0, I), "
     "which is where it breaks down; for PCA, z from probabilistic PCA's latent Gaussian.", _sample_fig),
    ("interpolations", "Interpolations", "Each row decodes the straight line between the codes of two "
     "held-out examples (for the conditional VAE, the condition moves along the line between theirs too).", _interp_fig),
    ("traversals", "Latent traversals", "Each row varies one latent dimension over the 5%–95% quantiles of "
     "the prior N(0, I) (VAE), of a Gaussian fitted to draws from the prior (VampPrior; for two layers, whose "
     "codes are [z1 | z2]), or of a Gaussian fitted to the codes (PCA, AE), the others held at the centre. "
     "The conditional VAE decodes under its most frequent class.", _trav_fig),
    ("scatter", "Latent space", "Codes of held-out examples (posterior means for the VAE), coloured by "
     "label.", _scatter_fig),
    ("manifold", "Decoded manifold", "Decoded points over a grid of the prior's quantiles "
     "(scipy.stats.norm.ppf), or of a Gaussian fitted to prior draws or to the codes, as for the traversals.",
     _manifold_fig),
    ("training", "Training curves", "Each loss term per epoch, training (solid) and validation (dashed), in nats "
     "per example. For PCA, which has a closed form, the explained-variance spectrum instead.", _train_fig),
]


#: The figures of a run on a mixed-type table.
_TABLE_FIGURES = ("training", "scatter")


def example_rows(run, n_max: int = 2000, seed: int = 0):
    """(X, y): up to ``n_max`` rows of the run's test split (its training split when it has none),
    drawn at random with ``seed`` and in random order, flat (n, n_features), and their labels (or
    None); (None, None) without data. The figures show the first few, so a file sorted by class
    (as binarized MNIST's test set is) still shows every kind of example. The rows are read in
    file order (a memory map reads them by positioned reads) and copied: maps are read-only."""
    ds = run.test if run.test is not None else run.train
    if ds is None:
        return None, None
    n = len(ds)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=min(n, n_max), replace=False))
    src = model_input(run.model, ds)
    X = np.array(src.take(idx) if hasattr(src, "take") and not isinstance(src, np.ndarray) else src[idx])
    order = rng.permutation(len(idx))
    X, idx = X[order], idx[order]
    y = None if ds.target is None else np.asarray(ds.target)[idx]
    return (X.reshape(len(X), -1) if X.ndim > 2 and not X.dtype.names else X), y


def run_figures(run) -> dict[str, Figure | None]:
    """The report's figures for one :class:`latentlab.runs.Run` (key -> Figure, or None when a
    figure does not apply: e.g. the manifold for a latent size other than 2). The examples they
    show are :func:`example_rows`."""
    ds = run.test if run.test is not None else run.train
    X, y = example_rows(run)
    shape = ds.image_shape if ds is not None else None
    if ds is None and run.info.get("data", {}).get("image_shape"):
        shape = tuple(run.info["data"]["image_shape"])
    # A mixed-type table's rows are no feature curves: its report has the training curves and
    # the latent space (`latentlab sample` and `reconstruct` write its rows as tables).
    table = getattr(run.model, "table_", None) is not None
    return {key: build(run, X, y, shape) if not table or key in _TABLE_FIGURES else None for key, _, _, build in FIGURES}


def _metric_groups(runs) -> list[tuple[str, list[str]]]:
    """(heading, keys present) for the metrics table, in the order of :data:`GROUPS`."""
    keys: list[str] = []
    for r in runs:
        for k in r.metrics:
            if k not in keys and k not in HIDDEN_METRICS:
                keys.append(k)
    out, placed = [], set()
    for heading, group in GROUPS:
        present = [k for k in group if k in keys]
        placed.update(present)
        if present:
            out.append((heading, present))
    rest = [k for k in keys if k not in placed]
    if rest:
        out.append(("Other", rest))
    return out


def render_html(runs: Sequence, figures: Sequence[dict[str, Figure | None]], *, title: str, subtitle: str = "",
                lead: Sequence[str] = ()) -> str:
    """The report page for ``runs`` with their ``figures`` (as from :func:`run_figures`); ``lead``:
    HTML sections placed before the metrics (the argument, a sweep's planes)."""
    esc = html.escape
    n = len(runs)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><main>",
        *lead,
    ]
    groups = _metric_groups(runs)
    if groups:
        parts.append('<section id="metrics"><h2>Metrics</h2><p class="note">Measured on the held-out test split '
                     "(nats per example; log-likelihoods and the ELBO are higher-is-better). "
                     "Computed by latentlab.evaluation.</p>")
        parts.append('<table class="metrics"><tr><th class="name">metric</th>')
        parts += [f"<th>{esc(r.name)}</th>" for r in runs]
        parts.append("<th class=\"name\">meaning</th></tr>")
        for heading, keys in groups:
            parts.append(f'<tr class="group"><th colspan="{n + 2}">{esc(heading)}</th></tr>')
            for k in keys:
                parts.append(f'<tr><td class="name">{esc(k)}</td>')
                parts += [f"<td>{esc(format_value(r.metrics.get(k)))}</td>" for r in runs]
                parts.append(f'<td class="what">{esc(METRIC_NOTES.get(k, _auto_note(k)))}</td></tr>')
        parts.append("</table></section>")
    for key, heading, note, _ in FIGURES:
        if all(f.get(key) is None for f in figures):
            continue
        cols = min(n, 2) if key == "training" else n
        parts.append(f'<section id="{key}"><h2>{esc(heading)}</h2><p class="note">{esc(note)}</p>')
        parts.append(f'<div class="grid" style="grid-template-columns: repeat({cols}, minmax(0, 1fr));">')
        for r, f in zip(runs, figures):
            fig = f.get(key)
            parts.append(f'<div class="card"><h3>{esc(r.name)}</h3>')
            if fig is None:
                parts.append('<p class="missing">does not apply to this model</p>')
            else:
                parts.append(f'<img alt="{esc(heading)}: {esc(r.name)}" src="data:image/png;base64,{_png(fig)}">')
            parts.append("</div>")
        parts.append("</div></section>")
    stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts.append(f"<footer>latentlab {esc(__version__)} · written {stamp}</footer></main></body></html>")
    return "\n".join(parts)


def _auto_note(key: str) -> str:
    return key.replace("_", " ")


def _story_html(claims) -> str:
    """The argument, a step a paragraph: the claim, the measured sentence, and a verdict mark."""
    esc = html.escape
    mark = {True: ("holds", "#1f7a3a"), False: ("does not hold here", "#a4262c"), None: ("", "#4a5263")}
    items = []
    for c in claims:
        word, colour = mark[c.holds]
        verdict = f' <span style="color:{colour};font-weight:600">({word})</span>' if word else ""
        items.append(f'<div class="card"><h3>{esc(c.title)}{verdict}</h3><p class="note">{esc(c.sentence)}</p></div>')
    return ('<section id="argument"><h2>The argument, measured</h2><p class="note">Each step of the argument from '
            "PCA to the VAE, with the numbers of the runs below (latentlab.story).</p>"
            f'<div class="grid">{"".join(items)}</div></section>')


def _sweep_html(runs, swept) -> str:
    """The rate-distortion plane and each metric against the swept setting."""
    esc = html.escape
    pts = [(r.name, r.metrics.get("kl"), r.metrics.get("rec")) for r in runs]
    blocks = []
    if all(p[1] is not None and p[2] is not None for p in pts):
        fig = plots.rate_distortion(pts)
        blocks.append('<div class="card"><h3>Rate-distortion plane</h3><img alt="rate-distortion plane" '
                      f'src="data:image/png;base64,{_png(fig)}"></div>')
    if len(swept) == 1:
        name = swept[0]
        values = [r.info.get("sweep", {}).get(name) for r in runs]
        keys = ("log_likelihood", "active_units", "fd_prior", "fd_gmm", "completeness_mmd2", "reconstruction_mse")
        fig = plots.sweep_curves(values, {k: [r.metrics.get(k) for r in runs] for k in keys}, name=name)
        blocks.append(f'<div class="card"><h3>Against {esc(name)}</h3><img alt="metrics against {esc(name)}" '
                      f'src="data:image/png;base64,{_png(fig)}"></div>')
    return ('<section id="sweep"><h2>The sweep</h2><p class="note">Rate R = KL(q(z|x) || p(z)) and distortion '
            "D = -E_q log p(x|z), nats per test example (Alemi et al., 2018); dotted lines join points of equal "
            f'ELBO = -(R + D).</p><div class="grid" style="grid-template-columns: repeat(2, minmax(0, 1fr));">'
            f'{"".join(blocks)}</div></section>')


def write_report(out_dir, runs: Sequence, *, title: str = "latentlab report", comparison: bool = False,
                 swept: Sequence[str] | None = None) -> Path:
    """Write ``out_dir/index.html`` for one run or several side by side; return its path. Several
    runs are named by what tells them apart (:func:`latentlab.runs.label_runs`); ``compare``'s
    runs open with the argument measured step by step, a sweep's (``swept``: the settings swept)
    with its rate-distortion plane."""
    from . import story

    out_dir = Path(out_dir)
    names = [r.info.get("label") for r in runs]
    if len(runs) > 1 and (None in names or len(set(names)) < len(names)):
        label_runs(runs)
    figures = [run_figures(r) for r in runs]
    lead = []
    claims = story.comparison_claims(runs) + (story.sweep_claims(runs, swept) if swept else [])
    if claims:
        lead.append(_story_html(claims))
    if swept:
        lead.append(_sweep_html(runs, swept))
    r0 = runs[0]
    data = r0.config.data if r0.config else "?"
    sizes = []
    for s in ("train", "valid", "test"):
        part = getattr(r0, s, None)
        if part is not None:
            sizes.append(f"{len(part)} {s}")
    latent = sorted({r.model.code_size for r in runs})
    subtitle = f"data: {data}" + (f" ({', '.join(sizes)})" if sizes else "") + f" · latent size {', '.join(map(str, latent))}"
    conds = sorted({condition_source(r.config) for r in runs if r.model.conditional})
    if conds:
        subtitle += f" · condition: {', '.join(conds)}"
    page = render_html(runs, figures, title=title, subtitle=subtitle, lead=lead)
    path = out_dir / "index.html"
    atomic_write_text(path, page)
    return path
