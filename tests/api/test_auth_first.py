"""Authentication comes before validation: an anonymous or unauthorised caller with a bad
body gets 401/403, not a description of what is wrong with the body."""

from __future__ import annotations

from tests.api.conftest import Api, assert_problem

BAD = {"content": b"{bad", "headers": {"content-type": "application/json"}}


def test_bad_body_without_token_is_401_and_recorded(api: Api) -> None:
    before = len(
        api.get(
            "/security/events", params={"event_type": "authentication_failure", "limit": 1000}
        ).json()["events"]
    )
    response = api.call("POST", "/encrypt", None, **BAD)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    after = api.get(
        "/security/events", params={"event_type": "authentication_failure", "limit": 1000}
    ).json()["events"]
    assert len(after) == before + 1


def test_bad_body_with_the_wrong_role_is_403(api: Api) -> None:
    assert_problem(api.call("POST", "/encrypt", "viewer", **BAD), 403, "forbidden")


def test_bad_body_with_an_admitted_role_is_400(api: Api) -> None:
    assert_problem(api.call("POST", "/encrypt", "admin", **BAD), 400, "malformed-json")
