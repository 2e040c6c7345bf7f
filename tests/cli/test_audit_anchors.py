"""``ajwt audit verify`` against anchors held outside the ledger (issue 12 §4).

A ledger cut at its end, emptied, or rewritten and re-hashed whole still verifies as a
chain. Given an IdP-signed checkpoint (``--checkpoint``, verified with ``--jwks``), an
intent token (``--token``: its ``step_sequence_hash`` pins its own entry) or the head it
must end at (``--expected-head``), the CLI detects each; forged checkpoints are refused
with the reason that names the forgery.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ajwt_core.keys import SigningKeySet
from ajwt_core.ledger import GENESIS_HASH, EntryKind, Ledger, entry_hash
from ajwt_core.tokens import (
    CheckpointClaims,
    encode_checkpoint,
    encode_intent_token,
)
from ajwt_demo.stack import ADMIN_TOKEN, Stack, start_stack
from tests.cli.test_cli import assert_one_error_line, invoke, write_json
from tests.support import ISSUER, NOW, ClaimsFactory

RUN = "run-7"


def sample_ledger() -> Ledger:
    ledger = Ledger(RUN)
    ledger.append(EntryKind.RUN_STARTED, {"workflow_id": "vuln-patch"}, at=NOW)
    ledger.append(EntryKind.TOKEN_MINTED, {"jti": "jti-1", "step": "triage"}, at=NOW + 1)
    ledger.append(EntryKind.STEP_COMPLETED, {"step": "triage"}, at=NOW + 2)
    ledger.append(EntryKind.TOKEN_MINTED, {"jti": "jti-2", "step": "plan"}, at=NOW + 3)
    return ledger


def checkpoint(keys: SigningKeySet, ledger: Ledger, **overrides: Any) -> str:
    last = ledger.entries[-1]
    fields: dict[str, Any] = {
        "iss": ISSUER,
        "run_id": RUN,
        "seq": last.seq,
        "head": last.entry_hash,
        "iat": NOW + 10,
    }
    return encode_checkpoint(CheckpointClaims(**(fields | overrides)), keys.active)


def rehashed_whole(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    head, forged = GENESIS_HASH, []
    for position, entry in enumerate(entries):
        fields = {**entry, "seq": position, "prev_hash": head}
        body = {k: fields[k] for k in ("run_id", "seq", "kind", "at", "data")}
        forged.append({**fields, "entry_hash": entry_hash(head, body)})
        head = forged[-1]["entry_hash"]
    return forged


@pytest.fixture
def keys() -> SigningKeySet:
    return SigningKeySet.generate()


@pytest.fixture
def jwks(keys: SigningKeySet, tmp_path: Path) -> Path:
    return write_json(tmp_path / "jwks.json", keys.jwks())


@pytest.fixture
def ledger() -> Ledger:
    return sample_ledger()


def export(tmp_path: Path, entries: list[dict[str, Any]], name: str = "ledger.json") -> Path:
    return write_json(tmp_path / name, {"run_id": RUN, "entries": entries})


def entries_of(ledger: Ledger) -> list[dict[str, Any]]:
    return [entry.model_dump(mode="json") for entry in ledger.entries]


def audit(path: Path, jwks: Path, *args: str) -> Any:
    return invoke("audit", "verify", str(path), "--jwks", str(jwks), "--issuer", ISSUER, *args)


# ----------------------------------------------------------------------- checkpoints


def test_genuine_ledger_verifies_against_its_checkpoint(
    tmp_path: Path, keys: SigningKeySet, jwks: Path, ledger: Ledger
) -> None:
    path = export(tmp_path, entries_of(ledger))
    result = audit(path, jwks, "--checkpoint", checkpoint(keys, ledger))
    assert result.exit_code == 0, result.output
    assert "anchored by" in result.stdout and "checkpoint of" in result.stdout

    # A checkpoint kept in a file works the same; so does an older one.
    older = tmp_path / "checkpoint.jws"
    older.write_text(checkpoint(keys, ledger, seq=1, head=ledger.entries[1].entry_hash))
    report = json.loads(audit(path, jwks, "--checkpoint", str(older), "--json").stdout)
    assert report["ok"] and report["anchors"][0].endswith("(entry 1)")


def test_truncation_is_detected_given_a_checkpoint(
    tmp_path: Path, keys: SigningKeySet, jwks: Path, ledger: Ledger
) -> None:
    path = export(tmp_path, entries_of(ledger)[:-2])
    assert invoke("audit", "verify", str(path)).exit_code == 0  # the chain alone: "ok"
    result = audit(path, jwks, "--checkpoint", checkpoint(keys, ledger))
    line = assert_one_error_line(result, "ledger_broken")
    assert "pins entry 3" in line and "removed from its end" in line


def test_full_rehash_is_detected_given_a_checkpoint(
    tmp_path: Path, keys: SigningKeySet, jwks: Path, ledger: Ledger
) -> None:
    entries = entries_of(ledger)
    entries[2]["data"] = {"step": "patch"}
    path = export(tmp_path, rehashed_whole(entries))
    assert invoke("audit", "verify", str(path)).exit_code == 0  # the chain alone: "ok"
    line = assert_one_error_line(
        audit(path, jwks, "--checkpoint", checkpoint(keys, ledger)), "ledger_broken"
    )
    assert "entry 3 is not the entry the checkpoint" in line


def test_emptied_ledger_is_detected_given_a_checkpoint(
    tmp_path: Path, keys: SigningKeySet, jwks: Path, ledger: Ledger
) -> None:
    path = export(tmp_path, [])
    assert invoke("audit", "verify", str(path)).exit_code == 0  # "ok, 0 entries"
    line = assert_one_error_line(
        audit(path, jwks, "--checkpoint", checkpoint(keys, ledger)), "ledger_broken"
    )
    assert "the ledger is empty" in line


def test_checkpoint_signed_by_another_key_is_refused(
    tmp_path: Path, jwks: Path, ledger: Ledger
) -> None:
    path = export(tmp_path, entries_of(ledger))
    forged = checkpoint(SigningKeySet.generate(), ledger)
    assert_one_error_line(audit(path, jwks, "--checkpoint", forged), "unknown_kid")


def test_intent_token_given_as_checkpoint_is_refused(
    tmp_path: Path, keys: SigningKeySet, jwks: Path, ledger: Ledger, make_claims: ClaimsFactory
) -> None:
    path = export(tmp_path, entries_of(ledger))
    token = encode_intent_token(make_claims(), keys.active)
    assert_one_error_line(audit(path, jwks, "--checkpoint", token), "wrong_type")


def test_checkpoint_of_another_run_is_refused(
    tmp_path: Path, keys: SigningKeySet, jwks: Path, ledger: Ledger
) -> None:
    path = export(tmp_path, entries_of(ledger))
    other = checkpoint(keys, ledger, run_id="run-8")
    line = assert_one_error_line(audit(path, jwks, "--checkpoint", other), "wrong_run")
    assert "run-8" in line


def test_checkpoint_from_another_issuer_is_refused(
    tmp_path: Path, keys: SigningKeySet, jwks: Path, ledger: Ledger
) -> None:
    path = export(tmp_path, entries_of(ledger))
    other = checkpoint(keys, ledger, iss="https://evil.example")
    assert_one_error_line(audit(path, jwks, "--checkpoint", other), "wrong_issuer")


@pytest.mark.parametrize(
    "args",
    [
        ["--checkpoint", "x"],  # no --jwks
        ["--checkpoint", "x", "--jwks", "jwks.json"],  # no --issuer offline
        ["--token", "x"],
        ["--expected-head", "sha256:00"],
    ],
)
def test_anchor_options_need_their_companions(
    tmp_path: Path, ledger: Ledger, args: list[str]
) -> None:
    path = export(tmp_path, entries_of(ledger))
    assert invoke("audit", "verify", str(path), *args).exit_code == 2


# -------------------------------------------------------------------- expected head


def test_expected_head_is_where_the_ledger_must_end(tmp_path: Path, ledger: Ledger) -> None:
    path = export(tmp_path, entries_of(ledger))
    ok = invoke("audit", "verify", str(path), "--expected-head", ledger.head)
    assert ok.exit_code == 0, ok.output
    cut = export(tmp_path, entries_of(ledger)[:-1], "cut.json")
    line = assert_one_error_line(
        invoke("audit", "verify", str(cut), "--expected-head", ledger.head), "ledger_broken"
    )
    assert "removed from its end" in line


# --------------------------------------------------------------------------- tokens


def token_for(
    keys: SigningKeySet, ledger: Ledger, make_claims: ClaimsFactory, seq: int = 3, **kw: Any
) -> str:
    entry = ledger.entries[seq]
    claims = make_claims(jti=entry.data["jti"], **kw)
    intent = claims.intent.model_copy(
        update={"run_id": RUN, "step_sequence_hash": entry.entry_hash}
    )
    return encode_intent_token(claims.model_copy(update={"intent": intent}), keys.active)


def test_a_token_pins_its_own_entry_even_long_after_it_expired(
    tmp_path: Path, keys: SigningKeySet, jwks: Path, ledger: Ledger, make_claims: ClaimsFactory
) -> None:
    path = export(tmp_path, entries_of(ledger))
    result = audit(path, jwks, "--token", token_for(keys, ledger, make_claims), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["anchors"] == ["token jti-2 (entry 3)"]


def test_a_token_detects_its_entry_rewritten_or_cut(
    tmp_path: Path, keys: SigningKeySet, jwks: Path, ledger: Ledger, make_claims: ClaimsFactory
) -> None:
    token = token_for(keys, ledger, make_claims)
    for entries in (entries_of(ledger)[:3], rehashed_whole(entries_of(ledger))[:2]):
        path = export(tmp_path, entries)
        line = assert_one_error_line(audit(path, jwks, "--token", token), "ledger_broken")
        assert "the token jti-2 pins" in line


def test_a_token_must_match_the_entry_that_records_it(
    tmp_path: Path, keys: SigningKeySet, jwks: Path, ledger: Ledger, make_claims: ClaimsFactory
) -> None:
    entries = entries_of(ledger)
    path = export(tmp_path, entries)
    # A token claiming the entry of another token (its jti is not that entry's).
    entry = ledger.entries[1]
    claims = make_claims(jti="jti-other")
    intent = claims.intent.model_copy(
        update={"run_id": RUN, "step_sequence_hash": entry.entry_hash}
    )
    token = encode_intent_token(claims.model_copy(update={"intent": intent}), keys.active)
    line = assert_one_error_line(audit(path, jwks, "--token", token), "ledger_broken")
    assert "does not record the minting of that token" in line


def test_forged_or_foreign_tokens_are_refused(
    tmp_path: Path, keys: SigningKeySet, jwks: Path, ledger: Ledger, make_claims: ClaimsFactory
) -> None:
    path = export(tmp_path, entries_of(ledger))
    forged = token_for(SigningKeySet.generate(), ledger, make_claims)
    assert_one_error_line(audit(path, jwks, "--token", forged), "unknown_kid")
    foreign = encode_intent_token(make_claims(), keys.active)  # of run-1
    assert_one_error_line(audit(path, jwks, "--token", foreign), "wrong_run")
    assert_one_error_line(audit(path, jwks, "--token", "garbage"), "malformed_token")


# ----------------------------------------------------------------- against an IdP


@pytest.fixture(scope="module")
def idp_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("anchors") / "idp.db"


@pytest.fixture(scope="module")
def stack(idp_db: Path) -> Iterator[Stack]:
    running = start_stack(idp_db)
    yield running
    running.close()


def finished_run(stack: Stack) -> tuple[str, str, str]:
    """A run with a few entries: its id, the shim's latest checkpoint and last token."""
    shim = stack.shim()
    run = stack.start_run(shim)
    with shim.run(run):
        with shim.acting("supervisor", tool="list_repos") as context:
            shim.token(context, stack.rs_url)
        shim.complete("supervisor")
        token = shim.handoff("supervisor", "planner", "plan").token
    kept = shim.checkpoint(run)
    assert kept is not None
    shim.close()
    return run.run_id, kept, token


