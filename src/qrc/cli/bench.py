"""``qrc bench``: every algorithm's operations per second and sizes, the envelope's
overhead against the bare primitives, and the providers compared (same run)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, cast

import typer

from qrc.cli.main import JsonOpt, _err, _json, _out
from qrc.crypto.registry import all_algorithms, get_info

if TYPE_CHECKING:
    from qrc.crypto.benchmark import AlgorithmBenchmark

__all__ = ["bench"]


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
    from rich.progress import Progress  # noqa: PLC0415

    from qrc.crypto.bench_envelope import envelope_ratios  # noqa: PLC0415
    from qrc.crypto.benchmark import QUICK_SET, bench_algorithms, compare_providers  # noqa: PLC0415

    if algorithm:
        ids = [get_info(a).id for a in algorithm]
    else:
        ids = list(QUICK_SET) if quick else [info.id for info in all_algorithms()]
    with Progress(console=_err(), transient=True, disable=as_json) as progress:
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
        print(_json(report))
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
    from rich.table import Table  # noqa: PLC0415

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
    _out().print(table)
    env = Table(
        "envelope",
        "operation",
        "ratio to the raw primitive",
        title="Envelope overhead, 1 KiB (same run)",
    )
    for row in ratios:
        env.add_row(str(row["envelope"]), str(row["operation"]), f"{float(str(row['ratio'])):.2f}x")
    _out().print(env)
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
        _out().print(prov)
