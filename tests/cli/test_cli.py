"""The ``ajwt`` command: checksum, inspect, audit verify, idp serve / rotate-key.

Exit status 0 on success, 1 for a refusal or failure (one ``error:`` line on stderr,
no traceback), 2 for a usage error.
"""

from __future__ import annotations

import base64
import contextlib
import inspect
import json
import os
import pickle
import secrets
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from ajwt_core.canonical import jcs
from ajwt_core.checksum import AgentManifest, compute_checksum
from ajwt_core.cli import app
from ajwt_core.idp.keystore import load_signing_keys
from ajwt_core.keys import SigningKeySet
from ajwt_core.ledger import EntryKind, Ledger, export_json
from ajwt_core.shim import Shim
from ajwt_core.tokens import build_act_chain, encode_intent_token
from ajwt_demo.agents import reference_manifests
from ajwt_demo.stack import ADMIN_TOKEN, Stack, start_stack
from tests.support import AUDIENCE, ISSUER, ClaimsFactory

AJWT = Path(sys.executable).with_name("ajwt")
MANIFEST: dict[str, Any] = {
    "agent_id": "planner",
    "prompt": {"template": "Plan the fix for {repo}.", "variables": ["repo"]},
    "tools": [{"name": "read_file", "parameters": {"type": "object"}}],
    "config": {"model": "gpt-4o", "temperature": 0},
}


def invoke(*args: str, stdin: str | None = None, **env: str | None) -> Result:
    # Wide columns: nothing a test looks for is wrapped onto two lines.
    return CliRunner().invoke(app, list(args), input=stdin, env={"COLUMNS": "240", **env})


