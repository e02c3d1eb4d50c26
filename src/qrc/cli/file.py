"""``qrc file encrypt|decrypt``: files in the age format, with age's own flags.

    qrc file encrypt -r age1pq1... [-r ...] [-R FILE] [-a] [-o OUT] [INPUT]
    qrc file encrypt -p [-a] [-o OUT] [INPUT]          # passphrase (scrypt)
    qrc file decrypt -i IDENTITY_FILE [-i ...] [-o OUT] [INPUT]
    qrc file decrypt [-o OUT] [INPUT]                  # passphrase files

Input is stdin and output stdout unless named. Passphrases are read from the terminal, or
from ``QRC_AGE_PASSPHRASE`` for scripts. Decryption writes into a temporary file next to
``-o`` and renames it only once the whole file has authenticated: a failure leaves nothing
at the output path. A progress bar is drawn on stderr when it is a terminal.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any, BinaryIO, Protocol

import typer
from typer._click import Context
from typer._coercion import RuntimeParam, build_runtime_param
from typer.core import TyperCommand, TyperGroup, TyperOption, _TyperParameter

from qrc.cli.io import fail
from qrc.cli.lazy import QuickCommand

if TYPE_CHECKING:
    from qrc.data.age import Identity, Recipient
    from qrc.data.age.header import Stanza
    from qrc.data.age.keyservice import KeyRecipient, ServiceIdentity

__all__ = [
    "PASSPHRASE_ENV",
    "atomic_output",
    "copy_stream",
    "file_app",
    "read_up_to",
]

PASSPHRASE_ENV = "QRC_AGE_PASSPHRASE"  # noqa: S105  # nosec B105 - a variable name
_BLOCK = 1 << 20


class _PlainParam(RuntimeParam):
    """Typer's conversion for this module's option types, without loading pydantic.

    As :mod:`qrc.cli.lazy` does for ``str`` and ``Path``, and also for flags, integers
    and repeated options (``-r``, ``-R``, ``-i``), whose conversion would otherwise import
    pydantic (a quarter of a second at every start). Anything else goes to Typer.
    """

    def _coerce_value(self, value: Any, param: _TyperParameter, ctx: Context) -> Any:
        annotation = self.annotation
        if annotation is bool and type(value) is bool:
            return value
        if annotation is int and type(value) in (int, str):
            try:
                return int(value)
            except ValueError:
                raise typer.BadParameter(f"{value!r} is not an integer", ctx, param) from None
        if annotation in (str, Path) and type(value) is str:
            return annotation(value)
        if annotation in (list[str], list[Path]) and isinstance(value, tuple | list):
            item = str if annotation == list[str] else Path
            if all(type(v) is str for v in value):
                return [item(v) for v in value]
        return build_runtime_param(param.type_descriptor)._coerce_value(value, param, ctx)


def _plain(param: object) -> None:
    if isinstance(param, _TyperParameter) and param._runtime_param is None:
        descriptor = param.type_descriptor
        param._runtime_param = _PlainParam(descriptor.parameter_info, descriptor.annotation)


class _FileCommand(QuickCommand):
    def __init__(self, name: str | None, **attrs: Any) -> None:
        TyperCommand.__init__(self, name, **attrs)
        for param in self.params:
            _plain(param)

    def get_help_option(self, ctx: Context) -> TyperOption | None:
        option = TyperCommand.get_help_option(self, ctx)
        _plain(option)
        return option


class _FileGroup(TyperGroup):
    def get_help_option(self, ctx: Context) -> TyperOption | None:
        option = super().get_help_option(ctx)
        _plain(option)
        return option


file_app = typer.Typer(
    name="file",
    cls=_FileGroup,
    help="Encrypt and decrypt files in the age format (age1pq1 post-quantum, age1, passphrase, "
    "key-service recipients).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

InputArg = Annotated[Path | None, typer.Argument(help="Input file (default stdin).")]
OutputOpt = Annotated[
    Path | None, typer.Option("-o", "--output", help="Write to FILE, not stdout.")
]
ContextOpt = Annotated[
    str,
    typer.Option("-c", "--context", help="Context bound by key-service (--key) and PEM-key files."),
]


# --------------------------------------------------------------------------- streams
class _Progress:
    """A one-line progress bar on stderr, drawn only on a terminal."""

    def __init__(self, total: int | None) -> None:
        self._total, self._done, self._shown = total, 0, 0.0
        self._on = sys.stderr.isatty() and bool(total)

    def advance(self, amount: int) -> None:
        self._done += amount
        now = time.monotonic()
        if self._on and now - self._shown > 0.1 and self._total:
            self._shown = now
            share = min(1.0, self._done / self._total)
            bar = "#" * int(share * 30)
            sys.stderr.write(f"\r[{bar:<30}] {share:6.1%} {self._done >> 20} MiB")
            sys.stderr.flush()

    def finish(self) -> None:
        if self._on and self._shown:
            sys.stderr.write("\r" + " " * 60 + "\r")
            sys.stderr.flush()


def _size_of(stream: IO[bytes]) -> int | None:
    try:
        size = os.fstat(stream.fileno()).st_size
    except (OSError, ValueError, AttributeError):
        return None
    return size or None


def read_up_to(src: BinaryIO, limit: int) -> bytes:
    """At most ``limit`` bytes of ``src`` (fewer only at its end)."""
    parts, got = [], 0
    while got < limit and (part := src.read(limit - got)):
        parts.append(part)
        got += len(part)
    return b"".join(parts)


class _Sink(Protocol):
    def write(self, data: memoryview, /) -> object: ...


def copy_stream(src: BinaryIO, dst: _Sink, total: int | None = None) -> None:
    """Copy ``src`` to ``dst`` in 1 MiB blocks through one reused buffer."""
    progress = _Progress(total)
    buffer = bytearray(_BLOCK)
    view = memoryview(buffer)
    readinto = getattr(src, "readinto", None)
    while True:
        if readinto is not None:
            n = readinto(buffer)
        else:
            data = src.read(_BLOCK)
            n = len(data)
            view[:n] = data
        if not n:
            break
        dst.write(view[:n])
        progress.advance(n)
    progress.finish()


@contextmanager
def atomic_output(path: Path | None, *, private: bool) -> Iterator[BinaryIO]:
    """Where to write: stdout, or a temporary file beside ``path`` renamed on success.

    On any exception the temporary file is removed and ``path`` is left as it was.
    ``private`` makes the file 0600 (plaintext); otherwise it follows the umask.
    """
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    directory = path.parent
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".partial")
    try:
        if not private:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def _input(path: Path | None) -> Iterator[tuple[BinaryIO, int | None]]:
    if path is None:
        yield sys.stdin.buffer, _size_of(sys.stdin.buffer)
        return
    with path.open("rb") as handle:
        yield handle, _size_of(handle)


# --------------------------------------------------------------------------- keys
def _passphrase(confirm: bool) -> bytes:
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value.encode()
    # getpass falls back to reading stdin without a terminal, and stdin is the data here.
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        fail(f"no terminal to ask for a passphrase: set {PASSPHRASE_ENV}")
    import getpass  # noqa: PLC0415

    try:
        first = getpass.getpass("Enter passphrase: ").encode()
        if confirm and getpass.getpass("Confirm passphrase: ").encode() != first:
            fail("passphrases didn't match")
    except (EOFError, OSError):
        fail(f"could not read a passphrase: set {PASSPHRASE_ENV}")
    if not first:
        fail("empty passphrase")
    return first


class _PassphraseOnDemand:
    """A scrypt identity that asks for the passphrase only if the file has a scrypt stanza."""

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        from qrc.data.age import ScryptIdentity  # noqa: PLC0415

        if not any(s.type == "scrypt" for s in stanzas):
            return None
        return ScryptIdentity(_passphrase(confirm=False)).unwrap(stanzas)


def _plugins(text: str) -> KeyRecipient | ServiceIdentity | None:
    from qrc.data.age.plugin_keys import resolve  # noqa: PLC0415

    return resolve(text)


def _read_key_file(path: Path) -> bytes:
    """A recipients or identity file, refused beyond 1 MiB (``-i /dev/zero`` is a mistake)."""
    from qrc.crypto.errors import KeyFormatError  # noqa: PLC0415
    from qrc.data.age.keys import MAX_KEY_FILE  # noqa: PLC0415

    with path.open("rb") as handle:
        data = handle.read(MAX_KEY_FILE + 1)
    if len(data) > MAX_KEY_FILE:
        raise KeyFormatError(f"{path}: too large for a key file")
    return data


def _pem_recipient(data: bytes, context: str) -> Recipient:
    from qrc.crypto.base import KemPublicKey  # noqa: PLC0415
    from qrc.crypto.keyfile import load_public_pem  # noqa: PLC0415
    from qrc.crypto.registry import Kind  # noqa: PLC0415
    from qrc.data.age.keyservice import KeyRecipient  # noqa: PLC0415

    public = load_public_pem(data, kind=Kind.KEM)
    if not isinstance(public, KemPublicKey):
        fail(f"{public.algorithm} is a signature key; encryption needs a KEM key")
    return KeyRecipient(public, context=context)


def _recipients(recipients: Sequence[str], files: Sequence[Path], context: str) -> list[Recipient]:
    from qrc.crypto.errors import KeyFormatError  # noqa: PLC0415
    from qrc.data.age import parse_recipient, parse_recipients  # noqa: PLC0415

    found: list[Recipient] = [parse_recipient(r, _plugins) for r in recipients]
    for path in files:
        data = _read_key_file(path)
        try:
            if data.lstrip().startswith(b"-----BEGIN PUBLIC KEY-----"):
                found.append(_pem_recipient(data, context))
            else:
                found.extend(parse_recipients(data.decode("utf-8"), _plugins))
        except (KeyFormatError, UnicodeDecodeError) as exc:
            raise KeyFormatError(f"{path}: {exc}") from None
    return found


def _identities(files: Sequence[Path], context: str) -> list[Identity]:
    from qrc.crypto.errors import KeyFormatError  # noqa: PLC0415
    from qrc.data.age import parse_identities  # noqa: PLC0415

    found: list[Identity] = []
    for path in files:
        data = _read_key_file(path)
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                found.append(_pem_identity(data, context))
            else:
                found.extend(parse_identities(data.decode("utf-8"), _plugins))
        except (KeyFormatError, UnicodeDecodeError) as exc:
            raise KeyFormatError(f"{path}: {exc}") from None
    return found


def _service_url() -> str:
    return os.environ.get("QRC_URL", "https://127.0.0.1:8443")


def _managed_recipient(name: str, context: str) -> Recipient:
    """The primary version of a managed key, fetched from the service (PQ TLS)."""
    from qrc.data.age.keyservice import recipient_from_client  # noqa: PLC0415
    from qrc.data.age.plugin_keys import client_for  # noqa: PLC0415

    return recipient_from_client(client_for(_service_url()), name, context)


def _service_identity(context: str) -> Identity:
    from qrc.data.age.keyservice import ServiceIdentity, remote_opener  # noqa: PLC0415
    from qrc.data.age.plugin_keys import client_for  # noqa: PLC0415

    return ServiceIdentity(remote_opener(client_for(_service_url())), context=context)


def _pem_identity(data: bytes, context: str) -> Identity:
    from qrc.crypto.base import KemPrivateKey  # noqa: PLC0415
    from qrc.crypto.keyfile import load_private_pem  # noqa: PLC0415
    from qrc.crypto.registry import Kind  # noqa: PLC0415
    from qrc.data.age.keyservice import PrivateKeyIdentity  # noqa: PLC0415

    private = load_private_pem(
        data, os.environ.get(PASSPHRASE_ENV, "").encode() or None, kind=Kind.KEM
    )
    if not isinstance(private, KemPrivateKey):
        fail(f"{private.algorithm} is a signature key; decryption needs a KEM key")
    return PrivateKeyIdentity(private, context=context)


# --------------------------------------------------------------------------- commands
def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    recipients: Sequence[Recipient],
    *,
    armor: bool = False,
    head: bytes = b"",
    total: int | None = None,
) -> None:
    """Encrypt ``head`` then the rest of ``src`` onto ``dst`` (what ``qrc encrypt`` shares)."""
    from qrc.data.age import encrypt as age_encrypt  # noqa: PLC0415

    with age_encrypt(dst, recipients, armor=armor) as writer:
        writer.write(head)
        copy_stream(src, writer, total)


def decrypt_stream(
    src: BinaryIO, dst: BinaryIO, identities: Sequence[Identity], total: int | None = None
) -> None:
    """Decrypt the age file in ``src`` onto ``dst``, chunk by authenticated chunk."""
    from qrc.data.age import decrypt as age_decrypt  # noqa: PLC0415

    progress = _Progress(total)
    for chunk in age_decrypt(src, identities).chunks():
        dst.write(chunk)
        progress.advance(len(chunk) + 16)
    progress.finish()


@file_app.command("encrypt", cls=_FileCommand)
def encrypt(
    input: InputArg = None,
    recipient: Annotated[
        list[str] | None,
        typer.Option("-r", "--recipient", help="Recipient (age1pq1..., age1..., age1qrc1...)."),
    ] = None,
    recipients_file: Annotated[
        list[Path] | None,
        typer.Option("-R", "--recipients-file", help="File of recipients, or a PEM public key."),
    ] = None,
    passphrase: Annotated[
        bool,
        typer.Option("-p", "--passphrase", help=f"Encrypt with a passphrase ({PASSPHRASE_ENV})."),
    ] = False,
    armor: Annotated[bool, typer.Option("-a", "--armor", help="ASCII armor (PEM) output.")] = False,
    key: Annotated[
        list[str] | None,
        typer.Option(
            "--key", help="A managed key of the service at QRC_URL (its primary version)."
        ),
    ] = None,
    output: OutputOpt = None,
    context: ContextOpt = "",
    work_factor: Annotated[
        int,
        typer.Option("--work-factor", help="scrypt work factor (log2 N) for -p.", min=1, max=22),
    ] = 18,
) -> None:
    """Encrypt INPUT (or stdin) to age recipients or a passphrase."""
    from qrc.data.age import ScryptRecipient  # noqa: PLC0415

    if passphrase:
        if recipient or recipients_file or key:
            fail("-p cannot be combined with -r/-R/--key: a passphrase must be the only recipient")
        targets: list[Recipient] = [ScryptRecipient(_passphrase(confirm=True), work_factor)]
    else:
        targets = _recipients(recipient or [], recipients_file or [], context)
        targets += [_managed_recipient(name, context) for name in key or []]
        if not targets:
            fail("no recipients: give -r, -R, --key or -p")
    if output is None and not armor and sys.stdout.isatty():
        fail("refusing to write binary ciphertext to a terminal: use -o FILE or -a")
    with _input(input) as (src, total), atomic_output(output, private=False) as dst:
        encrypt_stream(src, dst, targets, armor=armor, total=total)


@file_app.command("decrypt", cls=_FileCommand)
def decrypt(
    input: InputArg = None,
    identity: Annotated[
        list[Path] | None,
        typer.Option("-i", "--identity", help="Identity file (age keys, AGE-PLUGIN-QRC-1, PEM)."),
    ] = None,
    service: Annotated[
        bool,
        typer.Option("--service", help="Ask the key service at QRC_URL to open qrc-key stanzas."),
    ] = False,
    output: OutputOpt = None,
    context: ContextOpt = "",
) -> None:
    """Decrypt INPUT (or stdin), binary or armored; passphrase files need no -i."""
    identities: list[Identity] = _identities(identity or [], context)
    if service:
        identities.append(_service_identity(context))
    if not identities:
        identities = [_PassphraseOnDemand()]
    with _input(input) as (src, total), atomic_output(output, private=True) as dst:
        decrypt_stream(src, dst, identities, total)


# Shared with `qrc keygen --age`.
def write_identity(output: Path | None, pq: bool, say: Callable[[str], None]) -> None:
    """Generate an age identity and write it as ``age-keygen`` does (0600, no overwrite)."""
    from qrc.data.age import HybridIdentity, X25519Identity, identity_file  # noqa: PLC0415

    identity: HybridIdentity | X25519Identity = (
        HybridIdentity.generate() if pq else X25519Identity.generate()
    )
    recipient = str(identity.recipient())
    text = identity_file(str(identity), recipient)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    say(f"Public key: {recipient}")
