"""Locating the third-party vectors in ``../shared/vectors`` (see its PROVENANCE.md).

In CI (``CI=true``) missing vectors are a failure; elsewhere the tests skip and say how to
point ``QRC_VECTORS_DIR`` at them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

_DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "vectors"


def vectors_dir() -> Path:
    """The vectors folder, or skip (fail under CI) when it is missing.

    Usable at module level, so parametrize lists can be built from vector files.
    """
    path = Path(os.environ.get("QRC_VECTORS_DIR", _DEFAULT))
    if not (path / "PROVENANCE.md").is_file():
        message = (
            f"test vectors not found at {path}; set QRC_VECTORS_DIR to the folder holding "
            "PROVENANCE.md (../shared/vectors next to the repository)"
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message, allow_module_level=True)
    return path


def load_json(relative: str) -> Any:
    """Parse one vector file, e.g. ``load_json("wycheproof/mlkem_768_test.json")``."""
    with open(vectors_dir() / relative, encoding="utf-8") as handle:
        return json.load(handle)
