"""``IdPSettings``: one typed model, from Python (exactly what it is given), a config
file and the environment (``IdPSettings.load``), with the CLI's flags on top."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ajwt_core.errors import InvalidRequest, Reason
from ajwt_core.idp.settings import IdPSettings
from ajwt_core.keys import SigningKeySet

TOKEN = "Zq3v" + "x9Lk2Pw7Rt5Yb8Nc4Hd6Jf1Gs0Am" + "QeWuIo"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ["AJWT_ADMIN_TOKEN", "AJWT_IDP_DB", "AJWT_IDP_CONFIG"] + [
        "AJWT_IDP_" + field.upper() for field in IdPSettings.model_fields
    ]:
        monkeypatch.delenv(name, raising=False)


def test_python_construction_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AJWT_IDP_DB_URL", "sqlite:///from-env.db")
    monkeypatch.setenv("AJWT_ADMIN_TOKEN", TOKEN)
    keys = SigningKeySet.generate()
    settings = IdPSettings(issuer="https://idp.example/", signing_keys=keys)
    assert settings.db_url == "sqlite+aiosqlite:///ajwt-idp.db"
    assert settings.admin_token is None
    assert settings.signing_keys is keys  # live objects are kept as given
    assert settings.issuer == "https://idp.example"
    assert TOKEN not in repr(IdPSettings(issuer="https://i", admin_token=TOKEN))


def test_load_merges_defaults_file_environment_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "idp.toml"
    config.write_text(
        'issuer = "https://file.example"\ndb_url = "sqlite:///file.db"\n'
        "token_lifetime = 120\nlocal_users = false\n"
        'accepted_shim_checksums = ["' + "a" * 64 + '"]\n'
    )
    monkeypatch.setenv("AJWT_IDP_DB", "sqlite:///env.db")  # the older name still works
    monkeypatch.setenv("AJWT_IDP_TOKEN_LIFETIME", "90")
    monkeypatch.setenv("AJWT_IDP_REDIS_URL", "")  # empty: not a setting
    settings = IdPSettings.load(config, token_lifetime=60, redis_url=None)
    assert settings.issuer == "https://file.example"  # file
    assert settings.db_url == "sqlite:///env.db"  # environment over file
    assert settings.token_lifetime == 60  # flag over environment
    assert settings.local_users is False
    assert settings.accepted_shim_checksums == ["a" * 64]
    assert settings.redis_url is None


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_yaml_and_json_config_files(tmp_path: Path, suffix: str) -> None:
    config = tmp_path / f"idp{suffix}"
    values = {"issuer": "https://y.example", "port": 9001, "upstream_jwks": {"keys": []}}
    config.write_text(json.dumps(values))  # JSON is YAML too
    settings = IdPSettings.load(config)
    assert (settings.issuer, settings.port, settings.upstream_jwks) == (
        "https://y.example",
        9001,
        {"keys": []},
    )


def test_config_file_named_by_the_environment_and_admin_token_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text(TOKEN + "\n")
    config = tmp_path / "idp.toml"
    config.write_text(f'issuer = "https://i.example"\nadmin_token_file = "{token_file}"\n')
    monkeypatch.setenv("AJWT_IDP_CONFIG", str(config))
    assert IdPSettings.load().admin_token == TOKEN


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('issuer = "https://i"\nisuer = "x"\n', "'isuer' is not an IdP setting"),
        (
            'issuer = "https://i"\ntoken_lifetime = "soon"\n',
            "'token_lifetime' (AJWT_IDP_TOKEN_LIFETIME) is invalid",
        ),
        ('db_url = "sqlite:///x.db"\n', "'issuer' is required (AJWT_IDP_ISSUER)"),
        ('issuer = "https://i"\nsigning_keys = "k"\n', "signing_keys can only be given from"),
        ("issuer = [", "cannot be read"),
    ],
)
def test_a_bad_config_is_one_typed_error(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "idp.toml"
    config.write_text(content)
    with pytest.raises(InvalidRequest) as info:
        IdPSettings.load(config)
    assert info.value.reason == Reason.MALFORMED_REQUEST
    assert message in info.value.description


def test_unknown_config_suffix_and_missing_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "idp.ini").write_text("x")
    with pytest.raises(InvalidRequest, match=r"must be \.toml, \.yaml, \.yml or \.json"):
        IdPSettings.load(tmp_path / "idp.ini")
    with pytest.raises(InvalidRequest, match="there is no config file"):
        IdPSettings.load(tmp_path / "missing.toml")


def test_to_environ_round_trips_through_load(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = IdPSettings(
        issuer="https://rt.example",
        db_url="postgresql+asyncpg://ajwt@db/ajwt",
        admin_token=TOKEN,
        redis_url="redis://127.0.0.1:6379/15",
        local_users=False,
        accepted_shim_checksums=["b" * 64],
        workers=3,
        signing_keys=SigningKeySet.generate(),  # Python only: not exported
    )
    environ = settings.to_environ()
    assert "AJWT_IDP_SIGNING_KEYS" not in environ
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    loaded = IdPSettings.load()
    for field in ("issuer", "db_url", "admin_token", "redis_url", "local_users", "workers"):
        assert getattr(loaded, field) == getattr(settings, field), field
    assert loaded.accepted_shim_checksums == ["b" * 64]


def test_app_from_env_builds_the_idp_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ajwt_core.idp.asgi import app_from_env, settings_from_env

    monkeypatch.setenv("AJWT_IDP_ISSUER", "https://asgi.example")
    monkeypatch.setenv("AJWT_IDP_DB_URL", f"sqlite:///{tmp_path}/x.db")
    monkeypatch.setenv("AJWT_ADMIN_TOKEN", TOKEN)
    assert app_from_env().state.idp.settings.issuer == "https://asgi.example"
    monkeypatch.setenv("AJWT_ADMIN_TOKEN", "short")
    with pytest.raises(SystemExit, match="too weak"):
        settings_from_env()
    monkeypatch.delenv("AJWT_IDP_ISSUER")
    monkeypatch.delenv("AJWT_ADMIN_TOKEN")
    with pytest.raises(SystemExit, match="AJWT_IDP_ISSUER"):
        settings_from_env()


def test_serve_reads_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from ajwt_core.cli import app

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append(kw))
    config = tmp_path / "idp.toml"
    config.write_text(
        f'db_url = "sqlite:///{tmp_path}/c.db"\nkey_file = "{tmp_path}/k.json"\n'
        f'port = 9123\nadmin_token = "{TOKEN}"\n'
    )
    result = CliRunner().invoke(app, ["idp", "serve", "--config", str(config), "--port", "9124"])
    assert result.exit_code == 0, result.output
    assert calls[0]["port"] == 9124  # the flag over the file
    assert "issuer http://127.0.0.1:9124" in result.stderr  # the default issuer follows
    assert (tmp_path / "k.json").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text("prot = 1\n")
    refused = CliRunner().invoke(app, ["idp", "serve", "--config", str(bad)])
    assert refused.exit_code == 1
    assert refused.stderr == "error: 'prot' is not an IdP setting (malformed_request)\n"
