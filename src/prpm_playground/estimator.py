"""The Estimator: what a run would send and cost, before anything is held.

The runner prepares every run through ``Estimator.prepare``, so the numbers
a user sees before running are the numbers the run holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass

from ._validation import check_text_id
from .catalog import ModelCatalog, ModelInfo
from .config import CreditPolicy
from .errors import InvalidRequest, NotFound
from .ledger import CreditLedger
from .models import Estimate, RunRequest, Usage
from .pricing import Pricing, TokenPricing
from .providers.base import CompletionRequest, Message, Provider
from .providers.tokens import approx_request_tokens
from .sources.base import Package, PackageSource
from .storage.base import SessionRecord, SessionStorage

__all__ = ["Estimator", "PreparedRun"]

logger = logging.getLogger(__name__)

_COUNT_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class PreparedRun:
    """Everything a run needs, checked: what to send, and what it may cost.

    Attributes:
        user_id: The user.
        request: The request as given.
        model: The resolved model.
        package: The package, or None for a run without a prompt.
        session: The session being continued, or None for a new one.
        completion: What the provider is sent.
        input_tokens: Counted (or approximated) input tokens.
        input_tokens_exact: True if the provider counted them.
        max_credits: The most the run can cost; what it holds.
        expected_output_tokens: Output assumed for ``expected_credits``.
        expected_credits: The cost with that much output.
    """

    user_id: str
    request: RunRequest
    model: ModelInfo
    package: Package | None
    session: SessionRecord | None
    completion: CompletionRequest
    input_tokens: int
    input_tokens_exact: bool
    max_credits: int
    expected_output_tokens: int
    expected_credits: int

    @property
    def package_id(self) -> str | None:
        """The package id the session records."""
        return self.package.id if self.package else None

    @property
    def package_version(self) -> str | None:
        """The resolved package version the session records."""
        return self.package.version if self.package else None


class Estimator:
    """Prices a run before it runs.

    Input tokens (system prompt, history and input) come from the provider's
    token counter when it has one, cached by content hash and bounded by
    ``policy.limits.token_count_timeout``; otherwise from the local
    approximation (``approx_request_tokens``). Output is bounded by
    ``max_tokens``.

    Args:
        ledger: For the user's available credits.
        packages: Where packages come from.
        provider: The model provider (for its token counter).
        sessions: Where sessions live, to continue one.
        catalog: Models and prices; defaults to ``ModelCatalog()``.
        pricing: Tokens to credits; defaults to ``TokenPricing()``.
        policy: Credit policy and limits; defaults to the ledger's.
    """

    def __init__(
        self,
        ledger: CreditLedger,
        packages: PackageSource,
        provider: Provider,
        sessions: SessionStorage,
        *,
        catalog: ModelCatalog | None = None,
        pricing: Pricing | None = None,
        policy: CreditPolicy | None = None,
    ) -> None:
        self.ledger = ledger
        self.packages = packages
        self.provider = provider
        self.sessions = sessions
        self.catalog = catalog or ModelCatalog()
        self.pricing: Pricing = pricing or TokenPricing()
        self.policy = policy or ledger.policy
        self._counts: OrderedDict[str, int] = OrderedDict()

    async def estimate(self, user_id: str, request: RunRequest) -> Estimate:
        """Return what ``request`` would cost ``user_id`` now.

        Raises:
            InvalidRequest: Unknown model, input or package over the limits,
                or more than the model's context window.
            NotFound: Unknown package, or a session the user does not own.
        """
        prepared = await self.prepare(user_id, request)
        balance = await self.ledger.balance(user_id)
        return self.estimate_of(prepared, balance.available)

    @staticmethod
    def estimate_of(prepared: PreparedRun, available: int) -> Estimate:
        """The ``Estimate`` of a prepared run for a user with ``available`` credits."""
        return Estimate(
            credits=prepared.expected_credits,
            max_credits=prepared.max_credits,
            input_tokens=prepared.input_tokens,
            input_tokens_exact=prepared.input_tokens_exact,
            max_output_tokens=prepared.completion.max_tokens,
            expected_output_tokens=prepared.expected_output_tokens,
            model=prepared.model.id,
            can_afford=available >= prepared.max_credits,
            available=available,
        )

    async def prepare(
        self, user_id: str, request: RunRequest, *, ask_provider: bool = True
    ) -> PreparedRun:
        """Check ``request`` and work out what to send and what it may cost.

        Nothing is held or written.

        Args:
            user_id: The user.
            request: The run.
            ask_provider: Count input tokens with the provider when the count
                is not cached. Runs pass False: a count costs a round trip to
                the provider before the first token, so a run uses a count an
                earlier estimate cached, or else the local approximation,
                which errs high.
        """
        check_text_id(user_id, "user_id")
        if not isinstance(request, RunRequest):
            raise InvalidRequest("request must be a RunRequest")
        limits = self.policy.limits
        if len(request.input) > limits.max_input_chars:
            raise InvalidRequest(
                f"input is {len(request.input):,} characters; "
                f"the limit is {limits.max_input_chars:,}"
            )
        model = self.catalog.resolve(request.model)
        if request.max_tokens > model.max_output_tokens:
            raise InvalidRequest(
                f"max_tokens {request.max_tokens:,} is over {model.id}'s "
                f"limit of {model.max_output_tokens:,}"
            )
        session = await self._session(user_id, request)
        package = await self._package(request, session)
        history: list[Message] = []
        for exchange in session.exchanges if session else ():
            history.append(Message("user", exchange.input))
            history.append(Message("assistant", exchange.response))
        completion = CompletionRequest(
            model=model.id,
            system=package.text if package else None,
            messages=(*history, Message("user", request.input)),
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            user_hash=user_hash(user_id),
            deadline=limits.run_deadline,
        )
        input_tokens, exact = await self._count(completion, ask_provider)
        if input_tokens + request.max_tokens > model.context_window:
            raise InvalidRequest(
                f"{input_tokens:,} input tokens plus max_tokens {request.max_tokens:,} "
                f"exceed {model.id}'s context window of {model.context_window:,} tokens"
            )
        worst = _worst_case(model, input_tokens, request.max_tokens)
        expected = Usage(
            input_tokens=input_tokens,
            output_tokens=min(request.max_tokens, limits.expected_output_tokens),
        )
        return PreparedRun(
            user_id=user_id,
            request=request,
            model=model,
            package=package,
            session=session,
            completion=completion,
            input_tokens=input_tokens,
            input_tokens_exact=exact,
            max_credits=self.pricing.credits(model, worst, self.policy),
            expected_output_tokens=expected.output_tokens,
            expected_credits=self.pricing.credits(model, expected, self.policy),
        )

    def credits_for(self, model: ModelInfo, usage: Usage) -> int:
        """What ``usage`` on ``model`` costs under this estimator's pricing and policy."""
        return self.pricing.credits(model, usage, self.policy)

    # -- internals ------------------------------------------------------------------

    async def _session(self, user_id: str, request: RunRequest) -> SessionRecord | None:
        if request.session_id is None:
            return None
        session = await self.sessions.get_session(request.session_id)
        if session is None or session.user_id != user_id:
            raise NotFound(f"no session {request.session_id!r}")
        if request.package_id is not None and request.package_id != session.package_id:
            raise InvalidRequest("a session keeps its package: leave package_id out to continue it")
        if request.no_prompt and not session.no_prompt:
            raise InvalidRequest("this session runs with a package; no_prompt cannot change")
        messages = 2 * (session.exchange_count + 1)
        if messages > self.policy.limits.max_session_messages:
            raise InvalidRequest(
                f"the session is full: at most {self.policy.limits.max_session_messages} "
                "messages; start a new session"
            )
        return session

    async def _package(self, request: RunRequest, session: SessionRecord | None) -> Package | None:
        if session is not None:
            if session.no_prompt or session.package_id is None:
                return None
            package_id, version = session.package_id, session.package_version
        elif request.no_prompt or request.package_id is None:
            return None
        else:
            package_id, version = request.package_id, request.package_version
        package = await self.packages.get(package_id, version)
        size = len(package.text.encode())
        if size > self.policy.limits.max_package_bytes:
            raise InvalidRequest(
                f"package {package_id!r} is {size:,} bytes; "
                f"the limit is {self.policy.limits.max_package_bytes:,}"
            )
        return package

    async def _count(self, completion: CompletionRequest, ask_provider: bool) -> tuple[int, bool]:
        key = _content_key(completion)
        cached = self._counts.get(key)
        if cached is not None:
            self._counts.move_to_end(key)
            return cached, True
        if not ask_provider:
            return approx_request_tokens(completion), False
        try:
            async with asyncio.timeout(self.policy.limits.token_count_timeout):
                counted = await self.provider.count_tokens(completion)
        except Exception as exc:  # any failure falls back; the run reports real errors
            logger.debug("token count failed (%s); using the approximation", type(exc).__name__)
            counted = None
        if counted is None:
            return approx_request_tokens(completion), False
        self._counts[key] = counted
        if len(self._counts) > _COUNT_CACHE_SIZE:
            self._counts.popitem(last=False)
        return counted, True


def _worst_case(model: ModelInfo, input_tokens: int, max_tokens: int) -> Usage:
    # The dearest way the input can be billed: all of it written to the cache
    # (dearer than base input at Anthropic's prices), and every output token.
    if model.cache_write_usd_per_mtok >= model.input_usd_per_mtok:
        return Usage(cache_creation_input_tokens=input_tokens, output_tokens=max_tokens)
    return Usage(input_tokens=input_tokens, output_tokens=max_tokens)


def _content_key(completion: CompletionRequest) -> str:
    payload = json.dumps(
        [
            completion.model,
            completion.system,
            [(m.role, m.content) for m in completion.messages],
        ],
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def user_hash(user_id: str) -> str:
    """The opaque id sent to the provider as ``metadata.user_id``: never the user id itself."""
    return hashlib.sha256(f"prpm-playground/user/{user_id}".encode()).hexdigest()[:32]
