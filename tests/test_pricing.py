"""The model catalog and the two pricing strategies: Decimal, rounded up once."""

from __future__ import annotations

from decimal import Decimal

import pytest

from prpm_playground import CreditPolicy
from prpm_playground.catalog import DEFAULT_ALIASES, ModelCatalog, ModelInfo
from prpm_playground.errors import InvalidRequest
from prpm_playground.models import Usage
from prpm_playground.pricing import TieredPricing, TokenPricing, usd_cost

CATALOG = ModelCatalog()
SONNET = CATALOG.resolve("sonnet")
OPUS = CATALOG.resolve("opus")
HAIKU = CATALOG.resolve("haiku")


def model(**fields: object) -> ModelInfo:
    values: dict[str, object] = {
        "id": "custom-1",
        "name": "Custom",
        "input_usd_per_mtok": Decimal(3),
        "output_usd_per_mtok": Decimal(15),
        "cache_write_usd_per_mtok": Decimal("3.75"),
        "cache_read_usd_per_mtok": Decimal("0.3"),
        "context_window": 200_000,
        "max_output_tokens": 64_000,
    }
    values.update(fields)
    return ModelInfo(**values)  # type: ignore[arg-type]


def test_aliases_resolve_to_current_models() -> None:
    assert {alias: CATALOG.resolve(alias).id for alias in DEFAULT_ALIASES} == {
        "sonnet": "claude-sonnet-5-5",
        "opus": "claude-opus-5-5",
        "haiku": "claude-haiku-4-5",
    }
    assert CATALOG.resolve("claude-haiku-4-5") is HAIKU
    assert (SONNET.input_usd_per_mtok, SONNET.output_usd_per_mtok) == (Decimal(2), Decimal(10))
    assert (SONNET.cache_write_usd_per_mtok, SONNET.cache_read_usd_per_mtok) == (
        Decimal("2.50"),
        Decimal("0.20"),
    )
    assert (OPUS.input_usd_per_mtok, OPUS.output_usd_per_mtok) == (Decimal(4), Decimal(20))


@pytest.mark.parametrize("name", ["gpt-5", "claude-sonnet-9", "Sonnet", ""])
def test_unknown_models_are_refused_never_priced(name: str) -> None:
    with pytest.raises(InvalidRequest, match="unknown model"):
        CATALOG.resolve(name)


def test_hosts_add_and_replace_models() -> None:
    cheaper = SONNET.model_copy(update={"input_usd_per_mtok": Decimal(1)})
    catalog = CATALOG.with_models([cheaper, model()], aliases={"custom": "custom-1"})
    assert catalog.resolve("sonnet").input_usd_per_mtok == Decimal(1)
    assert catalog.resolve("custom").id == "custom-1"
    assert CATALOG.resolve("sonnet").input_usd_per_mtok == Decimal(2)  # the original is untouched
    with pytest.raises(ValueError, match="unknown model"):
        ModelCatalog([model()], aliases={"x": "nope"})
    with pytest.raises(ValueError, match="unique"):
        ModelCatalog([model(), model()], aliases={})


@pytest.mark.parametrize("price", [Decimal(0), Decimal(-1), Decimal("NaN"), Decimal("Infinity")])
def test_a_model_cannot_be_free(price: Decimal) -> None:
    with pytest.raises(ValueError, match=r"positive|finite"):
        model(output_usd_per_mtok=price)


def test_usd_cost_prices_each_kind_of_token_at_its_own_rate() -> None:
    usage = Usage(
        input_tokens=1_000,
        output_tokens=2_000,
        cache_creation_input_tokens=10_000,
        cache_read_input_tokens=100_000,
    )
    # 1,000 x 2 + 2,000 x 10 + 10,000 x 2.5 + 100,000 x 0.2, per million
    assert usd_cost(SONNET, usage) == Decimal("0.067")


@pytest.mark.parametrize(
    ("usage", "policy", "credits"),
    [
        (Usage(), {}, 0),  # nothing consumed, nothing charged
        (Usage(input_tokens=1), {}, 1),  # min_charge
        (Usage(input_tokens=2_000, output_tokens=4_096), {}, 1),  # $0.04496
        (Usage(input_tokens=2_000, output_tokens=5_000), {}, 2),  # $0.054 rounds up
        (Usage(output_tokens=5_000), {}, 1),  # exactly $0.05
        (Usage(output_tokens=5_000), {"margin": Decimal("0.2")}, 2),  # $0.06
        (Usage(output_tokens=50_000), {"margin": Decimal("0.2")}, 12),  # $0.60
        (Usage(input_tokens=1), {"min_charge": 0}, 1),  # any cost is at least one credit
        (Usage(input_tokens=1), {"min_charge": 3}, 3),
        (Usage(output_tokens=1_000), {"usd_per_credit": Decimal("0.001")}, 10),
    ],
)
def test_token_pricing(usage: Usage, policy: dict[str, object], credits: int) -> None:
    assert TokenPricing().credits(SONNET, usage, CreditPolicy(**policy)) == credits  # type: ignore[arg-type]


def test_cache_reads_are_cheaper_than_input_and_writes_dearer() -> None:
    policy = CreditPolicy(usd_per_credit=Decimal("0.0001"))
    pricing = TokenPricing()
    base = pricing.credits(SONNET, Usage(input_tokens=100_000), policy)
    written = pricing.credits(SONNET, Usage(cache_creation_input_tokens=100_000), policy)
    read = pricing.credits(SONNET, Usage(cache_read_input_tokens=100_000), policy)
    assert (base, written, read) == (2_000, 2_500, 200)


@pytest.mark.parametrize(
    ("model_info", "tokens", "credits"),
    [
        (SONNET, 1, 2),
        (SONNET, 5_000, 2),
        (SONNET, 5_001, 4),
        (OPUS, 1, 7),
        (OPUS, 12_000, 21),
        (HAIKU, 4_000, 1),
    ],
)
def test_tiered_pricing_reproduces_the_original(
    model_info: ModelInfo, tokens: int, credits: int
) -> None:
    usage = Usage(input_tokens=tokens // 2, output_tokens=tokens - tokens // 2)
    assert TieredPricing().credits(model_info, usage, CreditPolicy()) == credits


def test_tiered_pricing_refuses_a_model_without_a_multiplier() -> None:
    with pytest.raises(InvalidRequest, match="custom-1"):
        TieredPricing().credits(model(), Usage(input_tokens=10), CreditPolicy())
    custom = TieredPricing({"custom-1": Decimal("1.5")}, tokens_per_tier=1_000)
    assert custom.credits(model(), Usage(input_tokens=2_500), CreditPolicy()) == 5  # ceil(3 x 1.5)
    assert custom.credits(model(), Usage(), CreditPolicy()) == 0
    with pytest.raises(ValueError, match="positive"):
        TieredPricing({"x": Decimal(0)})
