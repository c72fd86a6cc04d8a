"""The model catalog: which models runs may use, and what their tokens cost.

Prices are data, not code: a ``ModelInfo`` per model, USD per million tokens
as ``Decimal``. Hosts add or replace models (``ModelCatalog.with_models``)
when Anthropic changes its line-up or prices. A model the catalog does not
know is refused with ``InvalidRequest``: it is never priced at $0, nor like a
sibling.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import InvalidRequest

__all__ = ["DEFAULT_ALIASES", "DEFAULT_MODELS", "ModelCatalog", "ModelInfo"]


class ModelInfo(BaseModel):
    """One model and its prices.

    Attributes:
        id: The provider's model id, e.g. ``claude-sonnet-5-5``.
        name: Display name.
        input_usd_per_mtok: USD per million base input tokens.
        output_usd_per_mtok: USD per million output tokens (thinking included).
        cache_write_usd_per_mtok: USD per million input tokens written to the
            5-minute prompt cache.
        cache_read_usd_per_mtok: USD per million input tokens read from the cache.
        context_window: Most input plus output tokens in one call.
        max_output_tokens: Most output tokens in one call.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=128)
    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal
    cache_write_usd_per_mtok: Decimal
    cache_read_usd_per_mtok: Decimal
    context_window: int = Field(gt=0, strict=True)
    max_output_tokens: int = Field(gt=0, strict=True)

    @field_validator(
        "input_usd_per_mtok",
        "output_usd_per_mtok",
        "cache_write_usd_per_mtok",
        "cache_read_usd_per_mtok",
    )
    @classmethod
    def _positive(cls, value: Decimal) -> Decimal:
        # A zero price is how cost trackers end up billing unknown models at
        # $0; a real model always costs something.
        if not value.is_finite() or value <= 0:
            raise ValueError("prices must be positive, finite decimals")
        return value


def _model(
    id: str,
    name: str,
    input_usd: str,
    output_usd: str,
    *,
    context: int,
    max_output: int,
) -> ModelInfo:
    base = Decimal(input_usd)
    return ModelInfo(
        id=id,
        name=name,
        input_usd_per_mtok=base,
        output_usd_per_mtok=Decimal(output_usd),
        # Anthropic's multipliers on base input: 5-minute cache write x1.25, read x0.1.
        cache_write_usd_per_mtok=base * Decimal("1.25"),
        cache_read_usd_per_mtok=base * Decimal("0.1"),
        context_window=context,
        max_output_tokens=max_output,
    )


DEFAULT_MODELS: tuple[ModelInfo, ...] = (
    _model(
        "claude-sonnet-5-5",
        "Claude Sonnet 5.5",
        "2",
        "10",
        context=1_000_000,
        max_output=128_000,
    ),
    _model(
        "claude-opus-5-5",
        "Claude Opus 5.5",
        "4",
        "20",
        context=1_000_000,
        max_output=128_000,
    ),
    _model(
        "claude-haiku-4-5",
        "Claude Haiku 4.5",
        "1",
        "5",
        context=200_000,
        max_output=64_000,
    ),
    _model(
        "claude-sonnet-4-6",
        "Claude Sonnet 4.6",
        "3",
        "15",
        context=1_000_000,
        max_output=128_000,
    ),
    _model(
        "claude-opus-4-6",
        "Claude Opus 4.6",
        "5",
        "25",
        context=1_000_000,
        max_output=128_000,
    ),
)
"""Anthropic's models and list prices as of late 2026."""

DEFAULT_ALIASES: Mapping[str, str] = {
    "sonnet": "claude-sonnet-5-5",
    "opus": "claude-opus-5-5",
    "haiku": "claude-haiku-4-5",
}
"""The short names users pick, mapped to current model ids."""


class ModelCatalog:
    """The models runs may use, by id or alias.

    Args:
        models: The models; ids must be unique. Defaults to ``DEFAULT_MODELS``.
        aliases: Short names mapped to model ids. Defaults to ``DEFAULT_ALIASES``.

    Raises:
        ValueError: Duplicate ids, or an alias naming a model not in ``models``.

    Example:
        ```python
        catalog = ModelCatalog().with_models(
            [ModelInfo(id="claude-sonnet-6", name="Claude Sonnet 6", ...)],
            aliases={"sonnet": "claude-sonnet-6"},
        )
        ```
    """

    def __init__(
        self,
        models: Iterable[ModelInfo] | None = None,
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        listed = tuple(DEFAULT_MODELS if models is None else models)
        self._models = {model.id: model for model in listed}
        if len(self._models) != len(listed):
            raise ValueError("model ids must be unique")
        self._aliases = dict(DEFAULT_ALIASES if aliases is None else aliases)
        for alias, target in self._aliases.items():
            if target not in self._models:
                raise ValueError(f"alias {alias!r} names unknown model {target!r}")
            if alias in self._models and alias != target:
                raise ValueError(f"alias {alias!r} is also a model id")

    def with_models(
        self, models: Iterable[ModelInfo], *, aliases: Mapping[str, str] | None = None
    ) -> ModelCatalog:
        """Return a catalog with ``models`` added (replacing any with the same id).

        Args:
            models: Models to add or replace.
            aliases: Aliases to add or repoint; existing ones are kept.
        """
        merged = {**self._models, **{model.id: model for model in models}}
        return ModelCatalog(merged.values(), {**self._aliases, **(aliases or {})})

    def resolve(self, name: str) -> ModelInfo:
        """Return the model an alias or id names.

        Raises:
            InvalidRequest: The catalog has no such model.
        """
        model = self._models.get(self._aliases.get(name, name))
        if model is None:
            known = ", ".join(sorted({*self._aliases, *self._models}))
            raise InvalidRequest(f"unknown model {name!r}; known models: {known}")
        return model

    @property
    def models(self) -> tuple[ModelInfo, ...]:
        """Every model, in the order given."""
        return tuple(self._models.values())

    @property
    def aliases(self) -> Mapping[str, str]:
        """Alias → model id."""
        return dict(self._aliases)