def rewrite_whole_ledger(db: Path, run_id: str) -> None:
    """A forger with write access to the IdP's database: history edited, every hash
    recomputed, and the run's stored head moved to match."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT seq, kind, at, data FROM ledger_entries WHERE run_id = ? ORDER BY seq",
            (run_id,),
        ).fetchall()
        head = GENESIS_HASH
        for seq, kind, at, data in rows:
            document = json.loads(data)
            if kind == "step_completed":
                document["step"] = "forged"
            body = {"run_id": run_id, "seq": seq, "kind": kind, "at": at, "data": document}
            new_hash = entry_hash(head, body)
            conn.execute(
                "UPDATE ledger_entries SET data = ?, prev_hash = ?, entry_hash = ? "
                "WHERE run_id = ? AND seq = ?",
                (json.dumps(document), head, new_hash, run_id, seq),
            )
            head = new_hash
        conn.execute("UPDATE runs SET head_hash = ? WHERE run_id = ?", (head, run_id))


def test_audit_of_a_live_run_checks_the_shims_checkpoint_and_token(stack: Stack) -> None:
    run_id, kept, token = finished_run(stack)
    args = ["audit", "verify", run_id, "--idp", stack.idp_url, "--admin-token", ADMIN_TOKEN]
    result = invoke(*args, "--checkpoint", kept, "--token", token, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and len(report["anchors"]) == 2
    assert report["idp_report"]["anchors"] == [
        f"head recorded for the run (entry {report['entries'] - 1})"
    ]


def test_rewrite_of_ledger_and_stored_head_is_caught_by_the_checkpoint(
    stack: Stack, idp_db: Path
) -> None:
    run_id, kept, token = finished_run(stack)
    rewrite_whole_ledger(idp_db, run_id)
    args = ["audit", "verify", run_id, "--idp", stack.idp_url, "--admin-token", ADMIN_TOKEN]
    # The database agrees with itself: the IdP (and the chain) cannot tell...
    assert stack.admin.verify_ledger(run_id)["ok"] is True
    assert invoke(*args).exit_code == 0
    # ...but the checkpoint the client kept, and its token, can.
    line = assert_one_error_line(invoke(*args, "--checkpoint", kept), "ledger_broken")
    assert "the ledger was rewritten" in line
    assert_one_error_line(invoke(*args, "--token", token), "ledger_broken")
