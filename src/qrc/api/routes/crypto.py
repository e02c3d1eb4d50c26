"""Cryptographic operations with managed keys, one at a time or in batches of up to 100."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from qrc.api.deps import AppState, require, state_of
from qrc.api.problems import PROBLEM_TYPES, TYPE_PREFIX, Problem, detail_for, slug_for
from qrc.api.schemas import (
    BatchItemOut,
    BatchOut,
    CiphertextOut,
    DataKeyIn,
    DataKeyOut,
    DecryptBatchIn,
    DecryptIn,
    EncryptBatchIn,
    EncryptIn,
    PlaintextOut,
    ProblemOut,
    RewrapIn,
    SignatureOut,
    SignBatchIn,
    SignIn,
    VerifyBatchIn,
    VerifyIn,
    VerifyOut,
    b64,
)
from qrc.keys.access.tokens import Client, Role

__all__ = ["router"]

router = APIRouter(tags=["crypto"])
User = Annotated[Client, require(Role.CRYPTO_USER)]


def _allowed(state: AppState, client: Client, ref: str) -> None:
    """A crypto user may use only the keys its token lists (others look like unknown keys)."""
    if client.allowed_keys is None or ref in client.allowed_keys:
        return
    info = state.service.keys.get_key(ref)
    if not client.may_use(info.id):
        raise Problem("key-not-found", f"no key with ID or name {ref!r}")


def _encrypt(state: AppState, client: Client, body: EncryptIn) -> CiphertextOut:
    _allowed(state, client, body.key)
    sealed = state.service.crypto.encrypt(
        body.key, body.plaintext, actor=client.actor, context=body.context.encode()
    )
    return CiphertextOut(
        ciphertext=b64(sealed.ciphertext), key_id=sealed.key_id, key_version=sealed.key_version
    )


def _decrypt(state: AppState, client: Client, body: DecryptIn) -> PlaintextOut:
    if body.recovery and client.role is not Role.ADMIN:
        raise Problem("forbidden", "only an admin token may decrypt in recovery mode")
    _allowed(state, client, body.key)
    plaintext = state.service.crypto.decrypt(
        body.key,
        body.ciphertext,
        actor=client.actor,
        context=body.context.encode(),
        recovery=body.recovery,
    )
    return PlaintextOut(plaintext=b64(plaintext))


def _sign(state: AppState, client: Client, body: SignIn) -> SignatureOut:
    _allowed(state, client, body.key)
    signed = state.service.crypto.sign(
        body.key, body.message, actor=client.actor, context=body.context.encode()
    )
    return SignatureOut(
        signature=b64(signed.signature), key_id=signed.key_id, key_version=signed.key_version
    )


def _verify(state: AppState, client: Client, body: VerifyIn) -> VerifyOut:
    _allowed(state, client, body.key)
    version = state.service.crypto.verify(
        body.key,
        body.message,
        body.signature,
        actor=client.actor,
        context=body.context.encode(),
        key_version=body.key_version,
    )
    return VerifyOut(valid=version is not None, key_version=version)


def _fast(model: BaseModel) -> Response:
    """The answer of a hot route, serialised once by its own model.

    The route still declares ``response_model`` for the OpenAPI document; returning a
    ``Response`` skips FastAPI's second validation of a model we have just built.
    """
    return Response(model.model_dump_json(exclude_none=True), media_type="application/json")


@router.post("/encrypt", response_model=CiphertextOut, summary="Encrypt")
def encrypt(body: EncryptIn, client: User, request: Request) -> Response:
    """Encrypt under the key's primary version; the context must be given again to decrypt."""
    return _fast(_encrypt(state_of(request), client, body))


@router.post("/decrypt", response_model=PlaintextOut, summary="Decrypt")
def decrypt(body: DecryptIn, client: User, request: Request) -> Response:
    """Decrypt; any failure is the one opaque ``decryption-failed`` problem."""
    return _fast(_decrypt(state_of(request), client, body))


