"""``qrc``: the offline toolkit (like ``age`` and ``openssl``, for files and pipes).

Every command reads stdin and writes stdout unless ``-i``/``-o`` name files, prints one
line on failure, and exits non-zero: 1 for "signature not valid", 2 for any error.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO, ClassVar, TypeVar

import typer

from qrc import __version__
from qrc.cli.io import fail as _fail
from qrc.cli.io import passphrase_from as _passphrase
from qrc.cli.io import read_input as _read_input
from qrc.cli.io import say as _say
from qrc.cli.io import write_output as _write_output
from qrc.cli.lazy import LazyGroup
from qrc.crypto.errors import CryptoError, InvalidSignature, KeyFormatError
from qrc.crypto.registry import Kind, all_algorithms, get_info

if TYPE_CHECKING:
    from rich.console import Console

    from qrc.crypto.base import KemPrivateKey, KemPublicKey, SigningKey, VerifyingKey

# What each command needs is imported when it runs (`python -X importtime -m qrc ...`):
# `qrc encrypt` loads the key file and envelope code, not the self-tests, the benchmarks,
# rich tables, the service, its store or its web stack.

__all__ = ["app"]


# Every command by name, in the order `qrc --help` lists them: Typer builds one when it runs.
_COMMANDS: dict[str, str] = {}
_Command = TypeVar("_Command", bound=Callable[..., None])


def _command(function: _Command) -> _Command:
    """Register an offline command of this module (as ``@app.command()`` would, but lazily)."""
    _COMMANDS[function.__name__] = f"{__name__}:{function.__name__}"
    return function


class _Commands(LazyGroup):
    lazy: ClassVar[Mapping[str, str]] = _COMMANDS


app = typer.Typer(
    name="qrc",
    cls=_Commands,
    help="Post-quantum cryptography toolkit: keys, encryption, signatures, self-tests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _json(data: object) -> str:
    import json  # noqa: PLC0415

    return json.dumps(data, indent=2)


@cache
def _out() -> Console:
    from rich.console import Console  # noqa: PLC0415

    # Piped output is for reading in files and logs, not an 80-column terminal: keep rows whole.
    return Console(width=None if sys.stdout.isatty() else 160)


@cache
def _err() -> Console:
    from rich.console import Console  # noqa: PLC0415

    return Console(stderr=True)


InputOpt = Annotated[Path | None, typer.Option("-i", "--input", help="Read from FILE, not stdin.")]
OutputOpt = Annotated[
    Path | None, typer.Option("-o", "--output", help="Write to FILE, not stdout.")
]
ContextOpt = Annotated[
    str, typer.Option("-c", "--context", help="Context bound to the ciphertext or signature.")
]
PassOpt = Annotated[
    Path | None,
    typer.Option("--passphrase-file", help="File whose first line is the key file passphrase."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _load_private(
    path: Path, passphrase_file: Path | None, kind: Kind
) -> KemPrivateKey | SigningKey:
    from qrc.crypto import keyfile  # noqa: PLC0415

    # The kind settles what a bare EC key is for: P-256 DHKEM or ECDSA-P256.
    data = path.read_bytes()
    try:
        return keyfile.load_private_pem(data, _passphrase(passphrase_file), kind=kind)
    except KeyFormatError as exc:
        raise KeyFormatError(f"{path}: {exc}") from None


def _load_public(path: Path, kind: Kind) -> KemPublicKey | VerifyingKey:
    from qrc.crypto import keyfile  # noqa: PLC0415

    try:
        return keyfile.load_public_pem(path.read_bytes(), kind=kind)
    except KeyFormatError as exc:
        raise KeyFormatError(f"{path}: {exc}") from None


@app.callback(invoke_without_command=True)
def _main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        _out().print(f"qrc {__version__}")
        raise typer.Exit(0)


@_command
def algorithms(
    kind: Annotated[Kind | None, typer.Option(help="Only this kind.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the algorithm registry."""
    infos = all_algorithms(kind)
    if as_json:
        print(_json([info.as_dict() for info in infos]))
        return
    from rich.table import Table  # noqa: PLC0415

    table = Table()
    table.add_column("id", no_wrap=True)
    for name in ("kind", "family", "NIST level"):
        table.add_column(name, no_wrap=True)
    table.add_column("standard", overflow="fold")
    for name in ("status", "provider"):
        table.add_column(name, no_wrap=True)
    for info in infos:
        level = str(info.nist_level) if info.nist_level else "-"
        table.add_row(
            info.id,
            info.kind.value,
            info.family.value,
            level,
            info.standard,
            info.status.value,
            info.provider,
        )
    _out().print(table)


