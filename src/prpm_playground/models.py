"""Public data models returned by the services. Frozen, snake_case."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ._validation import text_problem
from .config import GrantKind

__all__ = [
    "Balance",
    "CompareEvent",
    "CompareRequest",
    "CompareVariant",
    "Comparison",
    "Draw",
    "Entry",
    "EntryType",
    "Estimate",
    "Exchange",
    "Feedback",
    "FeedbackRequest",
    "Grant",
    "HistoryPage",
    "HistoryQuery",
    "Hold",
    "HoldStatus",
    "ModelPrice",
    "ModelPrices",
    "MonthlyAllowance",
    "RunDelta",
    "RunDone",
    "RunError",
    "RunEvent",
    "RunRequest",
    "RunResult",
    "RunStarted",
    "RunUsage",
    "Session",
    "SessionListQuery",
    "SessionPage",
    "SessionSummary",
    "ShareLink",
    "SharedExchange",
    "SharedSession",
    "Usage",
    "VariantDelta",
    "VariantDone",
    "VariantError",
    "VariantOutcome",
    "VariantStarted",
    "VariantUsage",
]

EntryType = Literal[
    "trial",
    "monthly",
    "rollover",
    "purchased",
    "bonus",
    "admin",
    "spend",
    "expire",
    "clawback",
    "release",
]
"""Journal entry types: a grant kind for credits; ``spend``, ``expire``, ``clawback`` for
debits; ``release`` (amount 0) when a hold returns all its credits (released,
captured at 0, or lapsed)."""

HoldStatus = Literal["active", "captured", "released", "expired"]
"""A hold's lifecycle: ``active`` until captured, released, or lapsed (``expired``)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _storable(value: str) -> str:
    # Refused on the way in, not when a paid run's result is saved.
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


_Storable = AfterValidator(_storable)
_Cursor = Annotated[str, Field(min_length=1, max_length=512), _Storable]
_Version = Annotated[str, Field(min_length=1, max_length=64), _Storable]
_ModelName = Annotated[str, Field(min_length=1, max_length=128), _Storable]
_Key = Annotated[str, Field(min_length=1, max_length=200), _Storable]
# Variant i of a comparison runs as "{compare_id}:{i}", itself a _Key.
_CompareKey = Annotated[str, Field(min_length=1, max_length=198), _Storable]
_Input = Annotated[str, Field(min_length=1), _Storable]


class Draw(_Model):
    """Credits one debit (or hold) took from one grant.

    Attributes:
        grant_id: The grant the credits came from.
        kind: That grant's kind, so history can say which credits paid.
        amount: Credits taken, > 0.
    """

    grant_id: str
    kind: GrantKind
    amount: int


class Grant(_Model):
    """A bucket of credits.

    Attributes:
        id: Grant id.
        kind: Grant kind.
        amount: Credits granted.
        remaining: Credits neither spent, held, nor expired.
        priority: Spend priority; lower spends first.
        effective_at: When the credits became spendable.
        expires_at: When they stop counting (exclusive), or None for never.
        created_at: When the grant was recorded.
        description: Free text shown in history.
    """

    id: str
    kind: GrantKind
    amount: int
    remaining: int
    priority: int
    effective_at: datetime
    expires_at: datetime | None
    created_at: datetime
    description: str | None


class Entry(_Model):
    """One line of an account's append-only journal.

    Attributes:
        id: Entry id.
        type: A grant kind for credits; ``spend``, ``expire`` or ``clawback`` for debits.
        amount: Signed change to the account's total (credits positive).
        balance_after: Credits available right after this entry.
        created_at: When it was recorded.
        description: Free text.
        grant_id: The grant this entry created or expired, if any.
        hold_id: The hold a capture or a ``release`` entry settled, if any.
        draws: For debits, which grants paid and how much; for ``release``,
            the credits returned to each grant.
    """

    id: str
    type: EntryType
    amount: int
    balance_after: int
    created_at: datetime
    description: str | None = None
    grant_id: str | None = None
    hold_id: str | None = None
    draws: tuple[Draw, ...] = ()


