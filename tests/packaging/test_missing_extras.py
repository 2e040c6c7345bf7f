"""A missing extra is one line naming the ``pip install`` that fixes it, never a traceback.

Each case runs in a fresh interpreter in which the extra's modules cannot be imported
(``sys.modules[name] = None`` makes ``import name`` fail as if it were not installed);
``tests/packaging/test_wheels.py`` checks the same from a real install of the wheel
without extras.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ajwt_core._extras import MissingExtraError, needs_extra
from tests.packaging.project import ROOT

IDP_MODULES = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic")


def python(code: str, *, blocked: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    prelude = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked)
    return subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def ajwt(*args: str, blocked: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """The console script's entry point, as ``ajwt ARGS`` runs it."""
    code = f"""
        sys.argv = ["ajwt", *{list(args)!r}]
        from ajwt_core.__main__ import main
        sys.exit(main())
    """
    return python(code, blocked=blocked)


def assert_one_line(result: subprocess.CompletedProcess[str], command: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert lines[0].endswith(f"install it with: {command} (missing_extra)"), lines[0]


def test_ajwt_without_the_cli_extra_is_one_line() -> None:
    result = ajwt("--help", blocked=("typer",))
    assert_one_line(result, "pip install 'ajwt-core[cli]'")
    assert "the ajwt command needs the 'cli' extra" in result.stderr


def test_ajwt_with_the_cli_extra_runs() -> None:
    result = ajwt("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ajwt ")


def test_python_dash_m_ajwt_core_runs_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ajwt_core", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ajwt ")


def test_importing_the_cli_without_typer_raises_an_import_error_not_system_exit() -> None:
    result = python(
        """
        try:
            import ajwt_core.cli
        except ImportError as exc:
            print(type(exc).__name__, exc.name)
        """,
        blocked=("typer",),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["MissingExtraError", "typer"]


def test_demo_without_its_package_is_one_line() -> None:
    result = ajwt("demo", "--plain", "--fast", blocked=("ajwt_demo",))
    assert_one_line(result, "pip install ajwt-demo")


@pytest.mark.parametrize(
    ("framework", "package", "command"),
    [
        ("langgraph", "ajwt-langchain", "pip install ajwt-langchain"),
        ("autogen", "ajwt-autogen", "pip install 'ajwt-demo[autogen]'"),
        ("crewai", "ajwt-crewai", "pip install 'ajwt-demo[crewai]'"),
    ],
)
def test_demo_without_the_frameworks_adapter_is_one_line(
    framework: str, package: str, command: str
) -> None:
    result = ajwt("demo", "--plain", "--framework", framework, blocked=(package.replace("-", "_"),))
    assert_one_line(result, command)


LIBRARY_CASES = {
    "idp": ("from ajwt_core.idp import create_app", IDP_MODULES),
    "rs": ("import ajwt_core.rs.fastapi", ("fastapi",)),
    "redis": (
        "from ajwt_core.rs import RedisReplayStore; RedisReplayStore.from_url('redis://x')",
        ("redis",),
    ),
    "postgres": (
        "from ajwt_core.idp.db import Database; Database('postgresql+asyncpg://u@127.0.0.1/x')",
        ("asyncpg",),
    ),
}


@pytest.mark.parametrize("extra", sorted(LIBRARY_CASES))
def test_library_code_without_its_extra_raises_one_line_missing_extra_error(extra: str) -> None:
    statement, blocked = LIBRARY_CASES[extra]
    result = python(
        f"""
        from ajwt_core._extras import MissingExtraError
        try:
            {statement}
        except MissingExtraError as exc:
            print(exc.extra)
            print(exc)
        """,
        blocked=blocked,
    )
    assert result.returncode == 0, result.stderr
    extra_seen, message = result.stdout.splitlines()
    assert extra_seen == extra
    assert message.endswith(f"install it with: pip install 'ajwt-core[{extra}]'")


def test_the_core_needs_no_extra() -> None:
    result = python(
        """
        from ajwt_core import AJWTMiddleware, JWKSCache, RoutePolicy, Shim, Verifier, Workflow
        from ajwt_core.rs import MemoryReplayStore
        print("ok")
        """,
        blocked=(*IDP_MODULES, "typer", "rich", "redis", "asyncpg"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_other_import_errors_pass_through_unchanged() -> None:
    with pytest.raises(ModuleNotFoundError) as caught, needs_extra("idp", "the IdP"):
        raise ModuleNotFoundError("No module named 'anyio'", name="anyio")
    assert not isinstance(caught.value, MissingExtraError)
