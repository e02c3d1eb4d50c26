"""The HTTP API's behaviour: keys, cryptography, tokens, policy, audit, limits and errors.

Every test works on keys of its own (the app is shared by the module). The last test is a
security invariant: no answer of this module ever carried private key material.
"""

from __future__ import annotations

import base64
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from qrc.api.deps import ApiSettings
from qrc.api.problems import PROBLEM_TYPES
from qrc.cli import remote
from qrc.crypto.registry import all_algorithms
from qrc.keys.store.models import KeyVersion
from qrc.transit.client import Response
from tests.api.conftest import PROBLEM_PREFIX, Api, assert_problem, running_api


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def encrypt(api: Api, key: str, plaintext: bytes, context: str = "", **kw: Any) -> dict[str, Any]:
    response = api.post(
        "/encrypt", json={"key": key, "plaintext": b64(plaintext), "context": context}, **kw
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def decrypt(api: Api, key: str, ciphertext: str, context: str = "", **kw: Any) -> Any:
    return api.post(
        "/decrypt", json={"key": key, "ciphertext": ciphertext, "context": context}, **kw
    )


def flip(ciphertext: str, index: int) -> str:
    data = bytearray(unb64(ciphertext))
    data[index] ^= 0x01
    return b64(bytes(data))


# ---------------------------------------------------------------------------- keys


@pytest.mark.parametrize(
    ("purpose", "algorithm", "expected"),
    [
        ("encryption", None, "X25519MLKEM768"),
        ("signing", None, "MLDSA65-Ed25519-SHA512"),
        ("key_wrapping", None, "AES-256-GCM"),
        ("encryption", "ML-KEM-768", "ML-KEM-768"),
        ("signing", "ML-DSA-65", "ML-DSA-65"),
        ("key_wrapping", "AES-256-GCM", "AES-256-GCM"),
    ],
)
def test_generate(api: Api, purpose: str, algorithm: str | None, expected: str) -> None:
    name = api.unique("gen")
    body: dict[str, Any] = {"name": name, "purpose": purpose}
    if algorithm:
        body["algorithm"] = algorithm
    response = api.post("/keys/generate", "key_manager", json=body)
    assert response.status_code == 201, response.text
    key = response.json()
    assert key["id"].startswith("k_")
    assert (key["name"], key["algorithm"], key["purpose"]) == (name, expected, purpose)
    assert (key["status"], key["version"]) == ("active", 1)
    if expected == "AES-256-GCM":
        assert "public_key" not in key  # symmetric keys have none
    else:
        assert key["public_key"].startswith("-----BEGIN PUBLIC KEY-----\n")
        assert key["public_key"].rstrip().endswith("-----END PUBLIC KEY-----")


def test_generate_options_and_refusals(api: Api) -> None:
    name = api.unique("opts")
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    response = api.post(
        "/keys/generate",
        json={
            "name": name,
            "purpose": "encryption",
            "expires_at": expires,
            "rotation_period_days": 90,
            "labels": {"team": "payments"},
            "activate": False,
        },
    )
    assert response.status_code == 201, response.text
    key = response.json()
    assert key["status"] == "pre_active"
    assert key["labels"] == {"team": "payments"}
    assert key["rotation_period_seconds"] == 90 * 86400
    assert "next_rotation_at" in key and "expires_at" in key
    # the name is taken
    assert_problem(
        api.post("/keys/generate", json={"name": name, "purpose": "signing"}), 409, "conflict"
    )
    refusals = [
        {"name": api.unique("x"), "purpose": "encryption", "algorithm": "ML-DSA-65"},
        {"name": api.unique("x"), "purpose": "signing", "algorithm": "ML-KEM-768"},
        {"name": api.unique("x"), "purpose": "encryption", "algorithm": "RSA-2048"},
        {"name": "-starts-with-dash", "purpose": "encryption"},
        {"name": "has space", "purpose": "encryption"},
        {"name": api.unique("x"), "purpose": "hashing"},
        {"name": api.unique("x"), "purpose": "encryption", "expires_at": "2001-01-01T00:00:00Z"},
        {"name": api.unique("x"), "purpose": "encryption", "rotation_period_days": 0},
    ]
    for body in refusals:
        assert_problem(api.post("/keys/generate", json=body), 422, "invalid-request")


def test_generate_with_a_naive_expiry_is_refused(api: Api) -> None:
    """A time without a zone cannot be compared with the service's clock: 422, not 500."""
    body = {
        "name": api.unique("naive"),
        "purpose": "encryption",
        "expires_at": "2030-01-01T00:00:00",
    }
    assert_problem(api.post("/keys/generate", json=body), 422, "invalid-request")


def test_list_filter_and_paginate(api: Api) -> None:
    prefix = api.unique("list") + "-"
    made = [
        api.post("/keys/generate", json={"name": prefix + n, "purpose": p}).json()
        for n, p in [
            ("a", "encryption"),
            ("b", "signing"),
            ("c", "encryption"),
            ("d", "key_wrapping"),
        ]
    ]
    everything = api.get("/keys", "viewer", params={"name_prefix": prefix}).json()
    assert sorted(k["name"] for k in everything["keys"]) == sorted(k["name"] for k in made)
    assert everything.get("next_cursor") is None
    # pages of two, in ID order, cover every key once
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"name_prefix": prefix, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/keys", "viewer", params=params).json()
        pages += 1
        seen += [k["id"] for k in page["keys"]]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    assert pages == 2
    assert seen == sorted(k["id"] for k in made)
    by_purpose = api.get("/keys", params={"name_prefix": prefix, "purpose": "encryption"}).json()
    assert sorted(k["name"] for k in by_purpose["keys"]) == [prefix + "a", prefix + "c"]
    by_algorithm = api.get("/keys", params={"name_prefix": prefix, "algorithm": "AES-256-GCM"})
    assert [k["name"] for k in by_algorithm.json()["keys"]] == [prefix + "d"]
    api.delete(f"/keys/{prefix}b").raise_for_status()
    pending = api.get("/keys", params={"name_prefix": prefix, "status": "pending_destruction"})
    assert [k["name"] for k in pending.json()["keys"]] == [prefix + "b"]
    assert_problem(api.get("/keys", params={"limit": 0}), 422, "invalid-request")
    assert_problem(api.get("/keys", params={"limit": 1001}), 422, "invalid-request")


def test_get_by_id_and_by_name(api: Api) -> None:
    key = api.create_key("get")
    by_id = api.get(f"/keys/{key['id']}", "viewer").json()
    by_name = api.get(f"/keys/{key['name']}", "key_manager").json()
    assert by_id == by_name
    assert by_id["id"] == key["id"] and by_id["public_key"] == key["public_key"]
    body = assert_problem(api.get("/keys/no-such-key"), 404, "key-not-found")
    assert "no-such-key" in body["detail"]


def test_public_key_pem(api: Api) -> None:
    key = api.create_key("pem", "signing", algorithm="ML-DSA-44")
    response = api.get(f"/keys/{key['name']}/public", "viewer")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-pem-file")
    assert response.text == key["public_key"]
    api.post(f"/keys/{key['name']}/rotate").raise_for_status()
    second = api.get(f"/keys/{key['name']}/public").text
    first = api.get(f"/keys/{key['name']}/public", params={"version": 1}).text
    assert first == key["public_key"] != second
    assert_problem(
        api.get(f"/keys/{key['name']}/public", params={"version": 3}), 404, "key-not-found"
    )
    symmetric = api.create_key("pem-sym", "key_wrapping")
    assert_problem(api.get(f"/keys/{symmetric['name']}/public"), 409, "operation-not-permitted")


def test_public_key_of_a_huge_version_is_a_4xx(api: Api) -> None:
    """Integers beyond the database's range are bad input (found while fuzzing by hand)."""
    key = api.create_key("huge")
    response = api.get(f"/keys/{key['name']}/public", params={"version": 2**63})
    assert 400 <= response.status_code < 500, response.text


def test_rotate(api: Api) -> None:
    key = api.create_key("rot")
    old = encrypt(api, key["name"], b"before", "ctx")
    assert old["key_version"] == 1
    rotated = api.post(f"/keys/{key['name']}/rotate", "key_manager")
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["version"] == 2
    assert rotated.json()["public_key"] != key["public_key"]
    new = encrypt(api, key["name"], b"after", "ctx")
    assert new["key_version"] == 2
    for sealed, plaintext in ((old, b"before"), (new, b"after")):
        response = decrypt(api, key["name"], sealed["ciphertext"], "ctx")
        assert unb64(response.json()["plaintext"]) == plaintext
    assert_problem(api.post("/keys/nope/rotate"), 404, "key-not-found")


def test_conditional_rotate(api: Api) -> None:
    name = api.create_key("cond-rot")["name"]
    rotated = api.post(f"/keys/{name}/rotate", "key_manager", json={"expected_version": 1})
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["version"] == 2
    # A second caller who also saw version 1 loses, and adds no version.
    lost = assert_problem(
        api.post(f"/keys/{name}/rotate", json={"expected_version": 1}), 409, "conflict"
    )
    assert "version 2, not 1" in lost["detail"]
    assert api.service.keys.count_versions(name) == 2
    assert api.get(f"/keys/{name}").json()["version"] == 2
    rotations = api.get("/audit/logs", params={"key": name, "event_type": "key.rotate"}).json()
    assert [e["result"] for e in rotations["events"]] == ["success", "denied"]
    for bad in (
        {"expected_version": 0},
        {"expected_version": "2"},
        {"expected_version": 2.0},
        {"expected_version": True},
        {"expected_version": None},
        {"expected_version": 2**31},
        {"expected_version": 2, "force": True},
        {},
    ):
        assert_problem(api.post(f"/keys/{name}/rotate", json=bad), 422, "invalid-request")
    assert api.service.keys.count_versions(name) == 2
    # Without a body the rotation is unconditional, as before.
    assert api.post(f"/keys/{name}/rotate").json()["version"] == 3
    response = api.post("/keys/nope/rotate", json={"expected_version": 1})
    assert_problem(response, 404, "key-not-found")


def test_conditional_rotate_race_adds_exactly_one_version(api: Api) -> None:
    name = api.create_key("race-rot")["name"]
    start = threading.Barrier(4)

    def rotate() -> int:
        start.wait()
        return api.post(f"/keys/{name}/rotate", json={"expected_version": 1}).status_code

    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(lambda _: rotate(), range(4)))
    assert codes == [200, 409, 409, 409]
    assert api.service.keys.count_versions(name) == 2


