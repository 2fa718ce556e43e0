"""``explore.html``: move a point through a model's latent space and watch it decode.

One self-contained page (no server, nothing fetched, every byte inline): a 2-D pad over two
latent dimensions (sliders for every dimension when there are more than two, and a choice of the
two the pad shows), the test codes as points coloured by label, a shading of where those codes
lie (so that one sees an autoencoder decode junk off its codes), and the decoded output beside
it, drawn on a canvas for images or as a table for tabular data.

Decoding runs in the page, in plain JavaScript, from the decoder's weights embedded in it: the
decoder of :meth:`~latentlab.models.base.LatentModel.torch_modules` (the scaling folded in)
walked layer by layer: linear layers, the activations relu, elu, gelu, silu, tanh, leaky_relu,
softplus and sigmoid, gated layers, the convolutional decoder's 3x3 convolutions and nearest
upsampling, then the likelihood's mean (sigmoid for the Bernoulli, the continuous Bernoulli's
mean) and the unscaling. PCA is a linear decoder. A decoder with a layer the page does not know
(a network of one's own) falls back to a grid: the decodes of a ``grid`` x ``grid`` lattice over
the pad's two dimensions (the others fixed), computed here by the model and embedded, shown
for the nearest grid point. ``decoder="grid"`` forces that.

The page exposes its state on ``window.latentlab`` (``z``, ``c``, ``decoded``, ``dims``,
``mode``, ``density``, ``setZ``, ``setDims``, ``setCondition``), which the browser test reads.

Example
-------
>>> import numpy as np, tempfile, pathlib
>>> from latentlab import PCA
>>> from latentlab.explorer import explore
>>> X = np.random.default_rng(0).normal(size=(100, 6)).astype(np.float32)
>>> page = explore(PCA(latent_dim=2).fit(X), pathlib.Path(tempfile.mkdtemp()) / "explore.html", X=X)
>>> page.name
'explore.html'
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ._version import __version__
from .errors import ConfigError, DataError
from .explorer_page import PAGE
from .io import atomic_write_text
from .models.base import LatentModel
from .models.registry import model_name
from .nn.distributions import Bernoulli, ContinuousBernoulli, Gaussian
from .nn.networks import BatchFlatten, ConvDecoder, Gated
from .runs import Run, condition_of, default_split, model_input, open_run, pick
from .validation import check_int

__all__ = ["explore", "decoder_program", "DECODERS", "Unsupported"]

#: How the page decodes: "auto" (the weights where every layer is known, else a grid), "weights", "grid".
DECODERS = ("auto", "weights", "grid")
_MAX_GRID_VALUES = 6_000_000  # floats of decodes a grid may embed (24 MB as float32)


class Unsupported(ConfigError):
    """A decoder layer the page cannot run in JavaScript."""


def _b64(a) -> str:
    return base64.b64encode(np.ascontiguousarray(np.asarray(a, dtype="<f4")).tobytes()).decode("ascii")


_ACTS = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.SiLU: "silu", nn.Sigmoid: "sigmoid", nn.Identity: "identity"}


def _activation(m: nn.Module) -> dict[str, Any] | None:
    if type(m) in _ACTS:
        return {"op": _ACTS[type(m)]}
    if type(m) is nn.ELU:
        return {"op": "elu", "alpha": float(m.alpha)}
    if type(m) is nn.LeakyReLU:
        return {"op": "leaky_relu", "slope": float(m.negative_slope)}
    if type(m) is nn.GELU:
        return {"op": "gelu", "approximate": m.approximate}
    if type(m) is nn.Softplus:
        return {"op": "softplus", "beta": float(m.beta), "threshold": float(m.threshold)}
    return None


def _conv(m: nn.Conv2d, shape) -> tuple[dict[str, Any], tuple[int, ...]]:
    if (tuple(m.stride) != (1, 1) or tuple(m.dilation) != (1, 1) or m.groups != 1 or m.padding_mode != "zeros"
            or isinstance(m.padding, str) or len(shape) != 3):
        raise Unsupported(f"a Conv2d with stride {m.stride}, dilation {m.dilation}, groups {m.groups}")
    o, i, kh, kw = m.weight.shape
    ph, pw = m.padding
    h, w = shape[1] + 2 * ph - kh + 1, shape[2] + 2 * pw - kw + 1
    op = {"op": "conv2d", "in": int(i), "out": int(o), "kh": int(kh), "kw": int(kw), "ph": int(ph), "pw": int(pw),
          "hin": int(shape[1]), "win": int(shape[2]),
          "W": _b64(m.weight.detach()), "b": _b64(m.bias.detach() if m.bias is not None else torch.zeros(o))}
    return op, (int(o), int(h), int(w))


def _upsample(m: nn.Upsample, shape) -> tuple[dict[str, Any], tuple[int, ...]]:
    if m.mode != "nearest" or len(shape) != 3:
        raise Unsupported(f"an Upsample in mode {m.mode!r}")
    _, h, w = shape
    # The source pixel of every output pixel, as torch itself computes it.
    src = m(torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w))[0, 0]
    op = {"op": "upsample", "c": int(shape[0]), "hin": int(h), "win": int(w), "h": int(src.shape[0]), "w": int(src.shape[1]),
          "index": src.reshape(-1).long().tolist()}
    return op, (shape[0], int(src.shape[0]), int(src.shape[1]))


def _ops(m: nn.Module, shape: tuple[int, ...]) -> tuple[list[dict[str, Any]], tuple[int, ...]]:
    """The layers of ``m`` as the page runs them, and the shape they leave (one example)."""
    if isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward:
        ops: list[dict[str, Any]] = []
        for child in m:
            more, shape = _ops(child, shape)
            ops += more
        return ops, shape
    if type(m) is nn.Linear:
        n_in = int(np.prod(shape))
        if n_in != m.in_features:
            raise Unsupported(f"a Linear layer of {m.in_features} inputs after {shape}")
        return [{"op": "linear", "in": m.in_features, "out": m.out_features, "W": _b64(m.weight.detach()),
                 "b": _b64(m.bias.detach() if m.bias is not None else torch.zeros(m.out_features))}], (m.out_features,)
    if type(m) is nn.Conv2d:
        op, shape = _conv(m, shape)
        return [op], shape
    if type(m) is nn.Upsample:
        op, shape = _upsample(m, shape)
        return [op], shape
    if type(m) is BatchFlatten:  # a decoder of one's own, run on one code at a time
        return _ops(m.net, shape)
    if type(m) is Gated:
        inner, out = _ops(m.inner, shape)
        if len(inner) != 1 or m.dim not in (-1, 1) or (m.dim == 1) != (len(out) == 3):
            raise Unsupported("a gated layer around more than one layer")
        half = (out[0] // 2, *out[1:])
        return [{"op": "gated", "inner": inner[0], "half": int(np.prod(half))}], half
    if type(m) is ConvDecoder:
        ops, shape = _ops(m.head, shape)
        act, shape = _ops(m.head_act, shape)
        ops += act + [{"op": "reshape", "shape": list(m.start_shape)}]
        more, shape = _ops(m.ups, tuple(m.start_shape))
        return ops + more, shape
    act = _activation(m)
    if act is not None:
        return [act], shape
    raise Unsupported(f"a {type(m).__name__} layer")


def _mean_op(lik) -> str:
    if lik is None or type(lik) is Gaussian:
        return "identity"
    if type(lik) is Bernoulli:
        return "sigmoid"
    if type(lik) is ContinuousBernoulli:
        return "cb_mean"
    raise Unsupported(f"the likelihood {type(lik).__name__}")


def decoder_program(model: LatentModel) -> dict[str, Any]:
    """The decoder of a fitted model as the explorer page runs it: its layers (weights as base64
    float32), the likelihood's mean, the unscaling. :class:`Unsupported` when a layer is not one
    the page knows (the page then uses a grid of decodes)."""
    _, dec = model.torch_modules()
    K = int(model.code_size)
    ops, shape = _ops(dec.net, (K + dec.cond_dim,))
    n_out = int(np.prod(shape))
    if n_out != int(np.prod(dec.input_shape)):
        raise Unsupported(f"a decoder whose output {shape} is not the data's {dec.input_shape}")
    return {"mode": "weights", "ops": ops, "mean": _mean_op(dec.likelihood), "cond_dim": dec.cond_dim,
            "offset": _b64(dec.scaling.offset), "factor": _b64(dec.scaling.factor),
            "layers": sum(o["op"] in ("linear", "conv2d", "gated") for o in ops)}


def _decode(model: LatentModel, Z: np.ndarray, c: np.ndarray | None) -> np.ndarray:
    y = None if c is None else np.repeat(np.asarray(c, np.float32).reshape(1, -1), len(Z), axis=0)
    return np.asarray(model.inverse_transform(Z.astype(np.float32), y), dtype=np.float32).reshape(len(Z), -1)


def _grid_program(model, dims, lo, hi, base, cond, n: int) -> dict[str, Any]:
    F = int(np.prod(model.input_shape_))  # features of one example as the model computes (a table: encoded)
    if n * n * F > _MAX_GRID_VALUES:
        raise ConfigError(f"grid={n}: a grid of {n} x {n} decodes of {F} values each does not fit the page "
                          f"(at most {_MAX_GRID_VALUES:,} values); choose a grid of at most "
                          f"{int((_MAX_GRID_VALUES / F) ** 0.5)}.")
    i, j = dims
    xs, ys = np.linspace(lo[i], hi[i], n), np.linspace(lo[j], hi[j], n)
    Z = np.repeat(np.asarray(base, np.float64)[None, :], n * n, axis=0)
    Z[:, i] = np.tile(xs, n)  # row r (vertical index), column q (horizontal): point r * n + q
    Z[:, j] = np.repeat(ys, n)
    values = _decode(model, Z, cond)
    return {"mode": "grid", "dims": [int(i), int(j)], "n": n, "xs": xs.tolist(), "ys": ys.tolist(),
            "base": [float(v) for v in base], "values": _b64(values)}


def _condition_info(model: LatentModel, y) -> dict[str, Any] | None:
    """The page's condition controls: class names (one-hot rows), or ranges of side inputs."""
    if not model.conditional:
        return None
    classes = getattr(model, "classes_", None)
    if classes is not None:
        return {"kind": "categorical", "classes": [str(c) for c in np.asarray(classes).tolist()],
                "initial": int(np.argmax(getattr(model, "class_prior_", np.ones(len(classes)))))}
    C = np.asarray(model.condition_features(y), dtype=np.float64) if y is not None else np.zeros((1, int(model.n_cond_)))
    return {"kind": "continuous", "lo": C.min(0).tolist(), "hi": C.max(0).tolist(), "initial": C.mean(0).tolist()}


