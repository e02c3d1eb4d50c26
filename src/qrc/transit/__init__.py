"""``qrc.transit``: data in transit — post-quantum TLS for the service and its clients.

- :mod:`qrc.transit.ca`: a private certificate authority (ML-DSA-65) that issues the
  server certificate.
- :mod:`qrc.transit.tls`: pyOpenSSL contexts for TLS 1.3 with ``X25519MLKEM768``.
- :mod:`qrc.transit.server`: serve an ASGI application over that TLS (Daphne on Twisted).
- :mod:`qrc.transit.client`: :class:`~qrc.transit.client.PQClient`, a keep-alive HTTPS client
  on the same stack, for the command line, applications and agents.

TLS goes through pyOpenSSL on the OpenSSL that pyca/cryptography bundles, never the ``ssl``
module, whose OpenSSL on common distributions predates ML-KEM. Built on :mod:`qrc.crypto`;
never imports the API or the command line.
"""

from __future__ import annotations

__all__: list[str] = []
