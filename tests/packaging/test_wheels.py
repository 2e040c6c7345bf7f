"""The four packages as a user gets them: built, installed from the wheels, used.

``uv build`` makes each package's sdist and, from the sdist, its wheel. Fresh virtual
environments outside the repository then install from those wheels alone (plus the
index for third-party packages) and run:

- without any extra: the core imports, and every feature whose extra is missing says
  so in one line (the ``ajwt`` script, the IdP, the FastAPI integration);
- ``ajwt-demo`` (with ``ajwt-core`` and ``ajwt-langchain``): each program of :data:`PROGRAMS` (the
  default one starts an IdP from the installed package, registers a client and makes
  a secured LangChain tool call), and ``ajwt demo``.

To run another program against the installed wheels (the getting-started page's code,
say), add its path to :data:`PROGRAMS`: a ``.py`` file runs as it is, a ``.md`` page
runs its ```` ```python ```` blocks in order as one program. ``AJWT_WHEEL_PROGRAMS``
(paths separated by ``os.pathsep``) adds programs for one run. Heavy (``AJWT_HEAVY=1``):
about a minute with a warm uv cache.
"""

from __future__ import annotations

import email.message
import email.parser
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.packaging.project import PACKAGES, ROOT, pyproject, uv
from tests.services import require_heavy

HERE = Path(__file__).resolve().parent
PROGRAMS: list[Path] = [HERE / "wheel_smoke.py"]
PROGRAMS += [Path(p) for p in os.environ.get("AJWT_WHEEL_PROGRAMS", "").split(os.pathsep) if p]

pytestmark = pytest.mark.heavy


def run(*argv: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run outside the repository, with nothing of it on the import path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HOME=str(cwd), CREWAI_TRACING_ENABLED="false", OTEL_SDK_DISABLED="true")
    return subprocess.run(  # noqa: S603 - uv and interpreters we created, fixed arguments
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.args, result.stdout[-3000:], result.stderr[-3000:])
    return result.stdout


@dataclass
class Venv:
    path: Path
    wheels: dict[str, Path]

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def ajwt(self) -> Path:
        return self.path / "bin" / "ajwt"

    def install(self, *requirements: str | Path) -> None:
        # The wheels by path; --find-links lets ajwt-demo find the others'.
        dist = next(iter(self.wheels.values())).parent
        ok(
            run(
                uv(),
                "pip",
                "install",
                "--python",
                self.python,
                "--find-links",
                dist,
                *requirements,
                cwd=self.path,
            )
        )


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    require_heavy()
    dist = tmp_path_factory.mktemp("dist")
    for package in PACKAGES:
        # sdist, then the wheel built from it: a file missing from the sdist fails here.
        ok(
            run(
                uv(),
                "build",
                "--no-sources",
                "--out-dir",
                dist,
                ROOT / "packages" / package,
                cwd=dist,
            )
        )
    found = {p: next(dist.glob(p.replace("-", "_") + "-*.whl")) for p in PACKAGES}
    assert len(list(dist.glob("*.tar.gz"))) == len(PACKAGES)
    return found


def new_venv(wheels: dict[str, Path], where: Path) -> Venv:
    ok(run(uv(), "venv", "--quiet", "--python", sys.executable, where / "venv", cwd=where))
    return Venv(where / "venv", wheels)


