"""The hash-chained run ledger (DESIGN §8): chaining, tamper detection, JSON export."""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ajwt_core.errors import InvalidRequest, LedgerError, Reason
from ajwt_core.ledger import (
    GENESIS_HASH,
    Anchor,
    EntryKind,
    Ledger,
    LedgerEntry,
    chain_after,
    chain_entry,
    completed_steps,
    entry_hash,
    export_json,
    load_json,
    verify_chain,
    verify_json,
    verify_or_raise,
)

RUN = "run-1"


def sample_ledger(size: int = 6) -> Ledger:
    ledger = Ledger(RUN)
    ledger.append(EntryKind.RUN_STARTED, {"workflow_id": "vuln-patch", "initiated_by": "alice"}, 1)
    steps = ["triage", "plan", "classify", "patch"]
    for i in range(1, size):
        if i % 2:
            ledger.append(
                EntryKind.TOKEN_MINTED,
                {"jti": f"j{i}", "agent": "planner", "step": steps[i % 4], "scope": "repo:read"},
                at=1 + i,
            )
        else:
            ledger.append(EntryKind.STEP_COMPLETED, {"step": steps[i % 4]}, at=1 + i)
    return ledger


def dumped(ledger: Ledger) -> list[dict[str, Any]]:
    return [entry.model_dump(mode="json") for entry in ledger.entries]


def rehash(entry: dict[str, Any]) -> dict[str, Any]:
    """A forger's edit: recompute the entry's own hash (but not the ones after it)."""
    body = {k: entry[k] for k in ("run_id", "seq", "kind", "at", "data")}
    return {**entry, "entry_hash": entry_hash(entry["prev_hash"], body)}


def broken_at(entries: list[Any], **kwargs: Any) -> int | None:
    report = verify_chain(entries, **kwargs)
    assert report.ok is (report.first_bad_seq is None)
    assert (report.problem is None) is report.ok
    return report.first_bad_seq


# ------------------------------------------------------------------------- chaining


def test_entry_hash_is_sha256_of_prev_hash_and_jcs_body() -> None:
    body: dict[str, Any] = {
        "run_id": RUN,
        "seq": 0,
        "kind": "run_started",
        "at": 5,
        "data": {"b": 1, "a": "é"},
    }
    expected = hashlib.sha256(GENESIS_HASH.encode("ascii") + rfc8785.dumps(body)).hexdigest()
    assert entry_hash(GENESIS_HASH, body) == "sha256:" + expected


def test_entry_hash_refuses_a_malformed_prev_hash() -> None:
    with pytest.raises(InvalidRequest) as info:
        entry_hash("sha256:é", {})
    assert info.value.reason == Reason.MALFORMED_REQUEST


def test_first_entry_starts_on_genesis_with_seq_zero() -> None:
    entry = chain_entry(None, RUN, EntryKind.RUN_STARTED, 10, {"x": 1})
    assert (entry.seq, entry.prev_hash, entry.run_id, entry.at) == (0, GENESIS_HASH, RUN, 10)
    assert entry.entry_hash == entry_hash(GENESIS_HASH, entry.body())
    assert GENESIS_HASH == "sha256:" + "0" * 64


def test_each_entry_links_to_the_previous_one() -> None:
    entries = sample_ledger().entries
    for previous, entry in itertools.pairwise(entries):
        assert entry.seq == previous.seq + 1
        assert entry.prev_hash == previous.entry_hash


def test_body_is_what_is_hashed() -> None:
    entry = sample_ledger(2).entries[1]
    assert entry.body() == {
        "run_id": RUN,
        "seq": 1,
        "kind": "token_minted",
        "at": 2,
        "data": {"jti": "j1", "agent": "planner", "step": "plan", "scope": "repo:read"},
    }


def test_chain_entry_stores_a_canonical_copy_of_data() -> None:
    data: dict[str, Any] = {"chain": ["supervisor"], "ratio": 1.0, "pair": (1, 2)}
    entry = chain_entry(None, RUN, "run_started", 1, data)
    data["chain"].append("mallory")
    assert entry.data == {"chain": ["supervisor"], "ratio": 1, "pair": [1, 2]}
    assert verify_chain([entry]).ok


