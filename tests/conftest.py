"""Test-wide settings.

Property-based tests draw new examples on every local run (the ``dev``
profile: exploration finds new corner cases). CI selects the ``ci`` profile
(``CI`` is set in its environment, or ``HYPOTHESIS_PROFILE=ci``): derandomized,
so the same examples run every time and a red CI is always a real regression.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None)
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
