"""``docs/langchain.md`` runs as written: its python blocks, top to bottom, as one program
(as the docs collector runs them), printing what the page says they print."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[3] / "docs" / "langchain.md"


def test_the_page_runs_top_to_bottom(tmp_path: Path) -> None:
    pytest.importorskip("langgraph_supervisor")
    blocks = re.findall(r"^```python\n(.*?)^```$", PAGE.read_text(), re.S | re.M)
    script = tmp_path / "page.py"
    script.write_text("\n\n".join(blocks))
    done = subprocess.run(  # noqa: S603 - this interpreter and the page's own code
        [sys.executable, "-W", "ignore", str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "lookup_order  supervisor → researcher" in out
    assert "issue_refund  supervisor → refunder" in out
    assert "dependencies_incomplete" in out and "checksum_mismatch" in out
    assert "reporter router → " in out
    assert "refunder researcher → refunder" in out
    assert out.count("run finished: True") == 5
    assert "user:alice Refunded. run finished: True" in out
    assert "user:bob Refunded. run finished: True" in out
    assert "401 malformed_token" in out
    assert 'Bearer error="invalid_token"' in out
    assert "researcher  answer  lookup_order  concierge → researcher" in out
    assert "billing issue_refund triage → billing" in out
    assert "Refund 30 EUR for order 42? due: ['refunder']" in out
    assert "issue_refund run finished: True" in out
