"""The regularity of a latent space: can random points be decoded into data, do straight lines
decode into smooth paths, and do the codes fill the distribution we sample from?

These are the two properties that the variational autoencoder's KL term is meant to give and
that a plain autoencoder lacks: *completeness* (a point drawn from the sampling distribution
decodes into something meaningful) and *continuity* (nearby points decode into similar content).
"""

from __future__ import annotations

import math

import numpy as np

from ..validation import check_int
from ..errors import ConfigError, DataError
from .features import FeatureSpace
from .frechet import frechet_distance

__all__ = ["regularity", "mmd2", "gaussian_kl_to_standard_normal", "continuity"]


def mmd2(A, B, bandwidth: float) -> float:
    """Unbiased estimate of the squared maximum mean discrepancy between samples A and B.

    With the Gaussian kernel k(a, b) = exp(-|a - b|^2 / (2 bandwidth^2)):
    MMD^2 = E k(a, a') + E k(b, b') - 2 E k(a, b), each expectation over distinct pairs
    (Gretton et al., 2012). It is 0 in expectation when A and B come from one distribution (the
    estimate can then be slightly negative) and at most 2.

    Parameters
    ----------
    A : (n, d), B : (m, d) arrays; bandwidth : float > 0

    Example
    -------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> abs(mmd2(rng.normal(size=(300, 2)), rng.normal(size=(300, 2)), 1.0)) < 0.02
    True
    """
    A = np.asarray(A, np.float64)
    B = np.asarray(B, np.float64)
    if A.shape[0] < 2 or B.shape[0] < 2:
        raise DataError("mmd2 needs at least 2 vectors in each set.")
    g = -0.5 / float(bandwidth) ** 2

    def kmean(P, Q, same):
        d2 = (P * P).sum(1)[:, None] + (Q * Q).sum(1)[None, :] - 2.0 * P @ Q.T
        K = np.exp(g * np.clip(d2, 0.0, None))
        if same:
            n = P.shape[0]
            return (K.sum() - np.trace(K)) / (n * (n - 1))
        return K.mean()

    return float(kmean(A, A, True) + kmean(B, B, True) - 2.0 * kmean(A, B, False))


def gaussian_kl_to_standard_normal(Z) -> float | None:
    """KL( N(mean(Z), cov(Z)) || N(0, I) ) in nats: how far the codes' first two moments are from
    the prior's. None when the covariance is singular (codes confined to a subspace)."""
    Z = np.asarray(Z, np.float64)
    d = Z.shape[1]
    m = Z.mean(0)
    S = np.cov(Z, rowvar=False).reshape(d, d)
    sign, logdet = np.linalg.slogdet(S)
    if sign <= 0 or not np.isfinite(logdet):
        return None
    return float(0.5 * (np.trace(S) + m @ m - d - logdet))


def _codes(model, X, *, sample: bool, seed: int) -> np.ndarray:
    if sample and "posterior" in model.capabilities:
        return np.asarray(model.transform(X, sample=True, seed=seed), np.float64)
    return np.asarray(model.transform(X), np.float64)


def _decode(model, Z) -> np.ndarray:
    out = model.inverse_transform(np.asarray(Z, np.float32))
    return np.asarray(out, np.float64).reshape(len(Z), -1)


