"""The run ledger: an append-only, hash-chained record of one run (DESIGN §8).

Every entry commits to the one before it::

    entry_hash = "sha256:" + hex(SHA-256(prev_hash.encode("ascii") + JCS(body)))
    body       = {"run_id", "seq", "kind", "at", "data"}

so editing, deleting, inserting or reordering any entry breaks every hash after it, and
the head (the last ``entry_hash``) commits to the whole history. Intent tokens carry the
head at mint time as ``intent.step_sequence_hash``.

This module is pure: :func:`chain_entry` builds the next entry and :func:`verify_chain`
checks a sequence of entries, whoever stores them (the IdP keeps them in its database,
the shim mirrors them in a :class:`Ledger`).

>>> ledger = Ledger("run-1")
>>> _ = ledger.append(EntryKind.RUN_STARTED, {"workflow": "vuln-patch"}, at=1000)
>>> _ = ledger.append(EntryKind.STEP_COMPLETED, {"step": "triage"}, at=1010)
>>> verify_chain(ledger.entries).ok
True
>>> edited = [ledger.entries[0], ledger.entries[1].model_copy(update={"at": 1011})]
>>> report = verify_chain(edited)
>>> report.ok, report.first_bad_seq
(False, 1)
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, ValidationError

from ajwt_core.canonical import DIGEST_PREFIX, jcs, sha256_digest
from ajwt_core.errors import AJWTError, InvalidRequest, LedgerError, Reason
from ajwt_core.strict_json import DuplicateKey, loads_unique


class EntryKind(StrEnum):
    """What an entry records (DESIGN §8)."""

    RUN_STARTED = "run_started"
    TOKEN_MINTED = "token_minted"
    DELEGATION = "delegation"
    STEP_COMPLETED = "step_completed"
    STEP_APPROVED = "step_approved"
    MINT_REFUSED = "mint_refused"
    REVOKED = "revoked"
    #: The first token of a step in a visit (DESIGN §6.3): the step is under way.
    STEP_ENTERED = "step_entered"
    #: Work sent back to a step: it and every step after it start a new visit.
    STEP_REOPENED = "step_reopened"


#: The ``prev_hash`` of the first entry of every run.
GENESIS_HASH: Final = DIGEST_PREFIX + "0" * 64

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

Digest = Annotated[str, StringConstraints(strict=True, pattern=r"^sha256:[0-9a-f]{64}$")]
RunId = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128)]


class LedgerEntry(BaseModel):
    """One ledger entry; ``entry_hash`` covers :meth:`body` and ``prev_hash``.

    ``data`` is whatever the recorder puts there (for a mint: jti, agent, step, chain,
    scope; for a completed step: ``{"step": ...}``; for a refusal: the reason). It is
    plain JSON: :func:`chain_entry` stores exactly the canonical JSON it hashed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: RunId
    seq: StrictInt = Field(ge=0)
    kind: EntryKind
    at: StrictInt = Field(ge=0)
    data: dict[str, Any]
    prev_hash: Digest
    entry_hash: Digest

    def body(self) -> dict[str, Any]:
        """The hashed part of the entry (everything but the two hashes)."""
        return {
            "run_id": self.run_id,
            "seq": self.seq,
            "kind": self.kind.value,
            "at": self.at,
            "data": self.data,
        }


class LedgerReport(BaseModel):
    """The outcome of :func:`verify_chain`.

    ``entries`` is how many entries were given; ``head`` is the ``entry_hash`` of the
    last entry that verified (``GENESIS_HASH`` if none did), i.e. the head of the
    trustworthy prefix; ``first_bad_seq`` is the position (the ``seq`` the entry should
    have) where the chain first breaks, ``None`` when it verifies (or when the break
    cannot be placed: a document that is not an export, an anchored entry not found).
    """

    model_config = ConfigDict(frozen=True)

    ok: bool
    entries: int
    head: str
    first_bad_seq: int | None = None
    problem: str | None = None
    #: What the ledger was checked against beyond its own hashes (see :class:`Anchor`).
    anchors: list[str] = Field(default_factory=list)