class Hold(_Model):
    """Credits reserved for an operation whose final cost is not known yet.

    Attributes:
        id: Hold id; pass it to ``capture`` or ``release``.
        amount: Credits reserved.
        captured: Credits charged at capture (0 until then).
        status: ``active``, ``captured``, ``released`` or ``expired``.
        created_at: When the hold was placed.
        expires_at: When an active hold lapses and its credits return.
        settled_at: When it was captured, released or swept as expired.
    """

    id: str
    amount: int
    captured: int
    status: HoldStatus
    created_at: datetime
    expires_at: datetime
    settled_at: datetime | None = None


class MonthlyAllowance(_Model):
    """A subscriber's allowance for the current period.

    Attributes:
        allocated: Credits granted for the period.
        used: Credits of it spent or held.
        remaining: Credits of it still available.
        resets_at: When the period ends and the next allowance begins.
    """

    allocated: int
    used: int
    remaining: int
    resets_at: datetime


class Balance(_Model):
    """An account's credits as of ``as_of``.

    Attributes:
        available: Credits that can be spent or held now.
        held: Credits reserved by active holds.
        total: ``available + held``.
        breakdown: ``total`` split by the kind of grant the credits came from.
        monthly: The current allowance, or None when not subscribed.
        rollover_expires_at: When the live rollover credits expire, if any.
        as_of: The instant the balance describes.
    """

    available: int
    held: int
    total: int
    breakdown: dict[str, int]
    monthly: MonthlyAllowance | None = None
    rollover_expires_at: datetime | None = None
    as_of: datetime


class HistoryPage(_Model):
    """A page of journal entries, newest first.

    Attributes:
        entries: The entries on this page.
        next_cursor: Pass it back as ``cursor`` for the next page; None at the end.
    """

    entries: tuple[Entry, ...]
    next_cursor: str | None


class HistoryQuery(_Model):
    """Which journal entries a history page shows (the query of ``GET /credits/history``).

    Attributes:
        type: Only entries of these types; None for all.
        limit: Page size, 1 to 200.
        cursor: ``next_cursor`` of the previous page.
    """

    type: list[EntryType] | None = None
    limit: int = Field(default=50, ge=1, le=200)
    cursor: _Cursor | None = None


# -- runs -----------------------------------------------------------------------------

_Id = Annotated[str, Field(min_length=1, max_length=255), _Storable]


