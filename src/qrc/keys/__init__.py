"""``qrc.keys``: key lifecycle, custody (root KEK: local or PKCS#11), store, audit, backup.

Built on :mod:`qrc.crypto`; used by the API, the data-at-rest layer and the transport layer.
"""

from __future__ import annotations

__all__: list[str] = []