def test_min_decryption_version_retires_old_versions(api: Api) -> None:
    key = api.create_key("retire")
    name = key["name"]
    old = encrypt(api, name, b"old", "ctx")
    api.post(f"/keys/{name}/rotate").raise_for_status()
    new = encrypt(api, name, b"new", "ctx")
    response = api.post(f"/keys/{name}/min-decryption-version", "key_manager", json={"version": 2})
    assert response.status_code == 200, response.text
    assert response.json()["id"] == key["id"]
    assert response.json()["min_decryption_version"] == 2 and response.json()["version"] == 2
    assert api.get(f"/keys/{key['id']}").json()["min_decryption_version"] == 2
    body = assert_problem(
        decrypt(api, name, old["ciphertext"], "ctx"), 409, "operation-not-permitted"
    )
    assert "retired" in body["detail"]
    assert unb64(decrypt(api, name, new["ciphertext"], "ctx").json()["plaintext"]) == b"new"
    # Out of range (above the primary, below 1) and wrongly typed: refused, nothing changed.
    for bad in ({"version": 3}, {"version": 0}, {"version": "1"}, {"version": 1.0}, {}):
        response = api.post(f"/keys/{name}/min-decryption-version", json=bad)
        assert_problem(response, 422, "invalid-request")
    assert api.get(f"/keys/{name}").json()["min_decryption_version"] == 2
    # Lowering it again is allowed: retirement is a policy, not an erasure.
    api.post(f"/keys/{name}/min-decryption-version", json={"version": 1}).raise_for_status()
    assert unb64(decrypt(api, name, old["ciphertext"], "ctx").json()["plaintext"]) == b"old"
    response = api.post("/keys/nope/min-decryption-version", json={"version": 1})
    assert_problem(response, 404, "key-not-found")
    events = api.get(
        "/audit/logs", params={"key": name, "event_type": "key.min_decryption_version"}
    )
    details = [e["details"] for e in events.json()["events"]]
    assert details == [{"min_decryption_version": 2}, {"min_decryption_version": 1}]


def test_min_decryption_version_stops_old_signatures_verifying(api: Api) -> None:
    name = api.create_key("retire-sig", "signing")["name"]
    message = b64(b"signed by version 1")
    signature = api.post("/sign", json={"key": name, "message": message}).json()["signature"]
    api.post(f"/keys/{name}/rotate").raise_for_status()
    good = {"key": name, "message": message, "signature": signature}
    assert api.post("/verify", json=good).json() == {"valid": True, "key_version": 1}
    api.post(f"/keys/{name}/min-decryption-version", json={"version": 2}).raise_for_status()
    assert api.post("/verify", json=good).json() == {"valid": False}


