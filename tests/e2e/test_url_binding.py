"""Issue 12 §1 against the real servers: the shim's percent-encoded URLs are accepted,
and a forged ``Host`` no longer moves a captured proof to another path or origin."""

from __future__ import annotations

import httpx
import pytest

from ajwt_core.errors import Reason
from ajwt_core.shim import Run, Shim
from ajwt_demo.stack import Stack
from tests.e2e.test_threats import PR, advance, raw_call, refusal, token_for


@pytest.fixture
def shim(stack: Stack) -> Shim:
    return stack.shim()


@pytest.fixture
def run(stack: Stack, shim: Shim) -> Run:
    return stack.start_run(shim)


@pytest.mark.parametrize(
    ("name", "app_sees"),
    [
        ("READ ME.md", "READ ME.md"),  # httpx sends READ%20ME.md, and the shim signs that
        ("café.md", "café.md"),  # caf%C3%A9.md
        ("a%2Bb.md", "a+b.md"),
    ],
)
def test_percent_encoded_paths_from_the_shim_are_accepted(
    name: str, app_sees: str, stack: Stack, shim: Shim, run: Run
) -> None:
    advance(shim, run, "triage", stack.rs_url)
    shim.handoff("supervisor", "planner", "plan", run=run, audience=stack.rs_url)
    with (
        httpx.Client(base_url=stack.rs_url, auth=shim.auth()) as http,
        shim.acting("planner", tool="read_file", run=run),
    ):
        response = http.get(f"/repos/acme/storefront/files/{name}")
    assert response.status_code in (200, 404), response.text  # 404: the app has no such file
    body = response.json()
    assert body["caller"]["agent"] == "planner", body
    assert body.get("path", app_sees) == app_sees


def test_forged_host_cannot_move_a_captured_proof_to_another_repository(
    stack: Stack, shim: Shim, run: Run
) -> None:
    advance(shim, run, "classify", stack.rs_url)
    issued = token_for(shim, run, "patcher", "create_pull_request", stack.rs_url)
    key = shim.agent("patcher").key
    storefront = stack.rs_url + "/repos/acme/storefront/pulls"
    billing = stack.rs_url + "/repos/acme/billing/pulls"
    authority = stack.rs_url.removeprefix("http://")
    opened = len(stack.api.state.pulls)
    # A token + proof captured for storefront, sent to billing (same route policy) with a
    # Host that pushes the signed path into the query: the old URL matched the proof.
    for forged in (f"{authority}/repos/acme/storefront/pulls?", f"{authority}/x#"):
        r = raw_call(
            billing,
            issued.token,
            key,
            method="POST",
            json_body=PR,
            proof_url=storefront,
            extra={"Host": forged},
        )
        refusal(r, 400, Reason.HOST_NOT_ALLOWED)
    r = raw_call(billing, issued.token, key, method="POST", json_body=PR, proof_url=storefront)
    refusal(r, 401, Reason.URL_MISMATCH)
    assert len(stack.api.state.pulls) == opened
    # The request the proof was made for.
    r = raw_call(storefront, issued.token, key, method="POST", json_body=PR)
    assert r.status_code == 201, r.text
    assert r.json()["pull_request"]["repo"] == "acme/storefront"


def test_proof_for_another_origin_with_a_forged_host_is_refused(
    stack: Stack, shim: Shim, run: Run
) -> None:
    issued = token_for(shim, run, "supervisor", "list_repos", stack.rs_url)
    key = shim.agent("supervisor").key
    url = stack.rs_url + "/repos"
    # A token + proof leaked to (or made for) another origin, replayed here as that origin.
    elsewhere = "http://code.other.example/repos"
    r = raw_call(url, issued.token, key, proof_url=elsewhere, extra={"Host": "code.other.example"})
    refusal(r, 400, Reason.HOST_NOT_ALLOWED)
    refusal(raw_call(url, issued.token, key, proof_url=elsewhere), 401, Reason.URL_MISMATCH)
    assert raw_call(url, issued.token, key).status_code == 200