class Usage(_Model):
    """Tokens a model call consumed, as the provider reports them.

    Attributes:
        input_tokens: Input tokens billed at the base input rate.
        output_tokens: Output tokens (thinking included).
        cache_creation_input_tokens: Input tokens written to the prompt cache.
        cache_read_input_tokens: Input tokens read from the prompt cache.
    """

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cache_creation_input_tokens: int = Field(default=0, ge=0)
    cache_read_input_tokens: int = Field(default=0, ge=0)

    @property
    def total_input_tokens(self) -> int:
        """All input tokens: base, cache writes and cache reads."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


class RunRequest(_Model):
    """One run of a prompt package (or of no prompt) on a user's input.

    Attributes:
        package_id: The package whose text becomes the system prompt. Required
            unless ``no_prompt`` is set or ``session_id`` continues a session
            (which keeps its package).
        package_version: A specific version; None for the latest.
        input: The user's message.
        model: A catalog alias (``sonnet``, ``opus``, ``haiku``) or model id.
        session_id: Continue this session (with its full history); None starts one.
        max_tokens: Most output tokens; the run holds credits for all of them.
        temperature: Sampling temperature from 0 to 1; None for the model's
            default. Providers send it only to models that take it.
        no_prompt: Run without any system prompt (the baseline).
        run_id: Idempotency key of the run: a retry with the same id never
            charges twice and returns the first result. Generated when None.
    """

    package_id: _Id | None = None
    package_version: _Version | None = None
    input: _Input
    model: _ModelName = "sonnet"
    session_id: _Id | None = None
    max_tokens: int = Field(default=4096, ge=1, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0, le=1)
    no_prompt: bool = False
    run_id: _Key | None = None

    @model_validator(mode="after")
    def _needs_a_prompt(self) -> RunRequest:
        if self.no_prompt and self.package_id is not None:
            raise ValueError("give package_id or no_prompt, not both")
        if self.package_id is None and not self.no_prompt and self.session_id is None:
            raise ValueError("package_id is required unless no_prompt or session_id is given")
        return self


class Estimate(_Model):
    """What a run would cost, before it runs.

    Attributes:
        credits: Expected cost, assuming ``expected_output_tokens`` of output.
        max_credits: What the run holds: all input written to the prompt
            cache plus ``max_output_tokens`` of output. It never costs more.
        input_tokens: System prompt, history and input, in tokens.
        input_tokens_exact: True if the provider counted them; False for the
            local approximation.
        max_output_tokens: The run's ``max_tokens``.
        expected_output_tokens: Output assumed for ``credits``.
        model: The model id the run would use.
        can_afford: ``available >= max_credits``.
        available: The user's available credits now.
    """

    credits: int
    max_credits: int
    input_tokens: int
    input_tokens_exact: bool
    max_output_tokens: int
    expected_output_tokens: int
    model: str
    can_afford: bool
    available: int


class RunResult(_Model):
    """The outcome of a completed (or cut short) run.

    Attributes:
        run_id: The run's idempotency key.
        session_id: The session the exchange was saved to.
        exchange_index: Position of this exchange in the session, from 0.
        response: The model's text.
        credits_spent: Credits captured for this run.
        credits_remaining: The user's available credits after it.
        usage: Tokens consumed.
        duration_ms: Wall time of the model call.
        model: The model id used.
        stop_reason: Why the model stopped (``end_turn``, ``max_tokens``, …),
            or ``cancelled`` when the client went away.
        warnings: Problems found in the package text (invisible characters, …).
    """

    run_id: str
    session_id: str
    exchange_index: int
    response: str
    credits_spent: int
    credits_remaining: int
    usage: Usage
    duration_ms: int
    model: str
    stop_reason: str | None = None
    warnings: tuple[str, ...] = ()


class RunStarted(_Model):
    """First event of a stream: the run is held and about to call the model."""

    type: Literal["started"] = "started"
    run_id: str
    session_id: str
    hold_id: str
    held: int
    estimate: Estimate


class RunDelta(_Model):
    """A piece of the response text."""

    type: Literal["delta"] = "delta"
    text: str


class RunUsage(_Model):
    """Token usage as the provider reported it so far."""

    type: Literal["usage"] = "usage"
    usage: Usage


class RunDone(_Model):
    """Last event of a successful stream."""

    type: Literal["done"] = "done"
    result: RunResult


class RunError(_Model):
    """Last event of a failed stream; ``error`` is a ``PlaygroundError`` code."""

    type: Literal["error"] = "error"
    error: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


RunEvent = Annotated[
    RunStarted | RunDelta | RunUsage | RunDone | RunError, Field(discriminator="type")
]
"""An event of ``PlaygroundRunner.stream``; ``type`` tells which."""


class CompareVariant(_Model):
    """One side of a comparison: a package (or no prompt) on a model.

    Attributes:
        package_id: The package; None with ``no_prompt``.
        package_version: A specific version; None for the latest.
        model: A catalog alias or model id.
        no_prompt: Run without a system prompt (the baseline).
    """

    package_id: _Id | None = None
    package_version: _Version | None = None
    model: _ModelName = "sonnet"
    no_prompt: bool = False

    @model_validator(mode="after")
    def _needs_a_prompt(self) -> CompareVariant:
        if self.no_prompt == (self.package_id is not None):
            raise ValueError("give exactly one of package_id and no_prompt")
        return self


class CompareRequest(_Model):
    """The same input run on 2 to 4 variants side by side.

    Attributes:
        input: The user's message, sent to every variant.
        variants: 2 to 4 variants.
        max_tokens: Most output tokens per variant.
        temperature: Sampling temperature, or None for each model's default.
        compare_id: Idempotency key of the comparison; variant ``i`` runs
            with run id ``"{compare_id}:{i}"``. Generated when None.
    """

    input: _Input
    variants: list[CompareVariant] = Field(min_length=2, max_length=4)
    max_tokens: int = Field(default=4096, ge=1, le=1_000_000)
    temperature: float | None = Field(default=None, ge=0, le=1)
    compare_id: _CompareKey | None = None


class VariantOutcome(_Model):
    """One variant's result, or the error that ended it (nothing charged beyond usage)."""

    index: int
    result: RunResult | None = None
    error: RunError | None = None


