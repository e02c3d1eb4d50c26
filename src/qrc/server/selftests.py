"""Power-on self-tests: a known-answer test of every algorithm before anything is served.

An algorithm whose test fails is put under the policy's floor (``disallowed`` in this
process, whatever a later policy update says), as a FIPS 140-3 module refuses to offer a
service whose self-test failed.
"""

from __future__ import annotations

import logging

from qrc.crypto.registry import all_algorithms
from qrc.crypto.selftest import known_answer_test
from qrc.keys.policy import AlgorithmPolicy

__all__ = ["run_selftests"]

logger = logging.getLogger(__name__)


def run_selftests(policy: AlgorithmPolicy) -> list[str]:
    """Run every known-answer test; returns the algorithms that failed (now disallowed)."""
    failed = []
    for info in all_algorithms():
        try:
            known_answer_test(info.id)
        except Exception as exc:
            failed.append(info.id)
            logger.error("self-test of %s failed (%s): it will not be served", info.id, exc)
    if failed:
        policy.disallow(failed, "power-on self-test failed")
    return failed
