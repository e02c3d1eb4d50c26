"""Rotated log segments are sealed to age recipients; the plaintext segment is removed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from qrc.data.age import HybridIdentity, X25519Identity, decrypt_bytes
from qrc.data.logs import SealedRotatingFileHandler, seal_file


def test_rotation_seals_each_segment(tmp_path: Path) -> None:
    identity = HybridIdentity.generate()
    path = tmp_path / "app.log"
    handler = SealedRotatingFileHandler(
        path, [identity.recipient()], max_bytes=2000, backup_count=3
    )
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("qrc.test.sealed")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for i in range(400):
            logger.warning("record %04d secret-%d", i, i)
    finally:
        logger.removeHandler(handler)
        handler.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["app.log", "app.log.1.age", "app.log.2.age", "app.log.3.age"]
    # Newest segment is .1; together with the live file they end with the last records.
    segments = [
        decrypt_bytes((tmp_path / f"app.log.{n}.age").read_bytes(), [identity]).decode()
        for n in (3, 2, 1)
    ]
    text = "".join(segments) + path.read_text()
    lines = text.splitlines()
    assert lines[-1] == "record 0399 secret-399"
    numbers = [int(line.split()[1]) for line in lines]
    assert numbers == list(range(numbers[0], 400))  # contiguous, in order, nothing lost
    for n in (1, 2, 3):
        assert b"secret" not in (tmp_path / f"app.log.{n}.age").read_bytes()
        assert (tmp_path / f"app.log.{n}.age").read_bytes().startswith(b"age-encryption.org/v1")


def test_refuses_settings_that_lose_or_mix(tmp_path: Path) -> None:
    recipient = X25519Identity.generate().recipient()
    with pytest.raises(ValueError, match="backup_count"):
        SealedRotatingFileHandler(tmp_path / "a.log", [recipient], max_bytes=10, backup_count=0)
    with pytest.raises(ValueError, match="quantum"):
        SealedRotatingFileHandler(
            tmp_path / "a.log",
            [recipient, HybridIdentity.generate().recipient()],
            max_bytes=10,
            backup_count=1,
        )


def test_a_segment_that_cannot_be_sealed_stays(tmp_path: Path) -> None:
    source = tmp_path / "segment"
    source.write_text("keep me\n")
    missing_dir = tmp_path / "absent" / "segment.age"
    with pytest.raises(OSError):
        seal_file(source, missing_dir, [X25519Identity.generate().recipient()])
    assert source.read_text() == "keep me\n"
    identity = X25519Identity.generate()
    seal_file(source, tmp_path / "segment.age", [identity.recipient()])
    assert not source.exists()
    assert decrypt_bytes((tmp_path / "segment.age").read_bytes(), [identity]) == b"keep me\n"
    assert not list(tmp_path.glob(".*partial"))