def test_chain_entry_refuses_data_that_is_not_json() -> None:
    with pytest.raises(InvalidRequest) as info:
        chain_entry(None, RUN, EntryKind.RUN_STARTED, 1, {"x": object()})
    assert info.value.reason == Reason.MALFORMED_REQUEST
    with pytest.raises(InvalidRequest):
        chain_entry(None, RUN, EntryKind.RUN_STARTED, 1, {"x": float("nan")})


@pytest.mark.parametrize(
    ("run_id", "kind", "at"),
    [("", "run_started", 1), (RUN, "bogus", 1), (RUN, "run_started", -1)],
)
def test_chain_entry_refuses_invalid_fields(run_id: str, kind: str, at: int) -> None:
    with pytest.raises(InvalidRequest) as info:
        chain_entry(None, run_id, kind, at, {})
    assert info.value.reason == Reason.MALFORMED_REQUEST


def test_chain_entry_refuses_to_chain_onto_another_run() -> None:
    first = chain_entry(None, RUN, EntryKind.RUN_STARTED, 1, {})
    with pytest.raises(LedgerError) as info:
        chain_entry(first, "run-2", EntryKind.STEP_COMPLETED, 2, {})
    assert info.value.reason == Reason.LEDGER_BROKEN


def test_ledger_head_tracks_the_last_entry() -> None:
    ledger = Ledger(RUN)
    assert (ledger.head, len(ledger), ledger.entries) == (GENESIS_HASH, 0, ())
    entry = ledger.append(EntryKind.RUN_STARTED, {})
    assert ledger.head == entry.entry_hash
    assert len(ledger) == 1


def test_ledger_append_defaults_to_now() -> None:
    before = int(time.time())
    entry = Ledger(RUN).append(EntryKind.RUN_STARTED)
    assert before <= entry.at <= int(time.time())
    assert entry.data == {}


def test_ledger_refuses_an_empty_run_id() -> None:
    with pytest.raises(InvalidRequest):
        Ledger("")


def test_concurrent_appends_keep_one_unbroken_chain() -> None:
    ledger = Ledger(RUN)
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        barrier.wait()
        for i in range(25):
            ledger.append(EntryKind.TOKEN_MINTED, {"worker": n, "i": i}, at=1)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ledger) == 200
    assert ledger.verify().ok


def test_entries_are_frozen() -> None:
    entry = sample_ledger(1).entries[0]
    with pytest.raises(ValueError, match="frozen"):
        entry.at = 2  # type: ignore[misc]


def test_completed_steps_reads_step_completed_entries() -> None:
    assert completed_steps(sample_ledger().entries) == {"classify", "triage"}


# ----------------------------------------------------------------------- verification


def test_untampered_ledger_verifies() -> None:
    ledger = sample_ledger()
    report = verify_chain(ledger.entries, run_id=RUN, expected_head=ledger.head)
    assert report.ok
    assert (report.entries, report.head, report.first_bad_seq, report.problem) == (
        6,
        ledger.head,
        None,
        None,
    )
    assert verify_chain(dumped(ledger)).ok


def test_empty_ledger_verifies_on_genesis() -> None:
    report = verify_chain([])
    assert report.ok
    assert report.head == GENESIS_HASH


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("data", {"jti": "j3", "agent": "patcher", "step": "patch", "scope": "repo:write"}),
        ("kind", "mint_refused"),
        ("at", 999),
        ("entry_hash", "sha256:" + "f" * 64),
    ],
)
def test_verify_pinpoints_first_edited_entry(field: str, value: Any) -> None:
    entries = dumped(sample_ledger())
    entries[3][field] = value
    report = verify_chain(entries)
    assert report.first_bad_seq == 3
    assert report.head == entries[2]["entry_hash"]  # the trustworthy prefix ends at 2
    assert report.problem is not None
    assert report.problem.startswith("entry 3 ")


def test_verify_reports_the_first_of_several_edits() -> None:
    entries = dumped(sample_ledger())
    entries[4]["at"] = 0
    entries[2]["at"] = 0
    assert broken_at(entries) == 2


def test_verify_detects_edit_whose_own_hash_was_recomputed_at_the_next_entry() -> None:
    entries = dumped(sample_ledger())
    entries[2] = rehash({**entries[2], "data": {"step": "patch"}})
    report = verify_chain(entries)
    assert report.first_bad_seq == 3
    assert "does not link to entry 2" in (report.problem or "")


