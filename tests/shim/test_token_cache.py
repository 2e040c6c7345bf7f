"""Issue 12 §6: the shim's token and completion caches are bounded, drop expired
tokens, and answer each lookup without scanning."""

from __future__ import annotations

from typing import Any

from ajwt_core.shim import Run, Shim
from ajwt_core.shim.client import _COMPLETED_RUNS_MAX
from ajwt_core.shim.token_cache import REFRESH_MARGIN, IssuedToken, TokenCache
from ajwt_core.workflow import reference_workflow


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def issued(
    step: str = "plan", *, expires_at: int = 1_000_300, tool: str = "read_file", run: str = "r1"
) -> IssuedToken:
    return IssuedToken(
        f"tok-{step}-{tool}-{expires_at}", expires_at, "planner", run, step, tool, "api", ""
    )


def test_a_cached_token_is_reused_until_its_refresh_margin() -> None:
    clock = Clock()
    cache = TokenCache(clock=clock)
    token = issued()
    cache.put(token)
    key = ("planner", "", "r1", "plan", "read_file", "api", "")
    assert cache.get(key) is token
    clock.now = token.expires_at - REFRESH_MARGIN
    assert cache.get(key) is None
    assert cache.latest("planner", "r1", "plan") is None


def test_the_cache_is_bounded() -> None:
    clock = Clock()
    cache = TokenCache(max_entries=100, clock=clock)
    for i in range(10_000):
        cache.put(issued(tool=f"tool-{i}", run=f"run-{i}"))
    assert len(cache) == 100
    assert len(cache._latest) <= 100
    # The newest are kept; the oldest were dropped and would simply be minted again.
    assert cache.get(("planner", "", "run-9999", "plan", "tool-9999", "api", "")) is not None
    assert cache.get(("planner", "", "run-0", "plan", "tool-0", "api", "")) is None


def test_expired_tokens_are_pruned_as_new_ones_arrive() -> None:
    clock = Clock()
    cache = TokenCache(clock=clock)
    for i in range(50):
        cache.put(issued(tool=f"tool-{i}"))
    clock.now += 300  # all fifty expired
    cache.put(issued(tool="fresh", expires_at=int(clock.now) + 300))
    assert len(cache) == 1
    assert len(cache._latest) == 2  # the fresh token by its step, and by "any step"


def test_latest_is_the_live_token_that_expires_last() -> None:
    clock = Clock()
    cache = TokenCache(clock=clock)
    first = issued("plan", expires_at=1_000_200)
    later = issued("plan", expires_at=1_000_300, tool="other")
    elsewhere = issued("classify", expires_at=1_000_250)
    for token in (later, first, elsewhere):  # the order of minting does not matter
        cache.put(token)
    assert cache.latest("planner", "r1", "plan") is later
    assert cache.latest("planner", "r1", "classify") is elsewhere
    assert cache.latest("planner", "r1", None) is later
    assert cache.latest("planner", "other-run", None) is None
    assert cache.latest("supervisor", "r1", None) is None


def test_the_shim_remembers_the_position_of_a_bounded_number_of_runs() -> None:
    shim = Shim("http://127.0.0.1:9", "client", client_secret="secret", master_secret=bytes(32))
    workflow = reference_workflow()

    def run(run_id: str) -> Run:
        return Run(run_id, "intent-" + run_id, "user:alice", workflow, workflow.workflow_hash)

    shim.run_state(run("first")).apply("step_completed", {"step": "triage", "agent": "s"})
    for i in range(_COMPLETED_RUNS_MAX):
        shim.run_state(run(f"run-{i}"))
        if i % 1000 == 0:
            shim.run_state(run("first"))  # in use: kept
    assert len(shim._states) == _COMPLETED_RUNS_MAX
    assert shim.completed_steps(run("first")) == {"triage"}
    assert "run-0" not in shim._states  # the least recently used went first


class NoScan(dict[Any, Any]):
    """A map that refuses to be iterated: a lookup that scans fails."""

    def __iter__(self) -> Any:
        raise AssertionError("the lookup scanned the cache")

    values = items = keys = __iter__


def test_hand_off_lookups_do_not_scan_at_100k_tokens() -> None:
    # Issue 17: the lookups a hand-off and a mint make are one map access each, however
    # many tokens the shim holds (10k and 100k live tokens, no cap reached).
    for count in (10_000, 100_000):
        clock = Clock()
        cache = TokenCache(max_entries=count, clock=clock)
        for i in range(count):
            cache.put(issued(tool=f"tool-{i % 7}", run=f"run-{i}", expires_at=1_000_300 + i))
        assert len(cache) == count
        by_request, latest = cache._by_request, cache._latest
        cache._by_request, cache._latest = NoScan(by_request), NoScan(latest)  # type: ignore[assignment]
        wanted = count // 2
        found = cache.latest("planner", f"run-{wanted}", "plan")
        assert found is not None and found.run_id == f"run-{wanted}"
        assert cache.latest("planner", f"run-{wanted}", None) is found
        key = ("planner", "", f"run-{wanted}", "plan", f"tool-{wanted % 7}", "api", "")
        assert cache.get(key) is found
        assert cache.latest("planner", "no-such-run", "plan") is None


def test_the_default_cap_holds_at_100k_mints() -> None:
    clock = Clock()
    cache = TokenCache(clock=clock)
    for i in range(100_000):
        cache.put(issued(run=f"run-{i}"))
    assert len(cache) == 4096
    assert len(cache._latest) <= 4096
