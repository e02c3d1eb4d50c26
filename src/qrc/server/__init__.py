"""``qrc.server``: start-up and running of the key service.

- :mod:`.config` — the one typed configuration (every ``QRC_*`` variable);
- :mod:`.bootstrap` — the data directory's first start: the bootstrap admin token;
- :mod:`.selftests` — power-on known-answer tests; a failure disallows the algorithm;
- :mod:`.jobs` — the scheduler thread (key jobs, checkpoints when the chain moved) and the
  first-start benchmarks;
- :mod:`.telemetry` — TLS handshakes into metrics and security events, off the reactor;
- :mod:`.runner` — putting it together: :func:`run` is what ``qrc serve`` calls.
"""
