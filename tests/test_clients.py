"""The libraries that hand skrnn tables of their own: with
``TableToSequences`` first in the pipeline, skforecast's forecasters and
sktime's classifier pipeline give what skrnn gives on the sequences
directly, to the bit (the same seed, the same rows in the same order);
sktime's forecasting reduction does without it. The snippets of the "With
other libraries" page run and give figures like the page's.

Run where the clients install (``pip install ".[clients]"``); skipped
otherwise.
"""

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline

from skrnn import SequenceClassifier, SequenceRegressor
from skrnn.preprocessing import TableToSequences, sliding_windows

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning"  # 20 epochs each
)
N_LAGS = 12


def _regressor():
    return SequenceRegressor(hidden_size=8, max_iter=20, random_state=0)


def _series():
    pd = pytest.importorskip("pandas")
    t = np.arange(300)
    noise = np.random.RandomState(0).normal(size=300)
    return pd.Series(np.sin(t / 8) + 0.1 * noise, name="y")


def _quiet(fn, *args, **kwargs):
    # the clients' own warnings (deprecations, their data checks) are theirs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def test_skforecast_recursive_forecasts_what_skrnn_on_windows_forecasts():
    recursive = pytest.importorskip("skforecast.recursive")
    y = _series()
    forecaster = recursive.ForecasterRecursive(
        estimator=make_pipeline(
            TableToSequences(N_LAGS, order="newest_first"), _regressor()
        ),
        lags=N_LAGS,
    )
    _quiet(forecaster.fit, y=y)
    forecast = _quiet(forecaster.predict, steps=10).to_numpy()
    # by hand: the same windows, then each forecast appended to the window
    X, target = sliding_windows(y.to_numpy(), N_LAGS)
    model = _regressor().fit(X, target)
    window, expected = list(y.to_numpy()[-N_LAGS:]), []
    for _ in range(10):
        value = model.predict(np.array(window[-N_LAGS:])[None, :, None])[0]
        expected.append(value)
        window.append(value)
    np.testing.assert_array_equal(forecast, expected)


def test_skforecast_direct_forecasts_what_skrnn_on_windows_forecasts():
    direct = pytest.importorskip("skforecast.direct")
    y = _series()
    forecaster = direct.ForecasterDirect(
        estimator=make_pipeline(
            TableToSequences(N_LAGS, order="newest_first"), _regressor()
        ),
        steps=3,
        lags=N_LAGS,
        n_jobs=1,
    )
    _quiet(forecaster.fit, y=y)
    forecast = _quiet(forecaster.predict, steps=3).to_numpy()
    # one model per horizon, on the windows that have all three targets
    X, targets = sliding_windows(y.to_numpy(), N_LAGS, horizon=[1, 2, 3])
    last = y.to_numpy()[-N_LAGS:][None, :, None]
    expected = [_regressor().fit(X, targets[:, h]).predict(last)[0] for h in range(3)]
    np.testing.assert_array_equal(forecast, expected)


def test_skforecast_exogenous_columns_arrive_as_features_of_every_step():
    recursive = pytest.importorskip("skforecast.recursive")
    pd = pytest.importorskip("pandas")
    y = _series()
    t = np.arange(len(y))
    exog = pd.DataFrame(
        {"a": np.cos(t / 5), "b": np.random.RandomState(1).normal(size=len(y))}
    )
    forecaster = recursive.ForecasterRecursive(
        estimator=make_pipeline(
            TableToSequences(N_LAGS, order="newest_first"), _regressor()
        ),
        lags=N_LAGS,
    )
    _quiet(forecaster.fit, y=y, exog=exog)
    model = forecaster.estimator[-1]
    assert model.n_features_in_ == 3  # the series and the two exogenous columns
    X_train, _ = _quiet(forecaster.create_train_X_y, y=y, exog=exog)
    seqs = forecaster.estimator[0].transform(X_train.to_numpy())
    np.testing.assert_array_equal(
        seqs[:, :, 1], np.repeat(X_train[["a"]].to_numpy(), N_LAGS, 1)
    )


def test_sktime_classifier_pipeline_equals_skrnn_on_the_transposed_panel():
    compose = pytest.importorskip("sktime.classification.compose")
    from sktime.transformations.compose import Id

    rng = np.random.RandomState(0)
    panel = rng.normal(size=(60, 3, 10))  # sktime's (n, channels, T)
    y = (panel[:, 1, 4] > 0).astype(int)

    def classifier():
        return SequenceClassifier(hidden_size=8, max_iter=20, random_state=0)

    pipeline = compose.SklearnClassifierPipeline(
        classifier=make_pipeline(TableToSequences(n_channels=3), classifier()),
        transformers=[Id()],
    )
    _quiet(pipeline.fit, panel, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        direct = classifier().fit(panel.transpose(0, 2, 1), y)
    np.testing.assert_array_equal(
        _quiet(pipeline.predict_proba, panel),
        direct.predict_proba(panel.transpose(0, 2, 1)),
    )


def test_sktime_reduction_forecasts_what_skrnn_on_windows_forecasts():
    compose = pytest.importorskip("sktime.forecasting.compose")
    y = _series()
    forecaster = _quiet(
        compose.make_reduction, _regressor(), window_length=N_LAGS, strategy="recursive"
    )
    _quiet(forecaster.fit, y)
    forecast = _quiet(forecaster.predict, fh=np.arange(1, 6)).to_numpy()
    X, target = sliding_windows(y.to_numpy(), N_LAGS)
    model = _regressor().fit(X, target)
    window, expected = list(y.to_numpy()[-N_LAGS:]), []
    for _ in range(5):
        value = model.predict(np.array(window[-N_LAGS:])[None, :, None])[0]
        expected.append(value)
        window.append(value)
    np.testing.assert_array_equal(forecast, expected)


PAGE = Path(__file__).parents[1] / "docs" / "libraries"
# each snippet: the library it needs, and what it must print (the page quotes
# one machine's figures; these are the bounds any machine must meet)
SNIPPETS = {
    "skforecast_recursive.py": ("skforecast", {"MAE of 50 steps ahead:": (0, 0.2)}),
    "sktime_classifier.py": ("sktime", {"test accuracy:": (0.8, 1)}),
    "aeon_panel.py": ("aeon", {"test accuracy:": (0.8, 1)}),
    "mapie_cross_conformal.py": (
        "mapie",
        {"coverage of the 90 % intervals:": (0.84, 0.96)},
    ),
    "imblearn_class_weight.py": (
        "imblearn",
        {
            "plain: balanced accuracy": (0.6, 1),
            "class_weight: balanced accuracy": (0.6, 1),
            "oversampled: balanced accuracy": (0.6, 1),
        },
    ),
    "optuna_search.py": ("optuna_integration", {"best cross-validated R^2:": (0.9, 1)}),
}


@pytest.mark.parametrize("script", sorted(SNIPPETS))
def test_the_libraries_page_snippets_run(script, tmp_path):
    library, expected = SNIPPETS[script]
    pytest.importorskip(library)
    env = {**os.environ, "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, str(PAGE / script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for label, (low, high) in expected.items():
        found = re.search(re.escape(label) + r"\s*([-0-9.]+)", result.stdout)
        assert found, (label, result.stdout)
        assert low <= float(found.group(1)) <= high, (label, result.stdout)


def test_the_page_includes_every_snippet():
    page = (PAGE.parent / "libraries.rst").read_text()
    included = set(re.findall(r"literalinclude:: libraries/(\S+)", page))
    assert included == set(SNIPPETS) == {p.name for p in PAGE.glob("*.py")}
