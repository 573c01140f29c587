"""The parts of scikit-learn's private API that skrnn uses, imported in one place.

They are not public and have moved between releases; should one move
again, this module is the one to change. Also :class:`Number`, the numeric
constraint of skrnn's own functions and classes.
"""

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import (
    Interval,
    InvalidParameterError,
    Options,
    StrOptions,
    validate_parameter_constraints,
    validate_params,
)
from sklearn.utils._set_output import ADAPTERS_MANAGER, _get_output_config
from sklearn.utils.validation import (
    _check_feature_names,
    _check_sample_weight,
    _get_feature_names,
)

__all__ = [
    "ADAPTERS_MANAGER",
    "Interval",
    "InvalidParameterError",
    "Number",
    "Options",
    "StrOptions",
    "_check_feature_names",
    "_check_sample_weight",
    "_fit_context",
    "_get_feature_names",
    "_get_output_config",
    "validate_parameter_constraints",
    "validate_params",
]


class Number(Interval):
    """:class:`Interval` that refuses booleans, which scikit-learn's takes
    as the integers 0 and 1."""

    def is_satisfied_by(self, val):
        return not isinstance(val, (bool, np.bool_)) and super().is_satisfied_by(val)
