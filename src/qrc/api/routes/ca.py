"""The private CA's public side: its CRLs (RFC 5280 section 5) and trust anchors, open to
everyone (a peer checking a certificate has no token), as CRL distribution points are."""

from __future__ import annotations

from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Request, Response

from qrc.api.deps import state_of
from qrc.api.problems import Problem

__all__ = ["router"]

router = APIRouter(tags=["ca"])


@router.get(
    "/ca/crl/{family}",
    summary="Certificate revocation list",
    response_class=Response,
    responses={200: {"content": {"application/pkix-crl": {}}}},
)
def crl(family: Literal["ml-dsa", "ecdsa"], request: Request) -> Response:
    """The current CRL of the ML-DSA or ECDSA intermediate CA (DER, RFC 2585; no token)."""
    ca_dir = state_of(request).ca_dir
    path = None if ca_dir is None else ca_dir / f"crl-{family}.pem"
    if path is None or not path.exists():
        raise Problem("not-found", "this service has no private CA: run `qrc ca init`")
    der = x509.load_pem_x509_crl(path.read_bytes()).public_bytes(serialization.Encoding.DER)
    return Response(der, media_type="application/pkix-crl")


@router.get(
    "/ca/trust",
    summary="CA trust anchors",
    response_class=Response,
    responses={200: {"content": {"application/pem-certificate-chain": {}}}},
)
def trust(request: Request) -> Response:
    """The private CA's two roots (ML-DSA-87, ECDSA P-384), PEM (no token needed)."""
    ca_dir = state_of(request).ca_dir
    path = None if ca_dir is None else ca_dir / "trust.pem"
    if path is None or not path.exists():
        raise Problem("not-found", "this service has no private CA: run `qrc ca init`")
    return Response(path.read_bytes(), media_type="application/pem-certificate-chain")
