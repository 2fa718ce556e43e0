"""Figures of a fitted model, as matplotlib ``Figure`` objects: never shown, saved only if asked.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot), so nothing touches a
display or global state, and they render with the Agg backend: ``fig.savefig("x.png")``.
Image data is passed flat, (n, n_features), with its ``image_shape`` ((H, W) or (C, H, W));
without one the data is a table and the figures show feature values instead of pictures.
A conditional VAE's figures take its condition: ``y``, one label (or side-input row) per row of
X, or for figures that decode chosen latent points, the one condition they are decoded under.

Example
-------
>>> from latentlab import PCA, plots
>>> from latentlab.datasets import load_digits
>>> d = load_digits()
>>> fig = plots.reconstructions(PCA(8).fit(d.data), d.data[:8], d.image_shape)
>>> type(fig).__name__
'Figure'
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "image_grid",
    "pair_rows",
    "training_curves",
    "reconstructions",
    "samples",
    "samples_by_label",
    "labelled_grid",
    "interpolations",
    "latent_traversals",
    "latent_scatter",
    "manifold",
    "explained_variance",
    "rate_distortion",
    "sweep_curves",
]

_SKIP_KEYS = {"epoch", "lr", "time_s", "samples_per_s", "threads"}


def _as_images(X, image_shape) -> np.ndarray:
    """(n, n_features) -> (n, H, W) grey or (n, H, W, 3) colour, clipped to [0, 1]."""
    X = np.clip(np.asarray(X, dtype=np.float32), 0.0, 1.0)
    shape = tuple(image_shape)
    imgs = X.reshape(len(X), *shape)
    if len(shape) == 3:
        c = shape[0]
        imgs = imgs.transpose(0, 2, 3, 1)
        if c == 1:
            imgs = imgs[..., 0]
        elif c != 3:
            imgs = imgs[..., :3] if c > 3 else imgs.mean(-1)
    return imgs


def _mosaic(imgs: np.ndarray, nrows: int, ncols: int, pad: int = 1) -> np.ndarray:
    """Tile images (n, H, W[, 3]) into one array with ``pad`` pixels of white between them."""
    n, h, w = imgs.shape[:3]
    extra = imgs.shape[3:]
    # Grey mosaics pad with NaN (drawn white by _show); colour ones with white.
    out = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, *extra), 1.0 if extra else np.nan, dtype=np.float32)
    for i in range(min(n, nrows * ncols)):
        r, c = divmod(i, ncols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = imgs[i]
    return out


def _show(ax, mosaic: np.ndarray) -> None:
    import matplotlib

    cmap = matplotlib.colormaps["gray"].with_extremes(bad="white") if mosaic.ndim == 2 else None
    ax.imshow(mosaic, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)


def _row_labels(ax, labels: Sequence[str], h: int, pad: int = 1) -> None:
    """Label the rows of a mosaic of images of height ``h``."""
    ax.set_yticks([pad + r * (h + pad) + h / 2 - 0.5 for r in range(len(labels))], labels, fontsize=7)
    ax.tick_params(length=0)


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def image_grid(X, image_shape, *, ncols: int | None = None, title: str | None = None, cell: float = 0.6) -> Figure:
    """A grid of images. X: (n, n_features); image_shape: (H, W) or (C, H, W)."""
    imgs = _as_images(X, image_shape)
    n = len(imgs)
    ncols = ncols or int(np.ceil(np.sqrt(n)))
    nrows = int(np.ceil(n / ncols))
    fig = _figure(max(2.0, ncols * cell), max(1.0, nrows * cell) + (0.3 if title else 0))
    ax = fig.add_subplot()
    _show(ax, _mosaic(imgs, nrows, ncols))
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def pair_rows(X: np.ndarray, R: np.ndarray, n: int = 32, ncols: int = 16) -> tuple[np.ndarray, int]:
    """Interleave rows of originals X and reconstructions R for an image grid: each row of up to
    ``ncols`` originals is followed by their reconstructions. Returns (array, columns); ``n`` is
    rounded down to whole rows."""
    from .validation import check_int

    n = min(check_int(n, "n"), len(X))
    cols = min(n, ncols)
    n -= n % cols
    blocks = []
    for start in range(0, n, cols):
        blocks += [X[start : start + cols], R[start : start + cols]]
    return np.vstack(blocks), cols


def training_curves(history: Sequence[dict[str, Any]], title: str | None = None) -> Figure:
    """Each loss term per epoch, training and validation (nats per example). One panel a term.

    ``history`` is an estimator's ``history_``: records with ``train_<term>`` and ``val_<term>``.
    """
    terms: list[str] = []
    for rec in history:
        for k in rec:
            if k.startswith(("train_", "val_")) and k not in _SKIP_KEYS:
                t = k.split("_", 1)[1]
                if t not in terms:
                    terms.append(t)
    n = max(1, len(terms))
    ncols = min(n, 2)  # two panels a row keeps each readable in a report column
    nrows = -(-n // ncols)
    fig = _figure(3.3 * ncols, 2.4 * nrows)
    grid = fig.subplots(nrows, ncols, squeeze=False)
    axes = list(grid.ravel())
    for ax in axes[n:]:
        ax.set_axis_off()
    if not history or not terms:
        axes[0].text(0.5, 0.5, "no training history", ha="center", va="center")
        axes[0].set_axis_off()
        return fig
    for ax, t in zip(axes, terms):
        for split, style in (("train", "-"), ("val", "--")):
            pts = [(r.get("epoch", i + 1), r[f"{split}_{t}"]) for i, r in enumerate(history) if f"{split}_{t}" in r]
            if pts:
                e, v = zip(*pts)
                ax.plot(e, v, style, label="validation" if split == "val" else "train", marker="." if len(e) < 15 else None)
        ax.set_title(t, fontsize=10)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in grid[-1]:
        ax.set_xlabel("epoch")
    for ax in grid[:, 0]:
        ax.set_ylabel("nats per example")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _table_heatmap(ax, M: np.ndarray, *, ylabel: str, feature_names=None) -> None:
    im = ax.imshow(M, aspect="auto", cmap="coolwarm", interpolation="nearest")
    ax.set_ylabel(ylabel)
    ax.set_xlabel("feature")
    if feature_names is not None and len(feature_names) <= 20:
        ax.set_xticks(range(len(feature_names)), feature_names, rotation=90, fontsize=7)
    ax.figure.colorbar(im, ax=ax, shrink=0.8)


def reconstructions(model, X, image_shape=None, *, n: int = 10, feature_names=None, y=None) -> Figure:
    """Originals (top row) above their reconstructions (bottom row), for the first ``n`` rows of X.
    For a table: feature values of a few rows, original against reconstruction."""
    X = np.asarray(X[:n])
    c = None if y is None else np.asarray(y)[: len(X)]
    R = np.asarray(model.reconstruct(X, c)).reshape(len(X), -1)
    Xf = X.reshape(len(X), -1)
    if image_shape is not None:
        imgs = _as_images(np.concatenate([Xf, R]), image_shape)
        fig = _figure(max(3.0, 0.55 * len(X)), 1.4)
        ax = fig.add_subplot()
        _show(ax, _mosaic(imgs, 2, len(X)))
        ax.set_ylabel("original / rec.", fontsize=8)
        return fig
    k = min(4, len(X))
    fig = _figure(10, 1.8 * k)
    axes = fig.subplots(k, 1, squeeze=False)[:, 0]
    for i, ax in enumerate(axes):
        ax.plot(Xf[i], "o-", ms=3, label="original")
        ax.plot(R[i], "s--", ms=3, label="reconstruction")
        ax.set_ylabel(f"row {i}", fontsize=8)
        ax.grid(alpha=0.3)
        if feature_names is not None and len(feature_names) <= 30:
            ax.set_xticks(range(len(feature_names)), feature_names if i == k - 1 else [""] * len(feature_names), rotation=90, fontsize=7)
    axes[0].legend(fontsize=8)
    return fig


def samples(model, image_shape=None, *, n: int = 64, seed: int = 0, X_ref=None, title: str | None = None, y=None) -> Figure:
    """Decoded random latent points (``model.sample``): a grid of images,
    or for a table the two features of largest variance, data (``X_ref``) against samples.
    ``y``: a conditional VAE's conditions (one per sample, or one for all)."""
    S = np.asarray(model.sample(n, y, seed=seed)).reshape(n, -1)
    if image_shape is not None:
        return image_grid(S, image_shape, ncols=int(np.ceil(np.sqrt(n))), title=title)
    fig = _figure(4.2, 3.6)
    ax = fig.add_subplot()
    cols = _table_axes(ax, S, X_ref, "0.6")
    ax.scatter(S[:, cols[0]], S[:, cols[1]], s=8, c="C3", label="samples")
    ax.set_xlabel(f"feature {cols[0]}")
    ax.set_ylabel(f"feature {cols[1]}")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def _table_axes(ax, S, X_ref, grey: str) -> list[int]:
    """The two columns a table's samples ``S`` are drawn on: the data's two features of largest
    variance (``X_ref``, drawn in ``grey`` first), else the first two. Returns their indices."""
    cols = [0, 1] if S.shape[1] > 1 else [0, 0]
    if X_ref is not None:
        R = np.asarray(X_ref).reshape(len(X_ref), -1)
        if R.shape[1] > 1:
            cols = list(np.argsort(R.var(0))[::-1][:2])
        ax.scatter(R[:, cols[0]], R[:, cols[1]], s=6, c=grey, label="data")
    return cols


