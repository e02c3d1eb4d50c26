"""``qrc.transit``: data in transit — post-quantum TLS for the service and its clients.

- :mod:`qrc.transit.ca`, :mod:`.pki`: the data directory's certificate files (an ML-DSA-65
  and an ECDSA chain); :mod:`.authority`: the private CA whose keys the key service holds
  (root and intermediate in both families, leaves, CRLs).
- :mod:`qrc.transit.tls`: pyOpenSSL contexts for TLS 1.3 with ``X25519MLKEM768``;
  :mod:`.listener`: the server's context (dual certificates, policy modes, mutual TLS,
  renewal while running).
- :mod:`qrc.transit.server`: serve an ASGI application over that TLS (Daphne on Twisted).
- :mod:`qrc.transit.client`: :class:`~qrc.transit.client.PQClient`, a keep-alive HTTPS client
  on the same stack, for the command line, applications and agents.
- :mod:`qrc.transit.tunnel`: PQ mutual-TLS tunnel for any TCP service.
- :mod:`qrc.transit.agents`: signed and sealed agent-to-agent messages;
  :mod:`.relay_client`: their store-and-forward relay through the service.

TLS goes through pyOpenSSL on the OpenSSL that pyca/cryptography bundles, never the ``ssl``
module, whose OpenSSL on common distributions predates ML-KEM. Built on :mod:`qrc.crypto`;
never imports the API or the command line.
"""

from __future__ import annotations

__all__: list[str] = []