def _initial_condition(info) -> np.ndarray | None:
    if info is None:
        return None
    if info["kind"] == "categorical":
        c = np.zeros(len(info["classes"]), np.float32)
        c[info["initial"]] = 1.0
        return c
    return np.asarray(info["initial"], np.float32)


def _labels_info(labels, n: int) -> tuple[list | None, list[str] | None]:
    """Per-point label indices and the label names (categorical), or values (continuous: names None)."""
    if labels is None:
        return None, None
    lab = np.asarray(labels)
    if lab.ndim != 1 or len(lab) != n:
        return None, None
    values, idx = np.unique(lab, return_inverse=True)
    if len(values) <= 20 or lab.dtype.kind not in "fc":
        return idx.astype(int).tolist(), [str(v) for v in values.tolist()]
    return lab.astype(float).tolist(), None


def _dim_names(model: LatentModel) -> list[str]:
    K, d1 = int(model.code_size), int(model.latent_dim)
    if K == d1:
        return [f"z{j}" for j in range(K)]
    return [f"z1[{j}]" for j in range(d1)] + [f"z2[{j}]" for j in range(K - d1)]


def _ranges(codes: np.ndarray | None, prior: np.ndarray | None, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Each dimension's range on the pad and sliders: the codes and the prior draws, plus 10%."""
    pts = [a for a in (codes, prior) if a is not None and len(a)]
    if not pts:
        return np.full(K, -3.0), np.full(K, 3.0)
    allp = np.concatenate(pts)
    lo, hi = np.quantile(allp, 0.0, axis=0), np.quantile(allp, 1.0, axis=0)
    pad = np.maximum(0.1 * (hi - lo), 1e-3)
    return lo - pad, hi + pad


def _prior_draws(model: LatentModel, y_info) -> np.ndarray | None:
    """Draws from the model's prior (or PCA's latent Gaussian); None for a model without one."""
    if not model.capabilities & {"prior", "exact_likelihood"}:
        return None
    y = None
    if y_info is not None and y_info["kind"] == "categorical":
        y = np.asarray(model.classes_)[np.zeros(1000, int) + y_info["initial"]]
    elif y_info is not None:
        y = np.repeat(np.asarray(y_info["initial"], np.float32)[None, :], 1000, axis=0)
    return np.asarray(model.sample_latent(1000, y, seed=0), dtype=np.float64)


def _display(X: np.ndarray | None, image_shape, kind: str | None, feature_names, F: int) -> dict[str, Any]:
    """How the page shows a decode: an image (shape, value range) or a table (names, ranges)."""
    if X is not None and len(X):
        lo, hi = float(np.min(X)), float(np.max(X))
    else:
        lo, hi = 0.0, 1.0
    shape = tuple(int(s) for s in image_shape) if image_shape else None
    if shape is not None and int(np.prod(shape)) == F and len(shape) in (2, 3) and (len(shape) == 2 or shape[0] in (1, 3)):
        if kind in ("image", "binary"):
            lo, hi = min(lo, 0.0), max(hi, 1.0)
        hw = shape[-2:]
        return {"kind": "image", "channels": 1 if len(shape) == 2 else shape[0], "h": hw[0], "w": hw[1],
                "lo": lo, "hi": hi if hi > lo else lo + 1.0}
    names = list(feature_names) if feature_names is not None and len(feature_names) == F else [f"x{j}" for j in range(F)]
    if X is not None and len(X):
        flo, fhi = np.min(X, axis=0), np.max(X, axis=0)
    else:
        flo, fhi = np.zeros(F), np.ones(F)
    return {"kind": "table", "names": names, "lo": np.asarray(flo, float).tolist(), "hi": np.asarray(fhi, float).tolist()}


def _check_dims(dims, K: int) -> list[int]:
    if dims is None:
        return [0, 1] if K >= 2 else [0, 0]
    if isinstance(dims, str):
        try:
            dims = [int(t) for t in dims.split(",")]
        except ValueError:
            raise ConfigError(f"dims={dims!r}: give two latent dimensions as I,J, e.g. 0,1.") from None
    dims = [int(d) for d in dims]
    if len(dims) != 2 or not all(0 <= d < K for d in dims) or (K >= 2 and dims[0] == dims[1]):
        raise ConfigError(f"dims={dims}: give two different latent dimensions between 0 and {K - 1}.")
    return dims


def _sample_rows(n: int, max_points: int, seed: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def _source(source, data, split, X, y, labels, image_shape, feature_names):
    """(model, run path or None, X, y, labels, image_shape, feature_names, kind, what) from a run
    directory, a Run, or a fitted model with its data."""
    if isinstance(source, (str, os.PathLike)):
        source = open_run(source, data)
    if isinstance(source, Run):
        run, model = source, source.model
        split = default_split(run, split, data)
        ds = pick(run, split)
        shape = image_shape or ds.image_shape or (run.info.get("data") or {}).get("image_shape")
        return (model, run.path, model_input(model, ds), condition_of(model, ds), ds.target if labels is None else labels,
                shape, feature_names or ds.feature_names, ds.kind, f"the {split} split of {ds.name or 'its data'}")
    if not isinstance(source, LatentModel):
        raise ConfigError(f"explore takes a run directory, a Run or a fitted latentlab estimator, got {type(source).__name__}.")
    shape = image_shape or (source.input_shape_ if len(getattr(source, "input_shape_", ())) >= 2 else None)
    if X is not None and source.conditional and y is None:
        raise DataError(f"a {type(source).__name__} encodes X under its condition: pass y (one per row of X).")
    labels = labels if labels is not None else (y if source.conditional and y is not None and np.ndim(y) == 1 else None)
    return source, None, X, y, labels, shape, feature_names, None, "the data given"


def _points(model, X, y, labels, max_points: int, seed: int):
    """(codes, label indices or values, label names, the rows shown) of up to ``max_points`` rows."""
    if X is None:
        return None, None, None, None
    rows = _sample_rows(len(X), max_points, seed)
    Xs = np.asarray(X[rows])
    ys = None if y is None else np.asarray(y)[rows]
    codes = np.asarray(model.transform(Xs, ys), dtype=np.float64)
    lab = None if labels is None else np.asarray(labels)[rows]
    idx, names = _labels_info(lab, len(rows))
    return codes, idx, names, Xs.reshape(len(Xs), -1).astype(np.float64)


def _program(model, decoder: str, grid: int, dims, lo, hi, base, cond) -> dict[str, Any]:
    if decoder not in DECODERS:
        raise ConfigError(f"decoder must be one of {', '.join(DECODERS)}; got {decoder!r}.")
    if decoder != "grid":
        try:
            return decoder_program(model)
        except Unsupported as exc:
            if decoder == "weights":
                raise ConfigError(f"this decoder cannot run in the page ({exc} is not one it knows); use decoder='grid'.") from None
            reason = str(exc)
    else:
        reason = "asked for"
    prog = _grid_program(model, dims, lo, hi, base, cond, grid)
    prog["reason"] = reason
    return prog


def explore(source, out: str | Path | None = None, *, data: str | None = None, split: str | None = None, X=None, y=None,
            labels=None, dims: Sequence[int] | str | None = None, decoder: str = "auto", grid: int = 24,
            max_points: int = 2000, image_shape=None, feature_names=None, seed: int = 0) -> Path:
    """Write ``explore.html``, the latent-space explorer of a model, and return its path.

    Parameters
    ----------
    source : a run directory, a :class:`~latentlab.runs.Run`, or a fitted estimator
    out : the page to write (default for a run: ``<run>/explore.html``; required for an estimator)
    data, split : for a run: another data source, and which of its rows are encoded as points
        (default: the test split; for another source without one, all its rows)
    X, y, labels : for an estimator: the rows to encode and show (optional), their condition (a
        conditional model) and their labels (the points' colours)
    dims : the two latent dimensions the pad starts on (default 0, 1; the page can change them)
    decoder : {"auto", "weights", "grid"}: decode in the page from the weights (where every layer
        is one the page knows; "auto" falls back to a grid), or from a grid of decodes
    grid : points per side of that grid
    max_points : at most this many rows encoded as points (a seeded random choice)
    image_shape, feature_names : how a decode is shown (default: the data's own); an image on a
        canvas, else a table of features
    seed : of the choice of rows

    Returns
    -------
    Path of the page.
    """
    max_points, grid = check_int(max_points, "max_points"), check_int(grid, "grid", low=2)
    model, run_path, X, y, labels, shape, names, kind, what = _source(source, data, split, X, y, labels, image_shape, feature_names)
    model._check_is_fitted()
    if out is None:
        if run_path is None:
            raise ConfigError("explore needs out=FILE.html for a model (a run writes <run>/explore.html).")
        out = Path(run_path) / "explore.html"
    K = int(model.code_size)
    dims = _check_dims(dims, K)
    codes, lab, lab_names, Xflat = _points(model, X, y, labels, max_points, seed)
    cond_info = _condition_info(model, y)
    prior = _prior_draws(model, cond_info)
    lo, hi = _ranges(codes, prior, K)
    base = np.median(codes, axis=0) if codes is not None and len(codes) else np.zeros(K)
    program = _program(model, decoder, grid, dims, lo, hi, base, _initial_condition(cond_info))
    state = {
        "title": f"{Path(run_path).name} ({model_name(model)})" if run_path is not None else model_name(model),
        "model": model_name(model), "cls": type(model).__name__, "version": __version__, "what": what,
        "K": K, "dims": dims, "names": _dim_names(model), "lo": lo.tolist(), "hi": hi.tolist(), "z0": base.tolist(),
        "points": None if codes is None else _b64(codes), "n_points": 0 if codes is None else len(codes),
        "labels": lab, "label_names": lab_names, "condition": cond_info,
        "prior": None if prior is None else {"mean": prior.mean(0).tolist(), "std": prior.std(0).tolist(),
                                             "standard": "closed_form_kl" in model.capabilities},
        "no_prior": not model.capabilities & {"prior", "exact_likelihood"},
        "display": _display(Xflat, shape, kind, names, int(np.prod(model.input_shape_))), "program": program,
    }
    blob = json.dumps(state, allow_nan=False).replace("</", "<\\/")
    page = PAGE.replace("__TITLE__", html.escape(state["title"])).replace("__STATE__", blob)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page)
    return out
