"""Precision and recall of the anomaly detector on the injected scenarios.

Usage: ``python benchmarks/eval_anomaly.py [--seeds 7,8,9] [--train-days 7] [--test-days 10]
[--json] [--write-docs]``.

For each seed, :func:`qrc.monitor.anomaly_scenarios.evaluate` trains on ``--train-days`` of
synthetic normal traffic and scores ``--test-days`` more, each with one attack of every
scenario injected. It prints a Markdown table per scenario and the totals; ``--write-docs``
puts that table into ``docs/anomaly-detection.md`` between its ``eval`` markers, so the
figures there are the ones this script measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from qrc.monitor.anomaly_scenarios import SCENARIOS, evaluate

DOC = Path(__file__).resolve().parents[1] / "docs" / "anomaly-detection.md"
BEGIN, END = "<!-- eval:begin -->", "<!-- eval:end -->"


def table(reports: list[dict[str, Any]], command: str) -> str:
    """The Markdown table of ``reports`` (one per seed)."""
    days = sum(r["test_days"] for r in reports)
    lines = [
        f"Measured by `{command}`: {len(reports)} seeds "
        f"({', '.join(str(r['seed']) for r in reports)}), "
        f"{reports[0]['train_days']} days of training traffic and {reports[0]['test_days']} "
        f"test days each ({days} test days, one attack of every scenario per day); window "
        f"{reports[0]['window_seconds']:g} s, contamination {reports[0]['contamination']:g}.",
        "",
        "| scenario | attacks | found | recall |",
        "|---|---|---|---|",
    ]
    for name in SCENARIOS:
        found = sum(r["scenarios"][name]["found"] for r in reports)
        total = sum(r["scenarios"][name]["instances"] for r in reports)
        lines.append(f"| {name} | {total} | {found} | {found / total:.2f} |")
    found = sum(sum(s["found"] for s in r["scenarios"].values()) for r in reports)
    total = sum(sum(s["instances"] for s in r["scenarios"].values()) for r in reports)
    flagged = sum(r["flagged_windows"] for r in reports)
    false = sum(r["false_alarms"] for r in reports)
    precision = (flagged - false) / flagged if flagged else 1.0
    lines += [
        f"| **all** | {total} | {found} | **{found / total:.2f}** |",
        "",
        f"Precision: **{precision:.3f}** ({flagged - false} of {flagged} flagged windows "
        f"hold attack events). False alarms: {false} windows in {days} test days "
        f"(**{false / days:.2f} a day**).",
    ]
    reasons: dict[str, int] = {}
    for report in reports:
        for reason, n in report["false_alarm_reasons"].items():
            reasons[reason] = reasons.get(reason, 0) + n
    if reasons:
        by_rule = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items(), key=lambda x: -x[1]))
        lines += ["", f"The rules behind the false alarms: {by_rule}."]
    examples = [e for r in reports for e in r["false_alarm_examples"]][:3]
    if examples:
        lines += ["", "False alarms look like this:", ""]
        lines += [f"- `{example}`" for example in examples]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="7,8,9")
    parser.add_argument("--train-days", type=int, default=7)
    parser.add_argument("--test-days", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="The reports as JSON.")
    parser.add_argument("--write-docs", action="store_true", help=f"Update {DOC.name}.")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    reports = [
        evaluate(seed=seed, train_days=args.train_days, test_days=args.test_days) for seed in seeds
    ]
    if args.json:
        json.dump(reports, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    command = "python benchmarks/eval_anomaly.py"
    if args.seeds != "7,8,9" or args.train_days != 7 or args.test_days != 10:
        command += f" --seeds {args.seeds} --train-days {args.train_days} --test-days "
        command += str(args.test_days)
    text = table(reports, command)
    print(text)
    if args.write_docs:
        doc = DOC.read_text()
        head, _, rest = doc.partition(BEGIN)
        _, _, tail = rest.partition(END)
        if not rest:
            sys.exit(f"{DOC}: no {BEGIN} marker")
        DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


if __name__ == "__main__":
    main()
