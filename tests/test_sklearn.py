"""scikit-learn's conventions: Pipeline, clone, GridSearchCV, and its estimator checks.

Expected failures, and why (all others of scikit-learn's 47 checks pass):
- VAE (and IWAE, VampPriorVAE, HierarchicalVAE), check_methods_sample_order_invariance and
  check_methods_subset_invariance: ``score_samples`` is a Monte-Carlo estimate of the ELBO (or bound); with a fixed seed the noise an example gets depends on its
  position in X, so reordering or subsetting X changes each estimate by its Monte-Carlo error
  (the mean over X is unchanged in expectation).
"""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from latentlab import IWAE, PCA, VAE, Autoencoder, ConditionalVAE, HierarchicalVAE, VampPriorVAE

_MONTE_CARLO = {
    "check_methods_sample_order_invariance": "score_samples is a Monte-Carlo ELBO estimate",
    "check_methods_subset_invariance": "score_samples is a Monte-Carlo ELBO estimate",
}
EXPECTED_FAILURES = {name: _MONTE_CARLO for name in ("VAE", "IWAE", "VampPriorVAE", "HierarchicalVAE")}


@parametrize_with_checks(
    [
        PCA(latent_dim=2),
        Autoencoder(latent_dim=2, hidden=(8,), epochs=3, verbose=False),
        VAE(latent_dim=2, hidden=(8,), epochs=3, verbose=False),
        IWAE(latent_dim=2, k=3, hidden=(8,), epochs=3, verbose=False),
        VampPriorVAE(latent_dim=2, n_pseudo_inputs=4, hidden=(8,), epochs=3, verbose=False),
        HierarchicalVAE(latent_dim=2, latent_dim2=1, hidden=(8,), epochs=3, verbose=False),
    ],
    expected_failed_checks=lambda est: EXPECTED_FAILURES.get(type(est).__name__, {}),
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_pipeline_clone_and_grid_search(digits):
    X = digits.data[:600]
    pipe = make_pipeline(StandardScaler(), PCA(latent_dim=3))
    assert pipe.fit_transform(X).shape == (600, 3)
    vae = VAE(hidden=(16,), epochs=3, verbose=False)
    twin = clone(vae)
    assert twin.get_params() == vae.get_params() and not hasattr(twin, "module_")
    # score is higher-is-better (mean ELBO), so GridSearchCV can pick latent_dim by it.
    search = GridSearchCV(vae, {"latent_dim": [1, 4]}, cv=2).fit(X)
    assert search.best_params_["latent_dim"] in (1, 4)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    pca_search = GridSearchCV(PCA(), {"latent_dim": [1, 10, 30]}, cv=3).fit(X)
    assert pca_search.best_params_["latent_dim"] > 1  # probabilistic PCA prefers more than one axis here


# --------------------------------------------------------------------------- DataFrames (pandas)
pd = pytest.importorskip("pandas", reason="pandas is not installed: DataFrame input is not checked")

ESTIMATORS = [
    PCA(latent_dim=2),
    Autoencoder(latent_dim=2, hidden=(8,), epochs=2, verbose=False),
    VAE(latent_dim=2, hidden=(8,), epochs=2, verbose=False),
    IWAE(latent_dim=2, k=3, hidden=(8,), epochs=2, verbose=False),
    VampPriorVAE(latent_dim=2, n_pseudo_inputs=4, hidden=(8,), epochs=2, verbose=False),
    HierarchicalVAE(latent_dim=2, latent_dim2=1, hidden=(8,), epochs=2, verbose=False),
]
PANDAS_CHECKS = ["check_dataframe_column_names_consistency", "check_set_output_transform_pandas",
                 "check_global_output_transform_pandas", "check_transformer_get_feature_names_out_pandas",
                 "check_set_output_transform", "check_transformer_get_feature_names_out", "check_get_feature_names_out_error"]


@pytest.mark.parametrize("check", PANDAS_CHECKS)
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
@pytest.mark.filterwarnings("ignore:X has feature names, but .* was fitted without feature names:UserWarning")
def test_scikit_learn_dataframe_checks(estimator, check):
    """scikit-learn's own checks of DataFrame input and pandas output (not in its default set):
    feature_names_in_, its errors for reordered, unseen and missing columns, set_output. (The
    set_output checks also transform a DataFrame with a model fitted on an array, where
    scikit-learn's validation warns, as it does for its own estimators.)"""
    import sklearn.utils.estimator_checks as checks

    getattr(checks, check)(type(estimator).__name__, clone(estimator))


@pytest.mark.parametrize("estimator", [*ESTIMATORS, ConditionalVAE(latent_dim=2, hidden=(8,), epochs=2, verbose=False)],
                         ids=lambda e: type(e).__name__)
def test_parameter_constraints_are_scikit_learns(estimator):
    """Every constructor parameter has a constraint (latentlab.models.constraints), and a value
    that breaks it gets scikit-learn's InvalidParameterError with its message (scikit-learn's own
    check_param_validation, which also fails on a parameter left without a constraint)."""
    from sklearn.utils._param_validation import InvalidParameterError as SkInvalid
    from sklearn.utils.estimator_checks import check_param_validation

    from latentlab.errors import ConfigError, InvalidParameterError

    check_param_validation(type(estimator).__name__, clone(estimator))
    with pytest.raises(InvalidParameterError, match=r"The 'latent_dim' parameter of \w+ must be an int in the range") as info:
        clone(estimator).set_params(latent_dim=0).fit(np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, SkInvalid)


def test_dataframe_in_and_out(tmp_path):
    import latentlab
    from latentlab.errors import DataError

    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(80, 4)), columns=["a", "b", "c", "d"])
    vae = VAE(latent_dim=2, hidden=(8,), epochs=2, verbose=False).fit(df)
    assert list(vae.feature_names_in_) == ["a", "b", "c", "d"] and vae.n_features_in_ == 4
    np.testing.assert_array_equal(vae.transform(df), vae.transform(df.to_numpy()))
    # scikit-learn's own message for columns in another order, or missing, as a latentlab DataError
    with pytest.raises(DataError, match="Feature names must be in the same order as they were in fit"):
        vae.transform(df[["b", "a", "c", "d"]])
    with pytest.raises(ValueError, match="Feature names seen at fit time, yet now missing:\n- d"):
        vae.transform(df[["a", "b", "c"]])
    out = vae.set_output(transform="pandas").transform(df)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == ["vae0", "vae1"] and (out.index == df.index).all()
    # the names are saved with the model, and checked after loading
    again = latentlab.load(vae.save(tmp_path / "m"))
    assert list(again.feature_names_in_) == ["a", "b", "c", "d"]
    with pytest.raises(DataError, match="Feature names unseen at fit time"):
        again.transform(df.rename(columns={"a": "z"}))
    # pandas' nullable dtypes go through scikit-learn's check_array; NaN keeps latentlab's message
    ints = pd.DataFrame({"a": pd.array([1, 2, 3, 4], dtype="Int64"), "b": [0.5, 1.5, 2.5, 3.5]})
    assert PCA(latent_dim=1).fit(ints).transform(ints).shape == (4, 1)
    holes = ints.astype("float64")
    holes.loc[2, "a"] = np.nan
    with pytest.raises(DataError, match=r"X contains 1 NaN or infinite value\(s\), the first in row 2"):
        PCA(latent_dim=1).fit(holes)
    # refitted on an array, the model has no names any more
    assert not hasattr(vae.fit(df.to_numpy()), "feature_names_in_")