def assert_one_error_line(result: Result, reason: str) -> str:
    """Exit 1, one ``error: … (reason)`` line on stderr, no traceback anywhere."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert lines[0].endswith(f"({reason})")
    return lines[0]


def write_json(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))
    return path


def b64url_json(document: dict[str, Any]) -> str:
    raw = json.dumps(document).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_decode(segment: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return decoded


# ------------------------------------------------------------------------------- app


def test_help_lists_the_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("checksum", "inspect", "idp", "audit"):
        assert command in result.stdout
    assert "rotate-key" in invoke("idp", "--help").stdout


def test_importing_the_cli_loads_no_server_stack() -> None:
    heavy = ("fastapi", "sqlalchemy", "uvicorn", "httpx", "pydantic")
    code = f"import sys, ajwt_core.cli; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_defaults_match_the_modules_they_mirror() -> None:
    from ajwt_core.cli import idp
    from ajwt_core.idp.keystore import DEFAULT_ACTIVATE_AFTER
    from ajwt_core.idp.settings import DEFAULT_DB_URL
    from ajwt_core.rs.jwks import JWKSCache
    from ajwt_core.tokens import MAX_INTENT_LIFETIME

    assert idp.DEFAULT_DB_URL == DEFAULT_DB_URL
    assert idp.MAX_TOKEN_LIFETIME == MAX_INTENT_LIFETIME
    # rotate-key's default covers a resource server's JWKS refresh plus a token lifetime.
    jwks_max_age = inspect.signature(JWKSCache).parameters["max_age"].default
    assert idp.DEFAULT_ACTIVATE_AFTER == DEFAULT_ACTIVATE_AFTER
    assert jwks_max_age + MAX_INTENT_LIFETIME <= DEFAULT_ACTIVATE_AFTER


@pytest.mark.parametrize(
    "args",
    [
        ["no-such-command"],
        ["inspect"],
        ["checksum"],
        ["inspect", "x", "--jwks", "jwks.json"],  # --jwks needs --issuer
        ["inspect", "x", "--issuer", ISSUER],  # --issuer needs --jwks
        ["idp", "serve", "--port", "0"],
        ["idp", "serve", "--token-lifetime", "301"],
        ["audit", "verify", "no-such-run"],  # a run id needs --idp
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


# -------------------------------------------------------------------------- checksum


def test_checksum_is_the_manifest_checksum(tmp_path: Path) -> None:
    result = invoke("checksum", str(write_json(tmp_path / "m.json", MANIFEST)))
    assert result.exit_code == 0, result.output
    assert result.stdout == compute_checksum(MANIFEST) + "\n"


def test_checksum_reads_stdin_and_prints_the_canonical_json(tmp_path: Path) -> None:
    result = invoke("checksum", "--canonical", "-", stdin=json.dumps(MANIFEST))
    assert result.exit_code == 0, result.output
    checksum, canonical = result.stdout.splitlines()
    assert checksum == compute_checksum(MANIFEST)
    assert canonical.encode() == jcs(AgentManifest.model_validate(MANIFEST).canonical())


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            json.dumps({"agent_id": "planner", "prompt": {"template": "Hi {name}"}}),
            "invalid_manifest",
        ),
        (json.dumps({**MANIFEST, "config": {"api_key": "sk-live"}}), "secret_in_manifest"),
        (json.dumps([MANIFEST]), "invalid_manifest"),
        ('{"agent_id": ', "invalid_manifest"),
    ],
)
def test_invalid_manifest_is_one_error_line(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(content)
    line = assert_one_error_line(invoke("checksum", str(path)), reason)
    assert "sk-live" not in line


def test_checksum_of_missing_file_is_one_error_line(tmp_path: Path) -> None:
    assert_one_error_line(invoke("checksum", str(tmp_path / "nope.json")), "io_error")


# --------------------------------------------------------------------------- inspect


@pytest.fixture
def keys() -> SigningKeySet:
    return SigningKeySet.generate()


@pytest.fixture
def jwks_file(tmp_path: Path, keys: SigningKeySet) -> Path:
    return write_json(tmp_path / "jwks.json", keys.jwks())


@pytest.fixture
def token(keys: SigningKeySet, make_claims: ClaimsFactory) -> str:
    now = int(time.time())
    claims = make_claims(
        iat=now, nbf=now, exp=now + 300, act=build_act_chain(["supervisor", "planner"])
    )
    return encode_intent_token(claims, keys.active)


def verify_args(jwks: Path | str) -> list[str]:
    return ["--jwks", str(jwks), "--issuer", ISSUER, "--audience", AUDIENCE]


def test_inspect_without_jwks_says_the_signature_is_not_verified(token: str) -> None:
    result = invoke("inspect", token)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "signature NOT verified" in out
    assert "at+jwt" in out and "client_id" in out and "patcher-app" in out
    # The chain as a tree, user at the root, acting agent with step and tool at the leaf.
    user, first, acting = (
        out.index(s) for s in ("user:alice", "agent:supervisor", "agent:planner")
    )
    assert user < first < acting
    assert "step plan" in out and "tool read_file" in out
    assert "within its lifetime" in out


def test_inspect_reads_the_token_from_stdin(token: str) -> None:
    result = invoke("inspect", "-", "--json", stdin=token + "\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["claims"]["jti"] == "jti-1"


def test_inspect_verifies_with_a_jwks_file(token: str, jwks_file: Path) -> None:
    result = invoke("inspect", token, *verify_args(jwks_file))
    assert result.exit_code == 0, result.output
    assert "signature verified" in result.stdout
    assert "NOT verified" not in result.stdout


def test_inspect_json_is_machine_readable(token: str, jwks_file: Path) -> None:
    result = invoke("inspect", token, "--json", *verify_args(jwks_file))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["verification"] == {
        "checked": True,
        "verified": True,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "audience_checked": True,
    }
    assert report["header"]["typ"] == "at+jwt"
    assert report["chain"] == ["supervisor", "planner"]
    assert report["claims"]["intent"]["step"] == "plan"
    assert report["times"]["expired"] is False

    unverified = json.loads(invoke("inspect", token, "--json").stdout)
    assert unverified["verification"] == {"checked": False, "verified": False}


def test_inspect_refuses_a_tampered_token(token: str, jwks_file: Path) -> None:
    header, payload, signature = token.split(".")
    claims = b64url_decode(payload)
    claims["scope"] = "repo:write"  # scope inflation after signing
    tampered = f"{header}.{b64url_json(claims)}.{signature}"

    result = invoke("inspect", tampered, *verify_args(jwks_file))
    line = assert_one_error_line(result, "bad_signature")
    assert "REFUSED" in result.stdout and "bad_signature" in result.stdout
    assert "refused" in line

    report = json.loads(invoke("inspect", tampered, "--json", *verify_args(jwks_file)).stdout)
    assert report["verification"]["verified"] is False
    assert report["verification"]["reason"] == "bad_signature"

    # Without --jwks nothing was verified, so nothing was refused: exit 0, clearly marked.
    unverified = invoke("inspect", tampered)
    assert unverified.exit_code == 0
    assert "signature NOT verified" in unverified.stdout


def test_inspect_names_each_refusal(
    keys: SigningKeySet, make_claims: ClaimsFactory, jwks_file: Path, tmp_path: Path
) -> None:
    expired = encode_intent_token(make_claims(), keys.active)  # minted in 2025
    result = invoke("inspect", expired, *verify_args(jwks_file))
    assert_one_error_line(result, "token_expired")
    assert "EXPIRED" in result.stdout

    now = int(time.time())
    current = encode_intent_token(make_claims(iat=now, nbf=now, exp=now + 60), keys.active)
    other = write_json(tmp_path / "other.json", SigningKeySet.generate().jwks())
    assert_one_error_line(invoke("inspect", current, *verify_args(other)), "unknown_kid")
    wrong_audience = ["--jwks", str(jwks_file), "--issuer", ISSUER, "--audience", "https://x"]
    assert_one_error_line(invoke("inspect", current, *wrong_audience), "wrong_audience")


@pytest.mark.parametrize(
    "garbage", ["not-a-token", "a.b.c", "e30.e30", "\x1b[2J", "eyJhbGciOiJFUzI1NiJ9.W10.sig"]
)
def test_inspect_of_garbage_is_one_error_line(garbage: str) -> None:
    line = assert_one_error_line(invoke("inspect", garbage), "malformed_token")
    assert "\x1b" not in line


def test_inspect_escapes_control_characters_in_claims(
    keys: SigningKeySet, make_claims: ClaimsFactory
) -> None:
    token = encode_intent_token(make_claims(sub="user:\x1b[2Jeve", client_id="a\nb"), keys.active)
    result = invoke("inspect", token)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout
    assert "user:\\x1b[2Jeve" in result.stdout and "a\\nb" in result.stdout


def test_inspect_with_an_unusable_jwks_is_one_error_line(token: str, tmp_path: Path) -> None:
    empty = write_json(tmp_path / "empty.json", {"keys": []})
    assert_one_error_line(invoke("inspect", token, *verify_args(empty)), "invalid_key")
    missing = tmp_path / "missing.json"
    assert_one_error_line(invoke("inspect", token, *verify_args(missing)), "io_error")


# --------------------------------------------------------------------- audit (file)


def ledger_export() -> dict[str, Any]:
    ledger = Ledger("run-7")
    ledger.append(EntryKind.RUN_STARTED, {"workflow_id": "vuln-patch"}, at=1000)
    for offset, step in enumerate(("triage", "plan", "classify")):
        ledger.append(EntryKind.STEP_COMPLETED, {"step": step}, at=1001 + offset)
    document: dict[str, Any] = json.loads(export_json(ledger.entries))
    return document


def test_audit_verifies_a_good_export(tmp_path: Path) -> None:
    path = write_json(tmp_path / "ledger.json", ledger_export())
    result = invoke("audit", "verify", str(path))
    assert result.exit_code == 0, result.output
    assert "ok" in result.stdout and "run-7" in result.stdout

    report = json.loads(invoke("audit", "verify", str(path), "--json").stdout)
    assert (report["ok"], report["entries"], report["run_id"]) == (True, 4, "run-7")


def test_audit_names_the_edited_entry(tmp_path: Path) -> None:
    document = ledger_export()
    document["entries"][2]["data"]["step"] = "patch"  # claim a different step was done
    path = write_json(tmp_path / "ledger.json", document)

    result = invoke("audit", "verify", str(path))
    line = assert_one_error_line(result, "ledger_broken")
    assert "entry 2" in line
    assert "BROKEN at entry 2" in result.stdout

    report = json.loads(invoke("audit", "verify", str(path), "--json").stdout)
    assert (report["ok"], report["first_bad_seq"]) == (False, 2)


def test_audit_detects_a_deleted_entry(tmp_path: Path) -> None:
    document = ledger_export()
    del document["entries"][1]
    path = write_json(tmp_path / "ledger.json", document)
    line = assert_one_error_line(invoke("audit", "verify", str(path)), "ledger_broken")
    assert "entry 1" in line


def test_audit_of_a_file_that_is_no_export_is_one_error_line(tmp_path: Path) -> None:
    path = write_json(tmp_path / "m.json", MANIFEST)
    # Not a ledger at all, so nothing is "broken" (issue 15): it says what the file is not.
    line = assert_one_error_line(invoke("audit", "verify", str(path)), "not_a_ledger")
    assert "is not a ledger export" in line


# ---------------------------------------------------------------- against a live IdP


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("idp") / "idp.db")
    yield running
    running.close()


@pytest.fixture(scope="module")
def client(stack: Stack) -> dict[str, Any]:
    return stack.new_client()


@pytest.fixture(scope="module")
def shim(stack: Stack, client: dict[str, Any]) -> Iterator[Shim]:
    shim = Shim(stack.idp_url, client["client_id"], client_secret=client["client_secret"])
    shim.register_many(reference_manifests())
    yield shim
    shim.close()


@pytest.fixture(scope="module")
def live_token(stack: Stack, shim: Shim) -> tuple[str, str]:
    """A token minted by the IdP (which appends to the run's ledger), and its run id."""
    run = stack.start_run(shim)
    context = shim.context("supervisor", tool="list_repos", run=run)
    return shim.token(context, stack.rs_url).token, run.run_id


def test_audit_verifies_a_run_at_the_idp(stack: Stack, live_token: tuple[str, str]) -> None:
    _, run_id = live_token
    result = invoke("audit", "verify", run_id, "--idp", stack.idp_url, "--admin-token", ADMIN_TOKEN)
    assert result.exit_code == 0, result.output
    assert "ok" in result.stdout and run_id in result.stdout

    report = json.loads(
        invoke(
            "audit",
            "verify",
            run_id,
            "--idp",
            stack.idp_url,
            "--json",
            AJWT_ADMIN_TOKEN=ADMIN_TOKEN,
        ).stdout
    )
    assert report["ok"] is True
    assert report["entries"] >= 2  # run started, token minted
    assert report["idp_report"]["head"] == report["head"]


def test_audit_authenticates_as_the_runs_client(
    stack: Stack, client: dict[str, Any], live_token: tuple[str, str]
) -> None:
    _, run_id = live_token
    secret = client["client_secret"]
    args = ["audit", "verify", run_id, "--idp", stack.idp_url, "--client-id", client["client_id"]]
    result = invoke(*args, AJWT_CLIENT_SECRET=secret, AJWT_ADMIN_TOKEN=None)
    assert result.exit_code == 0, result.output
    assert secret not in result.output

    wrong = invoke(*args, "--client-secret", "wrong", AJWT_ADMIN_TOKEN=None)
    line = assert_one_error_line(wrong, "client_authentication_failed")
    assert "wrong" not in line


def test_audit_of_an_unknown_run_is_one_error_line(stack: Stack) -> None:
    result = invoke(
        "audit", "verify", "no-such-run", "--idp", stack.idp_url, "--admin-token", ADMIN_TOKEN
    )
    line = assert_one_error_line(result, "run_not_found")
    assert ADMIN_TOKEN not in result.output and ADMIN_TOKEN not in line


def test_audit_needs_credentials_for_a_run(stack: Stack) -> None:
    result = invoke("audit", "verify", "run-1", "--idp", stack.idp_url, AJWT_ADMIN_TOKEN=None)
    assert result.exit_code == 2


def test_audit_of_an_unreachable_idp_is_one_error_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = invoke(
        "audit", "verify", "run-1", "--idp", f"http://127.0.0.1:{port}", "--admin-token", "t"
    )
    assert_one_error_line(result, "service_unavailable")


def test_inspect_verifies_a_live_token_against_the_idp_jwks(
    stack: Stack, live_token: tuple[str, str]
) -> None:
    token, run_id = live_token
    jwks_url = stack.idp_url + "/.well-known/jwks.json"
    args = ["--jwks", jwks_url, "--issuer", stack.idp_url, "--audience", stack.rs_url]
    result = invoke("inspect", token, "--json", *args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["verification"]["verified"] is True
    assert report["chain"] == ["supervisor"]
    assert report["claims"]["intent"]["run_id"] == run_id

    other_issuer = ["--jwks", jwks_url, "--issuer", "https://evil.example"]
    assert_one_error_line(invoke("inspect", token, *other_issuer), "wrong_issuer")


# ------------------------------------------------------------------------------ idp


def test_rotate_key_adds_a_key_and_keeps_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    old = load_signing_keys(path).active.kid

    result = invoke("idp", "rotate-key", "--key-file", str(path), "--activate-after", "0")
    assert result.exit_code == 0, result.output
    new = result.stdout.strip()
    assert new and new != old
    rotated = SigningKeySet.from_json(path.read_text())
    assert [k.kid for k in rotated.keys] == [old, new]
    assert rotated.active.kid == new
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert new in result.stderr and "restart" in result.stderr


def test_rotate_key_by_default_waits_for_jwks_refresh_and_token_lifetime(tmp_path: Path) -> None:
    # Issue 12 §6: activating at once left every resource server without the new key
    # until its next JWKS refresh (refusals for up to 30 s).
    path = tmp_path / "keys.json"
    old = load_signing_keys(path).active.kid
    before = int(time.time())
    result = invoke("idp", "rotate-key", "--key-file", str(path))
    assert result.exit_code == 0, result.output
    new = result.stdout.strip()
    keys = SigningKeySet.from_json(path.read_text())
    assert keys.active.kid == old  # published, not yet signing
    assert new in keys.verification_keys().kids()
    not_before = {key.kid: at for key, at in keys._keys}[new]
    assert before + 600 <= not_before <= int(time.time()) + 600
    keys._clock = lambda: not_before  # ten minutes later
    assert keys.active.kid == new
    assert "in 600 s" in result.stderr


def test_retire_key_removes_a_compromised_key_from_the_jwks(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    old = load_signing_keys(path).active.kid
    assert (
        invoke("idp", "rotate-key", "--key-file", str(path), "--activate-after", "0").exit_code == 0
    )

    result = invoke("idp", "retire-key", "--key-file", str(path), "--", old)
    assert result.exit_code == 0, result.output
    keys = SigningKeySet.from_json(path.read_text())
    assert old not in {k["kid"] for k in keys.jwks()["keys"]}
    assert old not in keys.verification_keys().kids()
    assert len(keys.keys) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert result.stdout == ""  # no replacement was needed


def test_retire_key_refuses_the_active_key_without_a_replacement(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    only = load_signing_keys(path).active.kid
    before = path.read_text()
    line = assert_one_error_line(
        invoke("idp", "retire-key", "--key-file", str(path), "--", only), "invalid_key"
    )
    assert "--replace" in line
    assert path.read_text() == before  # nothing changed


def test_retire_key_with_replace_swaps_the_active_key_at_once(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    old = load_signing_keys(path).active.kid
    result = invoke("idp", "retire-key", "--replace", "--key-file", str(path), "--", old)
    assert result.exit_code == 0, result.output
    replacement = result.stdout.strip()
    keys = SigningKeySet.from_json(path.read_text())
    assert keys.active.kid == replacement != old
    assert [k.kid for k in keys.keys] == [replacement]


def test_retire_key_refuses_an_unknown_kid(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    load_signing_keys(path)
    assert_one_error_line(
        invoke("idp", "retire-key", "no-such-kid", "--key-file", str(path)), "invalid_key"
    )


def test_retire_key_needs_an_existing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    assert_one_error_line(invoke("idp", "retire-key", "kid", "--key-file", str(path)), "io_error")
    assert not path.exists()


def test_rotate_key_needs_an_existing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    assert_one_error_line(invoke("idp", "rotate-key", "--key-file", str(path)), "io_error")
    assert not path.exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def idp_process(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``ajwt idp serve`` as a real process, yielded once its JWKS answers."""
    port = free_port()
    command = [
        str(AJWT), "idp", "serve", "--port", str(port),
        "--db", f"sqlite+aiosqlite:///{tmp_path}/x.db", "--key-file", str(tmp_path / "k.json"),
    ]  # fmt: skip
    server = subprocess.Popen(  # noqa: S603
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, "the IdP exited"
            try:
                httpx.get(base + "/.well-known/jwks.json", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the IdP did not start"
                time.sleep(0.2)
        yield server, base
    finally:
        server.terminate()
        server.wait(timeout=30)


def user_token_status(base: str, admin_token: str) -> int:
    body = {"subject": "user:alice", "lifetime": 60}
    headers = {"Authorization": f"Bearer {admin_token}"}
    return httpx.post(base + "/admin/users/token", json=body, headers=headers).status_code


def test_idp_serve_starts_a_real_idp(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AJWT_ADMIN_TOKEN"}
    with idp_process(tmp_path, env) as (server, base):
        assert server.stderr is not None
        # No token configured: one is generated and written to a private file (never
        # to the log), whose path the warning gives.
        warning = server.stderr.readline()
        assert warning.startswith("warning: no --admin-token")
        token_file = tmp_path / "k.admin-token"
        assert str(token_file) in warning
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        generated = token_file.read_text().strip()
        assert len(generated) >= 32
        key_file = tmp_path / "k.json"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        jwks = httpx.get(base + "/.well-known/jwks.json").json()
        published = SigningKeySet.from_json(key_file.read_text()).keys
        assert [k["kid"] for k in jwks["keys"]] == [k.kid for k in published]
        metadata = httpx.get(base + "/.well-known/oauth-authorization-server").json()
        assert metadata["issuer"] == base
        assert user_token_status(base, generated) == 200
        assert user_token_status(base, "guess") == 401
    rest = warning + server.stderr.read()
    assert generated not in rest
    assert "Traceback" not in rest


def test_idp_serve_throttles_failed_admin_authentication(tmp_path: Path) -> None:
    token = "admin-" + secrets.token_urlsafe(32)
    with idp_process(tmp_path, {**os.environ, "AJWT_ADMIN_TOKEN": token}) as (_server, base):
        assert [user_token_status(base, f"guess-{i}") for i in range(10)] == [401] * 10
        body = {"subject": "user:alice", "lifetime": 60}
        refused = httpx.post(
            base + "/admin/users/token", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        # Blocked: even the right token is refused until the window ends.
        assert refused.status_code == 429
        assert refused.json()["error"] == "slow_down"
        assert refused.json()["ajwt_reason"] == "too_many_failed_attempts"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert token not in refused.text


def test_idp_serve_takes_the_admin_token_from_the_environment(tmp_path: Path) -> None:
    token = "admin-" + secrets.token_urlsafe(32)
    with idp_process(tmp_path, {**os.environ, "AJWT_ADMIN_TOKEN": token}) as (server, base):
        assert user_token_status(base, token) == 200
    assert server.stderr is not None
    stderr = server.stderr.read()
    assert token not in stderr
    assert "warning: no --admin-token" not in stderr


def test_rotate_key_can_pre_publish(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    old = load_signing_keys(path).active.kid
    result = invoke("idp", "rotate-key", "--key-file", str(path), "--activate-after", "3600")
    assert result.exit_code == 0, result.output
    keys = SigningKeySet.from_json(path.read_text())
    assert keys.active.kid == old  # published, not yet signing
    assert result.stdout.strip() in {k["kid"] for k in keys.jwks()["keys"]}


WEAK_ADMIN_TOKENS = {
    "short": "admin-" + "3f9a" * 4,
    "repeated word": "changeme-changeme-changeme-changeme",
    "sequence": "abcdefghijklmnopqrstuvwxyz0123456789",
    "small alphabet": "0110100101101001011010010110100110",
}


@pytest.mark.parametrize("case", list(WEAK_ADMIN_TOKENS))
def test_serve_refuses_a_weak_admin_token(tmp_path: Path, case: str) -> None:
    weak = WEAK_ADMIN_TOKENS[case]
    key_file = tmp_path / "k.json"
    args = ["idp", "serve", "--db", f"sqlite:///{tmp_path}/x.db", "--key-file", str(key_file)]
    result = invoke(*args, AJWT_ADMIN_TOKEN=weak)
    line = assert_one_error_line(result, "weak_admin_token")
    assert "AJWT_ADMIN_TOKEN" in line and "too weak" in line
    assert weak not in result.output  # never echoed
    assert not key_file.exists()  # refused before anything was created


class RecordedRun:
    """Stands in for uvicorn.run: records how the IdP would be served."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        #: The environment the workers would start with (serve restores its own after).
        self.environ: dict[str, str] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((args, kwargs))
        self.environ = dict(os.environ)


@pytest.fixture
def recorded_run(monkeypatch: pytest.MonkeyPatch) -> RecordedRun:
    import uvicorn

    recorder = RecordedRun()
    monkeypatch.setattr(uvicorn, "run", recorder)
    # serve --workers exports the configuration for the workers: start without any and
    # restore the environment afterwards (monkeypatch undoes what it touched).
    from ajwt_core.idp.settings import IdPSettings

    for name in ["DB", "CONFIG", *(field.upper() for field in IdPSettings.model_fields)]:
        monkeypatch.delenv(f"AJWT_IDP_{name}", raising=False)
    monkeypatch.setenv("AJWT_ADMIN_TOKEN", secrets.token_urlsafe(32))
    return recorder


def test_serve_runs_uvicorn_with_the_slow_client_protections(
    tmp_path: Path, recorded_run: RecordedRun
) -> None:
    from ajwt_core.server_limits import GuardedHttpProtocol, ServerLimits

    args = ["idp", "serve", "--db", f"sqlite+aiosqlite:///{tmp_path}/x.db"]
    result = invoke(*args, "--key-file", str(tmp_path / "k.json"))
    assert result.exit_code == 0, result.output
    [(_args, options)] = recorded_run.calls
    assert options["http"].func is GuardedHttpProtocol
    assert options["http"].keywords["limits"] == ServerLimits()
    assert "h11_max_incomplete_event_size" not in options  # no 1 MiB header buffer


def test_serve_refuses_several_workers_without_redis(
    tmp_path: Path, recorded_run: RecordedRun
) -> None:
    # Issue 12 §6: each worker kept its own replay cache, so one captured /token request
    # was minted once per worker.
    args = ["idp", "serve", "--workers", "2", "--db", "postgresql+asyncpg://ajwt@127.0.0.1/x"]
    result = invoke(*args, "--key-file", str(tmp_path / "k.json"))
    # A usage error (exit 2) naming the option, with no protocol reason code.
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--workers'" in result.output
    assert "--redis" in result.output and "replay" in result.output
    assert "malformed_request" not in result.output
    assert recorded_run.calls == []


def test_serve_accepts_several_workers_with_redis(
    tmp_path: Path, recorded_run: RecordedRun
) -> None:
    args = ["idp", "serve", "--workers", "2", "--db", "postgresql+asyncpg://ajwt@127.0.0.1/x"]
    args += ["--redis", "redis://127.0.0.1:6379/15", "--key-file", str(tmp_path / "k.json")]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    [(run_args, options)] = recorded_run.calls
    assert run_args == ("ajwt_core.idp.asgi:app_from_env",)
    assert options["workers"] == 2 and options["factory"] is True
    assert recorded_run.environ["AJWT_IDP_REDIS_URL"] == "redis://127.0.0.1:6379/15"
    assert "AJWT_IDP_REDIS_URL" not in os.environ  # the caller's environment is restored
    # The protocol travels to the worker processes by pickling (our own object).
    copied = pickle.loads(pickle.dumps(options["http"]))  # noqa: S301
    assert copied.keywords == options["http"].keywords


def test_serve_refuses_several_workers_on_sqlite(tmp_path: Path) -> None:
    result = invoke(
        "idp",
        "serve",
        "--workers",
        "2",
        "--db",
        f"sqlite:///{tmp_path}/x.db",
        "--key-file",
        str(tmp_path / "k.json"),
    )
    assert result.exit_code == 2  # a usage error (issue 15)
    assert "PostgreSQL" in result.output
