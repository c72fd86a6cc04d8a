"""The web guides list exactly what the code does: every route, every error status and code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from prpm_playground.web import ROUTES
from prpm_playground.web import errors as web_errors

ROW = re.compile(r"^\| `(?P<method>[A-Z]+)` \| `(?P<path>/[^`]*)` \|(?P<rest>.*)\|$", re.M)


def _page(repo_root: Path, name: str) -> str:
    return (repo_root / "docs" / "guides" / name).read_text()


def _cells(rest: str) -> list[str]:
    return [cell.strip() for cell in rest.split(" | ")]


def test_http_api_page_lists_exactly_the_routes(repo_root: Path) -> None:
    rows = {(m["method"], m["path"]): _cells(m["rest"]) for m in ROW.finditer(
        _page(repo_root, "http-api.md"))}  # fmt: skip
    assert set(rows) == {(route.method, route.path) for route in ROUTES}
    for route in ROUTES:
        user, query, body, answer, summary = rows[(route.method, route.path)]
        where = f"{route.method} {route.path}"
        assert user == ("yes" if route.auth else "no"), where
        assert summary == route.summary, where
        for model, cell in ((route.query, query), (route.body, body)):
            if model is None:
                assert cell == "—", where
            else:
                assert f"`{model.__name__}`" in cell, where
        if route.response is not None:
            assert f"`{route.response.__name__}`" in answer, where
        elif route.file_media_type is not None:
            assert f"`{route.file_media_type}`" in answer, where
        else:
            assert answer.startswith(f"{route.status}, no body"), where
        if route.status not in (200, 204):
            assert answer.startswith(f"{route.status},"), where
        assert ("events" in answer) == (route.events is not None), where


def _mapping() -> dict[int, set[str]]:
    """Every status the web layer answers with, and the codes it answers with."""
    codes: dict[int, set[str]] = {500: {"internal_error"}}
    for cls, status in web_errors._STATUS.items():
        codes.setdefault(status, set()).add(cls.code)
    import prpm_playground.errors as errors

    # Subclasses inherit their base's status: list their codes with it.
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, errors.PlaygroundError):
            status = web_errors.status_for(value.__new__(value))
            if status != 500:
                codes.setdefault(status, set()).add(value.code)
    return codes


def test_mapping_covers_the_documented_codes() -> None:
    # The module's docstring is where the mapping is described; the page copies it.
    described = web_errors.__doc__ or ""
    for status, codes in _mapping().items():
        assert f"{status} " in described, status
        for code in codes:
            assert f"``{code}``" in described, code


@pytest.mark.parametrize("status", sorted(_mapping()))
def test_errors_page_lists_every_status_and_code(repo_root: Path, status: int) -> None:
    table = {
        int(m[1]): m[2]
        for m in re.finditer(r"^\| (\d{3}) \| (.*?) \|", _page(repo_root, "errors.md"), re.M)
    }
    assert status in table, f"docs/guides/errors.md has no row for {status}"
    documented = set(re.findall(r"`([a-z_]+)`", table[status]))
    assert documented == _mapping()[status]
