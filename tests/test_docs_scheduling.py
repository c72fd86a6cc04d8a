"""The scheduling guide's code blocks parse and it covers every scheduler."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

PAGE = Path(__file__).resolve().parents[1] / "docs/guides/scheduling.md"

# A fenced block, possibly indented (inside a list item): its indent, language and body.
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>\w+)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S
)


def blocks(language: str) -> list[str]:
    found = []
    for match in FENCE.finditer(PAGE.read_text(encoding="utf-8")):
        if match["lang"] == language:
            indent = len(match["indent"])
            found.append("".join(line[indent:] for line in match["body"].splitlines(True)))
    return found


PYTHON = blocks("python")
YAML = blocks("yaml")


def test_page_has_code() -> None:
    assert len(PYTHON) >= 5
    assert len(YAML) >= 1


@pytest.mark.parametrize("code", PYTHON, ids=[f"python-{i}" for i in range(len(PYTHON))])
def test_python_block_parses(code: str) -> None:
    ast.parse(code)  # syntax only; a top-level await parses too


@pytest.mark.parametrize("code", YAML, ids=[f"yaml-{i}" for i in range(len(YAML))])
def test_yaml_block_parses(code: str) -> None:
    assert isinstance(yaml.safe_load(code), dict)


def test_cronjob_manifest() -> None:
    (manifest,) = (yaml.safe_load(code) for code in YAML if "CronJob" in code)
    assert manifest["apiVersion"] == "batch/v1"
    assert manifest["kind"] == "CronJob"
    job = manifest["spec"]["jobTemplate"]["spec"]
    assert job["template"]["spec"]["restartPolicy"] == "OnFailure"
    (container,) = job["template"]["spec"]["containers"]
    assert container["command"][:3] == ["prpm-playground", "reset", "run"]
    assert [e["name"] for e in container["env"]] == ["PRPM_DATABASE_URL"]


@pytest.mark.parametrize(
    "term", ["cron", "CronJob", "Celery", "APScheduler", "lifespan", "SKIP LOCKED"]
)
def test_page_mentions(term: str) -> None:
    assert term in PAGE.read_text(encoding="utf-8")
