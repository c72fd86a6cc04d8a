"""The docs' complete example runs and prints exactly what the page says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("page", ["concepts/ledger.md", "guides/running.md"])
def test_complete_example(repo_root: Path, tmp_path: Path, page: str) -> None:
    text = (repo_root / "docs" / page).read_text()
    section = text.split("## A complete example", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    printed = re.search(r"It prints:\s*```text\n(.*?)```", section, re.S)
    assert code
    assert printed
    script = tmp_path / "example.py"
    script.write_text(code.group(1))
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == printed.group(1)
