"""``qrc``: the offline toolkit (like ``age`` and ``openssl``, for files and pipes).

Every command reads stdin and writes stdout unless ``-i``/``-o`` name files, prints one
line on failure, and exits non-zero: 1 for "signature not valid", 2 for any error.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from qrc import __version__
from qrc.cli.io import fail as _fail
from qrc.cli.io import read_input as _read_input
from qrc.cli.io import say as _say
from qrc.cli.io import write_output as _write_output
from qrc.crypto import bundle, keyfile
from qrc.crypto.base import KemPrivateKey, KemPublicKey, SigningKey, VerifyingKey
from qrc.crypto.bench_envelope import envelope_ratios
from qrc.crypto.benchmark import (
    QUICK_SET,
    AlgorithmBenchmark,
    bench_algorithms,
    compare_providers,
)
from qrc.crypto.envelope import open_sealed, seal
from qrc.crypto.errors import CryptoError, InvalidSignature, KeyFormatError
from qrc.crypto.registry import Kind, all_algorithms, get_info
from qrc.crypto.selftest import generate_private_key, run_selftests

__all__ = ["app"]

app = typer.Typer(
    name="qrc",
    help="Post-quantum cryptography toolkit: keys, encryption, signatures, self-tests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output is for reading in files and logs, not an 80-column terminal: keep rows whole.
_out = Console(width=None if sys.stdout.isatty() else 160)
_err = Console(stderr=True)

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


def _passphrase(path: Path | None) -> bytes | None:
    if path is None:
        return None
    lines = path.read_bytes().splitlines()
    if not lines or not lines[0]:
        _fail(f"{path} is empty: put the passphrase on its first line")
    return lines[0]


def _load_private(
    path: Path, passphrase_file: Path | None, kind: Kind
) -> KemPrivateKey | SigningKey:
    # The kind settles what a bare EC key is for: P-256 DHKEM or ECDSA-P256.
    data = path.read_bytes()
    try:
        return keyfile.load_private_pem(data, _passphrase(passphrase_file), kind=kind)
    except KeyFormatError as exc:
        raise KeyFormatError(f"{path}: {exc}") from None


def _load_public(path: Path, kind: Kind) -> KemPublicKey | VerifyingKey:
    try:
        return keyfile.load_public_pem(path.read_bytes(), kind=kind)
    except KeyFormatError as exc:
        raise KeyFormatError(f"{path}: {exc}") from None


@app.callback(invoke_without_command=True)
def _main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        _out.print(f"qrc {__version__}")
        raise typer.Exit(0)


@app.command()
def algorithms(
    kind: Annotated[Kind | None, typer.Option(help="Only this kind.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the algorithm registry."""
    infos = all_algorithms(kind)
    if as_json:
        print(json.dumps([info.as_dict() for info in infos], indent=2))
        return
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
    _out.print(table)


@app.command()
def keygen(
    algorithm: Annotated[
        str, typer.Option("-a", "--algorithm", help="Registry ID, see `qrc algorithms`.")
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Private key file; FILE.pub gets the public key.")
    ],
    passphrase_file: PassOpt = None,
) -> None:
    """Generate a key pair: PKCS#8 PEM private key and SPKI PEM public key."""
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


@app.command()
def encrypt(
    recipient: Annotated[
        Path, typer.Option("-r", "--recipient", help="Recipient's public key (SPKI PEM).")
    ],
    context: ContextOpt = "",
    input: InputOpt = None,
    output: OutputOpt = None,
) -> None:
    """Encrypt stdin (or -i FILE) to a recipient's public key."""
    public = _load_public(recipient, Kind.KEM)
    if not isinstance(public, KemPublicKey):
        _fail(f"{recipient} is a {public.algorithm} signature key; encryption needs a KEM key")
    _write_output(output, seal(public, _read_input(input), context=context.encode()))


@app.command()
def decrypt(
    key: Annotated[Path, typer.Option("-k", "--key", help="Private key file (PKCS#8 PEM).")],
    context: ContextOpt = "",
    passphrase_file: PassOpt = None,
    input: InputOpt = None,
    output: OutputOpt = None,
) -> None:
    """Decrypt stdin (or -i FILE) with a private key."""
    private = _load_private(key, passphrase_file, Kind.KEM)
    if not isinstance(private, KemPrivateKey):
        _fail(f"{key} is a {private.algorithm} signature key; decryption needs a KEM key")
    _write_output(output, open_sealed(private, _read_input(input), context=context.encode()))


@app.command()
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
    private = _load_private(key, passphrase_file, Kind.SIGNATURE)
    if not isinstance(private, SigningKey):
        _fail(f"{key} is a {private.algorithm} KEM key; signing needs a signature key")
    message = _read_input(input)
    if raw:
        _write_output(output, private.sign(message, context.encode()))
    else:
        _write_output(output, bundle.sign_bundle(private, message, context.encode()))


