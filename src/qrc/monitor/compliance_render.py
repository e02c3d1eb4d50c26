"""A compliance report as JSON, self-contained HTML (every value escaped) or PDF (fpdf2).

The three carry the same content: the overall status, per-framework counts, and per control
its reference, outcome, finding, evidence, remediation and the limits of the check.
"""

from __future__ import annotations

import html
import json
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from qrc.monitor.compliance import FRAMEWORKS, ComplianceReport, ControlResult

__all__ = ["MEDIA_TYPES", "render", "to_html", "to_json", "to_pdf"]

MEDIA_TYPES = {
    "json": "application/json",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
}
# Outcome labels and colours, not credentials (bandit reads "pass" as one).
_LABELS = {"pass": "PASS", "fail": "FAIL", "not_applicable": "N/A", "manual": "MANUAL"}  # nosec B105
_COLOURS = {  # nosec B105
    "pass": "#1b7f3b",
    "fail": "#b3261e",
    "not_applicable": "#666666",
    "manual": "#8a6d00",
}
_RGB = {
    "pass": (27, 127, 59),
    "fail": (179, 38, 30),
    "not_applicable": (102, 102, 102),
    "manual": (138, 109, 0),
}
_TITLE = "Post-quantum cryptography compliance report"
_PDF_EVIDENCE = 3000  # characters of evidence per control in the PDF
# PDF core fonts are Latin-1: these are the characters the catalogue and evidence use beyond.
_LATIN1 = str.maketrans(
    {
        "—": "-",
        "–": "-",
        "…": "...",
        "’": "'",
        "“": '"',
        "”": '"',
        "≥": ">=",
        "≤": "<=",
        "→": "->",
        "§": "S.",
    }
)


def _counts_line(report: ComplianceReport) -> str:
    counts = report.counts()
    return (
        f"{counts['pass']} pass, {counts['fail']} fail, {counts['manual']} manual, "
        f"{counts['notApplicable']} not applicable"
    )


def to_json(report: ComplianceReport) -> str:
    """The report as indented JSON (``ComplianceReport.as_dict``)."""
    return json.dumps(report.as_dict(), indent=2, default=str) + "\n"


