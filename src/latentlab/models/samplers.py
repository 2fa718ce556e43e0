"""Densities fitted to a model's training codes, to sample latent points from (ex-post density
estimation, Ghosh et al., 2020).

A plain autoencoder has no prior, and a VAE's N(0, I) prior has holes where its codes are not:
decoding points drawn from a density fitted to the codes the encoder actually produces fills them.
``"gmm"`` is scikit-learn's ``GaussianMixture`` (full covariances), with the number of components
chosen by BIC; ``"gaussian"`` is one Gaussian (the mean and covariance of the codes). Both are
stored as plain arrays (weights, means, covariances) and saved with the model in safetensors, so
loading never unpickles.

Example
-------
>>> import numpy as np
>>> codes = np.random.default_rng(0).normal(size=(500, 2))
>>> s = LatentDensity.fit(codes, "gmm", max_components=3, seed=0)
>>> s.sample(4, seed=1).shape, 1 <= s.n_components <= 3
((4, 2), True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import CheckpointError, ConfigError, DataError
from ..validation import check_choice, check_int

__all__ = ["LatentDensity", "LatentSampling", "FITTED_SAMPLERS", "MAX_CODES"]

#: The samplers fitted to codes (besides "prior", which is the model's own).
FITTED_SAMPLERS = ("gmm", "gaussian")
#: Training codes kept with a fitted model for its fitted samplers (a random subset beyond this).
MAX_CODES = 5000


@dataclass
class LatentDensity:
    """A Gaussian mixture over latent codes: ``weights`` (m,), ``means`` (m, D), ``covariances`` (m, D, D)."""

    kind: str
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    bic: list = field(default_factory=list)

    @property
    def n_components(self) -> int:
        return int(len(self.weights))

    @classmethod
    def fit(cls, codes, kind: str = "gmm", *, n_components: int | None = None, max_components: int = 10,
            seed: int = 0) -> "LatentDensity":
        """Fit to ``codes`` (n, D). For "gmm", ``n_components`` fixed, or chosen by BIC over
        1..``max_components`` (scikit-learn's GaussianMixture, full covariances)."""
        Z = np.asarray(codes, dtype=np.float64)
        if Z.ndim != 2 or len(Z) < 2 or not np.all(np.isfinite(Z)):
            raise DataError(f"a latent density needs at least 2 finite codes of shape (n, D); got shape {Z.shape}.")
        if kind == "gaussian":
            cov = np.cov(Z, rowvar=False).reshape(Z.shape[1], Z.shape[1])
            return cls("gaussian", np.ones(1), Z.mean(0, keepdims=True), cov[None] + 1e-9 * np.eye(Z.shape[1]))
        if kind != "gmm":
            raise ConfigError(f"sampler must be one of 'prior', {', '.join(map(repr, FITTED_SAMPLERS))}; got {kind!r}.")
        from sklearn.mixture import GaussianMixture

        sizes = [check_int(n_components, "n_components")] if n_components is not None else \
            range(1, min(check_int(max_components, "max_components"), len(Z) // 2) + 1)
        best, bics = None, []
        for m in sizes:
            g = GaussianMixture(m, covariance_type="full", random_state=seed, reg_covar=1e-6).fit(Z)
            bics.append(float(g.bic(Z)))
            if best is None or bics[-1] <= min(bics):
                best = g
        return cls("gmm", best.weights_, best.means_, best.covariances_, bics)

    def sample(self, n: int, *, seed=None) -> np.ndarray:
        """``n`` draws (n, D), float32: a component by its weight, then its Gaussian."""
        n = check_int(n, "n")
        rng = np.random.default_rng(seed)
        comp = rng.choice(self.n_components, size=n, p=self.weights / self.weights.sum())
        D = self.means.shape[1]
        out = np.empty((n, D))
        for j in np.unique(comp):
            w, V = np.linalg.eigh(0.5 * (self.covariances[j] + self.covariances[j].T))
            root = V * np.sqrt(np.clip(w, 0.0, None))
            sel = comp == j
            out[sel] = self.means[j] + rng.standard_normal((int(sel.sum()), D)) @ root.T
        return out.astype(np.float32)

    def to_state(self, prefix: str) -> tuple[dict, dict]:
        """(JSON state, tensors) for the model's config.json and safetensors."""
        import torch

        tensors = {f"{prefix}.{k}": torch.from_numpy(np.ascontiguousarray(getattr(self, k), dtype=np.float64))
                   for k in ("weights", "means", "covariances")}
        return {"kind": self.kind, "bic": list(self.bic)}, tensors

    @classmethod
    def from_state(cls, state: dict, tensors: dict, prefix: str, code_size: int) -> "LatentDensity":
        arrays = {k: tensors[f"{prefix}.{k}"].numpy().astype(np.float64) for k in ("weights", "means", "covariances")}
        m = len(arrays["weights"])
        if m < 1 or arrays["means"].shape != (m, code_size) or arrays["covariances"].shape != (m, code_size, code_size):
            raise DataError(f"the saved {prefix} does not fit codes of size {code_size}; save the model again.")
        return cls(str(state.get("kind", "gmm")), bic=list(state.get("bic", [])), **arrays)


class LatentSampling:
    """The fitted samplers of a :class:`~latentlab.models.base.LatentModel` (a mixin): the codes of
    up to MAX_CODES training rows kept at fit, the densities fitted to them, and their saved form."""

    def _check_sampler(self, sampler: str) -> None:
        check_choice(sampler, "sampler", ("prior", *FITTED_SAMPLERS))

    def _keep_codes(self, A, y=None) -> None:
        """Keep the codes of up to MAX_CODES random training rows, for the fitted samplers. The rows
        are read as the trainer reads batches (positioned reads for data on disk, so that choosing
        rows of a memory map keeps the resident set bounded)."""
        import torch

        from ..training.data import ArrayData

        n = A.shape[0]
        rows = np.sort(np.random.default_rng(getattr(self, "seed", 0)).choice(n, size=min(n, MAX_CODES), replace=False))
        yr = None if y is None else np.asarray(y)
        if type(A) is np.ndarray:  # in memory: the rows at once (a copy, writable whatever A is)
            self.train_codes_ = np.asarray(self.transform(A[rows], None if yr is None else yr[rows]), dtype=np.float32)
            self.samplers_ = {}
            return
        data = ArrayData([A], torch.device("cpu"), index=rows)
        codes, start = [], 0
        for (x,) in data.slices(int(getattr(self, "batch_size", 1024))):
            yb = None if yr is None else yr[rows[start:start + len(x)]]
            codes.append(np.asarray(self.transform(x.numpy().reshape(len(x), *A.shape[1:]), yb), dtype=np.float32))
            start += len(x)
        self.train_codes_ = np.concatenate(codes)
        self.samplers_ = {}

    def fit_sampler(self, X=None, y=None, *, sampler: str = "gmm", n_components: int | None = None,
                    max_components: int = 10, seed: int = 0):
        """Fit the latent density ``sampler`` ("gmm" or "gaussian") to the codes of X (default: the
        training codes kept at fit), so that ``sample(n, sampler=...)`` draws from it. Returns self.

        Example
        -------
        >>> from latentlab import Autoencoder
        >>> from latentlab.datasets import load_digits
        >>> X = load_digits().data
        >>> ae = Autoencoder(latent_dim=2, hidden=(32,), epochs=3, verbose=False).fit(X)
        >>> ae.fit_sampler(X, max_components=3).sample(5, sampler="gmm", seed=0).shape
        (5, 64)
        """
        self._check_is_fitted()
        codes = self.train_codes_ if X is None else self.transform(X, y)
        density = LatentDensity.fit(codes, sampler, n_components=n_components, max_components=max_components, seed=seed)
        if not hasattr(self, "samplers_"):
            self.samplers_ = {}
        self.samplers_[sampler] = density
        return self

    def latent_density(self, sampler: str = "gmm"):
        """The fitted :class:`~latentlab.models.samplers.LatentDensity` ``sampler``, fitted now from
        the kept training codes if it is not yet."""
        density = getattr(self, "samplers_", {}).get(sampler)
        if density is None:
            if getattr(self, "train_codes_", None) is None:
                raise DataError(
                    f"this {type(self).__name__} has no training codes to fit sampler={sampler!r} to (it was saved by an "
                    "older latentlab); call model.fit_sampler(X_train) first (`latentlab sample RUN --sampler gmm` "
                    "does it from the run's training split)."
                )
            self.fit_sampler(sampler=sampler)
            density = self.samplers_[sampler]
        return density

    def _latent_state(self, state: dict, tensors: dict) -> None:
        """Add the kept training codes and the fitted samplers to a model's state and tensors."""
        import torch

        codes = getattr(self, "train_codes_", None)
        if codes is not None:
            tensors["latent.codes"] = torch.from_numpy(np.ascontiguousarray(codes, dtype=np.float32))
        state["samplers"] = {}
        for name, density in getattr(self, "samplers_", {}).items():
            state["samplers"][name], t = density.to_state(f"latent.{name}")
            tensors.update(t)

    def _restore_latent(self, state: dict, tensors: dict) -> None:
        codes = tensors.get("latent.codes")
        if codes is not None and (codes.ndim != 2 or codes.shape[1] != self.code_size):
            raise CheckpointError(f"the saved training codes have shape {tuple(codes.shape)}, not (n, {self.code_size}); "
                                  "save the model again.")
        self.train_codes_ = None if codes is None else codes.numpy()
        saved = state.get("samplers") or {}
        self.samplers_ = {name: LatentDensity.from_state(saved[name], tensors, f"latent.{name}", self.code_size)
                          for name in FITTED_SAMPLERS if isinstance(saved.get(name), dict)}