def test_verify_detects_deleted_entry_at_its_position() -> None:
    entries = dumped(sample_ledger())
    del entries[2]
    report = verify_chain(entries)
    assert report.first_bad_seq == 2
    assert "seq 3 where seq 2 was expected" in (report.problem or "")


def test_verify_detects_deleted_entry_even_when_renumbered() -> None:
    entries = dumped(sample_ledger())
    del entries[2]
    for position in range(2, len(entries)):
        entries[position] = rehash({**entries[position], "seq": position})
    report = verify_chain(entries)
    assert report.first_bad_seq == 2
    assert "does not link to entry 1" in (report.problem or "")


def test_deleted_tail_is_detected_only_against_the_expected_head() -> None:
    ledger = sample_ledger()
    entries = dumped(ledger)[:-2]
    assert verify_chain(entries).ok  # a prefix of a chain is a chain
    report = verify_chain(entries, expected_head=ledger.head)
    assert report.first_bad_seq == 4
    assert "removed from its end" in (report.problem or "")


def test_verify_detects_reordered_entries() -> None:
    entries = dumped(sample_ledger())
    entries[2], entries[3] = entries[3], entries[2]
    report = verify_chain(entries)
    assert report.first_bad_seq == 2


def test_verify_detects_naively_inserted_entry() -> None:
    entries = dumped(sample_ledger())
    forged = {**entries[3], "seq": 3, "data": {"step": "patch"}}
    entries.insert(3, forged)
    assert broken_at(entries) == 3


def test_verify_detects_inserted_entry_with_valid_hash_at_the_following_entry() -> None:
    entries = dumped(sample_ledger())
    forged = chain_entry(
        LedgerEntry.model_validate(entries[2]), RUN, "step_completed", 4, {"step": "patch"}
    ).model_dump(mode="json")
    entries.insert(3, forged)
    report = verify_chain(entries)
    assert report.first_bad_seq == 4
    assert "repeats seq 3" in (report.problem or "")


def test_verify_detects_duplicate_seq() -> None:
    entries = dumped(sample_ledger())
    entries.insert(3, dict(entries[2]))
    report = verify_chain(entries)
    assert report.first_bad_seq == 3
    assert "repeats seq 2" in (report.problem or "")


def test_verify_detects_wrong_run_id() -> None:
    entries = dumped(sample_ledger())
    report = verify_chain(entries, run_id="run-2")
    assert report.first_bad_seq == 0
    assert "belongs to run 'run-1', not 'run-2'" in (report.problem or "")


def test_verify_detects_entry_spliced_in_from_another_run() -> None:
    other = Ledger("run-2")
    for i in range(4):
        other.append(EntryKind.STEP_COMPLETED, {"step": f"s{i}"}, at=i)
    entries = dumped(sample_ledger())
    entries[2] = other.entries[2].model_dump(mode="json")
    report = verify_chain(entries)
    assert report.first_bad_seq == 2
    assert "belongs to run 'run-2'" in (report.problem or "")


def test_verify_detects_first_entry_not_on_genesis() -> None:
    entries = dumped(sample_ledger())
    entries[0] = rehash({**entries[0], "prev_hash": "sha256:" + "1" * 64})
    report = verify_chain(entries)
    assert report.first_bad_seq == 0
    assert "genesis" in (report.problem or "")


