"""The benchmark scripts still run: each, at a tiny size, to its ``result:`` lines.

No figure is judged here (timings belong to the scripts' own runs); only
that the scripts work against the current code, and that the web
benchmark's correctness check (every stream completed and charged
exactly) holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import PG_URL

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

SMALL = {
    "ledger.py": ["--duration", "0.2", "--rounds", "1", "--warmup", "0.05"],
    "reset.py": ["--sizes", "200,400", "--naive-limit", "50"],
    "runner.py": ["--calls", "5", "--deltas", "5"],
    "web.py": ["--calls", "20", "--streams", "8"],
}


@pytest.mark.parametrize("script", sorted(SMALL))
def test_the_benchmark_runs_to_its_results(script: str) -> None:
    env = {**os.environ, "PRPM_TEST_POSTGRES_URL": PG_URL}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *SMALL[script]],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    results = [line for line in done.stdout.splitlines() if line.startswith("result: ")]
    assert results, done.stdout[-2000:]
    for line in results:
        assert " value=" in line
        assert " baseline=" in line
        assert " ratio=" in line
        assert " target=" in line
