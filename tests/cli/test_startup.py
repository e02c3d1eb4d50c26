"""What each ``qrc`` command imports: only what it needs (a structure check, not a timing).

Each command runs in a fresh process through the console entry point
(``qrc.cli.main.run``); at exit the process writes the names in ``sys.modules`` to a file.
``benchmarks/bench_cli.py`` measures what this buys.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Never for the offline toolkit: the key service, its store, web stack and PQ TLS, the other
# command groups, and the parts of Typer and qrc.crypto a small encrypt or verify skips.
SERVICE = (
    "sqlalchemy",
    "alembic",
    "fastapi",
    "starlette",
    "twisted",
    "daphne",
    "OpenSSL",
    "pkcs11",
    "qrc.keys",
    "qrc.server",
    "qrc.api",
    "qrc.transit",
    "qrc.cli.admin",
    "qrc.cli.remote",
    "qrc.cli.serve",
)
OFFLINE_EXTRAS = (
    "pydantic",  # Typer converts parameters with it; qrc.cli.lazy does str and Path without
    "typer._adapters",
    "rich",
    "pqcrypto",
    "qrc.crypto.backends.pqcrypto",
    "qrc.crypto.selftest",
    "qrc.crypto.benchmark",
    "qrc.crypto.bench_envelope",
    "qrc.crypto.shamir",
)

_RUN = """
import atexit, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
from qrc.cli.main import run
run()
"""


def _imports(tmp_path: Path, *args: str | Path, stdin: bytes = b"") -> set[str]:
    out = tmp_path / "modules.txt"
    result = subprocess.run(
        [sys.executable, "-c", _RUN, str(out), *map(str, args)],
        input=stdin,
        capture_output=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return set(out.read_text().split())


def _loaded(modules: set[str], banned: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == b or m.startswith(b + ".") for b in banned))


def _qrc(tmp_path: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "qrc", *args], cwd=tmp_path, check=True, capture_output=True
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("keys")
    _qrc(directory, "keygen", "-a", "X25519MLKEM768", "-o", "alice")
    _qrc(directory, "keygen", "-a", "MLDSA65-Ed25519-SHA512", "-o", "signer")
    (directory / "small").write_bytes(b"a small message\n")
    _qrc(directory, "sign", "-k", "signer", "-i", "small", "-o", "small.sig")
    return directory


def test_encrypt_imports_only_the_envelope_and_key_files(keys: Path, tmp_path: Path) -> None:
    modules = _imports(tmp_path, "encrypt", "-r", keys / "alice.pub", stdin=b"x" * 1024)
    assert _loaded(modules, (*SERVICE, *OFFLINE_EXTRAS)) == []
    assert {"qrc.crypto.envelope", "qrc.crypto.keyfile"} <= modules  # it did run


def test_verify_imports_only_the_signature_code(keys: Path, tmp_path: Path) -> None:
    sig, message = keys / "small.sig", keys / "small"
    modules = _imports(tmp_path, "verify", "-p", keys / "signer.pub", "-s", sig, "-i", message)
    assert _loaded(modules, (*SERVICE, *OFFLINE_EXTRAS, "qrc.crypto.envelope")) == []
    assert "qrc.crypto.bundle" in modules


def test_help_lists_every_command_without_the_service(tmp_path: Path) -> None:
    # The sub-commands' modules load for their one-line help; what they run does not.
    modules = _imports(tmp_path, "--help")
    banned = (*(m for m in SERVICE if not m.startswith("qrc.cli.")), "pydantic")
    assert _loaded(modules, banned) == []
    assert {"qrc.cli.admin", "qrc.cli.remote", "qrc.cli.serve"} <= modules
