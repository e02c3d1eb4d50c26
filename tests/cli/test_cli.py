"""The offline toolkit, run as a user runs it: a real ``qrc`` process, files and pipes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest


def qrc(
    *args: str | Path, stdin: bytes = b"", cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "qrc", *map(str, args)],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def ok(*args: str | Path, stdin: bytes = b"") -> bytes:
    result = qrc(*args, stdin=stdin)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def test_algorithms_json_lists_the_registry() -> None:
    rows = json.loads(ok("algorithms", "--json"))
    ids = {row["id"] for row in rows}
    assert {"ML-KEM-768", "X25519MLKEM768", "SLH-DSA-SHAKE-256f", "HQC-256", "AES-256-GCM"} <= ids
    assert all({"id", "kind", "family", "nist_level", "standard", "status"} <= set(r) for r in rows)
    table = ok("algorithms").decode()
    assert "MLDSA65-Ed25519-SHA512" in table


@pytest.mark.parametrize("algorithm", ["X25519MLKEM768", "ML-KEM-512", "HQC-128", "P-256"])
def test_encrypt_decrypt_pipe_round_trip(tmp_path: Path, algorithm: str) -> None:
    key = tmp_path / "alice"
    ok("keygen", "-a", algorithm, "-o", key)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert Path(f"{key}.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    sealed = ok("encrypt", "-r", f"{key}.pub", "-c", "accounts/42", stdin=b"top secret\n")
    assert b"top secret" not in sealed
    assert ok("decrypt", "-k", key, "-c", "accounts/42", stdin=sealed) == b"top secret\n"
    wrong = qrc("decrypt", "-k", key, "-c", "accounts/43", stdin=sealed)
    assert wrong.returncode == 2
    assert wrong.stdout == b""
    assert wrong.stderr.decode().strip() == "qrc: error: decryption failed"


def test_files_and_passphrase(tmp_path: Path) -> None:
    key, secret = tmp_path / "k", tmp_path / "pass"
    secret.write_text("correct horse battery staple\n")
    ok("keygen", "-a", "ML-KEM-768", "-o", key, "--passphrase-file", secret)
    assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    (tmp_path / "in").write_bytes(b"x" * 100_000)
    ok("encrypt", "-r", f"{key}.pub", "-i", tmp_path / "in", "-o", tmp_path / "ct")
    ok(
        "decrypt",
        "-k",
        key,
        "--passphrase-file",
        secret,
        "-i",
        tmp_path / "ct",
        "-o",
        tmp_path / "out",
    )
    assert (tmp_path / "out").read_bytes() == b"x" * 100_000
    no_pass = qrc("decrypt", "-k", key, "-i", tmp_path / "ct")
    assert no_pass.returncode == 2 and "passphrase" in no_pass.stderr.decode().lower()
    secret.write_text("wrong\n")
    bad = qrc("decrypt", "-k", key, "--passphrase-file", secret, "-i", tmp_path / "ct")
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr.decode()


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    key = tmp_path / "k"
    ok("keygen", "-a", "Ed25519", "-o", key)
    before = key.read_bytes()
    again = qrc("keygen", "-a", "Ed25519", "-o", key)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr.decode()
    assert key.read_bytes() == before


@pytest.mark.parametrize("algorithm", ["MLDSA65-Ed25519-SHA512", "SLH-DSA-SHA2-128f", "ML-DSA-44"])
def test_sign_verify_bundle_and_raw(tmp_path: Path, algorithm: str) -> None:
    key, doc = tmp_path / "signer", tmp_path / "doc"
    doc.write_bytes(b"quarterly report")
    ok("keygen", "-a", algorithm, "-o", key)
    ok("sign", "-k", key, "-i", doc, "-o", tmp_path / "doc.sig", "-c", "reports")
    assert (
        qrc(
            "verify", "-p", f"{key}.pub", "-s", tmp_path / "doc.sig", "-i", doc, "-c", "reports"
        ).returncode
        == 0
    )
    assert qrc("verify", "-p", f"{key}.pub", "-s", tmp_path / "doc.sig", "-i", doc).returncode == 1
    doc.write_bytes(b"quarterly report, edited")
    assert (
        qrc(
            "verify", "-p", f"{key}.pub", "-s", tmp_path / "doc.sig", "-i", doc, "-c", "reports"
        ).returncode
        == 1
    )
    raw = ok("sign", "-k", key, "--raw", stdin=b"m")
    (tmp_path / "raw.sig").write_bytes(raw)
    assert qrc("verify", "-p", f"{key}.pub", "-s", tmp_path / "raw.sig", stdin=b"m").returncode == 0
    assert qrc("verify", "-p", f"{key}.pub", "-s", tmp_path / "raw.sig", stdin=b"n").returncode == 1


def test_raw_signature_is_the_standard_one(tmp_path: Path) -> None:
    # pyca/cryptography (OpenSSL 4) verifies our raw ML-DSA signature with our SPKI key.
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    key = tmp_path / "k"
    ok("keygen", "-a", "ML-DSA-65", "-o", key)
    raw = ok("sign", "-k", key, "--raw", stdin=b"hello")
    public = load_pem_public_key(Path(f"{key}.pub").read_bytes())
    public.verify(raw, b"hello")  # type: ignore[call-arg,union-attr]


def test_wrong_key_kinds_and_missing_files_are_one_line_errors(tmp_path: Path) -> None:
    key = tmp_path / "sig"
    ok("keygen", "-a", "ML-DSA-44", "-o", key)
    for args in (
        ("encrypt", "-r", f"{key}.pub"),
        ("decrypt", "-k", key),
        ("decrypt", "-k", tmp_path / "missing"),
        ("keygen", "-a", "NOPE", "-o", tmp_path / "x"),
        ("keygen", "-a", "AES-256-GCM", "-o", tmp_path / "y"),
        ("encrypt", "-r", key),
    ):
        result = qrc(*args, stdin=b"data")
        err = result.stderr.decode()
        assert result.returncode == 2, (args, err)
        assert err.startswith("qrc: error: ") and err.count("\n") == 1, (args, err)


def test_selftest_subset_and_json() -> None:
    rows = json.loads(ok("selftest", "-a", "ML-KEM-768", "-a", "SLH-DSA-SHA2-128f", "--json"))
    assert [r["algorithm"] for r in rows] == ["ML-KEM-768", "SLH-DSA-SHA2-128f"]
    assert all(r["ok"] for r in rows)


def test_bench_json_reports_ops_sizes_and_ratios() -> None:
    report = json.loads(ok("bench", "--quick", "--json", "-a", "ML-KEM-768", "-a", "ML-DSA-44"))
    first = report["algorithms"][0]
    assert first["algorithm"] == "ML-KEM-768" and first["ops"]["decapsulate"] > 0
    assert first["sizes"]["ciphertext"] == 1088
    assert report["envelope"] and all(row["ratio"] > 0 for row in report["envelope"])
