"""The Playground facade: one of each service, wired together, and the web app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Self

from sqlalchemy.ext.asyncio import AsyncEngine

from ._clock import Clock, utc_now
from ._loops import LoopLock
from .catalog import ModelCatalog
from .config import CreditPolicy, RateLimits
from .errors import InvalidRequest
from .estimator import Estimator
from .ledger import CreditLedger
from .pricing import Pricing
from .providers.base import Provider
from .reset import ResetJob
from .runner import PlaygroundRunner
from .sessions import SessionService
from .sources.base import PackageSource
from .storage.sql import SQLAlchemyStorage
from .web.app import Authenticate, create_app

if TYPE_CHECKING:
    from starlette.types import ASGIApp

__all__ = ["Playground"]

logger = logging.getLogger(__name__)


class Playground:
    """The whole playground: storage, ledger, estimator, runner, sessions, reset job, web API.

    Construction only wires objects together; nothing touches the database
    until ``startup()`` (or ``async with playground``, ``lifespan``, or the
    web app's first request) migrates the schema.

    Args:
        database_url: Where to keep everything (``sqlite+aiosqlite:///…`` or
            ``postgresql+asyncpg://…``), or an ``AsyncEngine`` the host owns.
            Defaults to ``sqlite+aiosqlite:///./prpm_playground.db``. Give
            this or ``storage``, not both.
        storage: A ``SQLAlchemyStorage`` the host built; the playground never
            closes it.
        provider: The model provider, required: ``AnthropicProvider()`` in
            production. ``OfflineProvider()`` answers without a model, for
            demos and tests; it is never chosen silently.
        packages: Where packages come from, required: ``RegistryPackages``,
            ``LocalPackages`` or ``InMemoryPackages``.
        payments: The payment provider, kept for the payment endpoints; may be None.
        policy: Credit policy; defaults to ``CreditPolicy()`` (PRPM's numbers).
        clock: Returns the current aware UTC time; tests pass their own.
        catalog: Models and prices; defaults to ``ModelCatalog()``.
        pricing: Tokens to credits; defaults to ``TokenPricing()``.
        purchase_url: Where users buy credits; sent with every 402 answer.
        rate_limits: The web API's per-user limits; defaults to ``RateLimits()``.
        table_prefix: Prefix of every table, when the playground builds the
            storage (``prpm_`` by default).
        migrate: Create or upgrade the schema at start-up. Pass False when
            migrations run separately (``prpm-playground db upgrade``).

    Raises:
        InvalidRequest: A missing provider or package source, or conflicting arguments.

    Example:
        ```python
        playground = Playground(
            "postgresql+asyncpg://app@db/app",
            provider=AnthropicProvider(),
            packages=RegistryPackages("https://registry.prpm.dev"),
            purchase_url="/billing/credits",
        )
        app.mount("/api/v1/playground", playground.asgi_app(authenticate=current_user_id))
        ```
    """

    def __init__(
        self,
        database_url: str | AsyncEngine | None = None,
        *,
        storage: SQLAlchemyStorage | None = None,
        provider: Provider | None = None,
        packages: PackageSource | None = None,
        payments: object | None = None,
        policy: CreditPolicy | None = None,
        clock: Clock | None = None,
        catalog: ModelCatalog | None = None,
        pricing: Pricing | None = None,
        purchase_url: str | None = None,
        rate_limits: RateLimits | None = None,
        table_prefix: str | None = None,
        migrate: bool = True,
    ) -> None:
        if provider is None:
            raise InvalidRequest(
                "provider is required: pass AnthropicProvider() (or, for demos and tests, "
                "OfflineProvider(), which calls no model)"
            )
        if packages is None:
            raise InvalidRequest(
                "packages is required: pass RegistryPackages(...), LocalPackages(...) "
                "or InMemoryPackages({...})"
            )
        if storage is not None and (database_url is not None or table_prefix is not None):
            raise InvalidRequest("give storage, or database_url and table_prefix, not both")
        if purchase_url is not None and not isinstance(purchase_url, str):
            raise InvalidRequest("purchase_url must be a string or None")
        if rate_limits is not None and not isinstance(rate_limits, RateLimits):
            raise InvalidRequest("rate_limits must be a RateLimits")
        self._owns_storage = storage is None
        self._storage = storage or SQLAlchemyStorage(
            database_url, table_prefix=table_prefix or "prpm_"
        )
        self._policy = policy or CreditPolicy()
        self._clock: Clock = clock or utc_now
        self._provider = provider
        self._packages = packages
        self._payments = payments
        self._purchase_url = purchase_url
        self._rate_limits = rate_limits or RateLimits()
        self._migrate = migrate
        self._ledger = CreditLedger(self._storage, policy=self._policy, clock=self._clock)
        self._estimator = Estimator(
            self._ledger,
            packages,
            provider,
            self._storage,
            catalog=catalog,
            pricing=pricing,
            policy=self._policy,
        )
        self._runner = PlaygroundRunner(
            self._ledger, self._estimator, provider, self._storage, clock=self._clock
        )
        self._sessions = SessionService(self._storage, clock=self._clock)
        self._reset_job = ResetJob(self._storage, policy=self._policy, clock=self._clock)
        self._started = False
        self._start_lock = LoopLock()

    # -- the services ---------------------------------------------------------------

    @property
    def ledger(self) -> CreditLedger:
        """The credit ledger."""
        return self._ledger

    @property
    def runner(self) -> PlaygroundRunner:
        """Runs packages against the model, held then charged."""
        return self._runner

    @property
    def sessions(self) -> SessionService:
        """Saved sessions, share links and feedback."""
        return self._sessions

    @property
    def estimator(self) -> Estimator:
        """Prices runs before they run."""
        return self._estimator

    @property
    def reset_job(self) -> ResetJob:
        """Renews allowances and expires credits; call ``run()`` from your scheduler."""
        return self._reset_job

    @property
    def storage(self) -> SQLAlchemyStorage:
        """The storage every service shares."""
        return self._storage

    @property
    def policy(self) -> CreditPolicy:
        """The credit policy."""
        return self._policy

    @property
    def provider(self) -> Provider:
        """The model provider."""
        return self._provider

    @property
    def packages(self) -> PackageSource:
        """Where packages come from."""
        return self._packages

    @property
    def payments(self) -> object | None:
        """The payment provider given at construction, if any."""
        return self._payments

    @property
    def purchase_url(self) -> str | None:
        """Where users buy credits, or None."""
        return self._purchase_url

    @property
    def rate_limits(self) -> RateLimits:
        """The web API's per-user limits."""
        return self._rate_limits

    @property
    def clock(self) -> Clock:
        """The clock every service reads."""
        return self._clock

    @property
    def started(self) -> bool:
        """True between a successful ``startup()`` and ``aclose()``."""
        return self._started

    # -- lifecycle --------------------------------------------------------------------

    async def startup(self) -> None:
        """Migrate the schema (unless ``migrate=False``) and mark the playground started.

        Idempotent, and safe to call from many concurrent tasks: the work is
        done once, the others wait for it. If it fails, the next call tries again.
        """
        if self._started:
            return
        async with self._start_lock.get():
            if self._started:
                return
            if self._migrate:
                await self._storage.migrate()
            self._started = True
            logger.info("playground started")

    async def aclose(self) -> None:
        """Release what the playground opened: the storage it built from a URL.

        Settlements still retrying in the background are stopped (and
        recorded in ``runner.unsettled``). A storage, engine, provider or
        package source passed in by the host
        is left open: they are the host's to close. ``startup()`` may be
        called again afterwards.
        """
        self._started = False
        await self.runner.aclose()
        if self._owns_storage:
            await self._storage.close()

    async def __aenter__(self) -> Self:
        await self.startup()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Start the playground for the life of an app; usable as Starlette's ``lifespan``.

        Args:
            app: The app whose lifespan this is (unused; Starlette passes it).

        Example:
            ```python
            app = Starlette(routes=[...], lifespan=playground.lifespan)

            @asynccontextmanager
            async def lifespan(app):            # composed with the host's own
                async with playground.lifespan(app):
                    yield
            ```
        """
        await self.startup()
        try:
            yield
        finally:
            await self.aclose()

    # -- the web API ----------------------------------------------------------------

    def asgi_app(
        self,
        authenticate: Authenticate,
        *,
        max_body_bytes: int = 256 * 1024,
        keepalive: float = 15.0,
    ) -> ASGIApp:
        """Build the web API as an ASGI app, to mount anywhere.

        The app starts the playground on its first request, so it works
        mounted (where no lifespan events arrive); compose ``lifespan`` to
        start it with the host instead.

        Args:
            authenticate: ``authenticate(request) -> user id | None``, sync or
                async, where ``request`` is a ``starlette.requests.Request``.
                None is answered with 401.
            max_body_bytes: Largest request body, in bytes (413 above it).
            keepalive: Seconds of silence before an event stream sends a
                keep-alive comment.

        Returns:
            A Starlette application (a plain ASGI callable).
        """
        return create_app(
            self, authenticate=authenticate, max_body_bytes=max_body_bytes, keepalive=keepalive
        )
