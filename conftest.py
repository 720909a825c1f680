"""Project-wide test configuration: hypothesis profiles.

Kept import-light: the example suite runs with only pytest installed, so hypothesis is optional here.
"""

from __future__ import annotations

import os

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the example suite runs without the development extras
    pass
else:
    # "ci" is the default everywhere so that a red run reproduces: derandomize=True, no example database.
    settings.register_profile(
        "ci",
        derandomize=True,
        database=None,
        max_examples=40,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    # One command away: HYPOTHESIS_PROFILE=heavy pytest tests/contract/test_transaction_stack_machine.py
    settings.register_profile(
        "heavy",
        derandomize=False,
        database=None,
        max_examples=600,
        stateful_step_count=80,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