def test_verify_detects_chain_that_starts_mid_run() -> None:
    assert broken_at(dumped(sample_ledger())[2:]) == 0


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda e: "not an entry", "is not an object"),
        (lambda e: None, "is not an object"),
        (lambda e: {k: v for k, v in e.items() if k != "prev_hash"}, "has no 'prev_hash'"),
        (lambda e: {**e, "note": "hi"}, "unknown field 'note'"),
        (lambda e: {**e, "seq": True}, "'seq'"),
        (lambda e: {**e, "seq": "2"}, "'seq'"),
        (lambda e: {**e, "at": 1.5}, "'at'"),
        (lambda e: {**e, "kind": "party"}, "'kind'"),
        (lambda e: {**e, "data": []}, "'data'"),
        (lambda e: {**e, "entry_hash": "SHA256:ABC"}, "'entry_hash'"),
        (lambda e: {**e, "prev_hash": "sha256:é"}, "'prev_hash'"),
        (lambda e: {**e, "data": {"n": 2**64}}, "cannot be canonicalised"),
    ],
)
def test_malformed_entries_are_reported_at_their_position_not_raised(
    mutate: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    entries: list[Any] = dumped(sample_ledger())
    entries[2] = mutate(entries[2])
    report = verify_chain(entries)
    assert report.first_bad_seq == 2
    assert expected in (report.problem or "")


def test_verify_or_raise_raises_ledger_broken() -> None:
    ledger = sample_ledger()
    assert verify_or_raise(ledger.entries, RUN).head == ledger.head
    entries = dumped(ledger)
    entries[1]["data"] = {}
    with pytest.raises(LedgerError) as info:
        verify_or_raise(entries)
    assert info.value.reason == Reason.LEDGER_BROKEN
    assert info.value.status_code == 409
    assert "entry 1" in info.value.description


# ------------------------------------------------------------------------ JSON export


def test_json_export_round_trips() -> None:
    ledger = sample_ledger()
    text = export_json(ledger.entries)
    assert json.loads(text)["run_id"] == RUN
    loaded = load_json(text)
    assert loaded == dumped(ledger)
    assert [LedgerEntry.model_validate(e) for e in loaded] == list(ledger.entries)
    assert verify_chain(loaded, RUN, expected_head=ledger.head).ok
    assert verify_json(text, expected_head=ledger.head).ok


def test_export_of_an_empty_ledger_needs_the_run_id() -> None:
    with pytest.raises(InvalidRequest):
        export_json([])
    assert verify_json(export_json([], run_id=RUN)).ok


def test_verify_json_checks_entries_against_the_documents_run() -> None:
    text = export_json(sample_ledger().entries, run_id="run-2")
    report = verify_json(text)
    assert report.first_bad_seq == 0
    assert "not 'run-2'" in (report.problem or "")


def test_verify_json_detects_an_edit_in_the_file() -> None:
    text = export_json(sample_ledger().entries).replace('"repo:read"', '"repo:write"', 1)
    assert verify_json(text).first_bad_seq == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        ("[]", "not a JSON object"),
        ('{"run_id": "r"}', "exactly the keys"),
        ('{"run_id": "r", "entries": [], "verified": true}', "exactly the keys"),
        ('{"run_id": "", "entries": []}', '"run_id"'),
        ('{"run_id": "r", "entries": {}}', '"entries"'),
        ('{"run_id": "r", "run_id": "s", "entries": []}', "repeats the key 'run_id'"),
        ('{"run_id": "r", "entries": [{"seq": 0, "seq": 1}]}', "repeats the key 'seq'"),
        ('{"run_id": "r", "entries": [1]}', "entry 0 is not an object"),
    ],
)
def test_load_json_refuses_what_is_not_a_ledger_export(text: str | bytes, expected: str) -> None:
    with pytest.raises(LedgerError) as info:
        load_json(text)
    assert info.value.reason == Reason.LEDGER_BROKEN
    assert expected in info.value.description


@pytest.mark.parametrize("text", ["", "{", '{"run_id": 1, "entries": []}', "[" * 100_000])
def test_verify_json_reports_a_broken_document_without_raising(text: str) -> None:
    report = verify_json(text)
    assert not report.ok
    assert report.first_bad_seq is None
    assert report.problem


# -------------------------------------------------------------------------- properties

_json_scalars = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text()
_json_data = st.dictionaries(
    st.text(max_size=8),
    st.recursive(
        _json_scalars,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
        max_leaves=8,
    ),
    max_size=4,
)
_records = st.lists(
    st.tuples(st.sampled_from(list(EntryKind)), st.integers(0, 2**40), _json_data),
    min_size=1,
    max_size=12,
)

_MUTATIONS = [
    "data",
    "kind",
    "at",
    "seq",
    "run_id",
    "prev_hash",
    "entry_hash",
    "delete",
    "swap",
    "duplicate",
    "rehash_data",
]


def _build(records: list[tuple[EntryKind, int, dict[str, Any]]]) -> Ledger:
    ledger = Ledger(RUN)
    for kind, at, data in records:
        ledger.append(kind, data, at=at)
    return ledger