class Comparison(_Model):
    """Results of a comparison, in the order of the variants.

    Attributes:
        id: The comparison's id; its sessions carry it as ``comparison_id``.
        outcomes: One per variant.
    """

    id: str
    outcomes: tuple[VariantOutcome, ...]


class _OfVariant(_Model):
    """Which variant of a comparison an event is about (index into ``variants``)."""

    variant: Annotated[int, Field(ge=0, le=3)]
    comparison_id: str


class VariantStarted(RunStarted, _OfVariant):
    """A variant of a streamed comparison is held and about to call its model."""


class VariantDelta(RunDelta, _OfVariant):
    """A piece of one variant's response text."""


class VariantUsage(RunUsage, _OfVariant):
    """One variant's token usage so far."""


class VariantDone(RunDone, _OfVariant):
    """One variant finished; its result."""


class VariantError(RunError, _OfVariant):
    """One variant failed; the others go on."""


CompareEvent = Annotated[
    VariantStarted | VariantDelta | VariantUsage | VariantDone | VariantError,
    Field(discriminator="type"),
]
"""An event of ``PlaygroundRunner.compare_stream``: a run event with its ``variant``.

Each variant sends ``started``, ``delta`` and ``usage`` events and ends with
``done`` or ``error``; a variant replayed from an earlier identical request
sends only ``done``. The variants' events interleave as they happen.
"""


# -- models and prices ----------------------------------------------------------------


class ModelPrice(_Model):
    """A model users may pick, with its prices in USD and in credits.

    Attributes:
        id: The model id.
        name: Display name.
        aliases: Short names that pick it (``sonnet``, …).
        input_usd_per_mtok: USD per million base input tokens.
        output_usd_per_mtok: USD per million output tokens.
        cache_write_usd_per_mtok: USD per million input tokens written to the prompt cache.
        cache_read_usd_per_mtok: USD per million input tokens read from the prompt cache.
        input_credits_per_mtok: Credits a million base input tokens cost, rounded up.
        output_credits_per_mtok: Credits a million output tokens cost, rounded up.
        cache_write_credits_per_mtok: Credits a million cache-write tokens cost, rounded up.
        cache_read_credits_per_mtok: Credits a million cache-read tokens cost, rounded up.
        context_window: Most input plus output tokens in one call.
        max_output_tokens: Most output tokens in one call.
    """

    id: str
    name: str
    aliases: tuple[str, ...]
    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal
    cache_write_usd_per_mtok: Decimal
    cache_read_usd_per_mtok: Decimal
    input_credits_per_mtok: int
    output_credits_per_mtok: int
    cache_write_credits_per_mtok: int
    cache_read_credits_per_mtok: int
    context_window: int
    max_output_tokens: int


class ModelPrices(_Model):
    """The models runs may use, and what a credit is worth.

    Attributes:
        usd_per_credit: What one credit is worth, in USD.
        default_model: The model a run uses when it names none.
        models: Every model, in the catalog's order.
    """

    usd_per_credit: Decimal
    default_model: str
    models: tuple[ModelPrice, ...]


# -- sessions -------------------------------------------------------------------------