@_command
def keygen(
    algorithm: Annotated[
        str | None, typer.Option("-a", "--algorithm", help="Registry ID, see `qrc algorithms`.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="Private key file; FILE.pub gets the public key (--age: stdout)."
        ),
    ] = None,
    passphrase_file: PassOpt = None,
    age: Annotated[
        bool, typer.Option("--age", help="An age identity file, as age-keygen writes it.")
    ] = False,
    pq: Annotated[
        bool,
        typer.Option("--pq", help="With --age: a post-quantum (ML-KEM-768 + X25519) identity."),
    ] = False,
) -> None:
    """Generate a key pair: PKCS#8 PEM private key and SPKI PEM public key (or an age identity)."""
    if age:
        if algorithm or passphrase_file:
            _fail("--age makes an age identity: -a and --passphrase-file do not apply")
        if output is not None and output.exists():
            _fail(f"{output} exists; refusing to overwrite it (remove it first)")
        from qrc.cli.file import write_identity  # noqa: PLC0415

        write_identity(output, pq, _say)
        return
    if pq:
        _fail("--pq goes with --age (for PEM keys choose -a X25519MLKEM768)")
    if algorithm is None or output is None:
        _fail("give -a ALGORITHM and -o FILE (or --age for an age identity)")
    from qrc.crypto import keyfile  # noqa: PLC0415
    from qrc.crypto.selftest import generate_private_key  # noqa: PLC0415

    info = get_info(algorithm)
    if info.kind is Kind.AEAD:
        _fail(f"{info.id} is a symmetric algorithm: keygen makes KEM and signature key pairs")
    public_path = output.with_name(output.name + ".pub")
    for path in (output, public_path):
        if path.exists():
            _fail(f"{path} exists; refusing to overwrite it (remove it first)")
    key = generate_private_key(info.id)
    pem = keyfile.private_key_to_pem(key, _passphrase(passphrase_file))
    # O_EXCL: never follow a file that appeared since the check; 0600: private key.
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path.write_bytes(keyfile.public_key_to_pem(key.public_key()))
    _say(f"wrote {output} and {public_path} ({info.id})")


# `qrc encrypt` and `qrc decrypt` never hold a whole large input. Up to SMALL_MESSAGE
# bytes, `qrc encrypt` writes one Envelope (docs/formats.md), as it always has; above, it
# writes an age file whose one `qrc-key` stanza carries the file key in an Envelope to the
# same key and context, and streams the data in 64 KiB chunks. `qrc decrypt` tells the two
# apart by their first bytes. Envelopes are read whole, so it refuses one over
# MAX_ENVELOPE (none is written that large any more).
SMALL_MESSAGE = 1 << 20
MAX_ENVELOPE = 64 << 20
_ENVELOPE_MAGIC = b"QRCE"