def _mutate(entries: list[dict[str, Any]], index: int, how: str) -> None:
    entry = entries[index]
    other_kind = next(k.value for k in EntryKind if k.value != entry["kind"])
    if how == "data":
        entry["data"] = {**entry["data"], "\x00tampered": True}
    elif how == "kind":
        entry["kind"] = other_kind
    elif how == "at":
        entry["at"] += 1
    elif how == "seq":
        entry["seq"] += 1
    elif how == "run_id":
        entry["run_id"] = "run-evil"
    elif how == "prev_hash":
        entry["prev_hash"] = "sha256:" + "a" * 64
    elif how == "entry_hash":
        entry["entry_hash"] = "sha256:" + "b" * 64
    elif how == "delete":
        del entries[index]
    elif how == "swap":
        if index + 1 < len(entries):
            entries[index], entries[index + 1] = entries[index + 1], entries[index]
        else:
            del entries[index]
    elif how == "duplicate":
        entries.insert(index, dict(entry))
    elif how == "rehash_data":
        entries[index] = rehash({**entry, "data": {**entry["data"], "\x00tampered": True}})


@given(_records, st.data())
@settings(max_examples=300, deadline=None)
def test_any_single_mutation_is_detected_at_or_before_its_position(
    records: list[tuple[EntryKind, int, dict[str, Any]]], data: st.DataObject
) -> None:
    ledger = _build(records)
    entries = dumped(ledger)
    index = data.draw(st.integers(0, len(entries) - 1), label="index")
    how = data.draw(st.sampled_from(_MUTATIONS), label="mutation")
    _mutate(entries, index, how)
    report = verify_chain(entries, RUN, expected_head=ledger.head)
    assert not report.ok
    assert report.first_bad_seq is not None
    # A rewritten entry with a valid own hash can only be caught by the next link.
    limit = index + 1 if how in ("rehash_data", "duplicate") else index
    assert report.first_bad_seq <= limit


@given(_records)
@settings(max_examples=100, deadline=None)
def test_random_ledgers_verify_and_round_trip_through_json(
    records: list[tuple[EntryKind, int, dict[str, Any]]],
) -> None:
    ledger = _build(records)
    report = verify_json(export_json(ledger.entries), expected_head=ledger.head)
    assert report.ok
    assert report.entries == len(records)
    assert report.head == ledger.head


@given(st.lists(st.one_of(_json_scalars, _json_data), max_size=5))
@settings(max_examples=200, deadline=None)
def test_verify_chain_never_raises_on_arbitrary_input(entries: list[Any]) -> None:
    report = verify_chain(entries)
    assert report.ok is (not entries)


# ---------------------------------------------------------- anchors (issue 12 §4)
# A chain only proves nothing was edited inside it. Anchors kept outside the ledger (the
# IdP's stored head, a signed checkpoint, a token's step_sequence_hash) catch a cut end,
# a ledger emptied, and a ledger rewritten and re-hashed whole.


def checkpoint_of(ledger: Ledger, seq: int | None = None) -> Anchor:
    entry = ledger.entries[-1 if seq is None else seq]
    return Anchor(source="checkpoint", seq=entry.seq, entry_hash=entry.entry_hash)


