"""``ajwt idp serve`` and the worker environment (``ajwt_core.idp.asgi``) configure the
user's upstream OpenID provider (issue 16)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ajwt_core.idp.asgi import app_from_env, settings_from_env
from tests.cli.test_cli import RecordedRun, assert_one_error_line, invoke, recorded_run

__all__ = ["recorded_run"]  # the fixture, used by name

UPSTREAM_VARIABLES = (
    "AJWT_IDP_LOCAL_USERS",
    "AJWT_IDP_UPSTREAM_ISSUER",
    "AJWT_IDP_UPSTREAM_AUDIENCE",
    "AJWT_IDP_UPSTREAM_CLIENT_ID",
    "AJWT_IDP_UPSTREAM_JWKS_URL",
    "AJWT_IDP_UPSTREAM_SUBJECT_PREFIX",
)
OP = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # serve --workers exports the configuration for its workers: restored afterwards.
    for name in UPSTREAM_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def serve(tmp_path: Path, *args: str) -> list[str]:
    return ["idp", "serve", "--key-file", str(tmp_path / "k.json"), *args]


def test_serve_configures_the_upstream(tmp_path: Path, recorded_run: RecordedRun) -> None:
    args = serve(tmp_path, "--db", f"sqlite+aiosqlite:///{tmp_path}/x.db")
    result = invoke(*args, "--upstream-issuer", OP, "--upstream-client-id", "app")
    assert result.exit_code == 0, result.output
    assert f"users from {OP}" in result.stderr and "local users" not in result.stderr
    [((application,), _options)] = recorded_run.calls
    idp = application.state.idp
    assert idp.upstream.issuer == OP
    assert idp.settings.upstream_client_id == "app"
    assert not idp.settings.accepts_local_users  # off by default with an upstream


def test_serve_takes_the_upstream_from_the_environment(
    tmp_path: Path, recorded_run: RecordedRun
) -> None:
    args = serve(tmp_path, "--db", f"sqlite+aiosqlite:///{tmp_path}/x.db", "--local-users")
    result = invoke(*args, AJWT_IDP_UPSTREAM_ISSUER=OP, AJWT_IDP_UPSTREAM_AUDIENCE="api")
    assert result.exit_code == 0, result.output
    [((application,), _options)] = recorded_run.calls
    settings = application.state.idp.settings
    assert (settings.upstream_issuer, settings.upstream_audience) == (OP, "api")
    assert settings.accepts_local_users  # asked for explicitly


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream-client-id", "app"], "without an upstream issuer"),
        (["--upstream-issuer", OP, "--upstream-subject-prefix", "", "--local-users"], "same 'sub'"),
        (["--upstream-issuer", "op.example"], "http(s) URL"),
    ],
)
def test_serve_refuses_an_upstream_that_cannot_work(
    tmp_path: Path, recorded_run: RecordedRun, args: list[str], message: str
) -> None:
    result = invoke(*serve(tmp_path, "--db", f"sqlite+aiosqlite:///{tmp_path}/x.db"), *args)
    line = assert_one_error_line(result, "malformed_request")
    assert message in line
    assert recorded_run.calls == []


def test_serve_hands_the_upstream_to_its_workers(tmp_path: Path, recorded_run: RecordedRun) -> None:
    args = serve(tmp_path, "--workers", "2", "--db", "postgresql+asyncpg://ajwt@127.0.0.1/x")
    args += ["--redis", "redis://127.0.0.1:6379/15", "--upstream-issuer", OP]
    args += ["--upstream-client-id", "app", "--upstream-subject-prefix", ""]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    with pytest.MonkeyPatch.context() as env:  # the environment the workers start with
        for name, value in recorded_run.environ.items():
            env.setenv(name, value)
        settings = settings_from_env()  # what each worker builds
    assert settings.upstream_issuer == OP
    assert settings.upstream_client_id == "app"
    assert settings.upstream_subject_prefix == ""  # set and empty: bare subjects
    assert settings.upstream_audience is None and settings.local_users is None
    assert not settings.accepts_local_users


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), ("", None), ("1", True), ("0", False), ("no", False)]
)
def test_worker_local_users_flag(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool | None
) -> None:
    monkeypatch.setenv("AJWT_IDP_ISSUER", "http://idp.test")
    if value is not None:
        monkeypatch.setenv("AJWT_IDP_LOCAL_USERS", value)
    assert settings_from_env().local_users is expected


def test_workers_refuse_an_unreadable_flag_or_an_upstream_that_cannot_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AJWT_IDP_ISSUER", "http://idp.test")
    monkeypatch.setenv("AJWT_IDP_LOCAL_USERS", "maybe")
    with pytest.raises(SystemExit, match="AJWT_IDP_LOCAL_USERS"):
        settings_from_env()
    monkeypatch.delenv("AJWT_IDP_LOCAL_USERS")
    monkeypatch.setenv("AJWT_IDP_UPSTREAM_CLIENT_ID", "app")
    with pytest.raises(SystemExit, match="without an upstream issuer"):
        app_from_env()
    assert "AJWT_IDP_UPSTREAM_ISSUER" not in os.environ
