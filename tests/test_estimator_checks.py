"""LinearProbe follows the scikit-learn estimator contract."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from halluscan.probes import LinearProbe


@parametrize_with_checks([LinearProbe()])
def test_sklearn_estimator_contract(estimator, check):
    check(estimator)