class Anchor(BaseModel):
    """A point the ledger must pass through, known from outside the ledger.

    The chain alone shows that no entry was edited *inside* it, not that entries were
    cut from its end or that the whole chain was rewritten and re-hashed. An anchor
    catches both: the IdP's stored head (``runs.head_hash``), a checkpoint the IdP
    signed, or an intent token's ``step_sequence_hash``.

    ``entry_hash`` must be the hash of the entry at ``seq`` (of some entry when ``seq``
    is None); ``final``: the ledger must end there; ``jti``: that entry must be the
    ``token_minted`` entry of the token with this ``jti``. ``source`` names the anchor
    in reports.

    >>> ledger = Ledger("r")
    >>> for step in ("triage", "plan", "classify"):
    ...     _ = ledger.append(EntryKind.STEP_COMPLETED, {"step": step}, at=1)
    >>> anchor = Anchor(source="checkpoint", seq=2, entry_hash=ledger.head)
    >>> verify_chain(ledger.entries, anchors=[anchor]).anchors
    ['checkpoint (entry 2)']
    >>> verify_chain(ledger.entries[:2], anchors=[anchor]).first_bad_seq
    2
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    entry_hash: Digest
    seq: StrictInt | None = Field(default=None, ge=0)
    final: bool = False
    jti: str | None = None


def entry_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    """``"sha256:" + hex(SHA-256(prev_hash.encode("ascii") + JCS(body)))``.

    >>> entry_hash(GENESIS_HASH, {"run_id": "r", "seq": 0, "kind": "run_started",
    ...                           "at": 0, "data": {}})[:15]
    'sha256:e9e2a0ca'
    """
    if not isinstance(prev_hash, str) or not _DIGEST.fullmatch(prev_hash):
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST, "prev_hash must be 'sha256:' and 64 lowercase hex digits"
        )
    return sha256_digest(prev_hash.encode("ascii") + jcs(dict(body)))


def chain_entry(
    prev: LedgerEntry | None,
    run_id: str,
    kind: EntryKind | str,
    at: int,
    data: Mapping[str, Any],
) -> LedgerEntry:
    """The entry that follows ``prev`` (or the first entry of a run when ``prev`` is None).

    ``data`` is stored as the canonical JSON that was hashed (a deep copy: later changes
    to the caller's dict do not reach the entry). Raises ``InvalidRequest`` for data
    that is not JSON, and ``LedgerError`` when ``prev`` belongs to another run.

    >>> first = chain_entry(None, "run-1", EntryKind.RUN_STARTED, 1000, {})
    >>> (first.seq, first.prev_hash == GENESIS_HASH)
    (0, True)
    >>> second = chain_entry(first, "run-1", "step_completed", 1010, {"step": "triage"})
    >>> (second.seq, second.prev_hash == first.entry_hash)
    (1, True)
    """
    if prev is None:
        return chain_after(-1, GENESIS_HASH, run_id, kind, at, data)
    if prev.run_id != run_id:
        raise LedgerError(
            Reason.LEDGER_BROKEN,
            f"cannot chain an entry of run {run_id!r} onto the ledger of run {prev.run_id!r}",
        )
    return chain_after(prev.seq, prev.entry_hash, run_id, kind, at, data)


def chain_after(
    head_seq: int,
    head_hash: str,
    run_id: str,
    kind: EntryKind | str,
    at: int,
    data: Mapping[str, Any],
) -> LedgerEntry:
    """The entry after a ledger head known only by its ``seq`` and hash (``-1`` and
    :data:`GENESIS_HASH` for an empty ledger): what a store that keeps the head
    beside the run appends without reading the last entry back.

    >>> first = chain_after(-1, GENESIS_HASH, "run-1", EntryKind.RUN_STARTED, 1000, {})
    >>> first == chain_entry(None, "run-1", EntryKind.RUN_STARTED, 1000, {})
    True
    """
    seq, prev_hash = head_seq + 1, head_hash
    data_jcs = jcs(dict(data))
    canonical_data = json.loads(data_jcs)
    try:
        fields = LedgerEntry.model_validate(
            {
                "run_id": run_id,
                "seq": seq,
                "kind": kind,
                "at": at,
                "data": canonical_data,
                "prev_hash": prev_hash,
                "entry_hash": GENESIS_HASH,  # placeholder, replaced below
            }
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(
            Reason.MALFORMED_REQUEST, f"invalid ledger entry field {where!r}: {first['msg']}"
        ) from None
    # entry_hash(prev_hash, fields.body()), without serialising the data a second time:
    # JCS of the body is its members in key order, the data's JCS spliced in as is.
    body = b"".join(
        (
            b'{"at":',
            jcs(fields.at),
            b',"data":',
            data_jcs,
            b',"kind":',
            jcs(fields.kind.value),
            b',"run_id":',
            jcs(fields.run_id),
            b',"seq":',
            jcs(fields.seq),
            b"}",
        )
    )
    return fields.model_copy(
        update={"entry_hash": sha256_digest(fields.prev_hash.encode("ascii") + body)}
    )


class Ledger:
    """An in-memory, append-only, thread-safe ledger of one run.

    The reference implementation of the chain, the shim's local mirror, and the
    ledger of the tests. The IdP stores entries in its database with
    :func:`chain_entry` and checks them with :func:`verify_chain`.

    >>> ledger = Ledger("run-1")
    >>> ledger.head == GENESIS_HASH
    True
    >>> entry = ledger.append(EntryKind.RUN_STARTED, {}, at=1000)
    >>> ledger.head == entry.entry_hash, len(ledger)
    (True, 1)
    """

    def __init__(self, run_id: str) -> None:
        if not isinstance(run_id, str) or not run_id or len(run_id) > 128:
            raise InvalidRequest(
                Reason.MALFORMED_REQUEST, "a run id must be a string of 1 to 128 characters"
            )
        self.run_id = run_id
        self._entries: list[LedgerEntry] = []
        self._lock = threading.Lock()

    def append(
        self,
        kind: EntryKind | str,
        data: Mapping[str, Any] | None = None,
        at: int | None = None,
    ) -> LedgerEntry:
        """Chain a new entry onto the head; ``at`` defaults to now (unix seconds)."""
        when = int(time.time()) if at is None else at
        with self._lock:
            prev = self._entries[-1] if self._entries else None
            entry = chain_entry(prev, self.run_id, kind, when, data or {})
            self._entries.append(entry)
            return entry

    @property
    def head(self) -> str:
        """The ``entry_hash`` of the last entry, ``GENESIS_HASH`` while empty."""
        with self._lock:
            return self._entries[-1].entry_hash if self._entries else GENESIS_HASH

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        with self._lock:
            return tuple(self._entries)

    def verify(self) -> LedgerReport:
        """Verify the chain (useful after the entries were handled elsewhere)."""
        return verify_chain(self.entries, run_id=self.run_id)

    def __len__(self) -> int:
        return len(self._entries)


# ------------------------------------------------------------------------ verification


def _coerce(raw: object) -> LedgerEntry | str:
    """The entry, or a description of why ``raw`` is not one."""
    if isinstance(raw, LedgerEntry):
        return raw
    if not isinstance(raw, Mapping):
        return f"is not an object but {type(raw).__name__}"
    try:
        return LedgerEntry.model_validate(dict(raw))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "entry"
        if first["type"] == "missing":
            return f"is malformed: it has no {where!r}"
        if first["type"] == "extra_forbidden":
            return f"is malformed: it has an unknown field {where!r}"
        return f"is malformed: field {where!r}: {first['msg']}"


def _problem(entry: LedgerEntry, position: int, prev_hash: str, run_id: str | None) -> str | None:
    """What is wrong with ``entry`` at ``position`` after a chain ending in ``prev_hash``."""
    if run_id is not None and entry.run_id != run_id:
        return f"belongs to run {entry.run_id!r}, not {run_id!r}"
    if entry.seq < position:
        return (
            f"repeats seq {entry.seq} where seq {position} was expected "
            "(an entry was duplicated, inserted or moved)"
        )
    if entry.seq > position:
        return (
            f"has seq {entry.seq} where seq {position} was expected (an entry was deleted or moved)"
        )
    if entry.prev_hash != prev_hash:
        if position == 0:
            return "does not start on the genesis hash (the chain was truncated or forged)"
        return (
            f"does not link to entry {position - 1}: its prev_hash is not that entry's hash "
            "(an entry was deleted, inserted or replaced)"
        )
    try:
        recomputed = entry_hash(entry.prev_hash, entry.body())
    except AJWTError:
        return "has data that cannot be canonicalised as JSON"
    if recomputed != entry.entry_hash:
        return "does not match its entry_hash (its kind, time or data was edited)"
    return None


def verify_chain(
    entries: Sequence[LedgerEntry | Mapping[str, Any]],
    run_id: str | None = None,
    *,
    expected_head: str | None = None,
    anchors: Sequence[Anchor] = (),
) -> LedgerReport:
    """Recompute every hash; report the first entry where the chain breaks.

    Entries may be :class:`LedgerEntry` objects or mappings (a JSON export); a malformed
    one is reported as the break at its position, never raised. ``run_id`` defaults to
    the first entry's. Each entry is checked for its run, its ``seq`` (its position),
    its link to the previous entry (``GENESIS_HASH`` for the first) and its own hash.

    The chain alone cannot show that entries were cut off its end, or that the whole
    chain was rewritten; pass ``expected_head`` (the hash the ledger must end at) or
    ``anchors`` (points it must pass through: a stored head, a checkpoint, a token) to
    detect that too. Anchors are checked once the chain itself verifies.

    >>> ledger = Ledger("r")
    >>> for step in ("triage", "plan", "classify"):
    ...     _ = ledger.append(EntryKind.STEP_COMPLETED, {"step": step}, at=1)
    >>> entries = list(ledger.entries)
    >>> del entries[1]
    >>> report = verify_chain(entries)
    >>> report.first_bad_seq, report.problem
    (1, 'entry 1 has seq 2 where seq 1 was expected (an entry was deleted or moved)')
    >>> verify_chain(list(ledger.entries)[:2], expected_head=ledger.head).first_bad_seq
    2
    """
    head = GENESIS_HASH
    expected_run = run_id
    verified: list[LedgerEntry] = []
    for position, raw in enumerate(entries):
        entry = _coerce(raw)
        problem = entry if isinstance(entry, str) else _problem(entry, position, head, expected_run)
        if problem is not None:
            return LedgerReport(
                ok=False,
                entries=len(entries),
                head=head,
                first_bad_seq=position,
                problem=f"entry {position} {problem}",
            )
        assert isinstance(entry, LedgerEntry)
        verified.append(entry)
        expected_run = entry.run_id
        head = entry.entry_hash
    if expected_head is not None and head != expected_head:
        return LedgerReport(
            ok=False,
            entries=len(entries),
            head=head,
            first_bad_seq=len(entries),
            problem=(
                f"the chain ends after {len(entries)} entries at a head other than the "
                "expected one (entries were removed from its end, or it was rewritten)"
            ),
        )
    held: list[str] = []
    for anchor in anchors:
        found = _anchor_problem(verified, anchor)
        if isinstance(found, str):
            held.append(found)
            continue
        where, problem = found
        return LedgerReport(
            ok=False,
            entries=len(entries),
            head=head,
            first_bad_seq=where,
            problem=problem,
            anchors=held,
        )
    return LedgerReport(ok=True, entries=len(entries), head=head, anchors=held)


def _anchor_problem(entries: Sequence[LedgerEntry], anchor: Anchor) -> str | tuple[int | None, str]:
    """How ``anchor`` held (its description), or ``(position, problem)`` where it did not."""
    source, count = anchor.source, len(entries)
    position: int
    if anchor.seq is not None:
        position = anchor.seq
        if position >= count:
            last = f"ends at entry {count - 1}" if count else "is empty"
            return count, (
                f"the ledger {last}, but the {source} pins entry {position} "
                "(entries were removed from its end)"
            )
        if entries[position].entry_hash != anchor.entry_hash:
            return position, (
                f"entry {position} is not the entry the {source} pins "
                "(the ledger was rewritten at or before it)"
            )
    else:
        matches = [i for i, entry in enumerate(entries) if entry.entry_hash == anchor.entry_hash]
        if not matches:
            return None, (
                f"no entry of the ledger is the one the {source} pins "
                "(entries were removed, or the ledger was rewritten)"
            )
        position = matches[0]
    entry = entries[position]
    if anchor.jti is not None and (
        entry.kind is not EntryKind.TOKEN_MINTED or entry.data.get("jti") != anchor.jti
    ):
        return position, (
            f"entry {position}, which the {source} pins, does not record the minting of that token"
        )
    if anchor.final and position != count - 1:
        return position + 1, (
            f"the {source} says the ledger ends at entry {position}, but it goes on to "
            f"entry {count - 1}"
        )
    return f"{source} (entry {position})"


def verify_or_raise(
    entries: Sequence[LedgerEntry | Mapping[str, Any]],
    run_id: str | None = None,
    *,
    expected_head: str | None = None,
) -> LedgerReport:
    """:func:`verify_chain`, raising ``LedgerError(ledger_broken)`` when it fails.

    >>> verify_or_raise([{"seq": 0}])
    Traceback (most recent call last):
    ajwt_core.errors.LedgerError: the run ledger does not verify: \
entry 0 is malformed: it has no 'run_id'
    """
    report = verify_chain(entries, run_id, expected_head=expected_head)
    if not report.ok:
        raise LedgerError(Reason.LEDGER_BROKEN, f"the run ledger does not verify: {report.problem}")
    return report


def completed_steps(entries: Iterable[LedgerEntry]) -> frozenset[str]:
    """The steps recorded as completed (``step_completed`` entries with a ``"step"``).

    Pure extraction: verify the chain first.

    >>> ledger = Ledger("r")
    >>> _ = ledger.append(EntryKind.STEP_COMPLETED, {"step": "triage"}, at=1)
    >>> sorted(completed_steps(ledger.entries))
    ['triage']
    """
    return frozenset(
        entry.data["step"]
        for entry in entries
        if entry.kind is EntryKind.STEP_COMPLETED and isinstance(entry.data.get("step"), str)
    )


# ----------------------------------------------------------------------- JSON export


def export_json(entries: Sequence[LedgerEntry], run_id: str | None = None) -> str:
    """The ``{"run_id": ..., "entries": [...]}`` document ``ajwt audit verify`` reads.

    >>> ledger = Ledger("r")
    >>> _ = ledger.append(EntryKind.RUN_STARTED, {}, at=1)
    >>> verify_chain(load_json(export_json(ledger.entries))).ok
    True
    """
    if run_id is None:
        if not entries:
            raise InvalidRequest(
                Reason.MISSING_PARAMETER, "exporting an empty ledger needs its run_id"
            )
        run_id = entries[0].run_id
    document = {"run_id": run_id, "entries": [entry.model_dump(mode="json") for entry in entries]}
    return json.dumps(document, indent=2)


def _parse_export(text: str | bytes) -> tuple[str, list[Any]]:
    def broken(problem: str) -> LedgerError:
        return LedgerError(Reason.LEDGER_BROKEN, f"the ledger export {problem}")

    try:
        # Two values for one field: which one a reader sees would depend on its parser.
        document = loads_unique(text)
    except DuplicateKey as exc:
        raise broken(f"repeats the key {exc.key!r} in one object") from None
    except (ValueError, RecursionError) as exc:
        raise broken(f"is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise broken('is not a JSON object {"run_id": ..., "entries": [...]}')
    if set(document) != {"run_id", "entries"}:
        raise broken('must have exactly the keys "run_id" and "entries"')
    run_id, entries = document["run_id"], document["entries"]
    if not isinstance(run_id, str) or not run_id:
        raise broken('has a "run_id" that is not a non-empty string')
    if not isinstance(entries, list):
        raise broken('has "entries" that are not a list')
    return run_id, entries


def load_json(text: str | bytes) -> list[dict[str, Any]]:
    """The entries of an export, as mappings for :func:`verify_chain`.

    Raises ``LedgerError(ledger_broken)`` when the document itself is not an export
    (not JSON, a repeated key, a missing ``run_id``, an entry that is not an object).
    """
    _, entries = _parse_export(text)
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise LedgerError(
                Reason.LEDGER_BROKEN, f"the ledger export's entry {position} is not an object"
            )
    return entries


def verify_json(
    text: str | bytes, *, expected_head: str | None = None, anchors: Sequence[Anchor] = ()
) -> LedgerReport:
    """Verify an export against its own ``run_id``; never raises for bad content.

    What ``ajwt audit verify FILE`` runs. A document that is not an export is reported
    with ``first_bad_seq=None``.

    >>> verify_json('{"run_id": "r", "entries": [42]}').problem
    'entry 0 is not an object but int'
    >>> verify_json("not json").problem
    'the ledger export is not valid JSON (JSONDecodeError)'
    """
    try:
        run_id, entries = _parse_export(text)
    except LedgerError as exc:
        return LedgerReport(ok=False, entries=0, head=GENESIS_HASH, problem=exc.description)
    return verify_chain(entries, run_id, expected_head=expected_head, anchors=anchors)
