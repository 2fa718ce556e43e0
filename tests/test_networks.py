"""The network bodies: gated layers (MLP and convolutional), shapes, and the estimators using them."""

import numpy as np
import pytest
import torch

from latentlab import VAE, HierarchicalVAE
from latentlab.nn.networks import MLP, ConvDecoder, ConvEncoder, Gated


def test_a_gated_layer_is_values_times_sigmoid_of_gates():
    torch.manual_seed(0)
    mlp = MLP(5, (3,), 2, "gated")
    gated, out = mlp[0], mlp[1]
    assert isinstance(gated, Gated) and gated.inner.out_features == 6
    x = torch.randn(4, 5)
    W, b = gated.inner.weight, gated.inner.bias
    a, g = (x @ W[:3].T + b[:3]), (x @ W[3:].T + b[3:])
    torch.testing.assert_close(mlp(x), out(a * torch.sigmoid(g)))


@pytest.mark.parametrize("act", ["relu", "gated"])
def test_conv_bodies_keep_their_shapes(act):
    enc = ConvEncoder((1, 9, 7), (4, 8), (16,), 6, act)
    dec = ConvDecoder(3, (1, 9, 7), (4, 8), (16,), act)
    assert enc(torch.zeros(2, 1, 9, 7)).shape == (2, 6)
    assert dec(torch.zeros(5, 2, 3)).shape == (5, 2, 1, 9, 7)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_gated_vae_and_hierarchy_train(digits, arch):
    X = (digits.images[:300] > 0.5).astype(np.float32)
    vae = VAE(latent_dim=2, hidden=(16,), activation="gated", architecture=arch, channels=(4,), epochs=2,
              verbose=False).fit(X)
    assert np.isfinite(vae.history_[-1]["train_loss"])
    h = HierarchicalVAE(latent_dim=2, latent_dim2=2, hidden=(16, 8), activation="gated", architecture=arch,
                        channels=(4,), epochs=1, verbose=False).fit(X)
    assert h.transform(X[:3]).shape == (3, 4)


def test_an_unknown_activation_names_gated_among_the_choices(digits):
    from latentlab.errors import ConfigError

    with pytest.raises(ConfigError, match="'gated'"):
        VAE(hidden=(8,), activation="swish", epochs=1, verbose=False).fit(digits.data[:50])
