"""Request shapes only the web API has: run and compare bodies that may ask to stream."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from ..models import CompareRequest, EntryType, RunRequest

__all__ = ["CompareBody", "HistoryExportQuery", "RunBody"]


class RunBody(RunRequest):
    """The body of ``POST /run``: a ``RunRequest``, optionally streamed.

    Attributes:
        stream: Answer with Server-Sent Events (as ``Accept: text/event-stream`` does).
    """

    stream: bool = False

    def to_request(self) -> RunRequest:
        """The run, without the transport option."""
        return RunRequest.model_validate(self.model_dump(exclude={"stream"}))


class CompareBody(CompareRequest):
    """The body of ``POST /compare``: a ``CompareRequest``, optionally streamed.

    Attributes:
        stream: Answer with Server-Sent Events (as ``Accept: text/event-stream`` does).
    """

    stream: bool = False

    def to_request(self) -> CompareRequest:
        """The comparison, without the transport option."""
        return CompareRequest.model_validate(self.model_dump(exclude={"stream"}))


class HistoryExportQuery(BaseModel):
    """Which journal entries ``GET /credits/history.csv`` exports.

    Attributes:
        type: Only entries of these types; None for all.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: list[EntryType] | None = None
