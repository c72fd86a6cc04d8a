"""Sessions over HTTP: listing, reading, deleting, sharing, the public view,
forking and feedback, and that nobody reaches another user's session."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Web, as_user, run_body


async def started_session(web: Web, user: str, **fields: Any) -> dict[str, Any]:
    await web.fund(user, 100)
    response = await web.client.post("/run", json=run_body(**fields), headers=as_user(user))
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


async def test_list_get_and_delete(web: Web, user: str) -> None:
    first = await started_session(web, user, input="First question")
    await web.client.post("/run", json=run_body(input="Second"), headers=as_user(user))
    listed = await web.client.get("/sessions", params={"limit": 1}, headers=as_user(user))
    assert listed.status_code == 200
    page = listed.json()
    assert len(page["sessions"]) == 1
    assert page["next_cursor"] is not None
    rest = await web.client.get(
        "/sessions", params={"cursor": page["next_cursor"]}, headers=as_user(user)
    )
    assert [s["title"] for s in rest.json()["sessions"]] == ["First question"]
    assert rest.json()["next_cursor"] is None

    got = await web.client.get(f"/sessions/{first['session_id']}", headers=as_user(user))
    assert got.status_code == 200
    session = got.json()
    assert session["id"] == first["session_id"]
    assert [e["input"] for e in session["exchanges"]] == ["First question"]
    assert session["exchanges"][0]["credits_spent"] == 7

    deleted = await web.client.delete(f"/sessions/{first['session_id']}", headers=as_user(user))
    assert deleted.status_code == 204
    assert deleted.content == b""
    again = await web.client.get(f"/sessions/{first['session_id']}", headers=as_user(user))
    assert again.status_code == 404
    twice = await web.client.delete(f"/sessions/{first['session_id']}", headers=as_user(user))
    assert twice.status_code == 404


async def test_share_view_fork_and_unshare(web: Web, user: str) -> None:
    first = await started_session(web, user)
    session_id = first["session_id"]
    shared = await web.client.post(f"/sessions/{session_id}/share", headers=as_user(user))
    assert shared.status_code == 200
    token = shared.json()["token"]
    assert len(token) >= 22  # at least 128 bits, base64url
    same = await web.client.post(f"/sessions/{session_id}/share", headers=as_user(user))
    assert same.json()["token"] == token

    public = await web.client.get(f"/shared/{token}")  # no user at all
    assert public.status_code == 200
    assert public.headers["x-robots-tag"] == "noindex"
    assert public.headers["referrer-policy"] == "no-referrer"
    view = public.json()
    assert set(view) == {
        "token",
        "package_id",
        "package_version",
        "no_prompt",
        "shared_at",
        "exchanges",
    }
    assert user not in public.text
    assert session_id not in public.text
    assert [e["response"] for e in view["exchanges"]] == ["Hello from the model."]

    reader = "reader-" + user
    forked = await web.client.post(f"/shared/{token}/fork", headers=as_user(reader))
    assert forked.status_code == 201
    copy = forked.json()
    assert copy["id"] != session_id
    assert [e["credits_spent"] for e in copy["exchanges"]] == [0]
    mine = await web.client.get(f"/sessions/{copy['id']}", headers=as_user(reader))
    assert mine.status_code == 200

    unshared = await web.client.delete(f"/sessions/{session_id}/share", headers=as_user(user))
    assert unshared.status_code == 204
    gone = await web.client.get(f"/shared/{token}")
    assert gone.status_code == 404
    assert gone.headers["x-robots-tag"] == "noindex"
    refork = await web.client.post(f"/shared/{token}/fork", headers=as_user(reader))
    assert refork.status_code == 404


async def test_feedback_once_per_exchange(web: Web, user: str) -> None:
    first = await started_session(web, user)
    path = f"/sessions/{first['session_id']}/feedback"
    vote = {"exchange_index": 0, "helpful": True, "comment": "spot on"}
    given = await web.client.post(path, json=vote, headers=as_user(user))
    assert given.status_code == 201
    assert given.json()["helpful"] is True
    assert given.json()["comment"] == "spot on"
    again = await web.client.post(path, json=vote, headers=as_user(user))
    assert (again.status_code, again.json()["error"]) == (409, "conflict")
    missing = await web.client.post(
        path, json={"exchange_index": 5, "helpful": False}, headers=as_user(user)
    )
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("DELETE", "", None),
        ("POST", "/share", None),
        ("DELETE", "/share", None),
        ("POST", "/feedback", {"exchange_index": 0, "helpful": False}),
    ],
)
async def test_another_users_session_is_not_found(
    web: Web, user: str, method: str, suffix: str, body: dict[str, Any] | None
) -> None:
    first = await started_session(web, user)
    session_id = first["session_id"]
    intruder = as_user("intruder-" + user)
    foreign = await web.client.request(
        method, f"/sessions/{session_id}{suffix}", json=body, headers=intruder
    )
    unknown = await web.client.request(
        method, f"/sessions/ses_doesnotexist{suffix}", json=body, headers=intruder
    )
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["error"] == unknown.json()["error"] == "not_found"
    session = await web.playground.sessions.get(user, session_id)  # untouched
    assert len(session.exchanges) == 1
    assert (await web.playground.storage.live_share(session_id)) is None


async def test_the_owner_cannot_fork_an_unshared_session_either(web: Web, user: str) -> None:
    first = await started_session(web, user)
    response = await web.client.post(
        f"/shared/{first['session_id']}/fork", headers=as_user("someone-" + user)
    )
    assert response.status_code == 404
    assert (await web.playground.sessions.list("someone-" + user)).sessions == ()