def _evidence_text(evidence: dict[str, Any]) -> str:
    return json.dumps(evidence, indent=1, sort_keys=True, default=str) if evidence else ""


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;
color:#1d1d1f;max-width:75em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f6}.badge{font-weight:bold}
pre{white-space:pre-wrap;word-break:break-all;font-size:.8em;background:#f8f8fa;
margin:.3em 0;padding:.4em;max-height:20em;overflow:auto}
.muted{color:#555;font-size:.9em}
"""


def _badge(outcome: str) -> str:
    colour = _COLOURS.get(outcome, "#000")
    return f'<span class="badge" style="color:{colour}">{html.escape(_LABELS[outcome])}</span>'


def _html_control(result: ControlResult) -> str:
    data = result.as_dict()
    e = html.escape
    rows = [
        f"<tr><td>{_badge(data['outcome'])}</td>",
        f"<td><b>{e(data['reference'])}</b><br><span class=muted>{e(data['id'])}</span></td>",
        f"<td><b>{e(data['title'])}</b><br>{e(data['finding'])}",
    ]
    if data["remediation"]:
        rows.append(f"<br><i>Remediation:</i> {e(data['remediation'])}")
    rows.append(f"<br><span class=muted>Limits: {e(data['limits'])}</span>")
    evidence = _evidence_text(data["evidence"])
    if evidence:
        rows.append(f"<details><summary>Evidence</summary><pre>{e(evidence)}</pre></details>")
    rows.append("</td></tr>")
    return "".join(rows)


def to_html(report: ComplianceReport) -> str:
    """The report as one self-contained HTML page (no scripts, no external resources)."""
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(_TITLE)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(_TITLE)}</h1>",
        f"<p>Generated {e(report.generated_at.isoformat())}. Overall: "
        f"{_badge(report.overall_status)}. Controls: " + e(_counts_line(report)) + ".</p>",
        "<p class=muted>Each control was evaluated from the service's live state; "
        "<b>manual</b> controls are processes that need an attestation. See the limits of "
        "each check before relying on it.</p>",
        "<h2>Evaluated against</h2><table>",
        *(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in report.context.items()),
        "</table><h2>Frameworks</h2><table><tr><th>Framework</th><th>Status</th><th>Pass</th>"
        "<th>Fail</th><th>Manual</th><th>N/A</th></tr>",
    ]
    for row in report.framework_summaries():
        out.append(
            f"<tr><td>{e(row['name'])}</td><td>{_badge(row['status'])}</td><td>{row['pass']}"
            f"</td><td>{row['fail']}</td><td>{row['manual']}</td><td>{row['notApplicable']}"
            "</td></tr>"
        )
    out.append("</table>")
    for framework, results in report.by_framework().items():
        out.append(f"<h2>{e(FRAMEWORKS[framework])}</h2><table>")
        out.append("<tr><th>Outcome</th><th>Control</th><th>Finding</th></tr>")
        out.extend(_html_control(r) for r in results)
        out.append("</table>")
    out.append("</body></html>\n")
    return "\n".join(out)


def _latin1(text: str) -> str:
    return text.translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")


class _Pdf(FPDF):
    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", size=8)
        self.set_text_color(110, 110, 110)
        self.cell(0, 5, f"qrc compliance report - page {self.page_no()}", align="C")


def _line(pdf: FPDF, text: str, size: float = 9, style: str = "", height: float = 4.5) -> None:
    pdf.set_font("Helvetica", style=style, size=size)
    pdf.multi_cell(0, height, _latin1(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _pdf_control(pdf: FPDF, result: ControlResult) -> None:
    data = result.as_dict()
    pdf.set_text_color(*_RGB[data["outcome"]])
    _line(pdf, f"[{_LABELS[data['outcome']]}] {data['reference']} - {data['title']}", 10, "B")
    pdf.set_text_color(0, 0, 0)
    _line(pdf, f"{data['id']}: {data['finding']}")
    if data["remediation"]:
        _line(pdf, f"Remediation: {data['remediation']}", style="I")
    _line(pdf, f"Limits: {data['limits']}", 8)
    evidence = json.dumps(data["evidence"], sort_keys=True, default=str, separators=(", ", ": "))
    if data["evidence"]:
        pdf.set_font("Courier", size=7)
        pdf.set_text_color(60, 60, 60)
        if len(evidence) > _PDF_EVIDENCE:
            evidence = evidence[:_PDF_EVIDENCE] + " ... (truncated: the JSON report has it all)"
        pdf.multi_cell(
            0, 3.4, _latin1("Evidence: " + evidence), new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
        pdf.set_text_color(0, 0, 0)
    pdf.ln(2.5)


def to_pdf(report: ComplianceReport) -> bytes:
    """The report as a PDF document (A4, core fonts)."""
    pdf = _Pdf(format="A4")
    pdf.set_title(_TITLE)
    pdf.set_author("qrc")
    pdf.set_creation_date(report.generated_at)
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    _line(pdf, _TITLE, 16, "B", 8)
    counts = _counts_line(report)
    _line(
        pdf,
        f"Generated {report.generated_at.isoformat()}. Overall: "
        f"{_LABELS[report.overall_status]}. Controls: {counts}.",
        10,
    )
    _line(pdf, "Evaluated against: " + ", ".join(f"{k}={v}" for k, v in report.context.items()))
    pdf.ln(2)
    for row in report.framework_summaries():
        pdf.set_text_color(*_RGB[row["status"]])
        _line(
            pdf,
            f"{_LABELS[row['status']]:7} {row['name']}: pass {row['pass']}, fail "
            f"{row['fail']}, manual {row['manual']}, n/a {row['notApplicable']}",
        )
    pdf.set_text_color(0, 0, 0)
    for framework, results in report.by_framework().items():
        pdf.ln(3)
        _line(pdf, FRAMEWORKS[framework], 13, "B", 7)
        for result in results:
            _pdf_control(pdf, result)
    return bytes(pdf.output())


def render(report: ComplianceReport, output_format: str) -> bytes:
    """The report in ``output_format`` (``json``, ``html`` or ``pdf``) as bytes."""
    if output_format == "json":
        return to_json(report).encode()
    if output_format == "html":
        return to_html(report).encode()
    if output_format == "pdf":
        return to_pdf(report)
    raise ValueError(f"unknown format {output_format!r}; expected json, html or pdf")