def continuity(model, X, *, n_pairs: int = 100, n_steps: int = 20, seed: int = 0, features: FeatureSpace | None = None) -> dict:
    """How smoothly decoded outputs change along straight lines between codes of held-out pairs.

    For ``n_pairs`` random pairs (a, b) of rows of X, with codes z_a, z_b (posterior means for a
    VAE), the points z_j = z_a + (j / S)(z_b - z_a), j = 0..S (S = ``n_steps``) are decoded to
    x_j (decoder means, data units) and the steps d_j = |x_{j+1} - x_j| (Euclidean) measured.

    Returns a dict with
    - ``continuity_max_step``: mean over pairs of max_j d_j / sum_j d_j, the largest step as a
      fraction of the whole decoded path. 1/S when the output changes evenly (a linear decoder
      gives exactly 1/S), 1 when it all happens in one jump. Lower is smoother.
    - ``continuity_max_step_p90``: its 90th percentile over pairs.
    - ``continuity_path_ratio``: mean of sum_j d_j / |x_S - x_0|, the decoded path's length over
      the straight distance between its ends (1 for a linear decoder; large when the path
      wanders through other content).
    - ``continuity_midpoint_confidence``: the classifier's mean confidence on the decoded
      midpoints (j = S/2), when ``features`` is a classifier.
    """
    n_pairs = check_int(n_pairs, "n_pairs")
    n_steps = check_int(n_steps, "n_steps")
    rng = np.random.default_rng(seed)
    A = model._check_X(X, reset=False)
    n = A.shape[0]
    if n < 2:
        raise DataError("continuity needs at least 2 examples to draw pairs from.")
    a = rng.integers(0, n, size=n_pairs)
    b = (a + rng.integers(1, n, size=n_pairs)) % n  # never the example itself
    Z = _codes(model, A, sample=False, seed=seed)
    t = np.linspace(0.0, 1.0, n_steps + 1)[None, :, None]
    path = Z[a][:, None, :] * (1.0 - t) + Z[b][:, None, :] * t  # (P, S+1, D)
    Xp = _decode(model, path.reshape(-1, Z.shape[1])).reshape(n_pairs, n_steps + 1, -1)
    steps = np.linalg.norm(np.diff(Xp, axis=1), axis=-1)  # (P, S)
    length = steps.sum(1)
    ends = np.linalg.norm(Xp[:, -1] - Xp[:, 0], axis=-1)
    ok = (length > 0) & (ends > 0)
    if not ok.any():
        raise DataError("every decoded path has length 0: the decoder ignores its input.")
    frac = steps[ok].max(1) / length[ok]
    res = {
        "continuity_max_step": float(frac.mean()),
        "continuity_max_step_p90": float(np.quantile(frac, 0.9)),
        "continuity_path_ratio": float((length[ok] / ends[ok]).mean()),
        "continuity_n_pairs": int(ok.sum()),
        "continuity_n_steps": n_steps,
    }
    if features is not None and features.kind_ == "classifier":
        res["continuity_midpoint_confidence"] = features.confidence(Xp[:, n_steps // 2])
    return res


def regularity(model, X_train, X_test, *, y_train=None, features: FeatureSpace | None = None,
               n_samples: int = 1000, seed: int = 0, n_pairs: int = 100, n_steps: int = 20) -> dict:
    """Measures of the regularity of ``model``'s latent space, as a flat JSON-ready dict.

    **Generation quality** (completeness, seen through the decoder). Random latent points are
    decoded (decoder means, data units) and compared with held-out data in ``features``'s space:
    ``fd_<source>`` is the Frechet distance between their features and those of X_test (lower:
    closer to real data), ``confidence_<source>`` the classifier's mean largest class
    probability on them (higher: more recognisable). Sources: ``prior`` for a VAE (z ~ p(z),
    through ``model.sample``); ``standard_normal`` (z ~ N(0, I)) for an autoencoder or PCA, which
    have no prior; and for every model ``fitted_gaussian`` (z ~ N(m, S), the mean and covariance
    of the training codes ``model.transform(X_train)``, posterior means for a VAE) and ``gmm``
    (z from a Gaussian mixture fitted to those codes, its number of components ``gmm_components``
    chosen by BIC: ex-post density estimation, Ghosh et al., 2020). For a VAE the
    latter is a diagnostic: with the same decoder, a gap between ``fd_prior`` and
    ``fd_fitted_gaussian`` comes from the mismatch between the prior and the codes the encoder
    actually produces. For scale, ``fd_real`` / ``confidence_real`` compare
    ``n_samples`` training examples with X_test (the best a model can do at this sample size),
    and ``fd_reconstruction`` / ``confidence_reconstruction`` use X_test's own reconstructions.

    **Continuity**: see :func:`continuity` (``continuity_*`` keys), on pairs from X_test.

    **Completeness** of the code distribution: how far the codes of X_test are from the
    distribution the model samples from: its prior for a VAE (one draw z ~ q(z|x) per example,
    i.e. samples of the aggregate posterior, against as many draws of ``module_.sample_prior``),
    N(0, I) for an autoencoder and PCA (their codes). ``completeness_mmd2`` is the unbiased MMD^2
    (:func:`mmd2`) with the Gaussian kernel of bandwidth sqrt(d), d the code size (the
    median-distance heuristic's value for N(0, I) itself, fixed so that models compare);
    ``completeness_gauss_kl`` is KL(N(m, S) || N(0, I)) for the codes' mean and covariance
    (not reported for VAEs whose prior is not N(0, I)). Both are 0 for codes distributed as the
    prior. For an autoencoder and PCA
    also ``completeness_mmd2_fitted``: the MMD^2 against the fitted Gaussian (how non-Gaussian
    the codes are). PCA's codes are not whitened unless ``whiten=True``, so their distance to
    N(0, I) mostly measures their scale.

    Parameters
    ----------
    model : fitted VAE (or variant with ``sample``), Autoencoder or PCA
    X_train : data the model was trained on (for the fitted Gaussian, the reference and, when
        ``features`` is None, the feature space)
    X_test : held-out data
    y_train : labels of X_train, used only to fit a FeatureSpace when ``features`` is None
    features : a fitted :class:`FeatureSpace` (fit once, reuse for every model), or None
    n_samples : random latent points decoded per source
    seed : seeds every draw
    n_pairs, n_steps : of the continuity measure

    Returns
    -------
    dict of str -> float / int / str

    Example
    -------
    >>> from latentlab import Autoencoder
    >>> from latentlab.datasets import load_digits
    >>> from latentlab.evaluation import FeatureSpace, regularity
    >>> d = load_digits()
    >>> fs = FeatureSpace(seed=0).fit(d.data[:1400], d.target[:1400])
    >>> ae = Autoencoder(latent_dim=2, hidden=(32,), epochs=2, verbose=False).fit(d.data[:1400])
    >>> r = regularity(ae, d.data[:1400], d.data[1400:], features=fs, n_samples=200)
    >>> r["fd_fitted_gaussian"] >= 0 and 0 < r["continuity_max_step"] <= 1
    True
    """
    n_samples = check_int(n_samples, "n_samples", low=2)
    seed = check_int(seed, "seed", low=0)
    model._check_is_fitted()
    Atr = np.asarray(model._check_X(X_train, reset=False), np.float64).reshape(-1, int(np.prod(model.input_shape_)))
    Ate = np.asarray(model._check_X(X_test, reset=False), np.float64).reshape(-1, int(np.prod(model.input_shape_)))
    if len(Ate) < 2:
        raise DataError("X_test needs at least 2 examples.")
    if features is None:
        features = FeatureSpace(seed=seed).fit(Atr, y_train)
    caps = model.capabilities
    is_vae = "prior" in caps
    if is_vae:
        if model.conditional:
            raise ConfigError(
                f"regularity does not handle conditional models ({type(model).__name__}): its random "
                "points need a condition each. Measure the unconditional VAE, or sample per label "
                "with model.sample(n, y=...) and use frechet_distance on FeatureSpace features."
            )
    rng = np.random.default_rng(seed)
    train_codes = _codes(model, Atr, sample=False, seed=seed)
    D = int(train_codes.shape[1])  # the code size (D1 + D2 for two stochastic layers)
    F_test = features.features(Ate)
    res: dict = {"model": type(model).__name__, "latent_dim": D, "feature_space": features.description,
                 "n_samples": n_samples, "n_test": int(len(Ate))}

    def score(name, Xs):
        res[f"fd_{name}"] = frechet_distance(features.features(Xs), F_test)
        conf = features.confidence(Xs)
        if conf is not None:
            res[f"confidence_{name}"] = conf

    ref = Atr[rng.choice(len(Atr), size=min(n_samples, len(Atr)), replace=False)]
    score("real", ref)
    score("reconstruction", np.asarray(model.inverse_transform(model.transform(Ate)), np.float64).reshape(len(Ate), -1))

    if is_vae:
        score("prior", np.asarray(model.sample(n_samples, seed=seed), np.float64).reshape(n_samples, -1))
    else:
        score("standard_normal", _decode(model, rng.standard_normal((n_samples, D))))
    # For every model (for a VAE, as a diagnostic: the same scheme as the autoencoder's, which
    # separates the decoder's quality from the match between prior and aggregate posterior).
    m, S = train_codes.mean(0), np.cov(train_codes, rowvar=False).reshape(D, D)
    w, V = np.linalg.eigh(0.5 * (S + S.T))
    root = V * np.sqrt(np.clip(w, 0.0, None))  # S = root root^T, also when S is singular
    score("fitted_gaussian", _decode(model, m + rng.standard_normal((n_samples, D)) @ root.T))
    # Ex-post density estimation: a Gaussian mixture (components by BIC) fitted to the training codes.
    from ..models.samplers import MAX_CODES, LatentDensity

    sub = np.random.default_rng(seed + 3).permutation(len(train_codes))[:MAX_CODES]
    gmm = LatentDensity.fit(train_codes[sub], "gmm", seed=seed)
    score("gmm", _decode(model, gmm.sample(n_samples, seed=seed + 4)))
    res["gmm_components"] = gmm.n_components

    res.update(continuity(model, Ate, n_pairs=n_pairs, n_steps=n_steps, seed=seed, features=features))

    codes = _codes(model, Ate, sample=True, seed=seed)
    bw = math.sqrt(D)
    standard = True
    if is_vae:
        standard = "closed_form_kl" in caps
        prior = np.asarray(model.sample_latent(len(codes), seed=seed + 2), np.float64)
    else:
        prior = rng.standard_normal(codes.shape)
    res["completeness_mmd2"] = mmd2(codes, prior, bw)
    if standard:
        res["completeness_gauss_kl"] = gaussian_kl_to_standard_normal(codes)
    res["completeness_bandwidth"] = bw
    if not is_vae:
        res["completeness_mmd2_fitted"] = mmd2(codes, m + rng.standard_normal(codes.shape) @ root.T, bw)
    return res