@app.command()
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


@app.command()
def selftest(
    algorithm: Annotated[
        list[str] | None, typer.Option("-a", "--algorithm", help="Only these.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the power-on self-tests: a known-answer and a pairwise test per algorithm."""
    ids = [get_info(a).id for a in algorithm] if algorithm else None
    results = run_selftests(ids)
    failed = [r for r in results if not r.ok]
    if as_json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
    else:
        table = Table("algorithm", "result", "ms")
        for r in results:
            table.add_row(
                r.algorithm,
                "[green]pass[/]" if r.ok else f"[red]FAIL[/] {r.detail}",
                f"{r.seconds * 1000:.1f}",
            )
        _out.print(table)
        _out.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)


@app.command()
def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="A representative subset, short runs.")
    ] = False,
    algorithm: Annotated[
        list[str] | None, typer.Option("-a", "--algorithm", help="Only these.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure every algorithm (ops/s, sizes) and the envelope's overhead ratios."""
    if algorithm:
        ids = [get_info(a).id for a in algorithm]
    else:
        ids = list(QUICK_SET) if quick else [info.id for info in all_algorithms()]
    with Progress(console=_err, transient=True, disable=as_json) as progress:
        task = progress.add_task("benchmarking", total=len(ids))

        def step(name: str) -> None:
            progress.update(task, description=f"benchmarking {name}", advance=1)

        results = bench_algorithms(ids, quick=quick, progress=step)
        progress.update(task, description="envelope overhead")
        ratios = envelope_ratios(quick)
        progress.update(task, description="providers")
        providers = [] if algorithm else compare_providers(quick)
    if as_json:
        report = {
            "algorithms": [r.as_dict() for r in results],
            "envelope": ratios,
            "providers": providers,
        }
        print(json.dumps(report, indent=2))
        return
    _print_bench_tables(results, ratios, providers)


def _rate(ops: dict[str, float], *names: str) -> str:
    for name in names:
        if name in ops:
            return f"{ops[name]:,.0f}"
    return "-"


def _print_bench_tables(
    results: list[AlgorithmBenchmark],
    ratios: list[dict[str, object]],
    providers: list[dict[str, object]],
) -> None:
    table = Table(
        "algorithm",
        "keygen/s",
        "encaps|sign|enc /s",
        "decaps|verify|dec /s",
        "public key",
        "ciphertext|signature",
        title="Operations per second (median)",
    )
    for r in results:
        sizes = r.sizes
        table.add_row(
            r.algorithm,
            _rate(r.ops, "keygen"),
            _rate(r.ops, "encapsulate", "sign", "encrypt_1KiB"),
            _rate(r.ops, "decapsulate", "verify", "decrypt_1KiB"),
            str(sizes.get("public_key", "-")),
            str(sizes.get("ciphertext", sizes.get("signature", "-"))),
        )
    _out.print(table)
    env = Table(
        "envelope",
        "operation",
        "ratio to the raw primitive",
        title="Envelope overhead, 1 KiB (same run)",
    )
    for row in ratios:
        env.add_row(str(row["envelope"]), str(row["operation"]), f"{float(str(row['ratio'])):.2f}x")
    _out.print(env)
    if providers:
        prov = Table(
            "algorithm",
            "provider",
            "chosen",
            "keygen/s",
            "encaps|sign /s",
            "decaps|verify /s",
            title="Providers compared",
        )
        for row in providers:
            ops = cast(dict[str, float], row["ops"])
            prov.add_row(
                str(row["algorithm"]),
                str(row["provider"]),
                "yes" if row["chosen"] else "",
                _rate(ops, "keygen"),
                _rate(ops, "encapsulate", "sign"),
                _rate(ops, "decapsulate", "verify"),
            )
        _out.print(prov)


def _register_service_commands() -> None:
    # These modules import only Typer and the PQ client at load time; the service's
    # heavier dependencies (FastAPI, Twisted, SQLAlchemy) load when `serve` runs.
    from qrc.cli.admin import admin_app  # noqa: PLC0415
    from qrc.cli.remote import audit_app, keys_app, remote_app, token_app  # noqa: PLC0415
    from qrc.cli.serve import serve  # noqa: PLC0415

    app.command("serve")(serve)
    app.add_typer(admin_app, name="admin")
    app.add_typer(keys_app, name="keys")
    app.add_typer(remote_app, name="remote")
    app.add_typer(audit_app, name="audit")
    app.add_typer(token_app, name="token")


_register_service_commands()


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
