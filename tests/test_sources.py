"""Package sources: text checks, memory, folder and registry (mocked over HTTP with respx)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from prpm_playground.errors import InvalidRequest, NotFound, PlaygroundError
from prpm_playground.sources import (
    InMemoryPackages,
    LocalPackages,
    Package,
    PackageSourceUnavailable,
    RegistryPackages,
)
from prpm_playground.sources._text import (
    DEFAULT_MAX_PACKAGE_BYTES,
    check_package_id,
    check_version,
    normalise,
)

BASE = "https://registry.test"

BAD_IDS = [
    "../etc/passwd",
    "http://evil",
    "a/b/c",
    "..",
    "",
    "Upper",
    "a" * 215,
    "foo..bar",
    "a\\b",
    "a:b",
    "/abs",
    "@scope/",
    "@/name",
    "foo\n",
]


# Text checks.


def test_normalise_line_endings_bom_nfc_and_trailing_space() -> None:
    text, warnings = normalise("\ufeffCafe\u0301\r\nnext\rlast  \n\n", max_bytes=100)
    assert text == "Caf\u00e9\nnext\nlast"
    assert warnings == ()


def test_normalise_keeps_leading_and_inner_whitespace() -> None:
    assert normalise("  indented\n\n\tbody", max_bytes=100) == ("  indented\n\n\tbody", ())


def test_bidi_and_invisible_characters_are_reported_per_code_point() -> None:
    text, warnings = normalise("a\u202eb\u202ec\u200bd\x00e\u2066f\ufeffg", max_bytes=100)
    assert text == "a\u202eb\u202ec\u200bd\x00e\u2066f\ufeffg"
    assert warnings == (
        "2 bidirectional control characters (U+202E) found",
        "1 bidirectional control character (U+2066) found",
        "1 invisible character (U+0000) found",
        "1 invisible character (U+200B) found",
        "1 invisible character (U+FEFF) found",
    )


def test_ascii_controls_are_reported_but_tab_and_newline_are_not() -> None:
    assert normalise("a\x07b\tc\nd\x07\x7f", max_bytes=100)[1] == (
        "2 invisible characters (U+0007) found",
        "1 invisible character (U+007F) found",
    )


def test_tag_characters_are_reported() -> None:
    # Tag characters smuggle invisible ASCII into prompts.
    assert normalise("hi\U000e0041\U000e0042", max_bytes=100)[1] == (
        "1 invisible character (U+E0041) found",
        "1 invisible character (U+E0042) found",
    )


def test_oversize_text_is_refused_naming_size_and_cap() -> None:
    with pytest.raises(InvalidRequest) as caught:
        normalise("\u00e9" * 6, max_bytes=10)
    assert caught.value.message == "package text is 12 bytes, over the cap of 10 bytes"
    assert normalise("\u00e9" * 5, max_bytes=10)[0] == "\u00e9" * 5
    with pytest.raises(InvalidRequest, match="at least 11 bytes, over the cap of 10"):
        normalise("x" * 11, max_bytes=10)


@pytest.mark.parametrize("blank", ["", "  \r\n\t", "\ufeff\n"])
def test_empty_text_is_refused(blank: str) -> None:
    with pytest.raises(InvalidRequest, match="package text is empty"):
        normalise(blank, max_bytes=100)


def test_unpaired_surrogates_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="unpaired surrogates"):
        normalise("a\ud800b", max_bytes=100)


@pytest.mark.parametrize("good", ["foo", "a", "@scope/foo-bar.baz_1", "x" * 214, "1.2"])
def test_good_package_ids_pass(good: str) -> None:
    assert check_package_id(good) == good


@pytest.mark.parametrize("bad", [*BAD_IDS, None, 3])
def test_bad_package_ids_are_refused(bad: object) -> None:
    with pytest.raises(InvalidRequest):
        check_package_id(bad)


def test_versions() -> None:
    assert check_version(None) is None
    assert check_version("1.2.3-beta.1+build.5") == "1.2.3-beta.1+build.5"
    for bad in ["", "v/1", "../1", ".1", "1 2", "x" * 65, 1]:
        with pytest.raises(InvalidRequest):
            check_version(bad)


def test_default_cap_matches_limits() -> None:
    from prpm_playground.config import Limits

    assert Limits().max_package_bytes == DEFAULT_MAX_PACKAGE_BYTES == 100_000


# InMemoryPackages.


async def test_memory_str_mapping_and_package_values() -> None:
    source = InMemoryPackages(
        {
            "pirate": "Talk like a pirate.\r\n",
            "reviewer": {"text": "Review.", "name": "Reviewer", "type": "agent", "version": "1.0"},
            "@acme/rule": Package(
                id="@acme/rule", name="Rule", type="cursor-rule", text="R\u202e "
            ),
        }
    )
    assert await source.get("pirate") == Package(
        id="pirate", name="pirate", type="prompt", text="Talk like a pirate."
    )
    assert await source.get("reviewer", "1.0") == Package(
        id="reviewer", name="Reviewer", type="agent", version="1.0", text="Review."
    )
    assert await source.get("@acme/rule") == Package(
        id="@acme/rule",
        name="Rule",
        type="cursor-rule",
        text="R\u202e",
        warnings=("1 bidirectional control character (U+202E) found",),
    )


async def test_memory_unknown_id_and_version_mismatch_are_not_found() -> None:
    source = InMemoryPackages({"a": {"text": "A", "version": "1.0"}, "b": "B"})
    with pytest.raises(NotFound, match="'missing' not found"):
        await source.get("missing")
    with pytest.raises(NotFound, match=r"no version '2\.0'"):
        await source.get("a", "2.0")
    with pytest.raises(NotFound):
        await source.get("b", "1.0")


@pytest.mark.parametrize("bad", ["../etc/passwd", "http://evil", "Upper"])
async def test_memory_get_refuses_bad_ids(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        await InMemoryPackages({"a": "A"}).get(bad)


@pytest.mark.parametrize(
    ("packages", "message"),
    [
        ({"../x": "X"}, "package '../x': package id"),
        ({"a": "x" * 11}, "over the cap of 10 bytes"),
        ({"a": {"text": "A", "author": "me"}}, "unknown fields \\['author'\\]"),
        ({"a": {"text": 1}}, "'text' must be a string"),
        ({"a": {"text": "A", "version": "1/2"}}, "version '1/2' is malformed"),
        ({"a": Package(id="b", name="b", type="prompt", text="B")}, "has id 'b'"),
        ({"a": 42}, "got int"),
        ({"a": " \n"}, "empty"),
    ],
)
def test_memory_construction_refuses_bad_packages(packages: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InMemoryPackages(packages, max_bytes=10)


async def test_memory_copies_the_mapping() -> None:
    packages = {"a": "A"}
    source = InMemoryPackages(packages)
    packages["b"] = "B"
    with pytest.raises(NotFound):
        await source.get("b")


# LocalPackages.


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


async def test_local_skill_md_is_preferred_over_readme(tmp_path: Path) -> None:
    _write(tmp_path / "skill" / "README.md", "readme")
    _write(tmp_path / "skill" / "SKILL.md", "---\nname: s\n---\nDo it.\r\n")
    _write(tmp_path / "skill" / "a.md", "a")
    package = await LocalPackages(tmp_path).get("skill")
    assert package == Package(
        id="skill", name="skill", type="claude-skill", text="---\nname: s\n---\nDo it."
    )


async def test_local_folder_picks_first_md_then_mdc_then_txt(tmp_path: Path) -> None:
    _write(tmp_path / "p" / "b.md", "b")
    _write(tmp_path / "p" / "a.md", "a")
    _write(tmp_path / "p" / "0.txt", "txt")
    _write(tmp_path / "q" / "rule.mdc", "mdc")
    _write(tmp_path / "q" / "0.txt", "txt")
    _write(tmp_path / "r" / "notes.txt", "txt")
    source = LocalPackages(tmp_path)
    assert (await source.get("p")).text == "a"
    assert (await source.get("q")).text == "mdc"
    assert (await source.get("q")).type == "cursor-rule"
    assert (await source.get("r")).text == "txt"


async def test_local_single_files(tmp_path: Path) -> None:
    _write(tmp_path / "rule.mdc", "Use tabs.\n")
    _write(tmp_path / "plain.txt", "Plain.")
    _write(tmp_path / "@acme" / "scoped.md", "Scoped.")
    source = LocalPackages(str(tmp_path))
    assert await source.get("rule") == Package(
        id="rule", name="rule", type="cursor-rule", text="Use tabs."
    )
    assert await source.get("plain") == Package(
        id="plain", name="plain", type="prompt", text="Plain."
    )
    assert (await source.get("@acme/scoped")).text == "Scoped."


async def test_local_prpm_json_gives_metadata_and_version(tmp_path: Path) -> None:
    _write(tmp_path / "rev" / "SKILL.md", "Review.")
    _write(
        tmp_path / "rev" / "prpm.json",
        json.dumps({"name": "Code reviewer", "format": "claude", "version": "1.2.0"}),
    )
    source = LocalPackages(tmp_path)
    expected = Package(
        id="rev", name="Code reviewer", type="claude", version="1.2.0", text="Review."
    )
    assert await source.get("rev") == expected
    assert await source.get("rev", "1.2.0") == expected
    with pytest.raises(NotFound, match=r"no version '1\.3\.0'"):
        await source.get("rev", "1.3.0")


async def test_local_version_requested_without_manifest_is_not_found(tmp_path: Path) -> None:
    _write(tmp_path / "a.md", "A")
    with pytest.raises(NotFound):
        await LocalPackages(tmp_path).get("a", "1.0")


async def test_local_prpm_json_main_and_type(tmp_path: Path) -> None:
    _write(tmp_path / "p" / "SKILL.md", "skill")
    _write(tmp_path / "p" / "prompts" / "main.txt", "main")
    _write(tmp_path / "p" / "prpm.json", json.dumps({"main": "prompts/main.txt", "type": "agent"}))
    assert await LocalPackages(tmp_path).get("p") == Package(
        id="p", name="p", type="agent", text="main"
    )


@pytest.mark.parametrize(
    ("manifest", "error", "message"),
    [
        ("not json", InvalidRequest, "not valid JSON"),
        ("[1]", InvalidRequest, "must be a JSON object"),
        ('{"version": "1/2"}', InvalidRequest, "version '1/2' is malformed"),
        ('{"name": 5}', InvalidRequest, "'name' must be a non-empty string"),
        ('{"main": "missing.md"}', NotFound, "main file 'missing.md' not found"),
        ('{"main": "../other/SKILL.md"}', NotFound, "main file"),
    ],
)
async def test_local_bad_manifests(
    tmp_path: Path, manifest: str, error: type[Exception], message: str
) -> None:
    _write(tmp_path / "p" / "SKILL.md", "skill")
    _write(tmp_path / "other" / "SKILL.md", "other")
    _write(tmp_path / "p" / "prpm.json", manifest)
    with pytest.raises(error, match=message):
        await LocalPackages(tmp_path).get("p")


async def test_local_unknown_and_empty_folder_are_not_found(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _write(tmp_path / "empty" / "data.json", "{}")
    source = LocalPackages(tmp_path)
    with pytest.raises(NotFound, match="'missing' not found"):
        await source.get("missing")
    with pytest.raises(NotFound, match="no text file"):
        await source.get("empty")


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_local_refuses_bad_ids(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidRequest):
        await LocalPackages(tmp_path).get(bad)


async def test_local_symlinks_escaping_the_folder_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "packages"
    outside = tmp_path / "outside"
    _write(outside / "secret.md", "secret")
    _write(root / "inside" / "SKILL.md", "inside")
    root.joinpath("evil.md").symlink_to(outside / "secret.md")
    root.joinpath("evildir").symlink_to(outside, target_is_directory=True)
    root.joinpath("@scope").symlink_to(outside, target_is_directory=True)
    root.joinpath("inside", "zz.md").symlink_to(outside / "secret.md")
    root.joinpath("alias").symlink_to(root / "inside", target_is_directory=True)
    source = LocalPackages(root)
    for package_id in ("evil", "evildir", "@scope/secret"):
        with pytest.raises(NotFound):
            await source.get(package_id)
    # Links that stay inside work.
    assert (await source.get("alias")).text == "inside"


async def test_local_folder_symlink_to_outside_text_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "packages"
    _write(tmp_path / "secret.md", "secret")
    (root / "p").mkdir(parents=True)
    (root / "p" / "a.md").symlink_to(tmp_path / "secret.md")
    with pytest.raises(NotFound):
        await LocalPackages(root).get("p")


async def test_local_oversize_file_is_refused_before_reading(tmp_path: Path) -> None:
    _write(tmp_path / "big.md", "x" * 11)
    _write(tmp_path / "ok.md", "x" * 10)
    source = LocalPackages(tmp_path, max_bytes=10)
    with pytest.raises(InvalidRequest) as caught:
        await source.get("big")
    assert caught.value.message == "package 'big': big.md is 11 bytes, over the cap of 10 bytes"
    assert (await source.get("ok")).text == "x" * 10


async def test_local_invalid_utf8_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "bin.md", b"ok\xff")
    with pytest.raises(InvalidRequest, match="not valid UTF-8 \\(byte 2\\)"):
        await LocalPackages(tmp_path).get("bin")


async def test_local_text_is_normalised_with_warnings(tmp_path: Path) -> None:
    _write(tmp_path / "w.md", b"\xef\xbb\xbfa\xe2\x80\x8bb\r\n")
    package = await LocalPackages(tmp_path).get("w")
    assert package.text == "a\u200bb"
    assert package.warnings == ("1 invisible character (U+200B) found",)


def test_local_directory_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a folder"):
        LocalPackages(tmp_path / "nope")


# RegistryPackages.


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry_mock() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def registry() -> AsyncIterator[RegistryPackages]:
    async with RegistryPackages(BASE, backoff=0, max_backoff=0) as source:
        yield source


def _body(**fields: Any) -> dict[str, Any]:
    return {
        "name": "Code reviewer",
        "type": "claude-skill",
        "latest_version": "1.2.0",
        "content": "Review.\r\n",
        **fields,
    }


REVIEWER = Package(
    id="reviewer", name="Code reviewer", type="claude-skill", version="1.2.0", text="Review."
)


async def test_registry_latest(registry_mock: respx.MockRouter, registry: RegistryPackages) -> None:
    route = registry_mock.get("/api/v1/packages/reviewer").respond(json=_body())
    assert await registry.get("reviewer") == REVIEWER
    assert route.call_count == 1
    request = route.calls.last.request
    assert request.headers["User-Agent"].startswith("prpm-playground/")
    assert request.headers["Accept"] == "application/json"


async def test_registry_specific_version_url_and_scoped_id(
    registry_mock: respx.MockRouter, registry: RegistryPackages
) -> None:
    route = registry_mock.get(
        url__eq=f"{BASE}/api/v1/packages/@acme%2Freviewer/1.2.0%2Bb1"
    ).respond(json={"name": "R", "format": "cursor", "version": "1.2.0+b1", "content": "R"})
    package = await registry.get("@acme/reviewer", "1.2.0+b1")
    assert package == Package(
        id="@acme/reviewer", name="R", type="cursor", version="1.2.0+b1", text="R"
    )
    assert route.calls.last.request.url.raw_path == b"/api/v1/packages/@acme%2Freviewer/1.2.0%2Bb1"


async def test_registry_base_url_prefix_is_kept(registry_mock: respx.MockRouter) -> None:
    route = registry_mock.get("/prefix/api/v1/packages/reviewer").respond(json=_body())
    async with RegistryPackages(f"{BASE}/prefix/") as source:
        assert await source.get("reviewer") == REVIEWER
    assert route.call_count == 1


async def test_registry_latest_version_object_and_versions_list(
    registry_mock: respx.MockRouter, registry: RegistryPackages
) -> None:
    registry_mock.get("/api/v1/packages/reviewer").respond(
        json={
            "name": "Code reviewer",
            "type": "claude-skill",
            "latest_version": {"version": "1.2.0", "tarball_url": "https://x/t.tgz"},
            "versions": [
                {"version": "1.1.0", "content": "Old."},
                {"version": "1.2.0", "content": "Review."},
            ],
        }
    )
    assert await registry.get("reviewer") == REVIEWER


async def test_registry_version_mismatch_in_answer_is_a_contract_error(
    registry_mock: respx.MockRouter, registry: RegistryPackages
) -> None:
    registry_mock.get("/api/v1/packages/reviewer/1.0.0").respond(json=_body(version="2.0.0"))
    with pytest.raises(PackageSourceUnavailable, match=r"requested version '1\.0\.0'"):
        await registry.get("reviewer", "1.0.0")


async def test_registry_404_is_not_found(
    registry_mock: respx.MockRouter, registry: RegistryPackages
) -> None:
    route = registry_mock.get("/api/v1/packages/missing").respond(404, json={"error": "nope"})
    with pytest.raises(NotFound, match="'missing' not found in the registry"):
        await registry.get("missing")
    assert route.call_count == 1


async def test_registry_5xx_is_retried_until_success(
    registry_mock: respx.MockRouter, registry: RegistryPackages
) -> None:
    route = registry_mock.get("/api/v1/packages/reviewer").mock(
        side_effect=[httpx.Response(503), httpx.Response(503), httpx.Response(200, json=_body())]
    )
    assert await registry.get("reviewer") == REVIEWER
    assert route.call_count == 3


@pytest.mark.parametrize("retries", [0, 1, 3])
async def test_registry_persistent_5xx_is_unavailable_after_retries(
    registry_mock: respx.MockRouter, retries: int
) -> None:
    route = registry_mock.get("/api/v1/packages/reviewer").respond(500)
    async with RegistryPackages(BASE, retries=retries, backoff=0) as source:
        with pytest.raises(PackageSourceUnavailable) as caught:
            await source.get("reviewer")
    assert route.call_count == retries + 1
    assert caught.value.code == "package_source_unavailable"
    assert caught.value.message == (
        f"package registry unavailable after {retries + 1} attempts: HTTP 500"
    )


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidRequest),
        (422, InvalidRequest),
        (401, PackageSourceUnavailable),
        (403, PackageSourceUnavailable),
        (429, PackageSourceUnavailable),
        (410, NotFound),
        (204, PackageSourceUnavailable),
    ],
)
async def test_registry_other_statuses_are_not_retried(
    registry_mock: respx.MockRouter,
    registry: RegistryPackages,
    status: int,
    error: type[Exception],
) -> None:
    route = registry_mock.get("/api/v1/packages/reviewer").respond(status)
    with pytest.raises(error, match=f"{status}|not found"):
        await registry.get("reviewer")
    assert route.call_count == 1


async def test_registry_redirects_are_not_followed(registry: RegistryPackages) -> None:
    with respx.mock(assert_all_called=False) as router:
        route = router.get(f"{BASE}/api/v1/packages/reviewer").respond(
            302, headers={"Location": "https://evil.test/x"}
        )
        evil = router.get("https://evil.test/x").respond(json=_body())
        with pytest.raises(PackageSourceUnavailable, match="HTTP 302"):
            await registry.get("reviewer")
    assert (route.call_count, evil.call_count) == (1, 0)


@pytest.mark.parametrize("failure", [httpx.ConnectError, httpx.ConnectTimeout])
async def test_registry_connect_errors_are_retried(
    registry_mock: respx.MockRouter, registry: RegistryPackages, failure: type[Exception]
) -> None:
    route = registry_mock.get("/api/v1/packages/reviewer").mock(
        side_effect=[failure("down"), httpx.Response(200, json=_body())]
    )
    assert await registry.get("reviewer") == REVIEWER
    assert route.call_count == 2


async def test_registry_connect_errors_exhaust_retries(registry_mock: respx.MockRouter) -> None:
    route = registry_mock.get("/api/v1/packages/reviewer").mock(side_effect=httpx.ConnectError)
    async with RegistryPackages(BASE, retries=2, backoff=0) as source:
        with pytest.raises(PackageSourceUnavailable, match="after 3 attempts: ConnectError"):
            await source.get("reviewer")
    assert route.call_count == 3


async def test_registry_read_timeout_is_not_retried(
    registry_mock: respx.MockRouter, registry: RegistryPackages
) -> None:
    route = registry_mock.get("/api/v1/packages/reviewer").mock(side_effect=httpx.ReadTimeout)
    with pytest.raises(PackageSourceUnavailable, match="ReadTimeout"):
        await registry.get("reviewer")
    assert route.call_count == 1


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_registry_bad_ids_send_nothing(
    registry_mock: respx.MockRouter, registry: RegistryPackages, bad: str
) -> None:
    anything = registry_mock.route().respond(json=_body())
    with pytest.raises(InvalidRequest):
        await registry.get(bad)
    assert anything.call_count == 0


async def test_registry_bad_version_sends_nothing(
    registry_mock: respx.MockRouter, registry: RegistryPackages
) -> None:
    anything = registry_mock.route().respond(json=_body())
    with pytest.raises(InvalidRequest):
        await registry.get("reviewer", "../../admin")
    assert anything.call_count == 0


async def test_registry_huge_streamed_body_is_abandoned(
    registry_mock: respx.MockRouter,
) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1000):
            sent += 1
            yield b"x" * 1024

    registry_mock.get("/api/v1/packages/huge").mock(
        return_value=httpx.Response(200, content=endless())
    )
    # Body cap: 2 * 1000 + 64 KiB = 67,536 bytes, i.e. 66 chunks of 1 KiB.
    async with RegistryPackages(BASE, max_bytes=1000) as source:
        with pytest.raises(InvalidRequest, match="over 67536 bytes"):
            await source.get("huge")
    assert sent == 66


async def test_registry_body_over_explicit_cap_is_refused(
    registry_mock: respx.MockRouter,
) -> None:
    registry_mock.get("/api/v1/packages/big").respond(
        200, content=b"{}" + b" " * 200, headers={"Content-Length": "202"}
    )
    async with RegistryPackages(BASE, max_bytes=10, max_body_bytes=100) as source:
        with pytest.raises(InvalidRequest, match="over 100 bytes"):
            await source.get("big")


async def test_registry_content_over_text_cap_is_refused(
    registry_mock: respx.MockRouter,
) -> None:
    registry_mock.get("/api/v1/packages/reviewer").respond(json=_body(content="x" * 11))
    async with RegistryPackages(BASE, max_bytes=10) as source:
        with pytest.raises(InvalidRequest, match="over the cap of 10 bytes"):
            await source.get("reviewer")


async def test_registry_warnings_reach_the_package(
    registry_mock: respx.MockRouter, registry: RegistryPackages
) -> None:
    registry_mock.get("/api/v1/packages/reviewer").respond(json=_body(content="a\u202eb"))
    assert (await registry.get("reviewer")).warnings == (
        "1 bidirectional control character (U+202E) found",
    )


@pytest.mark.parametrize(
    ("payload", "error", "message"),
    [
        (b"not json", PackageSourceUnavailable, "invalid JSON"),
        (b"[]", PackageSourceUnavailable, "a list, not an object"),
        (json.dumps(_body(content=None)).encode(), InvalidRequest, "no text content"),
        (json.dumps(_body(content=5)).encode(), PackageSourceUnavailable, "'content' must be"),
        (json.dumps(_body(name=5)).encode(), PackageSourceUnavailable, "'name' must be"),
        (
            json.dumps(_body(latest_version="../x")).encode(),
            PackageSourceUnavailable,
            "'latest_version' must be a well-formed version",
        ),
        (
            json.dumps(_body(content=None, versions="x")).encode(),
            PackageSourceUnavailable,
            "'versions' must be a list",
        ),
    ],
)
async def test_registry_malformed_answers(
    registry_mock: respx.MockRouter,
    registry: RegistryPackages,
    payload: bytes,
    error: type[Exception],
    message: str,
) -> None:
    registry_mock.get("/api/v1/packages/reviewer").respond(200, content=payload)
    with pytest.raises(error, match=message):
        await registry.get("reviewer")


async def test_registry_cache_hits_within_ttl_and_expires_after(
    registry_mock: respx.MockRouter,
) -> None:
    route = registry_mock.get("/api/v1/packages/reviewer").respond(json=_body())
    clock = FakeClock()
    async with RegistryPackages(BASE, cache_ttl=60, clock=clock) as source:
        assert await source.get("reviewer") == REVIEWER
        clock.now += 59.9
        assert await source.get("reviewer") == REVIEWER
        assert route.call_count == 1
        clock.now += 0.1
        assert await source.get("reviewer") == REVIEWER
        assert route.call_count == 2


async def test_registry_latest_also_caches_its_version(registry_mock: respx.MockRouter) -> None:
    latest = registry_mock.get("/api/v1/packages/reviewer").respond(json=_body())
    pinned = registry_mock.get("/api/v1/packages/reviewer/1.2.0").respond(json=_body())
    async with RegistryPackages(BASE, clock=FakeClock()) as source:
        await source.get("reviewer")
        assert await source.get("reviewer", "1.2.0") == REVIEWER
    assert (latest.call_count, pinned.call_count) == (1, 0)


async def test_registry_cache_is_bounded_lru(registry_mock: respx.MockRouter) -> None:
    a = registry_mock.get("/api/v1/packages/a").respond(json=_body())
    b = registry_mock.get("/api/v1/packages/b").respond(json=_body(latest_version=None))
    async with RegistryPackages(BASE, cache_size=1, clock=FakeClock()) as source:
        await source.get("a")
        await source.get("a")
        await source.get("b")
        await source.get("a")
    assert (a.call_count, b.call_count) == (2, 1)


async def test_registry_cache_disabled_with_zero_ttl(registry_mock: respx.MockRouter) -> None:
    route = registry_mock.get("/api/v1/packages/reviewer").respond(json=_body())
    async with RegistryPackages(BASE, cache_ttl=0) as source:
        await source.get("reviewer")
        await source.get("reviewer")
    assert route.call_count == 2


async def test_registry_failures_are_not_cached(
    registry_mock: respx.MockRouter, registry: RegistryPackages
) -> None:
    route = registry_mock.get("/api/v1/packages/reviewer").mock(
        side_effect=[httpx.Response(404), httpx.Response(200, json=_body())]
    )
    with pytest.raises(NotFound):
        await registry.get("reviewer")
    assert await registry.get("reviewer") == REVIEWER
    assert route.call_count == 2


async def test_registry_concurrent_gets_share_one_request(
    registry_mock: respx.MockRouter, registry: RegistryPackages
) -> None:
    route = registry_mock.get("/api/v1/packages/reviewer").respond(json=_body())
    results = await asyncio.gather(*(registry.get("reviewer") for _ in range(5)))
    assert results == [REVIEWER] * 5
    assert route.call_count == 1


async def test_registry_concurrent_failures_are_shared_too(
    registry_mock: respx.MockRouter, registry: RegistryPackages
) -> None:
    route = registry_mock.get("/api/v1/packages/reviewer").respond(404)
    results = await asyncio.gather(
        *(registry.get("reviewer") for _ in range(3)), return_exceptions=True
    )
    assert [type(result) for result in results] == [NotFound] * 3
    assert route.call_count == 1


async def test_registry_a_cancelled_caller_does_not_cancel_the_others(
    registry_mock: respx.MockRouter, registry: RegistryPackages
) -> None:
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        return httpx.Response(200, json=_body())

    route = registry_mock.get("/api/v1/packages/reviewer").mock(side_effect=slow)
    first = asyncio.ensure_future(registry.get("reviewer"))
    second = asyncio.ensure_future(registry.get("reviewer"))
    await asyncio.sleep(0.01)
    first.cancel()
    release.set()
    assert await second == REVIEWER
    with pytest.raises(asyncio.CancelledError):
        await first
    assert route.call_count == 1


async def test_registry_client_ownership(registry_mock: respx.MockRouter) -> None:
    registry_mock.get("/api/v1/packages/reviewer").respond(json=_body())
    async with httpx.AsyncClient(headers={"User-Agent": "host-app/2"}) as client:
        async with RegistryPackages(BASE, client=client) as source:
            assert await source.get("reviewer") == REVIEWER
        assert not client.is_closed
        assert registry_mock.calls.last.request.headers["User-Agent"] == "host-app/2"
    owned = RegistryPackages(BASE)
    await owned.aclose()
    assert owned._client.is_closed


@pytest.mark.parametrize(
    "base_url",
    [
        "ftp://registry.test",
        "https://registry.test/?q=1",
        "https://registry.test/#f",
        "registry.test",
        "https://user:secret@registry.test",
        "",
    ],
)
def test_registry_base_url_is_checked(base_url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        RegistryPackages(base_url)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"retries": -1},
        {"backoff": -1},
        {"max_bytes": 0},
        {"cache_ttl": -1},
        {"cache_size": -1},
        {"max_bytes": 100, "max_body_bytes": 99},
    ],
)
def test_registry_arguments_are_checked(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RegistryPackages(BASE, **kwargs)


def test_sources_package_exports() -> None:
    import prpm_playground.sources as sources

    assert set(sources.__all__) == {
        "InMemoryPackages",
        "LocalPackages",
        "Package",
        "PackageSource",
        "PackageSourceUnavailable",
        "PackageType",
        "RegistryPackages",
    }
    assert all(hasattr(sources, name) for name in sources.__all__)
    assert issubclass(PackageSourceUnavailable, PlaygroundError)
    assert PackageSourceUnavailable.code == "package_source_unavailable"