class Exchange(_Model):
    """One input and the model's response, in a session.

    Attributes:
        index: Position in the session, from 0.
        input: The user's message.
        response: The model's text.
        model: The model id that answered.
        usage: Tokens consumed.
        credits_spent: Credits charged.
        run_id: The run that produced it; None for an exchange copied by a fork.
        created_at: When it was saved.
    """

    index: int
    input: str
    response: str
    model: str
    usage: Usage
    credits_spent: int
    run_id: str | None
    created_at: datetime


class Session(_Model):
    """A conversation with one package, owned by one user.

    Attributes:
        id: Session id.
        package_id: The package (None for a no-prompt session).
        package_version: The version resolved by the first run.
        no_prompt: True for a baseline session without a system prompt.
        comparison_id: The comparison it belongs to, if any.
        created_at: When the first exchange was saved.
        updated_at: When the last exchange was saved.
        exchanges: The conversation, oldest first.
    """

    id: str
    package_id: str | None
    package_version: str | None
    no_prompt: bool
    comparison_id: str | None = None
    created_at: datetime
    updated_at: datetime
    exchanges: tuple[Exchange, ...]


class SessionSummary(_Model):
    """A session in a list: no conversation, a title from its first input.

    Attributes:
        id: Session id.
        title: The start of the first input (at most 80 characters).
        package_id: The package, or None.
        package_version: Its version, or None.
        no_prompt: True for a baseline session.
        comparison_id: The comparison it belongs to, if any.
        exchange_count: Exchanges in the session.
        created_at: When it was started.
        updated_at: When it last changed.
    """

    id: str
    title: str
    package_id: str | None
    package_version: str | None
    no_prompt: bool
    comparison_id: str | None = None
    exchange_count: int
    created_at: datetime
    updated_at: datetime


class SessionPage(_Model):
    """Sessions, most recently updated first.

    Attributes:
        sessions: This page.
        next_cursor: Pass it back as ``cursor`` for the next page; None at the end.
    """

    sessions: tuple[SessionSummary, ...]
    next_cursor: str | None


class ShareLink(_Model):
    """A public link to a frozen snapshot of a session.

    Attributes:
        token: The link's secret (at least 128 bits, URL-safe).
        session_id: The shared session.
        created_at: When it was shared; the snapshot is as of then.
    """

    token: str
    session_id: str
    created_at: datetime


class SharedExchange(_Model):
    """An exchange as the public sees it."""

    index: int
    input: str
    response: str
    model: str


class SharedSession(_Model):
    """The public view of a shared session: no owner, no ids beyond the token.

    Attributes:
        token: The share token.
        package_id: The package, or None.
        package_version: Its version, or None.
        no_prompt: True for a baseline session.
        shared_at: When the snapshot was taken.
        exchanges: The conversation as shared.
    """

    token: str
    package_id: str | None
    package_version: str | None
    no_prompt: bool
    shared_at: datetime
    exchanges: tuple[SharedExchange, ...]


class SessionListQuery(_Model):
    """Which page of sessions to list (the query of ``GET /sessions``).

    Attributes:
        limit: Page size, 1 to 100.
        cursor: ``next_cursor`` of the previous page.
    """

    limit: int = Field(default=20, ge=1, le=100)
    cursor: _Cursor | None = None


class FeedbackRequest(_Model):
    """A vote on one exchange of one's own session.

    Attributes:
        exchange_index: The exchange's ``index`` (from 0).
        helpful: Whether the response helped.
        comment: Optional text, up to 1,000 characters.
    """

    exchange_index: int = Field(ge=0)
    helpful: bool
    comment: Annotated[str, Field(max_length=1000), _Storable] | None = None


class Feedback(_Model):
    """A user's vote on one exchange of their session.

    Attributes:
        session_id: The session.
        exchange_index: The exchange voted on.
        helpful: Whether the response helped.
        comment: Optional text, up to 1,000 characters.
        created_at: When it was given.
    """

    session_id: str
    exchange_index: int
    helpful: bool
    comment: str | None = None
    created_at: datetime
