"""An sklearn-compatible linear probe (the same solver and standardisation as the sweep)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from halluscan.probes.logreg import fit_logreg


class LinearProbe(ClassifierMixin, BaseEstimator):
    """An L2 logistic-regression probe on standardised features (sklearn estimator contract)."""

    def __init__(self, C: float = 1.0, max_iter: int = 500, device: str = "cpu"):  # noqa: N803
        self.C = C
        self.max_iter = max_iter
        self.device = device  # where the fit runs ("cuda" for a GPU); the fitted arrays are numpy

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearProbe:  # noqa: N803
        """Standardise ``X`` and fit the probe."""
        from sklearn.utils.multiclass import type_of_target, unique_labels
        from sklearn.utils.validation import check_X_y

        X, y = check_X_y(X, y)
        self.classes_ = unique_labels(y)
        if len(self.classes_) < 2:
            raise ValueError(f"LinearProbe needs two classes in y; got {len(self.classes_)} class")
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type != "binary":
            raise ValueError(
                f"Only binary classification is supported. The type of the target is {y_type}."
            )
        x = torch.from_numpy(np.array(X, dtype=np.float64, copy=True)).to(self.device)
        yy = torch.from_numpy((y == self.classes_[1]).astype(np.float64))
        fit = fit_logreg(x[None], yy, self.C, max_iter=self.max_iter)
        self.mean_, self.scale_ = fit.mean[0, 0].cpu().numpy(), fit.scale[0, 0].cpu().numpy()
        w, b = fit.raw()
        self.coef_ = w[0].cpu().numpy()
        self.intercept_ = b[0].cpu().numpy()
        self.n_iter_ = np.array([fit.n_iter])
        self.n_features_in_ = X.shape[1]
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """Log-odds of the second class."""
        from sklearn.utils.validation import check_is_fitted, validate_data

        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return np.asarray(X, dtype=np.float64) @ self.coef_[0] + self.intercept_[0]

    def predict_proba(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """Class probabilities, columns ordered as ``classes_``."""
        p = 1 / (1 + np.exp(-self.decision_function(X)))
        return np.stack([1 - p, p], axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        """The more likely class."""
        z = self.decision_function(X)
        return self.classes_[(z > 0).astype(int)]

    def __sklearn_tags__(self) -> Any:
        """A binary classifier (a probe predicts *wrong* vs *right*)."""
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags
