"""The article's argument, one sentence per step, computed from the runs' own numbers.

PCA is the best linear encoder and decoder; a linear autoencoder trained by gradient descent
matches it; a deep one reconstructs better; decoding random points through an autoencoder gives
junk, while a VAE's prior samples look like data; and the KL weight c trades fidelity for a
regular latent space. Each step is a :class:`Claim` whose sentence states the measured figures and
says, when a measurement goes against the claim, that it does. Nothing here is written by hand
but the sentences' frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

__all__ = ["Claim", "comparison_claims", "sweep_claims"]

#: Largest principal angle, in degrees, at which the linear autoencoder "has reached" PCA's subspace.
ANGLE_DEG = 1.0


@dataclass(frozen=True)
class Claim:
    """One step of the argument: its ``title``, the ``sentence`` with the measured numbers, and
    whether the measurement ``holds`` it up (None when there is nothing to measure it against)."""

    title: str
    sentence: str
    holds: bool | None


def _g(v: float) -> str:
    return f"{v:.3g}"


def _by_role(runs) -> dict[str, dict[str, Any]]:
    return {r.info.get("role"): r.metrics for r in runs if r.info.get("role")}


def comparison_claims(runs: Sequence) -> list[Claim]:
    """The steps that the runs of ``compare`` / ``demo`` (roles "PCA", "linear AE", "deep AE",
    "VAE") can measure, in the article's order."""
    m = _by_role(runs)
    out: list[Claim] = []
    pca, lin, deep, vae = (m.get(k, {}) for k in ("PCA", "linear AE", "deep AE", "VAE"))
    p = pca.get("reconstruction_mse")
    if p is not None:
        worse = [k for k, v in (("the linear AE", lin), ("the deep AE", deep)) if v.get("reconstruction_mse") is not None]
        out.append(Claim("PCA: the optimal linear encoder and decoder",
                         f"PCA, from the top eigenvectors of the covariance, reconstructs the held-out rows with a "
                         f"squared error of {_g(p)} per feature: the bar every linear model is measured against"
                         + (f" ({' and '.join(worse)} below)." if worse else "."), None))
    a, lm = lin.get("max_principal_angle_deg"), lin.get("reconstruction_mse")
    if a is not None and lm is not None and p is not None:
        reached = a <= ANGLE_DEG
        out.append(Claim("A linear autoencoder learns PCA's subspace",
                         f"The linear autoencoder, trained by gradient descent with the default settings, reconstructs with "
                         f"{_g(lm)} per feature ({(lm / p - 1):+.1%} against PCA), and its decoder spans a subspace "
                         f"{a:.2g} degrees from PCA's" + (": the same subspace." if reached else
                                                          f": it has not reached PCA's subspace (more than {ANGLE_DEG:g} degree "
                                                          "away), so here the claim does not hold."), reached))
    d = deep.get("reconstruction_mse")
    if d is not None and p is not None:
        better = d < p
        out.append(Claim("A deep autoencoder follows curved manifolds",
                         f"The deep autoencoder reconstructs with {_g(d)} per feature, "
                         + (f"{1 - d / p:.0%} less than PCA's error with the same latent size." if better else
                            f"{d / p - 1:.0%} more than PCA's: here the claim does not hold."), better))
    fa, fv, fr = deep.get("fd_standard_normal"), vae.get("fd_prior"), vae.get("fd_real", deep.get("fd_real"))
    if fa is not None and fv is not None:
        holds = fv < fa
        real = f" (real training data scores {_g(fr)}, the best possible at this sample size)" if fr is not None else ""
        gmm = deep.get("fd_gmm")
        fix = (f" Decoding points from a Gaussian mixture fitted to the autoencoder's codes (sampler='gmm') instead "
               f"gives {_g(gmm)}: a better latent density, not the decoder, was what it lacked." if gmm is not None else "")
        out.append(Claim("Random points decoded by a plain autoencoder are junk; a VAE's are not",
                         f"Decoding random points z ~ N(0, I) through the deep autoencoder gives outputs at a Frechet "
                         f"distance of {_g(fa)} from the held-out data; the VAE's samples from its prior are at {_g(fv)}{real}"
                         + (f": {fa / fv:.1f} times closer." if holds else ": no closer, so here the claim does not hold.")
                         + fix, holds))
    return out


def sweep_claims(runs: Sequence, swept: Sequence[str]) -> list[Claim]:
    """What the swept setting trades (for a sweep of one setting): rate and distortion at its ends,
    and whether the rate falls as the setting grows."""
    if len(swept) != 1 or len(runs) < 2:
        return []
    name = swept[0]
    pts = sorted(((r.info.get("sweep", {}).get(name), r.metrics) for r in runs), key=lambda t: t[0])
    if any(v is None or not isinstance(v, (int, float)) for v, _ in pts):
        return []
    rd = [(v, mm.get("kl"), mm.get("rec")) for v, mm in pts if mm.get("kl") is not None and mm.get("rec") is not None]
    if len(rd) < 2:
        return []
    (v0, r0, d0), (v1, r1, d1) = rd[0], rd[-1]
    falls = all(b[1] <= a[1] for a, b in zip(rd, rd[1:]))
    sentence = (f"As {name} grows from {v0:g} to {v1:g}, the rate KL(q(z|x) || p(z)) goes from {_g(r0)} to {_g(r1)} nats "
                f"and the distortion -E_q log p(x|z) from {_g(d0)} to {_g(d1)} nats per held-out example: "
                + ("a more regular latent space (closer to the prior) for a less faithful reconstruction."
                   if falls and d1 >= d0 else "the rate does not fall steadily with it here, so this sweep does not show "
                   "the trade cleanly."))
    ll = [(v, mm.get("log_likelihood")) for v, mm in pts if mm.get("log_likelihood") is not None]
    if ll:
        best = max(ll, key=lambda t: t[1])
        sentence += f" The test log-likelihood is highest at {name} = {best[0]:g} ({_g(best[1])} nats)."
    return [Claim(f"The constant {name} trades fidelity for latent regularity", sentence, falls and d1 >= d0)]