def rehashed_whole(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A forger with write access to the whole ledger: every hash recomputed in order."""
    head, forged = GENESIS_HASH, []
    for position, entry in enumerate(entries):
        forged.append(rehash({**entry, "seq": position, "prev_hash": head}))
        head = forged[-1]["entry_hash"]
    return forged


def test_genuine_ledger_verifies_against_its_checkpoints() -> None:
    ledger = sample_ledger()
    anchors = [checkpoint_of(ledger, 2), checkpoint_of(ledger)]
    report = verify_chain(dumped(ledger), anchors=anchors)
    assert report.ok, report.problem
    assert report.anchors == ["checkpoint (entry 2)", "checkpoint (entry 5)"]


def test_ledger_grown_past_a_checkpoint_still_verifies() -> None:
    ledger = sample_ledger(4)
    anchor = checkpoint_of(ledger)
    ledger.append(EntryKind.STEP_COMPLETED, {"step": "patch"}, at=9)
    assert verify_chain(dumped(ledger), anchors=[anchor]).ok


def test_truncation_is_detected_given_a_checkpoint() -> None:
    ledger = sample_ledger()
    entries = dumped(ledger)[:-2]
    assert verify_chain(entries).ok  # the chain alone cannot tell
    report = verify_chain(entries, anchors=[checkpoint_of(ledger)])
    assert not report.ok and report.first_bad_seq == 4
    assert report.problem == (
        "the ledger ends at entry 3, but the checkpoint pins entry 5 "
        "(entries were removed from its end)"
    )


def test_full_rehash_is_detected_given_a_checkpoint() -> None:
    ledger = sample_ledger()
    entries = dumped(ledger)
    entries[2]["data"] = {"step": "patch"}  # rewrite history...
    forged = rehashed_whole(entries)  # ...and every hash after it
    assert verify_chain(forged).ok  # the chain alone cannot tell
    report = verify_chain(forged, anchors=[checkpoint_of(ledger, 3)])
    assert not report.ok and report.first_bad_seq == 3
    assert "rewritten at or before it" in (report.problem or "")


def test_emptied_ledger_is_detected_given_a_checkpoint() -> None:
    ledger = sample_ledger()
    assert verify_chain([], run_id=RUN).ok  # "ok, 0 entries"
    report = verify_chain([], run_id=RUN, anchors=[checkpoint_of(ledger, 0)])
    assert not report.ok and report.first_bad_seq == 0
    assert report.problem == (
        "the ledger is empty, but the checkpoint pins entry 0 (entries were removed from its end)"
    )


def test_final_anchor_refuses_entries_past_the_stored_head() -> None:
    ledger = sample_ledger()
    stored = Anchor(
        source="stored head", seq=3, entry_hash=ledger.entries[3].entry_hash, final=True
    )
    report = verify_chain(dumped(ledger), anchors=[stored])
    assert not report.ok and report.first_bad_seq == 4
    assert "goes on to entry 5" in (report.problem or "")
    assert verify_chain(dumped(ledger)[:4], anchors=[stored]).ok


def test_token_anchor_pins_its_own_token_minted_entry() -> None:
    ledger = sample_ledger()
    minted = ledger.entries[3]  # token_minted, jti "j3"
    token = Anchor(source="token j3", entry_hash=minted.entry_hash, jti="j3")
    assert verify_chain(dumped(ledger), anchors=[token]).anchors == ["token j3 (entry 3)"]

    other_jti = token.model_copy(update={"jti": "j5"})
    report = verify_chain(dumped(ledger), anchors=[other_jti])
    assert report.first_bad_seq == 3
    assert "does not record the minting of that token" in (report.problem or "")

    completed = ledger.entries[2]  # a step_completed entry is no token's entry
    not_minted = Anchor(source="token j2", entry_hash=completed.entry_hash, jti="j2")
    assert not verify_chain(dumped(ledger), anchors=[not_minted]).ok


def test_token_anchor_detects_its_entry_removed_or_rewritten() -> None:
    ledger = sample_ledger()
    token = Anchor(source="token j3", entry_hash=ledger.entries[3].entry_hash, jti="j3")
    for entries in (dumped(ledger)[:3], rehashed_whole(dumped(ledger)[:2] + dumped(ledger)[3:])):
        report = verify_chain(entries, anchors=[token])
        assert not report.ok and report.first_bad_seq is None
        assert "no entry of the ledger is the one the token j3 pins" in (report.problem or "")


def test_anchors_are_checked_only_once_the_chain_verifies() -> None:
    ledger = sample_ledger()
    entries = dumped(ledger)
    entries[1]["at"] = 999
    report = verify_chain(entries, anchors=[checkpoint_of(ledger)])
    assert report.first_bad_seq == 1 and "entry_hash" in (report.problem or "")


def test_verify_json_takes_anchors() -> None:
    ledger = sample_ledger()
    text = export_json(ledger.entries[:3])
    assert verify_json(text).ok
    assert verify_json(text, anchors=[checkpoint_of(ledger)]).first_bad_seq == 3


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"step": "triage", "chain": ["a", "b"], "exp": 2**53 - 1, "n": -3},
        {"f": 1.5, "big": 1e21, "neg0": -0.0, "none": None, "yes": True},
        {"é": "\u2028", "\ud7ff": 1, "\ue000": 2, "nested": {"emoji": "\U0001f600", "q": '"\\'}},
    ],
)
def test_chain_after_hashes_the_jcs_of_the_entry_body(data: dict[str, Any]) -> None:
    # chain_after splices the data's JCS into the body's; it must hash what entry_hash does.
    for kind in EntryKind:
        for seq, at in ((-1, 0), (6, 1_700_000_000), (2**31, 2**40)):
            entry = chain_after(seq, GENESIS_HASH, 'run-"é\\', kind, at, data)
            assert entry.entry_hash == entry_hash(entry.prev_hash, entry.body())