def samples_by_label(model, image_shape=None, *, labels=None, per_label: int = 10, seed: int = 0, X_ref=None) -> Figure:
    """A conditional VAE's samples, one row per class: ``per_label`` decodes of z ~ N(0, I)
    under each of ``labels`` (default: every class the model knows), the label at the row's
    start. For a table, the two features of largest variance, samples coloured by label over
    the data (``X_ref``) in grey."""
    labels = np.asarray(model.classes_ if labels is None else labels)
    y = np.repeat(labels, per_label)
    S = np.asarray(model.sample(len(y), y, seed=seed)).reshape(len(y), -1)
    if image_shape is not None:
        return labelled_grid(S, image_shape, y)
    fig = _figure(4.6, 3.9)
    ax = fig.add_subplot()
    cols = _table_axes(ax, S, X_ref, "0.8")
    for i, v in enumerate(labels.tolist()):
        part = S[i * per_label : (i + 1) * per_label]
        ax.scatter(part[:, cols[0]], part[:, cols[1]], s=10, color=f"C{i % 10}", label=f"y = {v}")
    ax.set_xlabel(f"feature {cols[0]}")
    ax.set_ylabel(f"feature {cols[1]}")
    ax.legend(fontsize=7, ncols=2 if len(labels) > 6 else 1)
    return fig


