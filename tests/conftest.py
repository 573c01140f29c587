"""Test-session settings.

SCIPY_ARRAY_API=1 has to be set before SciPy is first imported: with it,
scikit-learn's ``check_array_api_input`` runs on our estimators instead of
being skipped (it checks that array-API dispatch with NumPy input changes
nothing).
"""

import os

os.environ.setdefault("SCIPY_ARRAY_API", "1")
