"""Credits and models over HTTP: balance, history pages, the CSV export, prices."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from decimal import Decimal

from prpm_playground import CreditPolicy, ModelCatalog, TieredPricing
from prpm_playground.catalog import DEFAULT_MODELS

from .conftest import Web, as_user, run_body


async def test_balance_opens_the_account(make_web: Callable[..., Web], user: str) -> None:
    web = make_web(policy=CreditPolicy())  # PRPM's defaults: 5 trial credits
    response = await web.client.get("/credits", headers=as_user(user))
    assert response.status_code == 200
    balance = response.json()
    assert (balance["available"], balance["held"], balance["total"]) == (5, 0, 5)
    assert balance["breakdown"]["trial"] == 5
    assert balance["monthly"] is None


async def test_history_pages_and_filters(web: Web, user: str) -> None:
    await web.fund(user, 100)
    await web.client.post("/run", json=run_body(), headers=as_user(user))
    await web.client.post("/run", json=run_body(), headers=as_user(user))
    everything = await web.client.get("/credits/history", headers=as_user(user))
    assert [e["type"] for e in everything.json()["entries"]] == ["spend", "spend", "purchased"]
    page = await web.client.get("/credits/history?limit=1&type=spend", headers=as_user(user))
    assert page.status_code == 200
    [entry] = page.json()["entries"]
    assert (entry["type"], entry["amount"], entry["balance_after"]) == ("spend", -7, 86)
    cursor = page.json()["next_cursor"]
    rest = await web.client.get(
        "/credits/history", params={"cursor": cursor, "type": "spend"}, headers=as_user(user)
    )
    assert [e["balance_after"] for e in rest.json()["entries"]] == [93]
    assert rest.json()["next_cursor"] is None
    both = await web.client.get("/credits/history?type=spend&type=purchased", headers=as_user(user))
    commas = await web.client.get("/credits/history?type=spend,purchased", headers=as_user(user))
    assert len(both.json()["entries"]) == len(commas.json()["entries"]) == 3


async def test_history_as_csv(web: Web, user: str) -> None:
    await web.fund(user, 100)
    await web.client.post("/run", json=run_body(), headers=as_user(user))
    response = await web.client.get("/credits/history.csv", headers=as_user(user))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == (
        'attachment; filename="credits-history-2026-01-01.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["created_at", "type", "amount", "balance_after", "description"]
    assert [row[1:4] for row in rows[1:]] == [["spend", "-7", "93"], ["purchased", "100", "100"]]
    spends = await web.client.get("/credits/history.csv?type=spend", headers=as_user(user))
    assert len(spends.text.strip().splitlines()) == 2


async def test_models_lists_prices_in_usd_and_credits(web: Web) -> None:
    response = await web.client.get("/models")  # public: no user needed
    assert response.status_code == 200
    body = response.json()
    assert body["usd_per_credit"] == "0.001"
    assert body["default_model"] == "claude-sonnet-5-5"
    assert [m["id"] for m in body["models"]] == [m.id for m in DEFAULT_MODELS]
    sonnet = body["models"][0]
    assert sonnet["aliases"] == ["sonnet"]
    assert (sonnet["input_usd_per_mtok"], sonnet["output_usd_per_mtok"]) == ("2", "10")
    # $2 per million input tokens at $0.001 a credit.
    assert (sonnet["input_credits_per_mtok"], sonnet["output_credits_per_mtok"]) == (2000, 10000)
    assert sonnet["cache_write_credits_per_mtok"] == 2500
    assert sonnet["cache_read_credits_per_mtok"] == 200
    assert (sonnet["context_window"], sonnet["max_output_tokens"]) == (1_000_000, 128_000)


async def test_models_skips_what_the_pricing_cannot_price(
    make_web: Callable[..., Web],
) -> None:
    web = make_web(
        pricing=TieredPricing({"claude-sonnet-5-5": Decimal(2)}),
        catalog=ModelCatalog(DEFAULT_MODELS[:2], {"sonnet": "claude-sonnet-5-5"}),
    )
    body = (await web.client.get("/models")).json()
    assert [m["id"] for m in body["models"]] == ["claude-sonnet-5-5"]
    # One tier of 5,000 tokens per 5,000: 200 tiers, times 2.
    assert body["models"][0]["output_credits_per_mtok"] == 400
