"""Suite-wide settings."""

from __future__ import annotations

from hypothesis import settings

# Property tests check behaviour, not speed: on a shared, loaded machine (CI runs two
# workers on two cores) a per-example deadline would only make them flaky.
settings.register_profile("qrc", deadline=None, print_blob=True)
settings.load_profile("qrc")
