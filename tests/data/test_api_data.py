"""The index routes (every role, hostile input) and the SDK in remote mode against a real
API process over PQ TLS."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from qrc.crypto.errors import DecryptionError
from qrc.data.cache import CacheLimits
from qrc.data.index import IndexEntry
from qrc.data.redis import EncryptedRedis
from qrc.data.sdk import DataEncryptor
from qrc.keys.errors import KeyNotFound, OperationNotPermitted
from tests.api.api_server import ApiProcess
from tests.api.conftest import OTHER_KEY, Api, assert_problem, running_api

HASH = "sha256:" + "0f" * 32
ROUTES = [
    ("POST", "/data/index"),
    ("GET", "/data/index"),
    ("GET", "/data/index/object"),
    ("POST", "/data/index/rewrapped"),
    ("GET", "/data/shred-report"),
]
# role -> the routes (method, path) it may call
ALLOWED = {
    "admin": set(ROUTES),
    "key_manager": {ROUTES[1], ROUTES[2], ROUTES[4]},
    "auditor": {ROUTES[1], ROUTES[2], ROUTES[4]},
    "crypto_user": {ROUTES[0], ROUTES[1], ROUTES[3]},
    "viewer": set(),
}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_api(tmp_path_factory.mktemp("api")) as api:
        yield api


def _call(api: Api, method: str, path: str, role: str | None, key: str) -> Any:
    if method == "POST" and path == "/data/index":
        body = {"objects": [{"identifier": f"{key}/o1", "key": key, "key_version": 1,
                             "data_type": "blob", "integrity_hash": HASH}]}  # fmt: skip
        return api.post(path, role, json=body)
    if method == "POST":
        body = {"key": key, "objects": [{"identifier": f"{key}/o1", "key_version": 1}]}
        return api.post(path, role, json=body)
    params = {"identifier": f"{key}/o1"} if path.endswith("object") else {"key": key}
    return api.get(path, role, params=params)


@pytest.mark.parametrize("role", ["admin", "key_manager", "auditor", "crypto_user", "viewer"])
def test_every_role_on_every_route(api: Api, role: str) -> None:
    key = api.create_key("idx")["name"]
    _call(api, "POST", "/data/index", "admin", key).raise_for_status()
    for method, path in ROUTES:
        response = _call(api, method, path, role, key)
        if (method, path) in ALLOWED[role]:
            assert response.status_code == 200, (method, path, response.text)
        else:
            assert_problem(response, 403, "forbidden")
        assert_problem(_call(api, method, path, None, key), 401, "unauthorized")
        wrong = {"Authorization": "Bearer qrc_" + "A" * 43}
        if method == "GET":
            response = api.get(path, None, params={"key": key, "identifier": "x"}, headers=wrong)
        else:
            response = api.post(path, None, json={}, headers=wrong)
        assert_problem(response, 401, "unauthorized")


def test_restricted_crypto_user_sees_only_its_keys(api: Api) -> None:
    key = api.create_key("hidden")["name"]
    for method, path in (ROUTES[0], ROUTES[1], ROUTES[3]):
        assert_problem(_call(api, method, path, "crypto_user_limited", key), 404, "key-not-found")
    response = _call(api, "POST", "/data/index", "crypto_user_limited", OTHER_KEY)
    assert response.status_code == 200, response.text
    listed = _call(api, "GET", "/data/index", "crypto_user_limited", OTHER_KEY).json()
    assert [o["identifier"] for o in listed["objects"]] == [f"{OTHER_KEY}/o1"]


def _one(**fields: Any) -> dict[str, Any]:
    return {"objects": [{"identifier": "x", "key": "{key}", "key_version": 1,
                         "data_type": "blob", **fields}]}  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"objects": []},
        {"objects": _one()["objects"] * 1001},
        _one(identifier=""),
        _one(key_version=0),
        _one(key_version="1"),
        _one(key_version=99),
        _one(data_type="A B"),
        _one(integrity_hash="sha256:zz"),
        _one(extra=1),
        _one(identifier="x\u2028y"),
        _one(identifier="x" * 501),
        _one(location=""),
    ],
)
def test_bad_registrations_are_4xx(api: Api, body: dict[str, Any]) -> None:
    key = api.create_key("bad")["name"]
    objects = [{**o, "key": o["key"].replace("{key}", key)} for o in body.get("objects", [])]
    response = api.post("/data/index", json={**body, "objects": objects} if body else {})
    assert 400 <= response.status_code < 500, response.text
    assert api.get("/data/index", params={"key": key}).json()["objects"] == []


def test_unknown_things_are_404(api: Api) -> None:
    assert_problem(api.get("/data/index", params={"key": "nope"}), 404, "key-not-found")
    assert_problem(api.get("/data/shred-report", params={"key": "nope"}), 404, "key-not-found")
    response = api.get("/data/index/object", params={"identifier": "nothing"})
    assert_problem(response, 404, "not-found")
    assert_problem(api.get("/data/index", params={"key": "k", "limit": 0}), 422, "invalid-request")


# --------------------------------------------------------------------------- remote SDK
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    process = ApiProcess(tmp_path_factory.mktemp("remote"), "--tls")
    yield process
    process.stop()


def _remote(server: ApiProcess, role: str = "admin", **cache: Any) -> DataEncryptor:
    return DataEncryptor.remote(
        f"https://127.0.0.1:{server.port}",
        token=server.tokens[role],
        ca_file=str(server.data_dir / "tls" / "ca.pem"),
        cache=CacheLimits(**cache),
    )


def _create(sdk: DataEncryptor, name: str, algorithm: str) -> None:
    body = {"name": name, "purpose": "encryption", "algorithm": algorithm}
    answer = sdk.source.call("create", "POST", "/keys/generate", body)  # type: ignore[attr-defined]
    assert answer["name"] == name


@pytest.mark.parametrize("algorithm", ["AES-256-GCM", "X25519MLKEM768"])
def test_remote_sdk_over_pq_tls(server: ApiProcess, algorithm: str, redis_client: Any) -> None:
    admin = _remote(server)
    name = f"remote-{algorithm.lower()}"
    _create(admin, name, algorithm)
    assert admin.source.client.negotiated_group == "X25519MLKEM768"  # type: ignore[attr-defined]
    writer = _remote(server, "crypto_user")
    blob = writer.encrypt(name, b"over the wire", context=b"ctx")
    reader = _remote(server, "crypto_user", max_entries=0)
    assert reader.decrypt(blob, context=b"ctx") == b"over the wire"
    with pytest.raises(DecryptionError):
        reader.decrypt(blob, context=b"other")
    with pytest.raises(KeyNotFound):
        writer.encrypt("no-such-key", b"x")
    # The same API as library mode: Redis values, the index, rewrap, shredding.
    p = redis_client.qrc_prefix
    wrapped = EncryptedRedis(redis_client, writer, name, register=True, identifier_prefix=name)
    wrapped.set(p + "k", b"value")
    assert EncryptedRedis(redis_client, reader, name).get(p + "k") == b"value"
    assert [r.location for r in writer.index.under(name)] == [  # type: ignore[union-attr]
        "redis:" + (p + "k").replace(":", "%3A")
    ]
    admin.source.call("rotate", "POST", f"/keys/{name}/rotate", None)  # type: ignore[attr-defined]
    moved = reader.rewrap(blob)
    assert moved.changed and moved.key_version == 2
    assert reader.decrypt(moved.data, context=b"ctx") == b"over the wire"
    writer.index.mark_rewrapped([(name + "redis:" + (p + "k").replace(":", "%3A"), 2, None)],  # type: ignore[union-attr]
                                key=name)  # fmt: skip
    admin.source.call("revoke", "POST", f"/keys/{name}/revoke",  # type: ignore[attr-defined]
                      {"reason": "key_compromise"})  # fmt: skip
    with pytest.raises(OperationNotPermitted):
        reader.decrypt(blob, context=b"ctx")
    report = _remote(server, "auditor").index.shred_report(name)  # type: ignore[union-attr]
    assert not report.shredded and report.status == "compromised"
    assert report.objects[0].key_version == 2
    for sdk in (admin, writer, reader):
        sdk.close()


def test_remote_viewer_token_cannot_touch_data(server: ApiProcess) -> None:
    admin = _remote(server)
    _create(admin, "viewer-target", "AES-256-GCM")
    blob = admin.encrypt("viewer-target", b"x")
    viewer = _remote(server, "viewer")
    with pytest.raises(OperationNotPermitted, match="refused the token"):
        viewer.encrypt("viewer-target", b"x")
    with pytest.raises(OperationNotPermitted, match="refused the token"):
        viewer.decrypt(blob)
    with pytest.raises(OperationNotPermitted, match="refused the token"):
        viewer.index.register([IndexEntry("x", "viewer-target", 1, "blob")])  # type: ignore[union-attr]
    for sdk in (admin, viewer):
        sdk.close()


def test_base64_of_a_data_key_never_in_the_index(api: Api) -> None:
    """The index API carries no key material: only identifiers, versions and hashes."""
    key = api.create_key("noleak")["name"]
    datakey = api.post("/datakey", json={"key": key}).json()
    secret = datakey["plaintext_key"]
    _call(api, "POST", "/data/index", "admin", key).raise_for_status()
    text = api.get("/data/index", params={"key": key}).text
    assert secret not in text and base64.b64decode(secret).hex() not in text


def test_remote_rewrap_job_then_old_versions_retired(server: ApiProcess, redis_client: Any) -> None:
    from qrc.data.rewrap import RedisTarget, redis_location, rewrap_key

    p, name = redis_client.qrc_prefix, "remote-rewrap"
    admin = _remote(server)
    _create(admin, name, "AES-256-GCM")
    writer = _remote(server, "crypto_user")
    wrapped = EncryptedRedis(redis_client, writer, name, register=True, identifier_prefix="rr/")
    for i in range(5):
        wrapped.set(f"{p}{i}", b"v%d" % i)
    admin.source.call("rotate", "POST", f"/keys/{name}/rotate", None)  # type: ignore[attr-defined]
    report = rewrap_key(writer, name, {"redis": RedisTarget(redis_client)})
    assert report.rewrapped == 5 and report.dek_rewraps == 1  # one DEK, one service call
    assert writer.index.under(name, below_version=2) == []  # type: ignore[union-attr]
    record = admin.index.get("rr/" + redis_location(f"{p}0"))  # type: ignore[union-attr]
    assert record.key_version == 2 and record.rewrapped_at is not None
    admin.source.call(  # type: ignore[attr-defined]
        "retire", "POST", f"/keys/{name}/min-decryption-version", {"version": 2}
    )
    reader = EncryptedRedis(redis_client, _remote(server, "crypto_user", max_entries=0), name)
    assert [reader.get(f"{p}{i}") for i in range(5)] == [b"v%d" % i for i in range(5)]
    with pytest.raises(KeyNotFound, match="no indexed object"):
        admin.index.get("rr/nothing")  # type: ignore[union-attr]
    for sdk in (admin, writer):
        sdk.close()
