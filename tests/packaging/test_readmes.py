"""Each package's README: the metadata a registry shows, and an example that runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging.project import PACKAGES, ROOT, pyproject

SECTIONS = ("## Install", "## Example", "## Documentation")


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", markdown, re.S | re.M)


@pytest.mark.parametrize("package", PACKAGES)
def test_readme_has_install_example_and_docs(package: str) -> None:
    text = (ROOT / "packages" / package / "README.md").read_text()
    assert text.startswith(f"# {package}\n")
    for section in SECTIONS:
        assert section in text, (package, section)
    assert len(python_blocks(text)) == 1, package
    assert "docs/" in text


@pytest.mark.parametrize("package", PACKAGES)
def test_readme_example_runs_as_written(package: str, tmp_path: Path) -> None:
    (block,) = python_blocks((ROOT / "packages" / package / "README.md").read_text())
    # A fresh folder as the working directory and home (crewai writes under $HOME).
    env = {**os.environ, "HOME": str(tmp_path), "CREWAI_TRACING_ENABLED": "false"}
    env["OTEL_SDK_DISABLED"] = "true"
    result = subprocess.run(  # noqa: S603 - our own interpreter and README
        [sys.executable, "-c", block],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), "the example prints what it shows"


@pytest.mark.parametrize("package", PACKAGES)
def test_metadata_names_readme_license_authors_classifiers_and_urls(package: str) -> None:
    project = pyproject(package)["project"]
    assert project["readme"] == "README.md"
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert (
        (ROOT / "packages" / package / "LICENSE").read_text().lstrip().startswith("Apache License")
    )
    assert project["authors"]
    assert "Typing :: Typed" in project["classifiers"]
    assert project["urls"]
    module = package.replace("-", "_")
    assert (ROOT / "packages" / package / "src" / module / "py.typed").exists()
