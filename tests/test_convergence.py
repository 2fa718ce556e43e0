"""Training stops on convergence (scikit-learn's tol and n_iter_no_change), and says when it did not."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from latentlab import VAE, Autoencoder


def test_the_budget_running_out_first_is_a_convergence_warning_naming_the_setting(digits):
    with pytest.warns(ConvergenceWarning, match=r"epochs=3 .*Raise epochs \(--epochs"):
        ae = Autoencoder(latent_dim=2, hidden=(16,), epochs=3, verbose=False).fit(digits.data)
    assert ae.n_epochs_ == 3 and not ae.converged_


def test_no_warning_when_training_converges(digits):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ae = Autoencoder(latent_dim=2, hidden=(), epochs=2000, tol=1e-3, patience=5, verbose=False).fit(digits.data)
    assert ae.converged_ and ae.n_epochs_ < 2000


@pytest.mark.parametrize("validation_fraction", [0.1, 0.0])
def test_the_rule_watches_the_validation_loss_or_else_the_training_loss(digits, validation_fraction):
    ae = Autoencoder(latent_dim=2, hidden=(), epochs=2000, tol=1e-3, patience=5, verbose=False,
                     validation_fraction=validation_fraction).fit(digits.data)
    key = "val_loss" if validation_fraction else "train_loss"
    mons = [h[key] for h in ae.history_]
    p = 5
    # It stopped at the first epoch where the last p epochs did not improve on the best before by tol.
    for e in range(p + 1, len(mons) + 1):
        before, recent = min(mons[: e - p]), min(mons[e - p : e])
        stop = not recent < before - 1e-3 * abs(before)
        assert stop == (e == len(mons)), e


def test_patience_none_trains_the_whole_budget_without_a_warning(digits):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        ae = Autoencoder(latent_dim=2, hidden=(8,), epochs=4, patience=None, verbose=False).fit(digits.data)
    assert ae.n_epochs_ == 4 and ae.converged_


def test_convergence_survives_save_and_load(tmp_path, digits):
    import latentlab

    vae = VAE(latent_dim=2, hidden=(8,), epochs=2, verbose=False).fit(digits.data)
    again = latentlab.load(vae.save(tmp_path / "m"))
    assert again.converged_ is False and again.n_iter_ == 2
    np.testing.assert_array_equal(again.transform(digits.data[:3]), vae.transform(digits.data[:3]))


def test_a_linear_autoencoder_with_the_default_settings_reaches_pcas_subspace(spectrum_data):
    """The textbook result by gradient descent, with the settings a user gets (none set here)."""
    from latentlab import PCA
    from latentlab.evaluation import principal_angle

    ae = Autoencoder(latent_dim=2, hidden=(), verbose=False).fit(spectrum_data)
    rows, _ = ae.validation_split(len(spectrum_data))
    assert principal_angle(PCA(latent_dim=2).fit(spectrum_data[rows]), ae) <= 1.0
    assert ae.converged_
