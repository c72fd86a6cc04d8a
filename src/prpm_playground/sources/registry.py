"""Packages fetched from the PRPM registry over HTTP.

The client speaks two endpoints of the registry's API, relative to the base
URL the host configured:

* ``GET {base}/api/v1/packages/{id}`` — the package's latest version;
* ``GET {base}/api/v1/packages/{id}/{version}`` — one version.

Both answer a JSON object with the package's ``name``, ``type`` (or
``format``), its version (``version``, or on the first endpoint
``latest_version``, either a string or an object with a ``version``) and its
text in ``content`` — or, failing that, in the entry of a ``versions`` list
whose ``version`` matches. The id is one path segment (``@scope/name`` is sent
as ``@scope%2Fname``), so no id can change the host or add path segments.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from ..errors import InvalidRequest, NotFound, PackageSourceUnavailable
from ._text import DEFAULT_MAX_PACKAGE_BYTES, check_package_id, check_version, normalise
from .base import Package

__all__ = ["RegistryPackages"]

logger = logging.getLogger(__name__)

_JSON_OVERHEAD = 64 * 1024
_NOT_FOUND = frozenset({404, 410})
# The registry refused *us* (credentials, quota): nothing the user can fix.
_REFUSED_US = frozenset({401, 403, 407, 429})

_CacheKey = tuple[str, str | None]


class _Retryable(Exception):
    """A failure worth another attempt: the request never arrived, or a 5xx."""


def _user_agent() -> str:
    try:
        version = importlib.metadata.version("prpm-playground")
    except importlib.metadata.PackageNotFoundError:
        version = "0+unknown"
    return f"prpm-playground/{version}"


def _check_base_url(base_url: str) -> httpx.URL:
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"base_url is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("base_url must be an absolute http or https URL")
    if url.query or url.fragment:
        raise ValueError("base_url must not have a query or a fragment")
    if url.userinfo:
        # Credentials in a URL end up in logs; pass an authenticated client instead.
        raise ValueError("base_url must not contain credentials; pass client= with auth")
    return url


class RegistryPackages:
    """A package source that fetches packages from the PRPM registry.

    Requests time out after ``timeout`` seconds. Connection failures (including
    connect timeouts) and 5xx answers are retried with exponential backoff; a
    read timeout is not, because the registry did receive the request and is
    merely slow: repeating it would multiply the wait of a user who is waiting
    for a run to start. Redirects are not followed, so the host alone decides
    where requests go. The body is streamed and abandoned as soon as it grows
    past ``max_body_bytes``; the text is then checked against ``max_bytes``.

    Successes are cached for ``cache_ttl`` seconds (least recently used entries
    are dropped beyond ``cache_size``); failures are not. Concurrent requests
    for the same package and version share one fetch.

    Answers map to errors this way: 404 and 410 raise ``NotFound``; 401, 403,
    407 and 429 (the registry refusing the playground itself), 3xx, 5xx after
    the retries, timeouts and malformed bodies raise ``PackageSourceUnavailable``;
    any other 4xx raises ``InvalidRequest`` (the registry refused the id or
    version), as does a package without text content.

    Args:
        base_url: The registry's root, e.g. ``"https://registry.prpm.dev"``;
            http or https, without query or fragment. Fixed for the source's life.
        client: An ``httpx.AsyncClient`` to send requests with; it is never
            closed by this class. By default one is created, and closed by
            ``aclose()`` or ``async with``.
        timeout: Seconds allowed for each phase of a request (connect, read, …).
        retries: Extra attempts after the first, for retryable failures; 0
            means a single attempt.
        backoff: First wait between attempts, in seconds; it doubles each time.
        max_backoff: Longest wait between attempts, in seconds.
        max_bytes: The largest package text accepted, in UTF-8 bytes.
        max_body_bytes: The largest response body read; defaults to twice
            ``max_bytes`` plus 64 KiB, room for JSON escaping and metadata.
        cache_ttl: Seconds a fetched package is served from the cache; 0 disables it.
        cache_size: Most packages kept in the cache.
        clock: Monotonic seconds, for the cache; tests pass a fake.

    Raises:
        ValueError: An argument is out of range or ``base_url`` is not acceptable.

    Example:
        ```python
        async with RegistryPackages("https://registry.prpm.dev") as registry:
            package = await registry.get("@prpm/code-reviewer", "1.2.0")
        ```
    """

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 4.0,
        max_bytes: int = DEFAULT_MAX_PACKAGE_BYTES,
        max_body_bytes: int | None = None,
        cache_ttl: float = 300.0,
        cache_size: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError("retries must be an int >= 0")
        if not backoff >= 0 or not max_backoff >= 0:
            raise ValueError("backoff and max_backoff must be >= 0")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError("max_bytes must be a positive int")
        if max_body_bytes is None:
            max_body_bytes = 2 * max_bytes + _JSON_OVERHEAD
        elif max_body_bytes < max_bytes:
            raise ValueError("max_body_bytes must be at least max_bytes")
        if not cache_ttl >= 0:
            raise ValueError("cache_ttl must be >= 0")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError("cache_size must be an int >= 0")
        self._base = _check_base_url(base_url)
        # Kept percent-encoded, so a prefix such as /a%2Fb/ is sent as configured.
        self._prefix = self._base.raw_path.decode("ascii").rstrip("/")
        self._user_agent = _user_agent()
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            headers={"User-Agent": self._user_agent}, follow_redirects=False
        )
        self._timeout = httpx.Timeout(timeout)
        self._retries = retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._max_bytes = max_bytes
        self._max_body_bytes = max_body_bytes
        self._cache_ttl = cache_ttl
        self._cache_size = cache_size
        self._clock = clock
        self._cache: OrderedDict[_CacheKey, tuple[float, Package]] = OrderedDict()
        self._inflight: dict[_CacheKey, asyncio.Task[Package]] = {}

    @property
    def base_url(self) -> str:
        """The registry's root URL, as given at construction."""
        return str(self._base)

    async def get(self, package_id: str, version: str | None = None) -> Package:
        """Fetch a package: its latest version, or ``version``.

        Raises:
            InvalidRequest: The id or version is malformed (nothing is sent),
                the text is over the cap, or the registry refused the request.
            NotFound: The registry has no such package or version.
            PackageSourceUnavailable: The registry is unreachable or failing.
        """
        check_package_id(package_id)
        check_version(version)
        key: _CacheKey = (package_id, version)
        cached = self._cached(key)
        if cached is not None:
            return cached
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch(package_id, version))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._settle(key, done))
        # Shielded: one caller giving up must not cancel the fetch the others await.
        return await asyncio.shield(task)

    async def aclose(self) -> None:
        """Close the HTTP client, if this source created it."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # Cache.

    def _cached(self, key: _CacheKey) -> Package | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        expires_at, package = entry
        if self._clock() >= expires_at:
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return package

    def _store(self, key: _CacheKey, package: Package) -> None:
        if self._cache_ttl <= 0 or self._cache_size <= 0:
            return
        self._cache[key] = (self._clock() + self._cache_ttl, package)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _settle(self, key: _CacheKey, task: asyncio.Task[Package]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if task.cancelled() or task.exception() is not None:
            return  # failures are not cached; every waiter has seen the error
        package = task.result()
        if key[1] is None and package.version is not None:
            # A version never changes once published: the latest also answers by
            # number. Stored first, so in a full cache it goes before the key asked for.
            self._store((key[0], package.version), package)
        self._store(key, package)

    # HTTP.

    def _url(self, package_id: str, version: str | None) -> httpx.URL:
        # quote(..., safe="@") turns the scope's "/" into %2F: the id stays one segment.
        path = f"{self._prefix}/api/v1/packages/{quote(package_id, safe='@')}"
        if version is not None:
            path += f"/{quote(version, safe='')}"
        return self._base.copy_with(raw_path=path.encode("ascii"))

    async def _fetch(self, package_id: str, version: str | None) -> Package:
        url = self._url(package_id, version)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retries + 1),
            wait=wait_exponential(multiplier=self._backoff, max=self._max_backoff),
            retry=retry_if_exception_type(_Retryable),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    body = await self._request(url, package_id)
        except _Retryable as exc:
            raise PackageSourceUnavailable(
                f"package registry unavailable after {self._retries + 1} attempts: {exc}"
            ) from exc
        return self._parse(body, package_id, version)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        # Keep a host's own User-Agent; replace only httpx's default.
        if self._client.headers.get("User-Agent", "").startswith("python-httpx/"):
            headers["User-Agent"] = self._user_agent
        return headers

    async def _request(self, url: httpx.URL, package_id: str) -> bytes:
        try:
            async with self._client.stream(
                "GET", url, headers=self._headers(), timeout=self._timeout, follow_redirects=False
            ) as response:
                self._check_status(response.status_code, package_id)
                return await self._read_capped(response, package_id)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise PackageSourceUnavailable(
                f"package registry failed: {type(exc).__name__}: {exc}"
            ) from exc

    @staticmethod
    def _check_status(status: int, package_id: str) -> None:
        if status >= 500:
            raise _Retryable(f"HTTP {status}")
        if status in _NOT_FOUND:
            raise NotFound(f"package {package_id!r} not found in the registry")
        if status in _REFUSED_US:
            raise PackageSourceUnavailable(f"package registry refused the request: HTTP {status}")
        if 400 <= status < 500:
            raise InvalidRequest(f"package registry rejected {package_id!r}: HTTP {status}")
        if status != 200:
            raise PackageSourceUnavailable(f"package registry answered HTTP {status}")

    async def _read_capped(self, response: httpx.Response, package_id: str) -> bytes:
        limit = self._max_body_bytes
        too_large = InvalidRequest(
            f"package {package_id!r} is too large: the registry's answer is over "
            f"{limit} bytes (text cap {self._max_bytes} bytes)"
        )
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks: list[bytes] = []
        received = 0
        async for chunk in response.aiter_bytes():
            received += len(chunk)
            if received > limit:
                # Leaving the stream unread closes the connection: nothing more is read.
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    # Parsing.

    def _parse(self, body: bytes, package_id: str, version: str | None) -> Package:
        try:
            data = json.loads(body)
        except ValueError:
            raise PackageSourceUnavailable(
                f"package registry sent invalid JSON for {package_id!r}"
            ) from None
        if not isinstance(data, dict):
            raise PackageSourceUnavailable(
                f"package registry sent a {type(data).__name__}, not an object, for {package_id!r}"
            )
        resolved = _resolved_version(data, package_id, version)
        content = data.get("content")
        if content is None:
            content = _content_from_versions(data, package_id, resolved)
        if content is None:
            raise InvalidRequest(f"package {package_id!r} has no text content in the registry")
        if not isinstance(content, str):
            raise _contract(package_id, "content", "a string")
        text, warnings = normalise(content, max_bytes=self._max_bytes)
        kind = _optional_str(data, "type", package_id) or _optional_str(data, "format", package_id)
        return Package(
            id=package_id,
            name=_optional_str(data, "name", package_id) or package_id,
            type=kind or "prompt",
            version=resolved,
            text=text,
            warnings=warnings,
        )


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    logger.warning("package registry attempt %d failed (%s); retrying", state.attempt_number, error)


def _contract(package_id: str, field: str, expected: str) -> PackageSourceUnavailable:
    return PackageSourceUnavailable(
        f"package registry sent a malformed answer for {package_id!r}: {field!r} must be {expected}"
    )


def _optional_str(data: dict[str, Any], key: str, package_id: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _contract(package_id, key, "a non-empty string")
    return value


def _checked_version(value: object, package_id: str, field: str) -> str:
    if not isinstance(value, str):
        raise _contract(package_id, field, "a version string")
    try:
        checked = check_version(value)
    except InvalidRequest:
        raise _contract(package_id, field, "a well-formed version") from None
    assert checked is not None
    return checked


def _resolved_version(data: dict[str, Any], package_id: str, requested: str | None) -> str | None:
    raw = data.get("version")
    field = "version"
    if requested is None and data.get("latest_version") is not None:
        raw, field = data["latest_version"], "latest_version"
        if isinstance(raw, dict):
            raw, field = raw.get("version"), "latest_version.version"
    if raw is None:
        return requested
    version = _checked_version(raw, package_id, field)
    if requested is not None and version != requested:
        raise _contract(package_id, field, f"the requested version {requested!r}")
    return version


def _content_from_versions(data: dict[str, Any], package_id: str, version: str | None) -> object:
    versions = data.get("versions")
    if versions is None or version is None:
        return None
    if not isinstance(versions, list):
        raise _contract(package_id, "versions", "a list")
    for entry in versions:
        if isinstance(entry, dict) and entry.get("version") == version:
            return entry.get("content")
    return None
