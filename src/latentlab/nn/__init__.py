"""The torch side of latentlab: network bodies, distributions, and the modules the estimators
train (no scikit-learn here)."""
