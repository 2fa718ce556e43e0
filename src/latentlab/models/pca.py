"""Principal component analysis: the optimal linear encoder and decoder, in closed form."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from ..validation import check_int, iter_chunks
from ..errors import ConfigError, DataError
from . import constraints
from .base import LatentModel
from .registry import register

__all__ = ["PCA"]

_LOG_2PI = np.log(2.0 * np.pi)


def _covariance(Xc: np.ndarray) -> np.ndarray:
    """Xc^T Xc for data Xc (n, F), with BLAS ``syrk`` (half the work of a general product)."""
    syrk = scipy.linalg.blas.dsyrk if Xc.dtype == np.float64 else scipy.linalg.blas.ssyrk
    # Xc is C-contiguous (n, F), i.e. Fortran (F, n) for BLAS: syrk(a=Xc.T, trans=0) = Xc^T Xc.
    upper = syrk(1.0, Xc.T, trans=0, lower=0)
    return np.triu(upper) + np.triu(upper, 1).T


def _centred_scatter(Xf: np.ndarray, mean: np.ndarray, rows: int = 4096) -> np.ndarray:
    """(Xf - mean)^T (Xf - mean) without a centred copy of Xf: blocks of ``rows`` rows are centred
    into one reused buffer (it stays in cache, and no n x F array is allocated and faulted in) and
    accumulated by ``syrk`` (beta = 1) in Xf's precision."""
    syrk = scipy.linalg.blas.dsyrk if Xf.dtype == np.float64 else scipy.linalg.blas.ssyrk
    n, F = Xf.shape
    buf = np.empty((min(n, rows), F), dtype=Xf.dtype)
    upper = np.zeros((F, F), dtype=Xf.dtype, order="F")
    for start in range(0, n, rows):
        b = np.subtract(Xf[start : start + rows], mean, out=buf[: min(rows, n - start)])
        upper = syrk(1.0, b.T, beta=1.0, c=upper, trans=0, lower=0, overwrite_c=1)
    return np.triu(upper) + np.triu(upper, 1).T


#: Largest (variance + mean^2) / variance of a feature for which X^T X - n m m^T is accurate enough
#: in float32 (it loses about log10 of this many of float32's 7 digits to cancellation).
_MAX_CANCELLATION = 16.0