@pytest.fixture(scope="module")
def app_venv(wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Venv:
    venv = new_venv(wheels, tmp_path_factory.mktemp("app"))
    venv.install(wheels["ajwt-demo"], wheels["ajwt-core"], wheels["ajwt-langchain"])
    return venv


def metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(archive.read(name).decode())


@pytest.mark.parametrize("package", PACKAGES)
def test_wheel_carries_metadata_license_readme_and_types(
    wheels: dict[str, Path], package: str
) -> None:
    meta = metadata(wheels[package])
    project = pyproject(package)["project"]
    assert meta["Name"] == package
    assert meta["Version"] == project["version"]
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Author"] or meta["Author-email"]
    assert meta.get_all("Project-URL")
    assert "Typing :: Typed" in meta.get_all("Classifier", [])
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().startswith(f"# {package}")
    assert meta["Requires-Python"] == ">=3.11"
    with zipfile.ZipFile(wheels[package]) as archive:
        names = archive.namelist()
    module = package.replace("-", "_")
    assert f"{module}/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "examples/")) for n in names)
    if package != "ajwt-core":
        requires = meta.get_all("Requires-Dist", [])
        # The adapters pin the core to 0.1.x, with or without extras (the demo needs
        # the IdP and the CLI).
        assert any(re.fullmatch(r"ajwt-core(\[[a-z,]+\])?<0\.2,>=0\.1\.0", r) for r in requires), (
            requires
        )


def test_without_extras_the_core_imports_and_each_missing_extra_is_one_line(
    wheels: dict[str, Path], tmp_path: Path
) -> None:
    venv = new_venv(wheels, tmp_path)
    venv.install(wheels["ajwt-core"])
    program = """
        from ajwt_core import AJWTError, AJWTMiddleware, Shim, Verifier, Workflow
        from ajwt_core._extras import MissingExtraError
        for statement in ("import ajwt_core.cli", "from ajwt_core.idp import create_app",
                          "import ajwt_core.rs.fastapi"):
            try:
                exec(statement)
            except MissingExtraError as exc:
                print(exc)
    """
    lines = ok(run(venv.python, "-c", textwrap.dedent(program), cwd=tmp_path)).splitlines()
    assert len(lines) == 3, lines
    for line, extra in zip(lines, ("cli", "idp", "rs"), strict=True):
        assert line.endswith(f"install it with: pip install 'ajwt-core[{extra}]'"), line

    for argv in ([venv.ajwt, "--help"], [venv.python, "-m", "ajwt_core", "--help"]):
        result = run(*argv, cwd=tmp_path)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.splitlines() == [
            "error: the ajwt command needs the 'cli' extra (module 'typer' is not installed); "
            "install it with: pip install 'ajwt-core[cli]' (missing_extra)"
        ]

    venv.install(f"{wheels['ajwt-core']}[cli]")
    assert ok(run(venv.ajwt, "--version", cwd=tmp_path)).startswith("ajwt ")
    result = run(venv.ajwt, "demo", "--plain", cwd=tmp_path)
    assert result.returncode == 1
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.rstrip().endswith("install it with: pip install ajwt-demo (missing_extra)")


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.name)
def test_program_runs_against_the_installed_wheels(
    app_venv: Venv, program: Path, tmp_path: Path
) -> None:
    source = program_source(program)
    (tmp_path / "program.py").write_text(source)
    output = ok(run(app_venv.python, "program.py", cwd=tmp_path, timeout=300))
    if program.suffix == ".py" and program.parent == HERE:
        assert output.splitlines()[-1] == "ok"


def test_ajwt_demo_runs_from_the_wheels(app_venv: Venv, tmp_path: Path) -> None:
    result = run(app_venv.ajwt, "demo", "--fast", "--plain", "--out", "report", cwd=tmp_path)
    ok(result)
    assert "A-JWT blocked" in result.stdout
    assert (tmp_path / "report" / "report.html").exists()


def test_imports_come_from_the_installed_wheels(app_venv: Venv, tmp_path: Path) -> None:
    where = ok(
        run(
            app_venv.python,
            "-c",
            "import ajwt_core, ajwt_langchain; print(ajwt_core.__file__, ajwt_langchain.__file__)",
            cwd=tmp_path,
        )
    )
    for path in where.split():
        assert Path(path).is_relative_to(app_venv.path), path


def program_source(program: Path) -> str:
    """A ``.py`` file as it is; a Markdown page's ``python`` blocks, in order."""
    text = program.read_text()
    if program.suffix == ".md":
        blocks = re.findall(r"^```python\n(.*?)^```$", text, re.S | re.M)
        assert blocks, f"{program} has no python block"
        return "\n".join(blocks)
    return text