class _InProcessClient:
    """Stands in for the CLI's PQ TLS client: the same requests, sent to the test app."""

    base_url = "http://testserver"

    def __init__(self, api: Api) -> None:
        self.api = api

    def request(self, method: str, path: str, json: Any = None, *, params: Any = None) -> Response:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        answer = self.api.call(method, path, "key_manager", prefix=False, json=json, params=query)
        headers = {k.lower(): v for k, v in answer.headers.items()}
        return Response(answer.status_code, answer.reason_phrase, headers, answer.content)

    def __enter__(self) -> _InProcessClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_remote_cli_if_version_and_min_version(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """``qrc keys rotate --if-version`` and ``qrc keys min-version``: what they send and show."""
    monkeypatch.setattr(remote, "_client", lambda *args: _InProcessClient(api))
    runner = CliRunner()
    name = api.create_key("cli-cond")["name"]
    done = runner.invoke(remote.keys_app, ["rotate", name, "--if-version", "1", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["version"] == 2
    lost = runner.invoke(remote.keys_app, ["rotate", name, "--if-version", "1"])
    assert lost.exit_code == 2
    assert lost.stderr.strip() == (
        f"qrc: error: Conflicting change: key {name!r} is at version 2, not 1"
    )
    assert runner.invoke(remote.keys_app, ["rotate", name, "--if-version", "0"]).exit_code == 2
    assert api.service.keys.count_versions(name) == 2
    retired = runner.invoke(remote.keys_app, ["min-version", name, "2", "--json"])
    assert retired.exit_code == 0, retired.output
    assert json.loads(retired.stdout)["min_decryption_version"] == 2
    too_high = runner.invoke(remote.keys_app, ["min-version", name, "3"])
    assert too_high.exit_code == 2 and "between 1 and 2" in too_high.stderr


def test_revoke(api: Api) -> None:
    compromised = api.create_key("rev-c")
    sealed = encrypt(api, compromised["name"], b"data")
    response = api.post(
        f"/keys/{compromised['name']}/revoke", "key_manager", json={"reason": "key_compromise"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "compromised"
    assert body["revocation_reason"] == "key_compromise" and "revoked_at" in body
    assert_problem(
        decrypt(api, compromised["name"], sealed["ciphertext"]), 409, "operation-not-permitted"
    )
    superseded = api.create_key("rev-s")
    sealed = encrypt(api, superseded["name"], b"data")
    response = api.post(f"/keys/{superseded['name']}/revoke", json={"reason": "superseded"})
    assert response.json()["status"] == "deactivated"
    # a deactivated key still decrypts what it encrypted, but encrypts nothing new
    assert (
        unb64(decrypt(api, superseded["name"], sealed["ciphertext"]).json()["plaintext"]) == b"data"
    )
    response = api.post("/encrypt", json={"key": superseded["name"], "plaintext": b64(b"x")})
    assert_problem(response, 409, "operation-not-permitted")
    ceased = api.create_key("rev-x")
    response = api.post(f"/keys/{ceased['name']}/revoke", json={"reason": "cessation_of_operation"})
    assert response.json()["status"] == "deactivated"
    assert_problem(
        api.post(f"/keys/{ceased['name']}/revoke", json={"reason": "bored"}), 422, "invalid-request"
    )
    assert_problem(api.post(f"/keys/{ceased['name']}/revoke", json={}), 422, "invalid-request")
    # compromised is final: it cannot be revoked again as superseded
    response = api.post(f"/keys/{compromised['name']}/revoke", json={"reason": "superseded"})
    assert_problem(response, 409, "key-state")


def test_suspend_and_resume(api: Api) -> None:
    key = api.create_key("sus")
    response = api.post(f"/keys/{key['name']}/suspend", "key_manager")
    assert response.json()["status"] == "suspended"
    response = api.post("/encrypt", json={"key": key["name"], "plaintext": b64(b"x")})
    assert_problem(response, 409, "operation-not-permitted")
    response = api.post(f"/keys/{key['name']}/resume", "key_manager")
    assert response.json()["status"] == "active"
    encrypt(api, key["name"], b"x")
    assert_problem(api.post(f"/keys/{key['name']}/resume"), 409, "key-state")


def test_destroy_and_cancel(api: Api) -> None:
    key = api.create_key("del")
    before = datetime.now(UTC)
    response = api.delete(f"/keys/{key['name']}", "key_manager")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "pending_destruction"
    due = datetime.fromisoformat(body["destruction_due_at"])
    assert before + timedelta(days=6, hours=23) < due < before + timedelta(days=7, hours=1)
    response = api.post("/encrypt", json={"key": key["name"], "plaintext": b64(b"x")})
    assert_problem(response, 409, "operation-not-permitted")
    assert_problem(api.delete(f"/keys/{key['name']}"), 409, "conflict")
    response = api.post(f"/keys/{key['name']}/cancel-destruction", "key_manager")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "active"
    assert "destruction_due_at" not in response.json()
    encrypt(api, key["name"], b"x")
    assert_problem(api.post(f"/keys/{key['name']}/cancel-destruction"), 409, "key-state")
    # a chosen waiting period
    response = api.delete(f"/keys/{key['name']}", params={"days": 1})
    due = datetime.fromisoformat(response.json()["destruction_due_at"])
    assert before + timedelta(hours=23) < due < before + timedelta(hours=25)
    assert_problem(api.delete(f"/keys/{key['name']}", params={"days": -1}), 422, "invalid-request")


# ---------------------------------------------------------------------------- cryptography


@pytest.mark.parametrize(
    ("purpose", "algorithm"),
    [
        ("encryption", "X25519MLKEM768"),
        ("encryption", "ML-KEM-768"),
        ("key_wrapping", "AES-256-GCM"),
    ],
)
def test_encrypt_decrypt_round_trip(api: Api, purpose: str, algorithm: str) -> None:
    key = api.create_key("rt", purpose, algorithm=algorithm)
    for plaintext in (b"", b"hello", bytes(range(256)) * 40):
        sealed = encrypt(api, key["name"], plaintext, "accounts/42/iban", role="crypto_user")
        assert sealed["key_id"] == key["id"] and sealed["key_version"] == 1
        assert plaintext == b"" or plaintext not in unb64(sealed["ciphertext"])
        response = decrypt(
            api, key["id"], sealed["ciphertext"], "accounts/42/iban", role="crypto_user"
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"plaintext": b64(plaintext)}


def test_decryption_failures_are_one_opaque_problem(api: Api) -> None:
    key = api.create_key("opaque")
    other = api.create_key("opaque-other")
    sealed = encrypt(api, key["name"], b"secret", "ctx")["ciphertext"]
    other_sealed = encrypt(api, other["name"], b"secret", "ctx")["ciphertext"]
    raw = unb64(sealed)
    attempts = [
        (key["name"], sealed, "other ctx"),
        (key["name"], sealed, ""),
        (key["name"], flip(sealed, len(raw) - 1), "ctx"),  # the tag
        (key["name"], flip(sealed, len(raw) // 2), "ctx"),  # the body
        (key["name"], flip(sealed, 0), "ctx"),  # the magic
        (key["name"], b64(raw[:-1]), "ctx"),  # truncated
        (key["name"], b64(raw + b"\x00"), "ctx"),  # trailing byte
        (key["name"], b64(b"not an envelope at all"), "ctx"),
        (key["name"], "", "ctx"),
        (key["name"], other_sealed, "ctx"),  # made under another key
    ]
    for ref, ciphertext, context in attempts:
        body = assert_problem(decrypt(api, ref, ciphertext, context), 400, "decryption-failed")
        assert set(body) == {"type", "title", "status"}  # no detail: nothing about why


def test_sign_and_verify(api: Api) -> None:
    key = api.create_key("sig", "signing")
    message = b64(b"pay 100 to alice")
    response = api.post(
        "/sign", "crypto_user", json={"key": key["name"], "message": message, "context": "tx"}
    )
    assert response.status_code == 200, response.text
    signed = response.json()
    assert signed["key_id"] == key["id"] and signed["key_version"] == 1
    good = {
        "key": key["name"],
        "message": message,
        "signature": signed["signature"],
        "context": "tx",
    }
    response = api.post("/verify", "crypto_user", json=good)
    assert response.json() == {"valid": True, "key_version": 1}
    for bad in (
        {**good, "message": b64(b"pay 999 to mallory")},
        {**good, "context": "other"},
        {**good, "signature": flip(signed["signature"], 10)},
        {**good, "signature": b64(b"short")},
        {**good, "signature": ""},
    ):
        response = api.post("/verify", json=bad)
        assert response.status_code == 200, response.text
        assert response.json() == {"valid": False}
    # after rotation the old signature still verifies, with the old version
    api.post(f"/keys/{key['name']}/rotate").raise_for_status()
    assert api.post("/verify", json=good).json() == {"valid": True, "key_version": 1}
    # an encryption key does not sign
    enc = api.create_key("sig-enc")
    response = api.post("/sign", json={"key": enc["name"], "message": message})
    assert_problem(response, 409, "operation-not-permitted")


def test_sign_with_an_overlong_context_is_a_request_error(api: Api) -> None:
    """ML-DSA contexts are at most 255 bytes: that is the request's fault (422), not the key's."""
    key = api.create_key("ctx", "signing", algorithm="ML-DSA-44")
    response = api.post(
        "/sign", json={"key": key["name"], "message": b64(b"m"), "context": "x" * 300}
    )
    assert_problem(response, 422, "invalid-request")


def test_rewrap(api: Api) -> None:
    key = api.create_key("rewrap")
    old = encrypt(api, key["name"], b"keep me", "ctx")
    api.post(f"/keys/{key['name']}/rotate").raise_for_status()
    response = api.post(
        "/rewrap",
        "crypto_user",
        json={"key": key["name"], "ciphertext": old["ciphertext"], "context": "ctx"},
    )
    assert response.status_code == 200, response.text
    new = response.json()
    assert set(new) == {"ciphertext", "key_id", "key_version"}  # never the plaintext
    assert new["key_version"] == 2 and new["ciphertext"] != old["ciphertext"]
    assert (
        unb64(decrypt(api, key["name"], new["ciphertext"], "ctx").json()["plaintext"]) == b"keep me"
    )
    response = api.post(
        "/rewrap", json={"key": key["name"], "ciphertext": old["ciphertext"], "context": "no"}
    )
    assert_problem(response, 400, "decryption-failed")


def test_datakey(api: Api) -> None:
    key = api.create_key("dk")
    response = api.post("/datakey", "crypto_user", json={"key": key["name"], "context": "files/1"})
    assert response.status_code == 200, response.text
    data_key = response.json()
    assert len(unb64(data_key["plaintext_key"])) == 32
    assert data_key["key_id"] == key["id"] and data_key["key_version"] == 1
    opened = decrypt(api, key["name"], data_key["wrapped_key"], "files/1").json()["plaintext"]
    assert opened == data_key["plaintext_key"]
    response = api.post(
        "/datakey", json={"key": key["name"], "context": "files/2", "include_plaintext": False}
    )
    assert "plaintext_key" not in response.json()
    assert (
        len(
            unb64(
                decrypt(api, key["name"], response.json()["wrapped_key"], "files/2").json()[
                    "plaintext"
                ]
            )
        )
        == 32
    )


def test_batches_succeed_and_fail_per_item(api: Api) -> None:
    enc = api.create_key("batch")
    sig = api.create_key("batch-sig", "signing", algorithm="ML-DSA-44")
    items = [
        {"key": enc["name"], "plaintext": b64(b"one"), "context": "a"},
        {"key": "batch-no-such-key", "plaintext": b64(b"two")},
        {"key": sig["name"], "plaintext": b64(b"three")},
        {"key": enc["id"], "plaintext": b64(b"four"), "context": "b"},
    ]
    response = api.post("/encrypt/batch", "crypto_user", json={"items": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["ok"] for r in results] == [True, False, False, True]
    assert results[1]["error"]["type"] == PROBLEM_PREFIX + "key-not-found"
    assert results[2]["error"]["type"] == PROBLEM_PREFIX + "operation-not-permitted"
    assert results[1]["error"]["status"] == 404
    decrypt_items = [
        {"key": enc["name"], "ciphertext": results[0]["result"]["ciphertext"], "context": "a"},
        {"key": enc["name"], "ciphertext": results[3]["result"]["ciphertext"], "context": "wrong"},
        {"key": enc["name"], "ciphertext": results[3]["result"]["ciphertext"], "context": "b"},
    ]
    results = api.post("/decrypt/batch", json={"items": decrypt_items}).json()["results"]
    assert [r["ok"] for r in results] == [True, False, True]
    assert unb64(results[0]["result"]["plaintext"]) == b"one"
    assert unb64(results[2]["result"]["plaintext"]) == b"four"
    assert results[1]["error"] == {
        "type": PROBLEM_PREFIX + "decryption-failed",
        "title": "Decryption failed",
        "status": 400,
    }
    messages = [b64(b"m1"), b64(b"m2")]
    results = api.post(
        "/sign/batch",
        json={
            "items": [{"key": sig["name"], "message": m} for m in messages]
            + [{"key": enc["name"], "message": messages[0]}]
        },
    ).json()["results"]
    assert [r["ok"] for r in results] == [True, True, False]
    signatures = [r["result"]["signature"] for r in results[:2]]
    verify_items = [
        {"key": sig["name"], "message": messages[0], "signature": signatures[0]},
        {"key": sig["name"], "message": messages[0], "signature": signatures[1]},
        {"key": "batch-no-such-key", "message": messages[0], "signature": signatures[0]},
    ]
    results = api.post("/verify/batch", json={"items": verify_items}).json()["results"]
    assert results[0] == {"ok": True, "result": {"valid": True, "key_version": 1}}
    assert results[1] == {"ok": True, "result": {"valid": False}}
    assert results[2]["ok"] is False
    # bounds: 1..100 items
    assert_problem(api.post("/encrypt/batch", json={"items": []}), 422, "invalid-request")
    too_many = [{"key": enc["name"], "plaintext": ""}] * 101
    assert_problem(api.post("/encrypt/batch", json={"items": too_many}), 422, "invalid-request")
    assert api.post("/encrypt/batch", json={"items": too_many[:100]}).status_code == 200


# ---------------------------------------------------------------------------- tokens and roles


def test_tokens_create_list_revoke(api: Api) -> None:
    name = api.unique("tok")
    response = api.post("/tokens", json={"name": name, "role": "key_manager", "expires_in": 3600})
    assert response.status_code == 201, response.text
    created = response.json()
    token = created["token"]
    assert token.startswith("qrc_") and len(token) >= 40
    assert created["role"] == "key_manager" and created["name"] == name
    assert datetime.fromisoformat(created["expires_at"]) > datetime.now(UTC)
    headers = {"Authorization": f"Bearer {token}"}
    assert api.get("/keys", None, headers=headers).status_code == 200
    listing = api.get("/tokens")
    assert listing.status_code == 200
    assert token not in listing.text  # shown once, never again
    entry = next(t for t in listing.json()["tokens"] if t["id"] == created["id"])
    assert set(entry) <= {"id", "name", "role", "keys", "expires_at", "revoked_at"}
    assert "revoked_at" not in entry
    response = api.delete(f"/tokens/{created['id']}")
    assert response.status_code == 200, response.text
    assert "revoked_at" in response.json()
    assert_problem(api.get("/keys", None, headers=headers), 401, "unauthorized")
    entry = next(t for t in api.get("/tokens").json()["tokens"] if t["id"] == created["id"])
    assert "revoked_at" in entry
    assert_problem(api.delete("/tokens/c_doesnotexist"), 404, "key-not-found")


def test_a_token_reads_who_it_is_and_nothing_about_others(api: Api) -> None:
    key = api.create_key("scoped-self")
    body = {"name": api.unique("me"), "role": "crypto_user", "keys": [key["id"]]}
    created = api.post("/tokens", json=body).json()
    headers = {"Authorization": f"Bearer {created['token']}"}
    me = api.get("/tokens/self", None, headers=headers)
    assert me.status_code == 200, me.text
    assert me.json() == {
        "id": created["id"],
        "name": body["name"],
        "role": "crypto_user",
        "keys": [key["id"]],
    }
    assert "token" not in me.json()  # never the secret
    for role in ("viewer", "auditor", "admin"):
        assert api.get("/tokens/self", role).json()["role"] == role
    api.delete(f"/tokens/{created['id']}")
    assert_problem(api.get("/tokens/self", None, headers=headers), 401, "unauthorized")


def test_a_keys_versions_say_what_each_may_still_do(api: Api) -> None:
    key = api.create_key("versions")
    for _ in range(2):
        assert api.post(f"/keys/{key['id']}/rotate", "key_manager").status_code == 200
    body = {"version": 2}
    assert api.post(f"/keys/{key['id']}/min-decryption-version", json=body).status_code == 200
    answer = api.get(f"/keys/{key['name']}/versions", "viewer")
    assert answer.status_code == 200, answer.text
    versions = answer.json()["versions"]
    assert [(v["version"], v["state"]) for v in versions] == [
        (3, "primary"),
        (2, "active"),
        (1, "retired"),
    ]
    assert all(v["algorithm"] == key["algorithm"] and "created_at" in v for v in versions)
    assert all(set(v) <= {"version", "algorithm", "state", "created_at", "destroyed_at"}
               for v in versions)  # fmt: skip
    assert_problem(api.get("/keys/nope/versions"), 404, "key-not-found")
    # The service's own keys say so (the page hides their buttons); callers' keys do not.
    api.service.audit.checkpoint(actor="test")  # the audit signing key exists from here on
    listed = api.get("/keys", params={"limit": 1000}).json()["keys"]
    assert {k["name"] for k in listed if k["system"]} >= {"qrc-audit-signing"}
    assert not api.get(f"/keys/{key['id']}").json()["system"]


def test_token_refusals(api: Api) -> None:
    for body in (
        {"name": api.unique("t"), "role": "superuser"},
        {"name": api.unique("t"), "role": "viewer", "keys": ["k"]},  # only crypto users have lists
        {"name": "", "role": "viewer"},
        {"name": api.unique("t"), "role": "viewer", "expires_in": 10},
        {"name": api.unique("t"), "role": "viewer", "secret": "x"},
    ):
        assert_problem(api.post("/tokens", json=body), 422, "invalid-request")


def test_crypto_user_is_limited_to_its_keys(api: Api) -> None:
    mine = api.create_key("mine")
    theirs = api.create_key("theirs")
    response = api.post(
        "/tokens", json={"name": api.unique("cu"), "role": "crypto_user", "keys": [mine["name"]]}
    )
    created = response.json()
    assert created["keys"] == [mine["id"]]  # the scope binds the key's ID, never its name
    headers = {"Authorization": f"Bearer {created['token']}"}
    for ref in (mine["name"], mine["id"]):
        response = api.post(
            "/encrypt", None, headers=headers, json={"key": ref, "plaintext": b64(b"x")}
        )
        assert response.status_code == 200, response.text
    sealed = encrypt(api, theirs["name"], b"x")
    for ref in (theirs["name"], theirs["id"]):
        for path, body in (
            ("/encrypt", {"key": ref, "plaintext": b64(b"x")}),
            ("/decrypt", {"key": ref, "ciphertext": sealed["ciphertext"]}),
            ("/sign", {"key": ref, "message": b64(b"x")}),
            ("/datakey", {"key": ref}),
            ("/rewrap", {"key": ref, "ciphertext": sealed["ciphertext"]}),
        ):
            assert_problem(api.post(path, None, headers=headers, json=body), 404, "key-not-found")
        assert_problem(api.get(f"/keys/{ref}", None, headers=headers), 404, "key-not-found")
        assert_problem(api.get(f"/keys/{ref}/public", None, headers=headers), 404, "key-not-found")
    # hidden keys and unknown keys look the same
    unknown = api.post("/encrypt", None, headers=headers, json={"key": "nope", "plaintext": ""})
    hidden = api.post(
        "/encrypt", None, headers=headers, json={"key": theirs["name"], "plaintext": ""}
    )
    assert unknown.json()["title"] == hidden.json()["title"]
    # its own ciphertext, presented under its own key name, decrypts; another key's does not
    listed = api.get("/keys", None, headers=headers, params={"limit": 1000}).json()["keys"]
    assert [k["name"] for k in listed] == [mine["name"]]
    response = api.post(
        "/decrypt",
        None,
        headers=headers,
        json={"key": mine["name"], "ciphertext": sealed["ciphertext"]},
    )
    assert_problem(response, 400, "decryption-failed")


# ---------------------------------------------------------------------------- policy and algorithms


def test_algorithm_status(api: Api) -> None:
    response = api.get("/algorithms/status", "auditor")
    assert response.status_code == 200
    algorithms = response.json()["algorithms"]
    assert {a["id"] for a in algorithms} == {info.id for info in all_algorithms()}
    for entry in algorithms:
        assert entry["type"] in ("key_exchange", "digital_signature", "encryption")
        assert entry["nist_level"] is None or entry["nist_level"] in (1, 2, 3, 4, 5)
        assert entry["status"] in ("active", "experimental", "deprecated", "disallowed")
        assert isinstance(entry["standard"], str) and entry["standard"]
        assert "benchmark" in entry
    by_id = {a["id"]: a for a in algorithms}
    assert by_id["ML-KEM-768"]["type"] == "key_exchange" and by_id["ML-KEM-768"]["nist_level"] == 3
    assert by_id["ML-DSA-65"]["type"] == "digital_signature"
    assert by_id["AES-256-GCM"]["type"] == "encryption"
    assert "FIPS 203" in by_id["ML-KEM-768"]["standard"]


def test_protocols_update_dry_run_then_applied(api: Api) -> None:
    target = "ML-KEM-1024"
    key = api.create_key("policy", algorithm=target)
    change = {"algorithm_status": {target: "deprecated"}, "tls_mode": "hybrid-preferred"}
    try:
        response = api.post("/protocols/update", json={**change, "dry_run": True})
        assert response.status_code == 200, response.text
        plan = response.json()
        assert plan["applied"] is False
        assert f"{target}: deprecated" in plan["changes"]
        assert key["id"] in [k["id"] for k in plan["affected_keys"]]
        assert plan["policy"]["algorithm_status"][target] == "deprecated"
        statuses = {
            a["id"]: a["status"] for a in api.get("/algorithms/status").json()["algorithms"]
        }
        assert statuses[target] == "active"  # nothing changed
        api.create_key("policy-still-ok", algorithm=target)
        response = api.post("/protocols/update", json=change)
        assert response.status_code == 200, response.text
        assert response.json()["applied"] is True
        statuses = {
            a["id"]: a["status"] for a in api.get("/algorithms/status").json()["algorithms"]
        }
        assert statuses[target] == "deprecated"
        body = {"name": api.unique("policy-refused"), "purpose": "encryption", "algorithm": target}
        assert_problem(api.post("/keys/generate", json=body), 422, "invalid-request")
        events = api.get("/audit/logs", "auditor", params={"event_type": "policy.update"}).json()[
            "events"
        ]
        assert events and events[-1]["actor"] == f"token:{api.client_ids['admin']}:admin-token"
        # refusals
        for bad in (
            {"algorithm_status": {"NOPE-1": "deprecated"}},
            {"default_algorithms": {"signing": "ML-KEM-768"}},
            {"default_algorithms": {"encryption": target}},  # deprecated now
            {"tls_mode": "classical"},
            {"algorithm_status": {target: "retired"}},
        ):
            assert_problem(api.post("/protocols/update", json=bad), 422, "invalid-request")
    finally:
        restore = {"algorithm_status": {target: "active"}, "tls_mode": "pq-only"}
        api.post("/protocols/update", json=restore).raise_for_status()


# ---------------------------------------------------------------------------- audit and events


def test_every_operation_is_audited_with_the_token_identity(api: Api) -> None:
    km = api.post("/tokens", json={"name": api.unique("audit-km"), "role": "key_manager"}).json()
    cu = api.post("/tokens", json={"name": api.unique("audit-cu"), "role": "crypto_user"}).json()
    as_km = {"Authorization": f"Bearer {km['token']}"}
    as_cu = {"Authorization": f"Bearer {cu['token']}"}

    def call(method: str, path: str, headers: dict[str, str], **kw: Any) -> Any:
        response = api.call(method, path, None, headers=headers, **kw)
        return response.json()

    enc = call(
        "POST", "/keys/generate", as_km, json={"name": api.unique("aud"), "purpose": "encryption"}
    )
    sig = call(
        "POST", "/keys/generate", as_km, json={"name": api.unique("aud"), "purpose": "signing"}
    )
    spare = call(
        "POST", "/keys/generate", as_km, json={"name": api.unique("aud"), "purpose": "key_wrapping"}
    )
    sealed = call(
        "POST", "/encrypt", as_cu, json={"key": enc["id"], "plaintext": b64(b"x"), "context": "c"}
    )
    call(
        "POST",
        "/decrypt",
        as_cu,
        json={"key": enc["id"], "ciphertext": sealed["ciphertext"], "context": "c"},
    )
    call(
        "POST",
        "/decrypt",
        as_cu,
        json={"key": enc["id"], "ciphertext": sealed["ciphertext"], "context": "bad"},
    )
    call("POST", f"/keys/{enc['id']}/rotate", as_km)
    call(
        "POST",
        "/rewrap",
        as_cu,
        json={"key": enc["id"], "ciphertext": sealed["ciphertext"], "context": "c"},
    )
    call("POST", "/datakey", as_cu, json={"key": enc["id"]})
    signed = call("POST", "/sign", as_cu, json={"key": sig["id"], "message": b64(b"m")})
    call(
        "POST",
        "/verify",
        as_cu,
        json={"key": sig["id"], "message": b64(b"m"), "signature": signed["signature"]},
    )
    call("POST", "/encrypt/batch", as_cu, json={"items": [{"key": enc["id"], "plaintext": ""}]})
    call("POST", f"/keys/{spare['id']}/suspend", as_km)
    call("POST", f"/keys/{spare['id']}/resume", as_km)
    call("DELETE", f"/keys/{spare['id']}", as_km)
    call("POST", f"/keys/{spare['id']}/cancel-destruction", as_km)
    call("POST", f"/keys/{spare['id']}/revoke", as_km, json={"reason": "superseded"})
    call("POST", f"/keys/{spare['id']}/suspend", as_km)  # refused: deactivated

    def events_of(client: dict[str, Any]) -> list[dict[str, Any]]:
        actor = f"token:{client['id']}:{client['name']}"
        page = api.get("/audit/logs", "auditor", params={"actor": actor, "limit": 1000}).json()
        assert all(e["actor"] == actor for e in page["events"])
        events: list[dict[str, Any]] = page["events"]
        return events

    km_events = {(e["event_type"], e["result"]) for e in events_of(km)}
    assert {
        ("key.create", "success"),
        ("key.rotate", "success"),
        ("key.suspend", "success"),
        ("key.resume", "success"),
        ("key.schedule_destruction", "success"),
        ("key.cancel_destruction", "success"),
        ("key.revoke", "success"),
        ("key.suspend", "denied"),
    } <= km_events
    cu_events = events_of(cu)
    assert {
        ("key.encrypt", "success"),
        ("key.decrypt", "success"),
        ("key.decrypt", "failure"),
        ("key.rewrap", "success"),
        ("key.datakey", "success"),
        ("key.sign", "success"),
        ("key.verify", "success"),
    } <= {(e["event_type"], e["result"]) for e in cu_events}
    assert sum(e["event_type"] == "key.encrypt" for e in cu_events) == 2  # one + the batch item
    encrypts = [e for e in cu_events if e["event_type"] == "key.encrypt"]
    assert encrypts[0]["key_id"] == enc["id"] and encrypts[0]["algorithm"] == enc["algorithm"]
    admin = {"id": api.client_ids["admin"], "name": "admin-token"}
    api.delete(f"/tokens/{km['id']}").raise_for_status()
    admin_events = {e["event_type"] for e in events_of(admin)}
    assert {"token.create", "token.revoke"} <= admin_events


def test_audit_log_filters_and_pagination(api: Api) -> None:
    key = api.create_key("pages")
    for _ in range(5):
        encrypt(api, key["name"], b"x")
    everything = api.get("/audit/logs", "auditor", params={"key": key["id"], "limit": 1000}).json()
    assert [e["event_type"] for e in everything["events"]] == ["key.create"] + ["key.encrypt"] * 5
    assert all(e["key_id"] == key["id"] for e in everything["events"])
    seqs = [e["seq"] for e in everything["events"]]
    assert seqs == sorted(seqs)
    paged: list[int] = []
    params: dict[str, Any] = {"key": key["id"], "limit": 4}
    while True:
        page = api.get("/audit/logs", "auditor", params=params).json()
        paged += [e["seq"] for e in page["events"]]
        if not page.get("next_cursor"):
            break
        params["cursor"] = page["next_cursor"]
    assert paged == seqs
    newest: list[int] = []
    params = {"key": key["id"], "limit": 4, "order": "desc"}
    while True:
        page = api.get("/audit/logs", "auditor", params=params).json()
        newest += [e["seq"] for e in page["events"]]
        if not page.get("next_cursor"):
            break
        params["cursor"] = page["next_cursor"]
    assert newest == seqs[::-1]
    assert_problem(api.get("/audit/logs", params={"order": "newest"}), 422, "invalid-request")
    only = api.get("/audit/logs", params={"key": key["id"], "event_type": "key.create"}).json()
    assert [e["event_type"] for e in only["events"]] == ["key.create"]
    first = everything["events"][0]
    assert len(first["hash"]) == 64 and first["actor"].startswith("token:")
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert api.get("/audit/logs", params={"key": key["id"], "since": future}).json()["events"] == []
    assert (
        len(api.get("/audit/logs", params={"key": key["id"], "until": future}).json()["events"])
        == 6
    )
    failures = api.get("/audit/logs", params={"result": "failure", "limit": 1000}).json()["events"]
    assert all(e["result"] == "failure" for e in failures)
    assert_problem(
        api.get("/audit/logs", params={"since": "2026-01-01T00:00:00"}), 422, "invalid-request"
    )
    assert_problem(api.get("/audit/logs", params={"cursor": "garbage"}), 422, "invalid-request")
    assert_problem(api.get("/audit/logs", params={"limit": 0}), 422, "invalid-request")


def test_audit_logs_by_key_name(api: Api) -> None:
    key = api.create_key("audit-by-name")
    encrypt(api, key["name"], b"x")
    by_id = api.get("/audit/logs", "auditor", params={"key": key["id"]}).json()["events"]
    by_name = api.get("/audit/logs", "auditor", params={"key": key["name"]}).json()["events"]
    assert [e["event_type"] for e in by_name] == ["key.create", "key.encrypt"]
    assert by_name == by_id
    # An unknown key is a filter that matches nothing: an empty page, not an error.
    for unknown in ("no-such-key", "k_" + "0" * 32):
        response = api.get("/audit/logs", "auditor", params={"key": unknown})
        assert response.status_code == 200, response.text
        assert response.json() == {"events": []}
    long_name = api.create_key("n" * 150)["name"]  # names go up to 200 characters
    events = api.get("/audit/logs", params={"key": long_name}).json()["events"]
    assert [e["event_type"] for e in events] == ["key.create"]
    assert_problem(api.get("/audit/logs", params={"key": "x" * 201}), 422, "invalid-request")


def test_audit_verify(api: Api) -> None:
    api.create_key("verify-chain")
    response = api.get("/audit/verify", "auditor")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["valid"] is True
    assert report["events"] > 0
    assert "first_bad_event" not in report
    assert isinstance(report["reason"], str)


def test_security_events(api: Api) -> None:
    api.get("/keys", None)  # no token
    api.get("/keys", None, headers={"Authorization": "Bearer qrc_wrong"})
    key = api.create_key("compromise")
    api.post(f"/keys/{key['name']}/revoke", json={"reason": "key_compromise"}).raise_for_status()
    response = api.get(
        "/security/events", "auditor", params={"event_type": "authentication_failure"}
    )
    assert response.status_code == 200, response.text
    failures = response.json()["events"]
    assert {e["details"]["reason"] for e in failures} >= {"missing", "invalid"}
    assert all(e["severity"] == "medium" for e in failures)
    response = api.get("/security/events", "auditor", params={"key": key["id"]})
    (event,) = response.json()["events"]
    assert (event["event_type"], event["severity"], event["key_id"]) == (
        "key_compromise",
        "high",
        key["id"],
    )
    # paging by ID
    page = api.get("/security/events", params={"limit": 1}).json()
    assert len(page["events"]) == 1 and page["next_after"] == page["events"][0]["id"]
    following = api.get("/security/events", params={"limit": 1, "after": page["next_after"]}).json()
    assert following["events"][0]["id"] > page["events"][0]["id"]
    assert_problem(
        api.get("/security/events", params={"since": "2026-01-01T00:00:00"}), 422, "invalid-request"
    )


def test_security_events_after_a_huge_id_is_a_4xx(api: Api) -> None:
    response = api.get("/security/events", params={"after": 2**63})
    assert 400 <= response.status_code < 500, response.text


def test_unauthenticated_failures_are_audited(api: Api) -> None:
    api.get("/audit/verify", None)
    events = api.get(
        "/audit/logs", "auditor", params={"event_type": "auth.failure", "limit": 1000}
    ).json()["events"]
    assert (
        events
        and events[-1]["result"] == "failure"
        and events[-1]["actor"].startswith("anonymous@")
    )


# ---------------------------------------------------------------------------- service endpoints


def test_metrics(api: Api) -> None:
    key = api.create_key("metrics")
    encrypt(api, key["name"], b"x")
    response = api.get("/metrics", "viewer", prefix=False)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'qrc_crypto_operations_total{operation="encrypt",algorithm="X25519MLKEM768"}' in text
    assert 'qrc_crypto_operations_total{operation="create",algorithm="X25519MLKEM768"}' in text
    assert "# TYPE qrc_http_requests_total counter" in text
    assert "qrc_http_request_seconds_bucket" in text
    assert "# TYPE qrc_tls_handshakes_total counter" in text
    for cache in ("public_keys", "private_keys", "tokens"):
        assert f'qrc_cache_max_size{{cache="{cache}"}}' in text
        assert f'qrc_cache_evictions_total{{cache="{cache}"}}' in text
    api.get("/keys", None)
    assert 'qrc_errors_total{type="401"}' in api.get("/metrics", prefix=False).text


def test_health_and_ready(api: Api) -> None:
    assert api.get("/health", None, prefix=False).json() == {"status": "ok", "checks": {}}
    response = api.get("/ready", None, prefix=False)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["store"] == "ok" and body["checks"]["custody"] == "online"


def test_openapi_describes_every_api_route(api: Api) -> None:
    document = api.get("/openapi.json", None, prefix=False).json()
    paths = document["paths"]
    for path in (
        "/keys/generate",
        "/encrypt",
        "/decrypt",
        "/algorithms/status",
        "/protocols/update",
        "/audit/logs",
    ):
        assert "/api/v1/security/qrc" + path in paths
    assert api.get("/docs", None, prefix=False).status_code == 200


# ---------------------------------------------------------------------------- limits and bad input


def test_rate_limit_per_token(tmp_path: Any) -> None:
    with running_api(
        tmp_path, ApiSettings(rate_limit_per_second=0.5, rate_limit_burst=2)
    ) as limited:
        assert limited.get("/keys").status_code == 200
        assert limited.get("/keys").status_code == 200
        response = limited.get("/keys")
        assert_problem(response, 429, "rate-limited")
        assert int(response.headers["retry-after"]) >= 1
        # per token: another token is not affected
        assert limited.get("/keys", "viewer").status_code == 200


def test_body_over_the_limit_is_413(api: Api) -> None:
    big = b'{"key": "k", "plaintext": "' + b"A" * (1 << 20) + b'"}'
    headers = {"content-type": "application/json"}
    assert_problem(api.post("/encrypt", content=big, headers=headers), 413, "payload-too-large")
    assert_problem(
        api.post("/encrypt", None, content=big, headers=headers), 413, "payload-too-large"
    )


def test_streamed_body_over_the_limit_is_413(api: Api) -> None:
    """Without a Content-Length the limit counts what arrives."""

    def chunks() -> Any:
        yield b'{"key": "k", "plaintext": "'
        for _ in range(20):
            yield b"A" * 65536
        yield b'"}'

    response = api.post("/encrypt", content=chunks(), headers={"content-type": "application/json"})
    assert_problem(response, 413, "payload-too-large")


def test_bad_input_is_a_clear_4xx(api: Api) -> None:
    key = api.create_key("bad-input")
    json_headers = {"content-type": "application/json"}
    assert_problem(
        api.post("/encrypt", content=b"{bad", headers=json_headers), 400, "malformed-json"
    )
    assert_problem(
        api.post("/encrypt", content=b'{"key": "a",', headers=json_headers), 400, "malformed-json"
    )
    body = assert_problem(
        api.post("/encrypt", json={"key": key["name"], "plaintext": "not base64!"}),
        422,
        "invalid-request",
    )
    assert "base64" in body["detail"] and body["errors"][0]["location"] == "body.plaintext"
    assert_problem(
        api.post("/encrypt", json={"key": key["name"], "plaintext": "QQ="}), 422, "invalid-request"
    )
    assert_problem(
        api.post("/encrypt", json={"key": key["name"], "plaintext": "QQ==", "extra": 1}),
        422,
        "invalid-request",
    )
    assert_problem(api.post("/encrypt", json={"plaintext": "QQ=="}), 422, "invalid-request")
    assert_problem(api.post("/encrypt", json=[1, 2]), 422, "invalid-request")
    assert_problem(
        api.post("/encrypt", json={"key": key["name"], "plaintext": 5}), 422, "invalid-request"
    )
    assert_problem(
        api.post("/encrypt", json={"key": "", "plaintext": "QQ=="}), 422, "invalid-request"
    )
    assert_problem(
        api.post("/encrypt", json={"key": "k" * 201, "plaintext": "QQ=="}), 422, "invalid-request"
    )
    assert_problem(
        api.post("/encrypt", json={"key": key["name"], "plaintext": "", "context": "c" * 1025}),
        422,
        "invalid-request",
    )
    assert_problem(api.get("/no/such/route"), 404, "not-found")
    assert_problem(api.call("PUT", "/encrypt"), 405, "method-not-allowed")
    assert_problem(api.call("PATCH", f"/keys/{key['name']}"), 405, "method-not-allowed")


def test_wrongly_typed_booleans_are_refused(api: Api) -> None:
    """The schema says boolean/integer: a lax conversion of 0.0 or true is not accepted."""
    body = {"name": api.unique("strict"), "purpose": "encryption", "rotation_period_days": True}
    assert_problem(api.post("/keys/generate", json=body), 422, "invalid-request")
    assert_problem(api.post("/protocols/update", json={"dry_run": 0.0}), 422, "invalid-request")
    body = {"name": api.unique("strict"), "purpose": "encryption", "activate": "yes"}
    assert_problem(api.post("/keys/generate", json=body), 422, "invalid-request")


def test_times_are_rfc3339_only(api: Api) -> None:
    """A number is not a time, though pydantic would read it as Unix time (found by fuzzing)."""
    for path in ("/audit/logs", "/security/events"):
        response = api.get(path, params={"since": "300.0"})
        assert_problem(response, 422, "invalid-request")
    body = {"name": api.unique("unix"), "purpose": "encryption", "expires_at": 4102444800}
    assert_problem(api.post("/keys/generate", json=body), 422, "invalid-request")


def test_problem_catalogue_is_consistent() -> None:
    for slug, (status, title) in PROBLEM_TYPES.items():
        assert slug == slug.lower() and " " not in slug
        assert 400 <= status < 600 and title


def test_forbidden_requests_are_audited_and_openapi_declares_bearer(api: Api) -> None:
    refused = api.call(
        "POST",
        "/keys/generate",
        "viewer",
        json={"name": api.unique("forbidden"), "purpose": "encryption"},
    )
    assert refused.status_code == 403
    events = api.get("/audit/logs", params={"event_type": "api.forbidden"}).json()["events"]
    assert events and events[-1]["result"] == "denied"
    schemes = api.get("/openapi.json", prefix=False).json()["components"]["securitySchemes"]
    assert any(scheme.get("scheme") == "bearer" for scheme in schemes.values())


def test_every_error_answer_is_a_problem(api: Api) -> None:
    """Every 4xx this module received is problem+json with our type; no answer has a trace."""
    api.get("/keys", None)
    api.get("/tokens", "viewer")
    api.get("/keys/none-such")
    api.post("/encrypt", json={})
    errors = [r for r in api.responses if r.status_code >= 400]
    assert len(errors) >= 4
    for response in api.responses:
        assert "Traceback" not in response.text and 'File "' not in response.text
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["type"].startswith(PROBLEM_PREFIX)


# ---------------------------------------------------------------------------- security invariant


def _forms(secret: bytes) -> list[bytes]:
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret).rstrip(b"="),
    ]


def test_no_private_key_material_in_any_answer(api: Api) -> None:
    """Exercise every kind of key through every route, then search every answer of the module."""
    for purpose, algorithm in (
        ("encryption", "X25519MLKEM768"),
        ("encryption", "ML-KEM-512"),
        ("key_wrapping", "AES-256-GCM"),
        ("signing", "MLDSA65-Ed25519-SHA512"),
        ("signing", "ML-DSA-44"),
    ):
        key = api.create_key("secret", purpose, algorithm=algorithm)
        ref = key["name"]
        api.post(f"/keys/{ref}/rotate")
        api.get(f"/keys/{ref}")
        api.get(f"/keys/{ref}/public")
        if purpose == "signing":
            signed = api.post("/sign", json={"key": ref, "message": b64(b"m")}).json()
            api.post(
                "/verify", json={"key": ref, "message": b64(b"m"), "signature": signed["signature"]}
            )
            api.post("/sign/batch", json={"items": [{"key": ref, "message": b64(b"m")}]})
        else:
            sealed = encrypt(api, ref, b"p", "c")
            decrypt(api, ref, sealed["ciphertext"], "c")
            decrypt(api, ref, sealed["ciphertext"], "wrong")
            api.post(
                "/rewrap", json={"key": ref, "ciphertext": sealed["ciphertext"], "context": "c"}
            )
            api.post("/datakey", json={"key": ref})
            api.post("/encrypt/batch", json={"items": [{"key": ref, "plaintext": b64(b"p")}]})
    api.get("/keys", params={"limit": 1000})
    api.get("/audit/logs", "auditor", params={"limit": 1000})
    api.get("/security/events", "auditor", params={"limit": 1000})
    api.get("/metrics", prefix=False)
    service = api.service
    secrets_seen: list[bytes] = []
    with service.db.session() as session:
        for row in session.scalars(
            select(KeyVersion).where(KeyVersion.wrapped_private.is_not(None))
        ):
            assert row.wrapped_private is not None
            secrets_seen.append(
                service.keyring.unwrap(row.key_id, row.version, row.algorithm, row.wrapped_private)
            )
    assert len(secrets_seen) >= 10
    bodies = b"\n".join(r.content for r in api.responses) + b"\n".join(
        str(dict(r.headers)).encode() for r in api.responses
    )
    for secret in secrets_seen:
        for form in _forms(secret):
            assert form not in bodies
