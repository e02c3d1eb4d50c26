"""The report as JSON, HTML (parsed back with html.parser) and PDF (its structure and text
read back): same controls, same outcomes, every value escaped."""

from __future__ import annotations

import json
import re
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from qrc.keys.service import KeyService
from qrc.monitor.compliance import ComplianceReport, build_report
from qrc.monitor.compliance_render import MEDIA_TYPES, render, to_html, to_json, to_pdf
from tests.monitor.conftest import self_signed

HOSTILE = '<script>alert("x")</script>&'
# As the scan shows it (RFC 4514), still markup for a careless renderer: "<script\\>".
SUBJECT = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTILE)]).rfc4514_string()


class Page(HTMLParser):
    """Tags, text and attributes of an HTML document, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs
        if tag not in ("meta", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, (tag, self.open[-5:])
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(document: str) -> Page:
    page = Page()
    page.feed(document)
    page.close()
    assert page.open == [], page.open  # every element closed, in order
    return page


def _unescape_pdf(raw: bytes) -> str:
    out, i = bytearray(), 0
    while i < len(raw):
        c = raw[i]
        if c == 0x5C:  # backslash
            nxt = raw[i + 1 : i + 2]
            if nxt.isdigit():
                digits = re.match(rb"[0-7]{1,3}", raw[i + 1 : i + 4])
                assert digits is not None
                out.append(int(digits[0], 8))
                i += 1 + len(digits[0])
                continue
            out += {b"n": b"\n", b"r": b"\r", b"t": b"\t"}.get(nxt, nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return out.decode("latin-1")


def read_pdf(data: bytes) -> tuple[int, str]:
    """Check a PDF's structure (header, xref offsets, trailer) and return (pages, text)."""
    assert data.startswith(b"%PDF-1.")
    tail = re.search(rb"trailer\s*<<(.*?)>>\s*startxref\s+(\d+)\s+%%EOF\s*$", data, re.S)
    assert tail is not None, data[-200:]
    size = int(re.search(rb"/Size (\d+)", tail[1])[1])  # type: ignore[index]
    xref = int(tail[2])
    assert data[xref : xref + 4] == b"xref"
    entries = re.findall(rb"(\d{10}) (\d{5}) ([nf])", data[xref : xref + 20 * size + 40])
    assert len(entries) == size
    for number, (offset, _gen, kind) in enumerate(entries):
        if kind == b"n":  # every in-use object is where the table says
            assert data[int(offset) :].startswith(f"{number} 0 obj".encode()), number
    texts = []
    for match in re.finditer(rb"<<([^<>]*)>>\s*stream\r?\n", data):
        length = int(re.search(rb"/Length (\d+)", match[1])[1])  # type: ignore[index]
        raw = data[match.end() : match.end() + length]
        if b"/FlateDecode" in match[1]:
            raw = zlib.decompress(raw)
        texts += [_unescape_pdf(s) for s in re.findall(rb"\(((?:\\.|[^\\)])*)\) Tj", raw)]
    pages = len(re.findall(rb"/Type /Page\b(?!s)", data))
    return pages, "\n".join(texts)


@pytest.fixture
def report(populated: KeyService, tmp_path: Path) -> ComplianceReport:
    """A report over the inventory fixture's keys and a scanned certificate whose name is
    markup."""
    (tmp_path / "scan").mkdir()
    (tmp_path / "scan" / "odd.pem").write_bytes(
        self_signed(ec.generate_private_key(ec.SECP256R1()), HOSTILE)
    )
    return build_report(populated, scan=[tmp_path / "scan"])


def test_json_is_the_report(report: ComplianceReport) -> None:
    data = json.loads(to_json(report))
    assert data["overall_status"] == report.overall_status
    assert [c["id"] for c in data["controls"]] == [r.control.id for r in report.results]
    assert data["counts"] == report.counts()
    found = next(c for c in data["controls"] if c["id"] == "nistir-8547/transition")
    assert [c["subject"] for c in found["evidence"]["classical_certificates"]] == [SUBJECT]


def test_html_is_self_contained_and_escaped(report: ComplianceReport) -> None:
    document = to_html(report)
    page = parse_html(document)
    assert "script" not in page.tags and "link" not in page.tags and "img" not in page.tags
    assert not [value for name, value in page.attrs if name in ("src", "href")]
    text = "".join(page.text)
    assert json.dumps(SUBJECT)[1:-1] in text  # in the evidence (JSON), as text, not markup
    assert text.count("Remediation:") == sum(
        1 for r in report.results if r.as_dict()["remediation"]
    )
    for result in report.results:
        assert result.control.id in text and result.control.reference in text
    failing = [r for r in report.results if r.outcome.value == "fail"]
    assert failing and all(r.finding.summary in text for r in failing)
    assert page.tags.count("details") == sum(1 for r in report.results if r.finding.evidence)


def test_pdf_structure_and_text(report: ComplianceReport) -> None:
    pages, text = read_pdf(to_pdf(report))
    assert pages >= 3
    assert "Post-quantum cryptography compliance report" in text
    assert f"Overall: {report.overall_status.upper()}" in text
    for result in report.results:
        assert f"{result.control.id}:" in text, result.control.id
    assert "PCI DSS v4.0" in text and "GDPR Art. 32" in text
    assert "<script" in text and "alert(" in text  # the subject, drawn as text


def test_render_formats_and_media_types(report: ComplianceReport) -> None:
    assert set(MEDIA_TYPES) == {"json", "html", "pdf"}
    assert render(report, "pdf").startswith(b"%PDF-")
    assert render(report, "html").startswith(b"<!DOCTYPE html>")
    assert json.loads(render(report, "json"))["controls"]
    with pytest.raises(ValueError, match="xml"):
        render(report, "xml")
