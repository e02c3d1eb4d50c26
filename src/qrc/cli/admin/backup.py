"""``qrc admin backup`` and ``restore``: the whole store under k-of-n Shamir shares."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qrc.cli.admin.common import (
    DEFAULT_DIR,
    DataDirOpt,
    JsonOpt,
    PassOpt,
    current_actor,
    first_line,
    handled,
    key_service,
    print_json,
    show_time,
    write_new,
)
from qrc.cli.io import fail, say

if TYPE_CHECKING:
    from qrc.crypto.base import KemPrivateKey
    from qrc.crypto.shamir import Share

__all__ = ["backup", "restore"]


def backup(
    output: Annotated[Path, typer.Option("-o", "--output", help="The backup file to write.")],
    threshold: Annotated[
        int, typer.Option("--threshold", "-k", help="Shares needed to restore.")
    ] = 3,
    shares: Annotated[int, typer.Option("--shares", "-n", help="Shares made.")] = 5,
    custodian: Annotated[
        list[Path] | None,
        typer.Option(
            "--custodian",
            help="A custodian's X25519MLKEM768 public key (SPKI PEM); give exactly n, one "
            "share is sealed to each.",
        ),
    ] = None,
    shares_dir: Annotated[
        Path | None,
        typer.Option("--shares-dir", help="Where the shares go (default: next to the backup)."),
    ] = None,
    data_dir: DataDirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Back up the whole store under a fresh key split into k-of-n Shamir shares."""
    from qrc.crypto.base import KemPublicKey  # noqa: PLC0415
    from qrc.crypto.keyfile import load_public_pem  # noqa: PLC0415
    from qrc.crypto.registry import Kind  # noqa: PLC0415

    custodians = list(custodian or [])
    if custodians and len(custodians) != shares:
        fail(f"{shares} shares need {shares} --custodian keys, not {len(custodians)}")
    directory = shares_dir or output.parent
    suffix = "sealed" if custodians else "txt"
    targets = [directory / f"share-{i}-of-{shares}.{suffix}" for i in range(1, shares + 1)]
    # Everything is checked before the backup is made: a refused write must not leave a
    # backup.create event for a backup nobody has.
    for path in (output, *targets):
        if path.exists():
            hint = "" if path == output else " (choose another --shares-dir)"
            fail(f"{path} exists; refusing to overwrite it{hint}")
    with handled():
        keys = []
        for path in custodians:
            public = load_public_pem(path.read_bytes(), kind=Kind.KEM)
            if not isinstance(public, KemPublicKey):
                fail(f"{path} is not a KEM public key: custodians need X25519MLKEM768 keys")
            keys.append(public)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    with key_service(data_dir) as service:
        result = service.backups.create(
            threshold=threshold,
            shares=shares,
            custodians=keys or None,
            actor=current_actor(),
        )
        write_new(output, result.data)
        if custodians:
            blobs = result.sealed_shares
        else:
            blobs = [(share.to_text() + "\n").encode("ascii") for share in result.shares]
        for path, blob in zip(targets, blobs, strict=True):
            write_new(path, blob)
    summary = result.summary
    report = {
        "backup_id": result.backup_id,
        "file": str(output),
        "created_at": summary.created_at,
        "threshold": summary.threshold,
        "shares": summary.shares,
        "counts": asdict(summary.counts),
        "share_files": [str(p) for p in targets],
        "sealed_to": [str(p) for p in custodians],
    }
    if as_json:
        print_json(report)
    else:
        c = summary.counts
        say(
            f"backup {result.backup_id} written to {output}: {c.keys} keys, {c.key_versions} "
            f"key versions, {c.audit_events} audit events"
        )
        if custodians:
            for key_path, share_path in zip(custodians, targets, strict=True):
                say(f"  {share_path}: sealed to {key_path}")
        else:
            say(f"  {shares} text shares in {directory} (share-<i>-of-{shares}.txt)")
        say(
            f"any {summary.threshold} of the {summary.shares} shares restore it. WARNING: give "
            "each share to a different custodian and delete the copies here: whoever holds "
            f"{summary.threshold} shares and the file holds every key"
        )


def _read_shares(paths: list[Path], keys: list[tuple[Path, KemPrivateKey]]) -> list[Share]:
    from qrc.crypto.shamir import MAGIC as SHARE_MAGIC  # noqa: PLC0415
    from qrc.crypto.shamir import (  # noqa: PLC0415
        SEALED_MAGIC,
        InvalidShare,
        Share,
        open_sealed_share,
    )

    found = []
    for path in paths:
        data = path.read_bytes()
        if data.startswith(SEALED_MAGIC):
            if not keys:
                fail(f"{path} is a sealed share: give the custodian's key with --custodian-key")
            share = None
            for _key_path, key in keys:
                try:
                    share = open_sealed_share(data, key)
                    break
                except InvalidShare:
                    continue
            if share is None:
                fail(
                    f"{path} does not open with any --custodian-key given: wrong custodian "
                    "key, or the sealed share was altered"
                )
            found.append(share)
            continue
        try:
            if data.startswith(SHARE_MAGIC):  # a binary share, as Share.to_bytes writes it
                found.append(Share.from_bytes(data))
            else:
                found.append(Share.from_text(data.decode("utf-8", errors="replace")))
        except InvalidShare as exc:
            fail(f"{path}: {exc}")
    return found


def restore(
    input: Annotated[Path, typer.Option("-i", "--input", help="The backup file.")],
    share: Annotated[
        list[Path],
        typer.Option("--share", help="A share file (text, or sealed with --custodian-key)."),
    ],
    custodian_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--custodian-key", help="A custodian's private key (PKCS#8 PEM) for sealed shares."
        ),
    ] = None,
    passphrase_file: PassOpt = None,
    data_dir: DataDirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Restore a backup into the empty store of the data directory (keys rewrapped)."""
    from qrc.crypto.base import KemPrivateKey  # noqa: PLC0415
    from qrc.crypto.keyfile import load_private_pem  # noqa: PLC0415
    from qrc.crypto.registry import Kind  # noqa: PLC0415
    from qrc.keys.backup import read_header  # noqa: PLC0415

    with handled():
        data = input.read_bytes()
        header = read_header(data)
        passphrase = first_line(passphrase_file) if passphrase_file else None
        keys: list[tuple[Path, KemPrivateKey]] = []
        for path in custodian_key or []:
            private = load_private_pem(path.read_bytes(), passphrase, kind=Kind.KEM)
            if not isinstance(private, KemPrivateKey):
                fail(f"{path} is not a KEM private key (custodian keys are X25519MLKEM768)")
            keys.append((path, private))
        shares = _read_shares(share, keys)
    if not as_json:
        say(
            f"backup {header.backup_id} of {show_time(header.created_at)}: "
            f"{header.counts.keys} keys; needs {header.threshold} of {header.shares} shares, "
            f"{len(shares)} given"
        )
    with key_service(data_dir) as service:
        report = service.backups.restore(data, shares, actor=current_actor())
    result = {
        "backup_id": report.backup_id,
        "created_at": report.created_at,
        "restored_at": report.restored_at,
        "counts": asdict(report.counts),
        "destroyed_versions": report.destroyed_versions,
        "audit_valid": report.audit.valid,
        "kek_id": report.kek_id,
    }
    if as_json:
        print_json(result)
    else:
        c = report.counts
        say(
            f"restored {c.keys} keys ({c.key_versions} versions, {report.destroyed_versions} "
            f"destroyed) and {c.audit_events} audit events into {data_dir}; keys rewrapped "
            f"under KEK {report.kek_id}; audit chain valid"
        )