def _covariance_of(Xf: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Sample covariance (F, F) of Xf (n, F), n >= F.

    The fast way is one BLAS product of the raw data, X^T X - n m m^T (no pass to centre the
    data); it loses digits to cancellation when a feature's mean is large against its spread,
    so then the centred blocks of :func:`_centred_scatter` are used instead. Standardized and
    [0, 1] image data (latentlab's own scalings) take the fast way.
    """
    n = Xf.shape[0]
    # SciPy's BLAS, like the eigensolver after it: NumPy's own BLAS threads would still be
    # spinning when SciPy's start, and on a small machine the two pools slow each other down.
    S = _covariance(Xf)
    m = mean.astype(np.float64)
    sq = np.diag(S).astype(np.float64) / n
    var = sq - m * m
    moving = sq > 0  # all-zero features have nothing to cancel
    if np.all(var[moving] * _MAX_CANCELLATION >= sq[moving]):
        C = (S.astype(np.float64) - n * np.outer(m, m)) / (n - 1)
        return C.astype(Xf.dtype) if Xf.dtype == np.float32 else C
    return _centred_scatter(Xf, mean) / (n - 1)


def _on_disk(A) -> bool:
    from ..memmap import on_disk

    return on_disk(A)


@register("pca", order=0)
class PCA(LatentModel):
    """Principal component analysis from the top eigenvectors of the covariance.

    The encoder is ``Z = (X - mean_) @ components_.T`` (divided by ``sqrt(explained_variance_)``
    when whitening) and the decoder its transpose: the linear pair with the least squared
    reconstruction error for ``latent_dim`` dimensions. ``score`` is the log-likelihood of
    probabilistic PCA (Tipping & Bishop, 1999) in nats per example, so PCA stands in one table
    with the VAE.

    Parameters
    ----------
    latent_dim : int
        Number of components kept.
    whiten : bool
        Scale the codes to unit variance.
    scale : {None, "standard", "minmax"}
        Scaling of each feature learned at fit, applied before PCA and undone on output.

    Attributes
    ----------
    components_ : ndarray of shape (latent_dim, n_features)
        Principal axes, unit norm, in decreasing order of variance; each row's largest-magnitude
        entry is positive.
    explained_variance_ : ndarray of shape (latent_dim,)
        Variance along each axis (eigenvalues of the covariance with the n - 1 denominator).
    explained_variance_ratio_ : ndarray of shape (latent_dim,)
    singular_values_ : ndarray of shape (latent_dim,)
    mean_ : ndarray of shape (n_features,)
    noise_variance_ : float
        Mean of the discarded eigenvalues: probabilistic PCA's isotropic noise.

    Example
    -------
    >>> import numpy as np
    >>> from latentlab import PCA
    >>> X = np.random.default_rng(0).normal(size=(100, 5))
    >>> pca = PCA(latent_dim=2).fit(X)
    >>> pca.transform(X).shape, pca.inverse_transform(pca.transform(X)).shape
    ((100, 2), (100, 5))
    """

    _fitted_attr = "components_"
    _parameter_constraints = {"latent_dim": constraints.POSITIVE_INT, "whiten": ["boolean"], **constraints.SCALE}

    def __init__(self, latent_dim: int = 2, whiten: bool = False, scale=None):
        self.latent_dim = latent_dim
        self.whiten = whiten
        self.scale = scale

    def _dtype_for(self, X):
        dt = getattr(X, "dtype", None)
        if isinstance(X, torch.Tensor):
            return np.float32 if X.dtype in (torch.float32, torch.float16, torch.bfloat16) else np.float64
        return np.float32 if dt == np.float32 else np.float64

    def fit(self, X, y=None):
        """Fit on X of shape (n_samples, n_features) or images (n, H, W) / (n, C, H, W)."""
        self._validate_params()
        k = check_int(self.latent_dim, "latent_dim")
        A = self._check_X(X, reset=True, min_samples=2)
        dtype = np.dtype(self._dtype_for(X))
        n, F = A.shape[0], self._n_model_features
        if k > min(n, F):
            raise ConfigError(
                f"latent_dim={k} is larger than the data allows: X has {n} sample(s) and {F} "
                f"feature(s), so min(n_samples, n_features) = {min(n, F)}; choose latent_dim <= {min(n, F)}."
            )
        if _on_disk(A) and n >= F:
            # Memory-mapped data: two passes in chunks (mean, then the centred scatter in float64),
            # so that nothing larger than one chunk and the (F, F) covariance is in memory.
            s1 = np.zeros(F)
            for _, b in iter_chunks(A, dtype=np.float64):
                s1 += self._apply_scaler(b).reshape(len(b), -1).sum(0)
            mean = s1 / n
            C = np.zeros((F, F))
            for _, b in iter_chunks(A, dtype=np.float64):
                C += _covariance(self._apply_scaler(b).reshape(len(b), -1) - mean)
            C /= n - 1
            self.mean_ = mean.astype(dtype)
            total_var = float(np.trace(C))
        else:
            Xf = self._apply_scaler(np.asarray(A, dtype=dtype)).reshape(n, -1)
            self.mean_ = Xf.mean(axis=0)
            if n >= F:
                C = _covariance_of(np.ascontiguousarray(Xf), self.mean_)
                total_var = float(np.trace(C, dtype=np.float64))
            else:  # fewer samples than features: the SVD of the centred data
                C, Xc = None, Xf - self.mean_
                total_var = float(np.einsum("ij,ij->", Xc, Xc, dtype=np.float64)) / (n - 1)
        if C is not None:
            evals, evecs = scipy.linalg.eigh(C, subset_by_index=[F - k, F - 1], check_finite=False)
            order = np.argsort(evals)[::-1]
            evals = np.clip(evals[order], 0.0, None)
            comps = evecs[:, order].T
        else:
            _, s, vt = scipy.linalg.svd(Xc, full_matrices=False, check_finite=False)
            evals = s[:k] ** 2 / (n - 1)
            comps = vt[:k]
        # Deterministic signs: the largest-magnitude entry of each axis is positive.
        signs = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])
        signs[signs == 0] = 1.0
        self.components_ = (comps * signs[:, None]).astype(dtype)
        self.explained_variance_ = evals.astype(dtype)
        self.explained_variance_ratio_ = (evals / total_var if total_var > 0 else np.zeros_like(evals)).astype(dtype)
        self.singular_values_ = np.sqrt(evals * (n - 1)).astype(dtype)
        rest = max(total_var - float(evals.sum()), 0.0)
        self.noise_variance_ = rest / (F - k) if F > k else 0.0
        self.n_samples_ = n
        self._keep_codes(A)
        return self

    def _centred_chunks(self, X, dtype):
        """Scaled, flattened, centred X: one block in memory, or chunks of memory-mapped data."""
        A = self._check_X(X, reset=False)
        if _on_disk(A):
            blocks = (b for _, b in iter_chunks(A, dtype=dtype))
        else:
            blocks = iter([np.asarray(A, dtype=dtype)])
        for b in blocks:
            yield (self._apply_scaler(b).reshape(len(b), -1) - self.mean_).astype(dtype, copy=False)

    def transform(self, X, y=None):
        """Codes of shape (n, latent_dim). ``y`` is ignored."""
        self._check_is_fitted()
        dtype = np.result_type(self.components_.dtype, self._dtype_for(X))
        Z = np.concatenate([Xc @ self.components_.T for Xc in self._centred_chunks(X, dtype)])
        if self.whiten:
            Z = Z / np.sqrt(np.maximum(self.explained_variance_, np.finfo(Z.dtype).tiny))
        return Z

    def inverse_transform(self, Z, y=None):
        """Reconstructions from codes, shaped and scaled like the training data. ``y`` is ignored."""
        Zc = self._check_Z(Z)
        if self.whiten:
            Zc = Zc * np.sqrt(self.explained_variance_)
        return self._output(Zc @ self.components_ + self.mean_)

    def torch_modules(self, *, logvar: bool = False):
        """The encoder and the decoder as linear torch modules in the user's units (see
        :meth:`LatentModel.torch_modules`): ``encoder(x) = W (x - mean_)`` (divided by
        ``sqrt(explained_variance_)`` when whitening) and ``decoder(z) = W^T z + mean_``, with the
        data scaling folded in; float32. PCA's codes have no variance: ``logvar`` is an error."""
        from ..nn.graphs import DataDecoder, DataEncoder, linear

        self._check_is_fitted()
        if logvar:
            raise ConfigError("PCA's codes are a linear map of x with no posterior variance; export without logvar.")
        W = self.components_.astype(np.float64)  # (k, F)
        s = np.sqrt(np.maximum(self.explained_variance_.astype(np.float64), np.finfo(np.float32).tiny))
        s = s if self.whiten else np.ones_like(s)
        mean = self.mean_.astype(np.float64)
        enc = linear(W / s[:, None], -(W @ mean) / s)
        dec = linear((W * s[:, None]).T, mean)
        F = self._n_model_features
        shape = (F,)
        return (DataEncoder(enc, F, shape, self.scale_offset_, self.scale_factor_).eval(),
                DataDecoder(dec, self.input_shape_, self.scale_offset_, self.scale_factor_).eval())

    @property
    def capabilities(self) -> frozenset[str]:
        # Probabilistic PCA has a density only when some variance is discarded (noise > 0).
        return frozenset({"exact_likelihood", "reconstruction_nll"} if self.noise_variance_ > 0 else ())

    def _prior_latent(self, n: int, seed) -> np.ndarray:
        """z from probabilistic PCA's latent Gaussian N(0, diag(explained_variance_)) (N(0, I) when
        whitening): decoded, data whose covariance is the top-k part of the data's."""
        z = super()._prior_latent(n, seed)
        return z if self.whiten else z * np.sqrt(self.explained_variance_).astype(np.float32)

    def reconstruction_nll(self, X, y=None) -> np.ndarray:
        """-log N(x; x_hat, noise_variance_ I) per example, nats, of the scaled data: probabilistic
        PCA's noise model around the reconstruction. (n,)."""
        self._check_is_fitted()
        s2 = float(self.noise_variance_)
        if s2 <= 0:
            raise DataError("probabilistic PCA's noise variance is 0, so its reconstruction likelihood is undefined; "
                            "choose a smaller latent_dim.")
        out = []
        for Xc in self._centred_chunks(X, np.float64):
            # Xc - x_hat is the part of Xc outside the principal subspace.
            d = Xc - (Xc @ self.components_.T.astype(np.float64)) @ self.components_.astype(np.float64)
            out.append(0.5 * (d**2).sum(1) / s2 + 0.5 * Xc.shape[1] * np.log(2 * np.pi * s2))
        return np.concatenate(out)

    def get_covariance(self) -> np.ndarray:
        """Probabilistic PCA's model covariance W W^T + noise_variance * I, (n_features, n_features)."""
        self._check_is_fitted()
        ev = np.maximum(self.explained_variance_ - self.noise_variance_, 0.0)
        cov = (self.components_.T * ev) @ self.components_
        cov[np.diag_indices_from(cov)] += self.noise_variance_
        return cov

    def score_samples(self, X) -> np.ndarray:
        """Log-likelihood of each example under probabilistic PCA, in nats. Shape (n,).

        Computed through the Woodbury identity in O(F k) per example; undefined (error) when the
        discarded variance is zero, as the model is then degenerate.
        """
        self._check_is_fitted()
        F = self._n_model_features
        s2 = float(self.noise_variance_)
        if s2 <= 0:
            raise DataError(
                "probabilistic PCA's noise variance is 0 (latent_dim equals the data's rank), so its "
                "likelihood is undefined; choose a smaller latent_dim."
            )
        lam = np.maximum(self.explained_variance_.astype(np.float64), s2)
        W = self.components_.astype(np.float64)
        logdet = np.log(lam).sum() + (F - W.shape[0]) * np.log(s2)
        out = []
        for Xc in self._centred_chunks(X, np.float64):
            proj = Xc @ W.T  # (n, k)
            # x^T C^-1 x = |x|^2 / s2 - sum_j proj_j^2 (1/s2 - 1/lam_j); log|C| = sum log lam + (F-k) log s2
            maha = (Xc * Xc).sum(1) / s2 - (proj**2 * (1.0 / s2 - 1.0 / lam)).sum(1)
            out.append(-0.5 * (maha + logdet + F * _LOG_2PI))
        return np.concatenate(out)

    def score(self, X, y=None) -> float:
        """Mean probabilistic-PCA log-likelihood, nats per example (higher is better)."""
        return float(np.mean(self.score_samples(X)))

    # ------------------------------------------------------------------ persistence
    def _state(self):
        state = self._base_state()
        state.update(
            noise_variance=self.noise_variance_,
            n_samples=self.n_samples_,
            dtype=str(self.components_.dtype),
        )
        tensors = {
            "components": torch.from_numpy(np.ascontiguousarray(self.components_)),
            "explained_variance": torch.from_numpy(self.explained_variance_),
            "explained_variance_ratio": torch.from_numpy(self.explained_variance_ratio_),
            "singular_values": torch.from_numpy(self.singular_values_),
            "mean": torch.from_numpy(np.ascontiguousarray(self.mean_)),
        }
        return state, tensors

    def _restore(self, state, tensors):
        self._restore_base(state)
        k, F = int(self.latent_dim), self._n_model_features
        comps = tensors["components"].numpy()
        expected = {"components": (k, F), "mean": (F,), "explained_variance": (k,),
                    "explained_variance_ratio": (k,), "singular_values": (k,)}
        for name, shape in expected.items():
            if tuple(tensors[name].shape) != shape:
                from ..errors import CheckpointError

                raise CheckpointError(
                    f"the saved PCA {name} has shape {tuple(tensors[name].shape)}, but the settings "
                    f"(latent_dim={k}, {F} features) need {shape}; the weights and config.json do not "
                    "belong together: save the model again."
                )
        self.components_ = comps
        self.explained_variance_ = tensors["explained_variance"].numpy()
        self.explained_variance_ratio_ = tensors["explained_variance_ratio"].numpy()
        self.singular_values_ = tensors["singular_values"].numpy()
        self.mean_ = tensors["mean"].numpy()
        self.noise_variance_ = float(state["noise_variance"])
        self.n_samples_ = int(state["n_samples"])
        if not (np.isfinite(self.noise_variance_) and self.noise_variance_ >= 0 and self.n_samples_ >= 1):
            from ..errors import CheckpointError

            raise CheckpointError(
                f"the saved noise_variance ({self.noise_variance_!r}) or n_samples ({self.n_samples_!r}) is out of range "
                "(a finite variance >= 0, one sample or more): config.json is damaged: save the model again."
            )