@_command
def encrypt(
    recipient: Annotated[
        Path, typer.Option("-r", "--recipient", help="Recipient's public key (SPKI PEM).")
    ],
    context: ContextOpt = "",
    input: InputOpt = None,
    output: OutputOpt = None,
) -> None:
    """Encrypt stdin (or -i FILE) to a recipient's public key (large inputs: age format)."""
    from qrc.crypto.base import KemPublicKey  # noqa: PLC0415

    public = _load_public(recipient, Kind.KEM)
    if not isinstance(public, KemPublicKey):
        _fail(f"{recipient} is a {public.algorithm} signature key; encryption needs a KEM key")
    with _open_input(input) as src:
        head = _read_up_to(src, SMALL_MESSAGE + 1)
        if len(head) <= SMALL_MESSAGE:
            from qrc.crypto.envelope import seal  # noqa: PLC0415

            _write_output(output, seal(public, head, context=context.encode()))
            return
        from qrc.cli.file import atomic_output, encrypt_stream  # noqa: PLC0415
        from qrc.data.age.keyservice import KeyRecipient  # noqa: PLC0415

        with atomic_output(output, private=False) as dst:
            encrypt_stream(src, dst, [KeyRecipient(public, context=context)], head=head)


@_command
def decrypt(
    key: Annotated[Path, typer.Option("-k", "--key", help="Private key file (PKCS#8 PEM).")],
    context: ContextOpt = "",
    passphrase_file: PassOpt = None,
    input: InputOpt = None,
    output: OutputOpt = None,
) -> None:
    """Decrypt stdin (or -i FILE) with a private key (envelopes and age files)."""
    from qrc.crypto.base import KemPrivateKey  # noqa: PLC0415

    private = _load_private(key, passphrase_file, Kind.KEM)
    if not isinstance(private, KemPrivateKey):
        _fail(f"{key} is a {private.algorithm} signature key; decryption needs a KEM key")
    with _open_input(input) as src:
        head = _read_up_to(src, len(_ENVELOPE_MAGIC))
        if head == _ENVELOPE_MAGIC:
            from qrc.crypto.envelope import open_sealed  # noqa: PLC0415

            rest = _read_up_to(src, MAX_ENVELOPE)
            if src.read(1):
                _fail(f"envelope over {MAX_ENVELOPE >> 20} MiB: not read whole")
            _write_output(output, open_sealed(private, head + rest, context=context.encode()))
            return
        from qrc.cli.file import atomic_output, decrypt_stream  # noqa: PLC0415
        from qrc.data.age.keyservice import PrivateKeyIdentity  # noqa: PLC0415

        source = io.BufferedReader(_Rejoined(head, src), 1 << 17)
        with atomic_output(output, private=True) as dst:
            decrypt_stream(source, dst, [PrivateKeyIdentity(private, context=context)])


