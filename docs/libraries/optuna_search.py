import numpy as np
import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna_integration import OptunaSearchCV

from skrnn import SequenceRegressor

optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per trial
rng = np.random.RandomState(0)
X = rng.normal(size=(300, 12, 2))
y = X[:, :, 0].sum(axis=1)
search = OptunaSearchCV(
    SequenceRegressor(max_iter=50, random_state=0),
    {
        "hidden_size": IntDistribution(4, 32, log=True),
        "learning_rate_init": FloatDistribution(1e-3, 3e-2, log=True),
    },
    n_trials=10,
    cv=3,
    random_state=0,
    verbose=0,
)
search.fit(X, y)
print(f"best cross-validated R^2: {search.best_score_:.3f}")
print("best parameters:", {k: round(v, 4) for k, v in search.best_params_.items()})
