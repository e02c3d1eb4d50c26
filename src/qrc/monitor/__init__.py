"""Quantum-threat monitoring: cryptographic inventory (CBOM), and later risk and migration.

This layer sits between :mod:`qrc.api` and :mod:`qrc.data`; it reads the running service
through its public collaborators and never through SQL of its own.
"""
