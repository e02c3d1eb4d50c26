"""A throw-away SoftHSM2 token per test, which can be taken away and given back.

Each token lives in its own SoftHSM2 configuration and token directory (``SOFTHSM2_CONF``);
the PKCS#11 library is re-initialised afterwards, which is when SoftHSM2 reads them, so
tests stay independent even when pytest-xdist runs tests of several modules in one process.

Test modules call :func:`require_softhsm` at import time (skip without SoftHSM2, fail under
CI=true) and build their fixture on :func:`softhsm_token`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from qrc.keys.custody.pkcs11 import Pkcs11Config

__all__ = ["MODULE", "PIN", "SO_PIN", "TOKEN_LABEL", "SoftHsm", "require_softhsm", "softhsm_token"]

_CANDIDATES = [
    os.environ.get("QRC_PKCS11_MODULE", ""),
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
]
MODULE = next((c for c in _CANDIDATES if c and os.path.isfile(c)), "")
UTIL = shutil.which("softhsm2-util")
PIN = "314159"
SO_PIN = "27182818"
TOKEN_LABEL = "qrc-test"


def require_softhsm() -> None:
    """Skip the calling module without SoftHSM2 (fail instead under CI=true)."""
    pytest.importorskip("pkcs11")
    if MODULE and UTIL:
        return
    message = (
        "SoftHSM2 not found (softhsm2-util and libsofthsm2.so); install the Debian package "
        "softhsm2 (`apt-get install -y softhsm2`) or set QRC_PKCS11_MODULE"
    )
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)


@dataclass
class SoftHsm:
    """One SoftHSM2 configuration: its file, its token directory, the token's config."""

    conf: Path
    tokendir: Path
    aside: Path

    def init_token(self, label: str = TOKEN_LABEL) -> None:
        assert UTIL is not None
        subprocess.run(
            [UTIL, "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SO_PIN],
            check=True,
            capture_output=True,
            env={**os.environ, "SOFTHSM2_CONF": str(self.conf)},
        )

    def config(self) -> Pkcs11Config:
        """Where the root KEK is: this token, the test PIN, the default key label."""
        from qrc.keys.custody.pkcs11 import Pkcs11Config  # lazily: needs python-pkcs11

        return Pkcs11Config(token_label=TOKEN_LABEL, pin=PIN, module=MODULE)

    def token_dirs(self) -> list[Path]:
        return sorted(p for p in self.tokendir.iterdir() if p.is_dir())

    @contextmanager
    def token_away(self) -> Iterator[None]:
        """The token is unplugged (its directory moved aside) until the block ends."""
        (token_dir,) = self.token_dirs()
        token_dir.rename(self.aside)
        try:
            yield
        finally:
            self.aside.rename(token_dir)


@contextmanager
def softhsm_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SoftHsm]:
    """A fresh SoftHSM2 store in ``tmp_path`` with one initialised token, ``TOKEN_LABEL``."""
    from qrc.keys.custody.pkcs11 import reinitialize_library  # lazily: needs python-pkcs11

    tokendir = tmp_path / "tokens"
    tokendir.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokendir}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    soft = SoftHsm(conf, tokendir, tmp_path / "token-aside")
    soft.init_token()
    # SoftHSM2 reads SOFTHSM2_CONF at C_Initialize only.
    reinitialize_library(MODULE)
    try:
        yield soft
    finally:
        reinitialize_library(MODULE)  # drop sessions on this token before its files go
