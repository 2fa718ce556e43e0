# %% [markdown]
# # From PCA to the VAE, measured
#
# A walkthrough of the argument on the embedded digits (scikit-learn's 8x8 images, no download),
# with every claim checked by a number this script computes. It runs top to bottom in a few
# minutes on a laptop CPU:
#
#     python examples/tutorial.py
#
# (`LATENTLAB_TUTORIAL_QUICK=1` shrinks every training budget: the test suite runs it that way,
# so the tutorial cannot rot. The numbers then mean little.) Each `# %%` is a cell for editors
# that read them (VS Code, Jupytext).

# %%
import os
import tempfile
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

import latentlab
from latentlab import PCA, VAE, Autoencoder, api
from latentlab.datasets import load_digits
from latentlab.evaluation import FeatureSpace, frechet_distance, principal_angle

QUICK = os.environ.get("LATENTLAB_TUTORIAL_QUICK") == "1"
BUDGET = {"epochs": 3} if QUICK else {}  # the default budget is the estimators' own
if QUICK:
    warnings.simplefilter("ignore", ConvergenceWarning)  # 3 epochs never converge, and that is fine here

digits = load_digits()
rng = np.random.default_rng(0)
order = rng.permutation(len(digits.data))
train, test = order[:1500], order[1500:]
X, Xt = digits.data[train], digits.data[test]  # (1500, 64) and (297, 64), grey levels in [0, 1]
K = 2  # a 2-D latent space: small enough to look at


def mse(model, data):
    """Squared reconstruction error per feature, on held-out data."""
    return float(np.mean((model.reconstruct(data) - data) ** 2))


# %% [markdown]
# ## 1. PCA: the optimal linear encoder and decoder
# The top-k eigenvectors of the covariance give the linear map to k numbers and back with the
# least squared error. Closed form: no training.

# %%
pca = PCA(latent_dim=K).fit(X)
print(f"PCA: MSE {mse(pca, Xt):.4f}; explained variance {pca.explained_variance_ratio_.sum():.1%}")

# %% [markdown]
# ## 2. A linear autoencoder learns the same subspace by gradient descent
# `hidden=()` makes encoder and decoder single linear layers. Trained on the squared error with
# the default settings, its decoder spans PCA's subspace (not its axes: compare subspaces with
# principal angles). PCA is refitted on the rows the autoencoder trained on (it holds some out
# to decide when to stop).

# %%
lin = Autoencoder(latent_dim=K, hidden=(), **BUDGET).fit(X)
rows, _ = lin.validation_split(len(X))
angle = principal_angle(PCA(latent_dim=K).fit(X[rows]), lin)
print(f"linear AE: MSE {mse(lin, Xt):.4f}, {lin.n_epochs_} epochs (converged: {lin.converged_}); "
      f"largest principal angle to PCA's subspace {angle:.2f} degrees")

# %% [markdown]
# ## 3. A deep autoencoder follows the curved manifold
# Non-linear layers reconstruct better than any linear map with the same latent size.

# %%
deep = Autoencoder(latent_dim=K, hidden=(128, 64), **BUDGET).fit(X)
print(f"deep AE: MSE {mse(deep, Xt):.4f} (PCA: {mse(pca, Xt):.4f})")

# %% [markdown]
# ## 4. Its latent space is not regular: random points decode to junk
# An autoencoder has no prior. Decode points z ~ N(0, I) and measure how far the outputs are
# from real digits: the Frechet distance in the features of a small digit classifier (lower is
# more realistic; real training digits give the floor).

# %%
fs = FeatureSpace(seed=0).fit(X, digits.target[train])
ref = fs.features(Xt)


def fd(samples):
    return frechet_distance(fs.features(np.asarray(samples).reshape(len(samples), -1)), ref)


print(f"FD of real training digits: {fd(X[:500]):.2f}")
print(f"FD of the deep AE's decodes of z ~ N(0, I): {fd(deep.sample(500, seed=0)):.2f}")

# %% [markdown]
# ## 5. The VAE: a distribution per input, a prior to sample from
# The encoder outputs a mean g(x) and a diagonal covariance h(x); z = g(x) + h(x)^(1/2) eps
# (the reparameterization); the loss is -E_q log p(x|z) + c KL(q(z|x) || N(0, I)). Decoding
# z ~ N(0, I) now gives digits.

# %%
vae = VAE(latent_dim=K, hidden=(128, 64), **BUDGET).fit(X)
print(f"VAE: test ELBO {vae.score(Xt):.2f} nats; FD of prior samples {fd(vae.sample(500, seed=0)):.2f}")

# %% [markdown]
# ## 6. Filling the prior's hole: sample from a density fitted to the codes
# Ex-post density estimation: a Gaussian mixture fitted to the training codes (components
# chosen by BIC) makes the plain autoencoder a generator too.

# %%
print(f"FD of the deep AE's decodes of z ~ a GMM on its codes: {fd(deep.sample(500, seed=0, sampler='gmm')):.2f} "
      f"({deep.latent_density('gmm').n_components} components)")

# %% [markdown]
# ## 7. The constant c trades fidelity for regularity
# A sweep fits the VAE at several c on the same data and split, one run directory a point. The
# rate R = KL(q(z|x) || p(z)) falls as c grows; the distortion D = -E_q log p(x|z) rises.

# %%
out = tempfile.mkdtemp(prefix="latentlab-tutorial-")
sweep = api.sweep("vae", "digits", {"c": [0.3, 1.0, 3.0]}, out, params={"latent_dim": K, "hidden": (64,), **BUDGET},
                  eval_k=20, regularity=False)
for name, m in sweep.table.items():
    print(f"{name}: rate {m['kl']:.2f} nats, distortion {m['rec']:.2f} nats, test log p(x) {m['log_likelihood']:.2f}")
print(f"report with the rate-distortion plane: {sweep.report}")

# %% [markdown]
# ## 8. Save, load, and measure
# Models save to safetensors + JSON (no pickle) and come back identical.

# %%
again = latentlab.load(vae.save(os.path.join(out, "vae")))
assert np.allclose(again.transform(Xt), vae.transform(Xt))
print("saved and loaded:", type(again).__name__, again.code_size, "latent dimensions")