def labelled_grid(X, image_shape, y, *, cell: float = 0.55) -> Figure:
    """Images X (n, n_features) in one row per label of ``y`` (n,), in order of first
    appearance, each row labelled "y = label" (shorter rows end in blank cells)."""
    y = np.asarray(y)
    order = list(dict.fromkeys(y.tolist()))
    rows = [np.flatnonzero(y == v) for v in order]
    ncols = max(len(r) for r in rows)
    imgs = _as_images(X, image_shape)
    blank = np.full((1, *imgs.shape[1:]), 1.0 if imgs.ndim == 4 else np.nan, dtype=np.float32)
    cells = np.concatenate([np.concatenate([imgs[r], np.repeat(blank, ncols - len(r), 0)]) for r in rows])
    fig = _figure(max(2.5, cell * ncols + 0.4), max(1.0, cell * len(rows)))
    ax = fig.add_subplot()
    _show(ax, _mosaic(cells, len(rows), ncols))
    _row_labels(ax, [f"y = {v}" for v in order], imgs.shape[1])
    return fig


def interpolations(model, X, image_shape=None, *, pairs: int = 4, steps: int = 10, seed: int = 0, feature_names=None,
                   y=None) -> Figure:
    """Decoded straight lines between the codes of random pairs of rows of X: one row of images
    per pair, its ends the reconstructions of the two examples. For a table, a heatmap per pair.
    A conditional VAE (``y``: the rows' conditions) also moves along the line between the two
    conditions (see ``model.interpolate``)."""
    X = np.asarray(X)
    rng = np.random.default_rng(seed)
    pairs = min(pairs, len(X) // 2)
    idx = rng.choice(len(X), size=2 * pairs, replace=False)
    ends = (lambda i: None) if y is None else (lambda i: (np.asarray(y)[idx[2 * i]], np.asarray(y)[idx[2 * i + 1]]))
    paths = [np.asarray(model.interpolate(X[idx[2 * i]], X[idx[2 * i + 1]], steps, ends(i))).reshape(steps, -1)
             for i in range(pairs)]
    if image_shape is not None:
        imgs = _as_images(np.concatenate(paths), image_shape)
        fig = _figure(max(3.0, 0.5 * steps), 0.5 * pairs + 0.2)
        ax = fig.add_subplot()
        _show(ax, _mosaic(imgs, pairs, steps))
        return fig
    fig = _figure(8, 2.0 * pairs)
    axes = fig.subplots(pairs, 1, squeeze=False)[:, 0]
    for ax, P in zip(axes, paths):
        _table_heatmap(ax, P, ylabel="step", feature_names=feature_names)
    return fig


def _latent_scale(model, X) -> tuple[np.ndarray, np.ndarray, str]:
    """(centre, spread) per code dimension and what they are: the prior N(0, 1) for a model
    with one; for another prior (VampPrior, two layers), a Gaussian fitted to 2000 draws from
    it; for a model without a prior, a Gaussian fitted to the codes of X."""
    k = model.code_size
    caps = model.capabilities
    if "prior" in caps:
        if "closed_form_kl" in caps:  # the prior is N(0, I)
            return np.zeros(k), np.ones(k), "prior N(0, I)"
        Z = np.asarray(model.sample(2000, seed=0, return_latent=True)[1], dtype=np.float64)
        return Z.mean(0), Z.std(0) + 1e-12, "Gaussian fitted to draws from the prior"
    Z = np.asarray(model.transform(X), dtype=np.float64)
    return Z.mean(0), Z.std(0) + 1e-12, "Gaussian fitted to the codes"


def _dim_names(model) -> list[str]:
    """Names of the code dimensions: z0, z1, ...; for two stochastic layers [z1 | z2],
    z1[0], ..., z2[0], ..."""
    k, d1 = model.code_size, int(model.latent_dim)
    if k == d1:
        return [f"z{j}" for j in range(k)]
    return [f"z1[{j}]" for j in range(d1)] + [f"z2[{j}]" for j in range(k - d1)]


def _under(y) -> str:
    """The title of a figure decoded under the condition y."""
    v = np.asarray(y).reshape(-1)
    return f"decoded under y = {v[0]}" if v.size == 1 else f"decoded under y = ({', '.join(f'{t:.3g}' for t in v[:4])}{', …' if v.size > 4 else ''})"


def latent_traversals(model, X, image_shape=None, *, dims: int = 8, steps: int = 9, feature_names=None, y=None) -> Figure:
    """Vary one code dimension at a time (rows) over the 5%..95% quantiles of its Gaussian
    (the prior, or one fitted to prior draws or to the codes), the others held at their centre.
    ``y``: for a conditional VAE, the one condition (a label) everything is decoded under."""
    from scipy.stats import norm

    k = model.code_size
    d = min(k, dims)
    names = _dim_names(model)
    centre, spread, _ = _latent_scale(model, X)
    q = norm.ppf(np.linspace(0.05, 0.95, steps))
    Z = np.repeat(centre[None, :], d * steps, axis=0)
    for j in range(d):
        Z[j * steps : (j + 1) * steps, j] = centre[j] + spread[j] * q
    D = np.asarray(model.inverse_transform(Z.astype(np.float32), y)).reshape(d * steps, -1)
    if image_shape is not None:
        fig = _figure(max(3.0, 0.5 * steps), 0.5 * d + 0.2 + (0.25 if y is not None else 0))
        ax = fig.add_subplot()
        _show(ax, _mosaic(_as_images(D, image_shape), d, steps))
        imgs = _as_images(D[:1], image_shape)
        _row_labels(ax, names[:d], imgs.shape[1])
        if y is not None:
            ax.set_title(_under(y), fontsize=8)
        return fig
    fig = _figure(8, 1.8 * d)
    axes = fig.subplots(d, 1, squeeze=False)[:, 0]
    for j, ax in enumerate(axes):
        _table_heatmap(ax, D[j * steps : (j + 1) * steps], ylabel=names[j], feature_names=feature_names)
    if y is not None:
        fig.suptitle(_under(y), fontsize=9)
    return fig


def latent_scatter(model, X, y=None, *, max_points: int = 5000, cond=None) -> Figure:
    """The codes of X in a 2-D latent space, coloured by label ``y`` when given. ``cond``: a
    conditional VAE's conditions, one per row of X (each row is encoded with its own)."""
    import matplotlib

    X = np.asarray(X[:max_points])
    Z = np.asarray(model.transform(X, None if cond is None else np.asarray(cond)[:max_points]))
    fig = _figure(4.6, 3.9)
    ax = fig.add_subplot()
    if y is not None:
        y = np.asarray(y[:max_points])
        names = None
        if y.dtype.kind not in "iub":  # text (or float) labels: colour by their index
            names, y = np.unique(y, return_inverse=True)
        cmap, vmax = "tab10", 9.5 if y.max() < 10 else None
        if names is not None and len(names) <= 10:  # one colour a class, as many as there are
            from matplotlib.colors import ListedColormap

            cmap, vmax = ListedColormap(matplotlib.colormaps["tab10"].colors[: len(names)]), len(names) - 0.5
        sc = ax.scatter(Z[:, 0], Z[:, 1], c=y, cmap=cmap, s=6, vmin=-0.5, vmax=vmax)
        cb = fig.colorbar(sc, ax=ax, ticks=np.unique(y)[:10], label="label")
        if names is not None:
            cb.set_ticklabels([str(v) for v in names[np.unique(y)[:10]]])
    else:
        ax.scatter(Z[:, 0], Z[:, 1], s=6)
    ax.set_xlabel("z0")
    ax.set_ylabel("z1")
    ax.grid(alpha=0.3)
    return fig


def manifold(model, image_shape, *, n: int = 15, X=None, y=None) -> Figure:
    """Decoded images over an n x n grid of a 2-D latent space at the 5%..95% quantiles
    (``scipy.stats.norm.ppf``) of the prior, or of a Gaussian fitted to the codes of X for a
    model without a prior. ``y``: for a conditional VAE, the one condition to decode under."""
    from scipy.stats import norm

    if model.code_size != 2:
        raise ValueError("manifold needs a 2-D latent space")
    centre, spread, _ = _latent_scale(model, X)
    q = norm.ppf(np.linspace(0.05, 0.95, n))
    g0, g1 = np.meshgrid(q, q[::-1])  # rows: z1 from high (top) to low
    Z = np.stack([centre[0] + spread[0] * g0.ravel(), centre[1] + spread[1] * g1.ravel()], 1).astype(np.float32)
    D = np.asarray(model.inverse_transform(Z, y)).reshape(n * n, -1)
    fig = _figure(5.2, 5.2)
    ax = fig.add_subplot()
    _show(ax, _mosaic(_as_images(D, image_shape), n, n))
    names = _dim_names(model)
    ax.set_xlabel(f"{names[0]} →")
    ax.set_ylabel(f"{names[1]} →")
    if y is not None:
        ax.set_title(_under(y), fontsize=9)
    return fig


def explained_variance(pca, X=None) -> Figure:
    """Explained-variance ratio per component and its cumulative sum. With X, the whole
    spectrum of X (a full PCA with the same scaling) is drawn and the kept components marked."""
    k = int(pca.latent_dim)
    ratio = np.asarray(pca.explained_variance_ratio_, dtype=np.float64)
    if X is not None:
        from .models import PCA

        if getattr(pca, "table_", None) is not None:  # a mixed-type table, encoded by the PCA itself
            full = PCA(latent_dim=min(len(X), pca.table_.width), scale=pca.scale).fit(X)
        else:
            Xf = np.asarray(X).reshape(len(X), -1)
            full = PCA(latent_dim=min(Xf.shape), scale=pca.scale).fit(Xf)
        ratio = np.asarray(full.explained_variance_ratio_, dtype=np.float64)
    fig = _figure(5.2, 3.0)
    ax = fig.add_subplot()
    comps = np.arange(1, len(ratio) + 1)
    ax.bar(comps, ratio, color=["C0" if c <= k else "0.75" for c in comps], label="per component")
    ax2 = ax.twinx()
    ax2.plot(comps, np.cumsum(ratio), "C3.-", ms=3, label="cumulative")
    ax2.set_ylim(0, 1.02)
    ax2.set_ylabel("cumulative", color="C3")
    ax.axvline(k + 0.5, color="k", lw=0.8, ls=":")
    ax.set_xlabel(f"component (kept: {k}, {np.sum(ratio[:k]):.0%} of the variance)")
    ax.set_ylabel("explained variance ratio")
    return fig


def rate_distortion(points: Sequence[tuple[str, float, float]], *, title: str | None = None) -> Figure:
    """The rate-distortion plane (Alemi et al., 2018): each point (label, R, D) with rate
    R = KL(q(z|x) || p(z)) and distortion D = -E_q log p(x|z), nats per test example, and the
    lines of equal ELBO = -(R + D) (slope -1) through them."""
    fig = _figure(4.8, 4.0)
    ax = fig.add_subplot()
    R = np.array([p[1] for p in points], dtype=float)
    D = np.array([p[2] for p in points], dtype=float)  # a density's distortion can be negative (continuous data)
    span = max(float(np.ptp(R)), float(np.ptp(D)), 1e-3)
    x0, x1 = 0.0, float(R.max()) + 0.15 * span
    y0, y1 = float(D.min()) - 0.15 * span, float(D.max()) + 0.15 * span
    xs = np.array([x0, x1])
    for total in sorted(set(np.round(R + D, 2))):
        ax.plot(xs, total - xs, ls=":", lw=0.8, c="0.6")
        ax.annotate(f"-ELBO {total:g}", (x0 + 0.01 * (x1 - x0), total - x0), fontsize=6, color="0.45",
                    annotation_clip=True)
    ax.plot(R, D, "-", c="C0", lw=0.8, alpha=0.5)
    for i, (label, r, d) in enumerate(points):
        ax.scatter([r], [d], s=28, color=f"C{i % 10}", zorder=3, label=label)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("rate R = KL(q(z|x) || p(z)), nats")
    ax.set_ylabel("distortion D = -E_q log p(x|z), nats")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def sweep_curves(values: Sequence, metrics: dict[str, Sequence[float | None]], *, name: str) -> Figure:
    """Each metric (panel) against the swept setting ``name`` (x: ``values``, log scale when they
    are positive numbers spanning a factor of 10 or more)."""
    keys = [k for k, v in metrics.items() if any(x is not None for x in v)]
    n = max(1, len(keys))
    ncols = min(n, 2)
    nrows = -(-n // ncols)
    fig = _figure(3.3 * ncols, 2.5 * nrows)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in axes[n:]:
        ax.set_axis_off()
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    x = np.asarray(values, dtype=float) if numeric else np.arange(len(values))
    for ax, k in zip(axes, keys):
        y = np.array([np.nan if v is None else float(v) for v in metrics[k]])
        ax.plot(x, y, "o-", ms=4)
        ax.set_title(k, fontsize=9)
        ax.grid(alpha=0.3)
        if numeric and np.all(x > 0) and x.max() / x.min() >= 10:
            ax.set_xscale("log")
            ax.minorticks_off()
        if numeric:
            ax.set_xticks(x, [f"{v:g}" for v in values], fontsize=7)
        else:
            ax.set_xticks(x, [str(v) for v in values], fontsize=7)
        ax.set_xlabel(name)
    return fig
