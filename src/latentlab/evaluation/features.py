"""A feature space in which to compare generated and real examples.

FID compares images in the features of an Inception network trained on ImageNet. latentlab's
data sets are small and varied (8x8 digits, MNIST, tables), so it trains its own small
classifier on the data set's labels and uses its penultimate layer; without labels it uses the
data's principal components. Fit it once on training data and reuse it for every model.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..validation import as_array, check_int
from ..errors import ConfigError, DataError, NotFittedError

__all__ = ["FeatureSpace"]


class FeatureSpace:
    """Features for Frechet distances, and class probabilities for confidence scores.

    With labels, a multilayer perceptron (scikit-learn's ``MLPClassifier``: ReLU, Adam, early
    stopping on a 10% validation split, seeded) is trained on the inputs, centred per feature and
    divided by one overall standard deviation (so that near-constant pixels are not blown up);
    ``features`` is its last hidden layer. Without labels, ``features`` are the top principal
    components of the data (scikit-learn's PCA) and there are no probabilities.

    Parameters
    ----------
    hidden : tuple of int
        Hidden layer sizes of the classifier; the last is the feature dimension.
    n_components : int
        Number of principal components when there are no labels.
    max_iter : int
        Upper bound on the classifier's epochs.
    seed : int

    Attributes
    ----------
    kind_ : {"classifier", "pca"}
    n_features_out_ : int, the feature dimension.
    classes_ : ndarray, the labels (classifier only).
    train_accuracy_, validation_accuracy_ : float (classifier only); validation is the
        classifier's own early-stopping split.
    converged_ : bool, False if ``max_iter`` was reached first (classifier only).

    Example
    -------
    >>> from latentlab.datasets import load_digits
    >>> from latentlab.evaluation import FeatureSpace
    >>> d = load_digits()
    >>> fs = FeatureSpace(seed=0).fit(d.data, d.target)
    >>> fs.features(d.data[:5]).shape, fs.predict_proba(d.data[:5]).shape
    ((5, 64), (5, 10))
    """

    def __init__(self, hidden=(256, 64), n_components: int = 32, max_iter: int = 300, seed: int = 0):
        self.hidden = tuple(int(h) for h in hidden)
        self.n_components = n_components
        self.max_iter = max_iter
        self.seed = seed

    def __repr__(self) -> str:
        if not hasattr(self, "kind_"):
            return "FeatureSpace(unfitted)"
        if self.kind_ == "pca":
            return f"FeatureSpace(pca, {self.n_features_out_} components)"
        return (f"FeatureSpace(classifier {'-'.join(map(str, (self.n_features_in_, *self.hidden)))}, "
                f"validation accuracy {self.validation_accuracy_:.3f})")

    @property
    def description(self) -> str:
        """One line for tables and reports."""
        return repr(self)[len("FeatureSpace(") : -1]

    def fit(self, X, y=None) -> "FeatureSpace":
        """Train the classifier on (X, y), or fit PCA on X when y is None. Returns self."""
        A = as_array(X, dtype=np.float64, min_samples=2)
        A = A.reshape(A.shape[0], -1)
        self.n_features_in_ = A.shape[1]
        self.mean_ = A.mean(0)
        sd = float((A - self.mean_).std())
        self.scale_ = sd if sd > 0 else 1.0
        Xs = (A - self.mean_) / self.scale_
        seed = check_int(self.seed, "seed", low=0)
        if y is None:
            from sklearn.decomposition import PCA

            k = min(check_int(self.n_components, "n_components"), A.shape[1], A.shape[0] - 1)
            self._pca = PCA(n_components=k, random_state=seed).fit(Xs)
            self.kind_ = "pca"
            self.n_features_out_ = k
            return self
        y = np.asarray(y)
        if y.shape[0] != A.shape[0]:
            raise DataError(f"y has {y.shape[0]} label(s) but X has {A.shape[0]} example(s); pass one label per example.")
        if len(np.unique(y)) < 2:
            raise DataError("y has a single class; a classifier's feature space needs at least two (or pass y=None for PCA features).")
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        clf = MLPClassifier(hidden_layer_sizes=self.hidden, activation="relu", early_stopping=True,
                            validation_fraction=0.1, n_iter_no_change=10, max_iter=check_int(self.max_iter, "max_iter"),
                            random_state=seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            clf.fit(Xs, y)
        self.converged_ = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        self._clf = clf
        self.kind_ = "classifier"
        self.classes_ = clf.classes_
        self.n_features_out_ = self.hidden[-1]
        self.train_accuracy_ = float(clf.score(Xs, y))
        self.validation_accuracy_ = float(clf.best_validation_score_)
        return self

    def _input(self, X) -> np.ndarray:
        if not hasattr(self, "kind_"):
            raise NotFittedError("This FeatureSpace is not fitted yet; call fit(X_train, y_train) first.")
        A = as_array(X, dtype=np.float64)
        A = A.reshape(A.shape[0], -1)
        if A.shape[1] != self.n_features_in_:
            raise DataError(
                f"X has {A.shape[1]} features but the FeatureSpace was fitted on {self.n_features_in_}; "
                "pass examples shaped like its training data."
            )
        return (A - self.mean_) / self.scale_

    def features(self, X) -> np.ndarray:
        """Feature vectors, (n, n_features_out_): the classifier's last hidden layer (after its
        ReLU), or the principal components."""
        Xs = self._input(X)
        if self.kind_ == "pca":
            return self._pca.transform(Xs)
        h = Xs
        for W, b in zip(self._clf.coefs_[:-1], self._clf.intercepts_[:-1]):
            h = np.maximum(h @ W + b, 0.0)
        return h

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, (n, n_classes). Only for a classifier (fitted with labels)."""
        Xs = self._input(X)
        if self.kind_ != "classifier":
            raise ConfigError("this FeatureSpace was fitted without labels (PCA features); it has no class probabilities.")
        return self._clf.predict_proba(Xs)

    def confidence(self, X) -> float | None:
        """Mean over X of the classifier's largest class probability (None without a classifier)."""
        if self.kind_ != "classifier":
            return None
        return float(self.predict_proba(X).max(1).mean())

    def score(self, X, y) -> float:
        """Classification accuracy on (X, y)."""
        return float(np.mean(self.classes_[self.predict_proba(X).argmax(1)] == np.asarray(y)))