@router.post("/sign", response_model=SignatureOut, summary="Sign")
def sign(body: SignIn, client: User, request: Request) -> Response:
    """Sign with the primary version; the signature is the algorithm's standard encoding."""
    return _fast(_sign(state_of(request), client, body))


@router.post(
    "/verify", response_model=VerifyOut, response_model_exclude_none=True, summary="Verify"
)
def verify(body: VerifyIn, client: User, request: Request) -> Response:
    """Whether the signature verifies under any version still allowed to verify."""
    return _fast(_verify(state_of(request), client, body))


@router.post("/rewrap", response_model=CiphertextOut, summary="Rewrap under the primary version")
def rewrap(body: RewrapIn, client: User, request: Request) -> CiphertextOut:
    """Decrypt and re-encrypt under the primary version; the plaintext is never returned."""
    state = state_of(request)
    _allowed(state, client, body.key)
    sealed = state.service.crypto.rewrap(
        body.key, body.ciphertext, actor=client.actor, context=body.context.encode()
    )
    return CiphertextOut(
        ciphertext=b64(sealed.ciphertext), key_id=sealed.key_id, key_version=sealed.key_version
    )


@router.post(
    "/datakey",
    response_model=DataKeyOut,
    response_model_exclude_none=True,
    summary="Generate a data key",
)
def datakey(body: DataKeyIn, client: User, request: Request) -> DataKeyOut:
    """A fresh 256-bit data key, in the clear (unless declined) and wrapped under the key."""
    state = state_of(request)
    _allowed(state, client, body.key)
    data_key = state.service.crypto.generate_data_key(
        body.key,
        actor=client.actor,
        context=body.context.encode(),
        include_plaintext=body.include_plaintext,
    )
    return DataKeyOut(
        plaintext_key=b64(data_key.plaintext_key) if data_key.plaintext_key is not None else None,
        wrapped_key=b64(data_key.wrapped_key),
        key_id=data_key.key_id,
        key_version=data_key.key_version,
    )


def _batch(state: AppState, client: Client, items: list[Any], one: Callable[..., Any]) -> BatchOut:
    results = []
    for item in items:
        try:
            value = one(state, client, item)
        except Problem as exc:
            results.append(_failed(exc.slug, exc.detail))
            continue
        except Exception as exc:
            slug = slug_for(exc)
            if slug is None:
                raise
            results.append(_failed(slug, detail_for(exc, slug)))
            continue
        results.append(BatchItemOut(ok=True, result=value.model_dump(exclude_none=True)))
    return BatchOut(results=results)


def _failed(slug: str, detail: str | None) -> BatchItemOut:
    status, title = PROBLEM_TYPES[slug]
    problem = ProblemOut(type=TYPE_PREFIX + slug, title=title, status=status, detail=detail)
    return BatchItemOut(ok=False, error=problem)


@router.post(
    "/encrypt/batch",
    response_model=BatchOut,
    response_model_exclude_none=True,
    summary="Encrypt many",
)
def encrypt_batch(body: EncryptBatchIn, client: User, request: Request) -> BatchOut:
    """Each item succeeds or fails on its own."""
    return _batch(state_of(request), client, body.items, _encrypt)


@router.post(
    "/decrypt/batch",
    response_model=BatchOut,
    response_model_exclude_none=True,
    summary="Decrypt many",
)
def decrypt_batch(body: DecryptBatchIn, client: User, request: Request) -> BatchOut:
    """Each item succeeds or fails on its own."""
    return _batch(state_of(request), client, body.items, _decrypt)


@router.post(
    "/sign/batch", response_model=BatchOut, response_model_exclude_none=True, summary="Sign many"
)
def sign_batch(body: SignBatchIn, client: User, request: Request) -> BatchOut:
    """Each item succeeds or fails on its own."""
    return _batch(state_of(request), client, body.items, _sign)


@router.post(
    "/verify/batch",
    response_model=BatchOut,
    response_model_exclude_none=True,
    summary="Verify many",
)
def verify_batch(body: VerifyBatchIn, client: User, request: Request) -> BatchOut:
    """Each item succeeds or fails on its own."""
    return _batch(state_of(request), client, body.items, _verify)