class _Rejoined(io.RawIOBase):
    """The bytes already read, then the rest of the stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        target = memoryview(buffer).cast("B")
        if self._head:
            n = min(len(target), len(self._head))
            target[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(target))
        target[: len(data)] = data
        return len(data)


@contextmanager
def _open_input(path: Path | None) -> Iterator[BinaryIO]:
    if path is None:
        yield sys.stdin.buffer
        return
    with path.open("rb") as handle:
        yield handle


def _read_up_to(src: BinaryIO, limit: int) -> bytes:
    parts, got = [], 0
    while got < limit and (part := src.read(limit - got)):
        parts.append(part)
        got += len(part)
    return b"".join(parts)


@_command
def sign(
    key: Annotated[Path, typer.Option("-k", "--key", help="Private key file (PKCS#8 PEM).")],
    raw: Annotated[
        bool, typer.Option("--raw", help="Bare standard signature bytes, no bundle.")
    ] = False,
    context: ContextOpt = "",
    passphrase_file: PassOpt = None,
    input: InputOpt = None,
    output: OutputOpt = None,
) -> None:
    """Sign stdin (or -i FILE); writes a signature bundle (or the raw signature)."""
    from qrc.crypto import bundle  # noqa: PLC0415
    from qrc.crypto.base import SigningKey  # noqa: PLC0415

    private = _load_private(key, passphrase_file, Kind.SIGNATURE)
    if not isinstance(private, SigningKey):
        _fail(f"{key} is a {private.algorithm} KEM key; signing needs a signature key")
    message = _read_input(input)
    if raw:
        _write_output(output, private.sign(message, context.encode()))
    else:
        _write_output(output, bundle.sign_bundle(private, message, context.encode()))


@_command
def verify(
    public_key: Annotated[
        Path, typer.Option("-p", "--public-key", help="Signer's public key (SPKI PEM).")
    ],
    signature: Annotated[
        Path, typer.Option("-s", "--signature", help="Signature file (bundle or raw).")
    ],
    context: ContextOpt = "",
    input: InputOpt = None,
) -> None:
    """Verify a signature over stdin (or -i FILE): exit 0 if valid, 1 if not."""
    from qrc.crypto import bundle  # noqa: PLC0415
    from qrc.crypto.base import VerifyingKey  # noqa: PLC0415

    public = _load_public(public_key, Kind.SIGNATURE)
    if not isinstance(public, VerifyingKey):
        _fail(f"{public_key} is a {public.algorithm} KEM key; verification needs a signature key")
    sig, message = signature.read_bytes(), _read_input(input)
    try:
        if sig.startswith(bundle.MAGIC):
            bundle.verify_bundle(public, sig, message, context.encode())
        else:
            public.verify(sig, message, context.encode())
    except InvalidSignature:
        _say("qrc: signature NOT valid")
        raise typer.Exit(1) from None
    _say(f"signature valid ({public.algorithm})")


@_command
def selftest(
    algorithm: Annotated[
        list[str] | None, typer.Option("-a", "--algorithm", help="Only these.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the power-on self-tests: a known-answer and a pairwise test per algorithm."""
    from qrc.crypto.selftest import run_selftests  # noqa: PLC0415

    ids = [get_info(a).id for a in algorithm] if algorithm else None
    results = run_selftests(ids)
    failed = [r for r in results if not r.ok]
    if as_json:
        print(_json([r.__dict__ for r in results]))
    else:
        from rich.table import Table  # noqa: PLC0415

        table = Table("algorithm", "result", "ms")
        for r in results:
            table.add_row(
                r.algorithm,
                "[green]pass[/]" if r.ok else f"[red]FAIL[/] {r.detail}",
                f"{r.seconds * 1000:.1f}",
            )
        _out().print(table)
        _out().print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)


# Measuring everything loads the benchmarks and rich tables: a module of its own.
_COMMANDS["bench"] = "qrc.cli.bench:bench"


# The key service's commands: Typer, the PQ client, FastAPI, Twisted and SQLAlchemy load
# when one of them runs.
_COMMANDS.update(
    (
        ("file", "qrc.cli.file:file_app"),
        ("data", "qrc.cli.data:data_app"),
        ("tunnel", "qrc.cli.tunnel:tunnel_app"),
        ("agents", "qrc.cli.agents:agents_app"),
        ("ca", "qrc.cli.ca:ca_app"),
        ("inventory", "qrc.cli.inventory:inventory_app"),
        ("migrate", "qrc.cli.migrate:migrate_app"),
        ("feed", "qrc.cli.feed:feed_app"),
        ("anomalies", "qrc.cli.anomaly:anomalies_app"),
        ("risk", "qrc.cli.risk:risk_app"),
        ("advise", "qrc.cli.risk:advise_app"),
        ("compliance", "qrc.cli.compliance:compliance_app"),
        ("incident", "qrc.cli.incident:incident_app"),
        ("serve", "qrc.cli.serve:serve"),
        ("admin", "qrc.cli.admin:admin_app"),
        ("keys", "qrc.cli.remote:keys_app"),
        ("remote", "qrc.cli.remote:remote_app"),
        ("audit", "qrc.cli.remote:audit_app"),
        ("token", "qrc.cli.remote:token_app"),
    )
)


def _error_line(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc) or type(exc).__name__


def run() -> None:
    """Console entry point: a one-line error and exit status 2 instead of a traceback."""
    try:
        app()
    except (CryptoError, OSError, ValueError) as exc:
        _say(f"qrc: error: {_error_line(exc)}")
        sys.exit(2)
