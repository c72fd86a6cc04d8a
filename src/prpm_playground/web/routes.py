"""The route table: every endpoint of the web API, declared once.

Each ``Endpoint`` names its method, path (relative to wherever the app is
mounted), handler, request body and query models, the model its handler
returns, whether it needs a signed-in user, and its summary. The Starlette
app (``web.app``) and the OpenAPI document (``web.openapi``) are both built
from ``ROUTES``, and the app checks at run time that a handler returned the
declared model, so the schema cannot disagree with the payload.

Handlers are framework-neutral: they take a ``Call`` and return a pydantic
model, ``None`` (204), an ``EventStream`` or a ``FileStream``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .._clock import read_clock
from ..catalog import ModelInfo
from ..errors import InvalidRequest
from ..models import (
    Balance,
    CompareEvent,
    Comparison,
    Estimate,
    Feedback,
    FeedbackRequest,
    HistoryPage,
    HistoryQuery,
    ModelPrice,
    ModelPrices,
    RunError,
    RunEvent,
    RunRequest,
    RunResult,
    Session,
    SessionListQuery,
    SessionPage,
    SharedSession,
    ShareLink,
    Usage,
)
from .errors import public_event
from .ratelimit import Guard
from .schemas import CompareBody, HistoryExportQuery, RunBody
from .sse import EventStream, ServerSentEvent

if TYPE_CHECKING:
    from ..playground import Playground

__all__ = ["ROUTES", "Call", "Endpoint", "FileStream", "Handler", "Reply"]

SHARED_VIEW_HEADERS: Mapping[str, str] = {
    "X-Robots-Tag": "noindex",
    "Referrer-Policy": "no-referrer",
}
"""Headers of the public shared view: not indexed, and the token never leaks as a referrer."""


@dataclass(frozen=True, slots=True)
class FileStream:
    """A file sent as it is produced (``Content-Disposition: attachment``).

    Attributes:
        first: The first piece, produced before answering, so errors are HTTP errors.
        rest: The remaining pieces.
        media_type: The file's media type.
        filename: The name the browser saves it under.
    """

    first: str
    rest: AsyncIterator[str]
    media_type: str
    filename: str


Reply = BaseModel | EventStream | FileStream | None
"""What a handler returns."""


@dataclass(frozen=True, slots=True)
class Call:
    """One request, as a handler sees it.

    Attributes:
        playground: The services.
        guard: The app's rate limits.
        user_id: The signed-in user; None on routes that need none.
        path: Path parameters.
        query: The validated query model, or None.
        body: The validated body model, or None.
        wants_stream: The client accepts ``text/event-stream``.
        purchase_url: Where users buy credits (for 402 answers), or None.
    """

    playground: Playground
    guard: Guard
    user_id: str | None
    path: Mapping[str, str]
    query: Any
    body: Any
    wants_stream: bool = False
    purchase_url: str | None = None

    @property
    def user(self) -> str:
        """The signed-in user (routes that need one always have one)."""
        if self.user_id is None:
            raise RuntimeError("this route was declared without authentication")
        return self.user_id


Handler = Callable[[Call], Awaitable[Reply]]
"""A handler: takes the call, returns the reply."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One endpoint of the web API.

    Attributes:
        method: HTTP method.
        path: Path relative to the mount point, with ``{name}`` parameters.
        name: Unique name (the OpenAPI ``operationId``).
        handler: The handler.
        summary: One line for the OpenAPI document.
        response: The model the handler returns; None for 204 No Content.
        body: The JSON body's model, or None.
        query: The query's model, or None (then no parameters are accepted).
        status: The success status.
        auth: Whether a signed-in user is required.
        events: The event type of the ``text/event-stream`` alternative, or None.
        file_media_type: The media type of a file answer (instead of JSON), or None.
        errors: Error statuses the handler may answer with, beyond those every
            route has (401 with ``auth``; 413, 415, 422 with a body; 422 with a
            query; 503 with ``storage``; 500).
        storage: Whether the handler reads or writes the database (so may
            answer ``503 storage_unavailable``).
        headers: Extra headers on every answer, errors included.
        description: Longer text for the OpenAPI document.
    """

    method: str
    path: str
    name: str
    handler: Handler
    summary: str
    response: type[BaseModel] | None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    status: int = 200
    auth: bool = True
    events: Any = None
    file_media_type: str | None = None
    errors: tuple[int, ...] = ()
    storage: bool = True
    headers: Mapping[str, str] | None = None
    description: str = ""


# -- credits ------------------------------------------------------------------------


async def get_balance(call: Call) -> Balance:
    return await call.playground.ledger.balance(call.user)


async def get_history(call: Call) -> HistoryPage:
    query: HistoryQuery = call.query
    return await call.playground.ledger.history(
        call.user, types=query.type, limit=query.limit, cursor=query.cursor
    )


async def export_history(call: Call) -> FileStream:
    query: HistoryExportQuery = call.query
    lines = call.playground.ledger.export_csv(call.user, types=query.type)
    first = await anext(lines)  # the checks run before the first line
    day = read_clock(call.playground.clock).date().isoformat()
    return FileStream(first, lines, "text/csv", f"credits-history-{day}.csv")


# -- models and estimates -------------------------------------------------------------


async def list_models(call: Call) -> ModelPrices:
    estimator = call.playground.estimator
    aliases: dict[str, list[str]] = {}
    for alias, target in estimator.catalog.aliases.items():
        aliases.setdefault(target, []).append(alias)
    models = []
    for model in estimator.catalog.models:
        try:
            models.append(_price(model, tuple(aliases.get(model.id, ())), estimator.credits_for))
        except InvalidRequest:  # a model the pricing cannot price cannot be run either
            continue
    default = str(RunRequest.model_fields["model"].default)
    with suppress(InvalidRequest):
        default = estimator.catalog.resolve(default).id
    return ModelPrices(
        usd_per_credit=estimator.policy.usd_per_credit, default_model=default, models=tuple(models)
    )


def _price(
    model: ModelInfo, aliases: tuple[str, ...], credits: Callable[[ModelInfo, Usage], int]
) -> ModelPrice:
    million = 1_000_000
    return ModelPrice(
        id=model.id,
        name=model.name,
        aliases=aliases,
        input_usd_per_mtok=model.input_usd_per_mtok,
        output_usd_per_mtok=model.output_usd_per_mtok,
        cache_write_usd_per_mtok=model.cache_write_usd_per_mtok,
        cache_read_usd_per_mtok=model.cache_read_usd_per_mtok,
        input_credits_per_mtok=credits(model, Usage(input_tokens=million)),
        output_credits_per_mtok=credits(model, Usage(output_tokens=million)),
        cache_write_credits_per_mtok=credits(model, Usage(cache_creation_input_tokens=million)),
        cache_read_credits_per_mtok=credits(model, Usage(cache_read_input_tokens=million)),
        context_window=model.context_window,
        max_output_tokens=model.max_output_tokens,
    )


async def estimate(call: Call) -> Estimate:
    request: RunRequest = call.body
    await call.guard.estimates(call.user)
    return await call.playground.estimator.estimate(call.user, request)


# -- runs -----------------------------------------------------------------------------


async def run(call: Call) -> RunResult | EventStream:
    body: RunBody = call.body
    request = body.to_request()
    await call.guard.runs(call.user)
    if body.stream or call.wants_stream:
        return await EventStream.start(
            _relayed(call, call.playground.runner.stream(call.user, request))
        )
    return await call.playground.runner.run(call.user, request)


async def _relayed(
    call: Call, events: AsyncGenerator[RunEvent | CompareEvent, None]
) -> AsyncGenerator[ServerSentEvent, None]:
    """A runner's events as Server-Sent Events, within the user's stream cap.

    Closing this closes the runner's stream, which settles every run in it,
    whenever the client left.
    """
    async with aclosing(events):
        release_slot = call.guard.streams.acquire(call.user)
        try:
            async for event in events:
                if isinstance(event, RunError):  # a comparison's VariantError too
                    event = public_event(event, purchase_url=call.purchase_url)
                yield ServerSentEvent.of(event)
        finally:
            release_slot()


async def compare(call: Call) -> Comparison | EventStream:
    body: CompareBody = call.body
    request = body.to_request()
    await call.guard.runs(call.user, len(request.variants))
    if body.stream or call.wants_stream:
        # Every variant is held before the first event, so what the runner
        # refuses up front (402 for the total, 404, ...) is an HTTP error.
        stream = call.playground.runner.compare_stream(call.user, request)
        return await EventStream.start(_relayed(call, stream))
    return await call.playground.runner.compare(call.user, request)


# -- sessions -------------------------------------------------------------------------


async def list_sessions(call: Call) -> SessionPage:
    query: SessionListQuery = call.query
    return await call.playground.sessions.list(call.user, limit=query.limit, cursor=query.cursor)


async def get_session(call: Call) -> Session:
    return await call.playground.sessions.get(call.user, call.path["session_id"])


async def delete_session(call: Call) -> None:
    await call.playground.sessions.delete(call.user, call.path["session_id"])


async def share_session(call: Call) -> ShareLink:
    return await call.playground.sessions.share(call.user, call.path["session_id"])


async def unshare_session(call: Call) -> None:
    await call.playground.sessions.unshare(call.user, call.path["session_id"])


async def give_feedback(call: Call) -> Feedback:
    body: FeedbackRequest = call.body
    return await call.playground.sessions.feedback(
        call.user,
        call.path["session_id"],
        body.exchange_index,
        helpful=body.helpful,
        comment=body.comment,
    )


async def get_shared(call: Call) -> SharedSession:
    return await call.playground.sessions.get_shared(call.path["token"])


async def fork_shared(call: Call) -> Session:
    return await call.playground.sessions.fork(call.user, call.path["token"])


# -- the table ------------------------------------------------------------------------

_RUN_ERRORS = (400, 402, 404, 409, 429, 502, 503)
_STREAMING = (
    'Send `Accept: text/event-stream` or `"stream": true` for Server-Sent Events. '
    "Errors found before anything runs (402 and the rest) are still plain JSON answers. "
)

ROUTES: tuple[Endpoint, ...] = (
    Endpoint(
        "GET",
        "/credits",
        "get_balance",
        get_balance,
        "The user's credit balance, with its breakdown by kind.",
        Balance,
    ),
    Endpoint(
        "GET",
        "/credits/history",
        "get_history",
        get_history,
        "The user's credit history, newest first, a page at a time.",
        HistoryPage,
        query=HistoryQuery,
        errors=(400,),
    ),
    Endpoint(
        "GET",
        "/credits/history.csv",
        "export_history",
        export_history,
        "The user's whole credit history as a CSV file.",
        None,
        query=HistoryExportQuery,
        file_media_type="text/csv",
        errors=(400,),
    ),
    Endpoint(
        "GET",
        "/models",
        "list_models",
        list_models,
        "The models runs may use, with their prices in USD and in credits.",
        ModelPrices,
        auth=False,
        storage=False,
    ),
    Endpoint(
        "POST",
        "/estimate",
        "estimate",
        estimate,
        "What a run would cost the user now, and whether they can afford it.",
        Estimate,
        body=RunRequest,
        errors=(400, 404, 429, 503),
    ),
    Endpoint(
        "POST",
        "/run",
        "run",
        run,
        "Run a prompt package on the user's input; charged for what it consumed.",
        RunResult,
        body=RunBody,
        events=RunEvent,
        errors=_RUN_ERRORS,
        description=_STREAMING + "Events: `started`, `delta`, `usage`, then `done` or `error`; "
        "each `data` line is the JSON of the event model. A client that disconnects "
        "is charged only for the output produced so far.",
    ),
    Endpoint(
        "POST",
        "/compare",
        "compare",
        compare,
        "Run one input on 2 to 4 variants side by side; none runs unless all are affordable.",
        Comparison,
        body=CompareBody,
        events=CompareEvent,
        errors=_RUN_ERRORS,
        description=_STREAMING + "Events: `started` (the comparison's id), then `done` with "
        "the whole comparison, or `error`; keep-alive comments are sent while the variants run.",
    ),
    Endpoint(
        "GET",
        "/sessions",
        "list_sessions",
        list_sessions,
        "The user's sessions, most recently updated first, a page at a time.",
        SessionPage,
        query=SessionListQuery,
        errors=(400,),
    ),
    Endpoint(
        "GET",
        "/sessions/{session_id}",
        "get_session",
        get_session,
        "One of the user's sessions, with its whole conversation.",
        Session,
        errors=(400, 404),
    ),
    Endpoint(
        "DELETE",
        "/sessions/{session_id}",
        "delete_session",
        delete_session,
        "Delete one of the user's sessions; its share link stops working.",
        None,
        status=204,
        errors=(400, 404),
    ),
    Endpoint(
        "POST",
        "/sessions/{session_id}/share",
        "share_session",
        share_session,
        "Share a frozen snapshot of a session; sharing again returns the live link.",
        ShareLink,
        errors=(400, 404),
    ),
    Endpoint(
        "DELETE",
        "/sessions/{session_id}/share",
        "unshare_session",
        unshare_session,
        "Revoke the session's share link.",
        None,
        status=204,
        errors=(400, 404),
    ),
    Endpoint(
        "POST",
        "/sessions/{session_id}/feedback",
        "give_feedback",
        give_feedback,
        "Vote on one exchange of a session (once per exchange).",
        Feedback,
        body=FeedbackRequest,
        status=201,
        errors=(400, 404, 409),
    ),
    Endpoint(
        "GET",
        "/shared/{token}",
        "get_shared",
        get_shared,
        "The public view of a shared session: no owner, no session id.",
        SharedSession,
        auth=False,
        errors=(404,),
        headers=SHARED_VIEW_HEADERS,
    ),
    Endpoint(
        "POST",
        "/shared/{token}/fork",
        "fork_shared",
        fork_shared,
        "Copy a shared session into a new session of the user's own.",
        Session,
        status=201,
        errors=(400, 404),
        headers=SHARED_VIEW_HEADERS,
    ),
)
"""Every endpoint of the web API."""
