"""Agent manifests and their checksum (DESIGN §3): canonical form, validation, secrets,
deep-mode source digests and template rendering."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import random
import re
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import SecretBytes, SecretStr

from ajwt_core.canonical import jcs, json_digest
from ajwt_core.checksum import (
    MAX_AGENT_ID_LENGTH,
    MAX_JSON_NESTING,
    PROMPT_WHITESPACE,
    AgentManifest,
    PromptSpec,
    RenderedPrompt,
    ToolSpec,
    compute_checksum,
    normalise_prompt,
    render_prompt,
    strip_secrets,
    tool_source_digest,
)
from ajwt_core.errors import AJWTError, InvalidRequest, Reason

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")

# A hand-written manifest, as an adapter would extract it and the IdP would receive it:
# unsorted tools and keys, a repeated variable, untidy whitespace in the prompt.
MANIFEST: dict[str, Any] = {
    "agent_id": "patcher",
    "prompt": {
        "template": "  You patch {repo}.\r\n\r\n\tOpen one pull request per {package}.  \n",
        "variables": ["repo", "package", "repo"],
    },
    "tools": [
        {
            "name": "read_file",
            "description": "Read one file.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
            },
        },
        {
            "name": "create_pull_request",
            "description": "Open a pull request — one per package.",
            "parameters": {"type": "object"},
            "source": "sha256:" + "0" * 64,
        },
    ],
    "config": {
        "temperature": 0.2,
        "model": "gpt-4o",
        "max_tokens": 1024,
        "stop": ["\n\n"],
        "seed": None,
        "streaming": False,
        "top_p": 1.0,
    },
}

# The same manifest in RFC 8785 form, written out by hand: keys sorted, no spaces,
# 1.0 written as 1, the template normalised, variables sorted and deduplicated, tools
# sorted by name with "source" spelled out, non-ASCII text as raw UTF-8.
EXPECTED_CANONICAL_JSON = (
    '{"agent_id":"patcher",'
    '"config":{"max_tokens":1024,"model":"gpt-4o","seed":null,"stop":["\\n\\n"],'
    '"streaming":false,"temperature":0.2,"top_p":1},'
    '"prompt":{"template":"You patch {repo}.\\nOpen one pull request per {package}.",'
    '"variables":["package","repo"]},'
    '"tools":[{"description":"Open a pull request — one per package.",'
    '"name":"create_pull_request","parameters":{"type":"object"},'
    '"source":"sha256:0000000000000000000000000000000000000000000000000000000000000000"},'
    '{"description":"Read one file.","name":"read_file",'
    '"parameters":{"properties":{"path":{"type":"string"}},"required":["path"],'
    '"type":"object"},"source":null}],'
    '"v":1}'
).encode()


def manifest_with(**changes: Any) -> dict[str, Any]:
    """A deep copy of ``MANIFEST`` with top-level fields replaced."""
    data = copy.deepcopy(MANIFEST)
    data.update(changes)
    return data


def prompt_with(template: str, variables: list[str] | None = None) -> dict[str, Any]:
    return manifest_with(prompt={"template": template, "variables": variables or []})


def refused(reason: Reason, call: Callable[[], object]) -> InvalidRequest:
    """Run ``call``, which must raise ``InvalidRequest`` with ``reason``."""
    with pytest.raises(InvalidRequest) as caught:
        call()
    assert caught.value.reason is reason, caught.value
    return caught.value


# ----------------------------------------------------------------- canonical form


def test_checksum_matches_independently_computed_known_answer() -> None:
    expected = "sha256:" + hashlib.sha256(EXPECTED_CANONICAL_JSON).hexdigest()

    assert compute_checksum(MANIFEST) == expected
    assert AgentManifest.model_validate(MANIFEST).checksum() == expected


def test_canonical_is_the_hashed_document() -> None:
    canonical = AgentManifest.model_validate(MANIFEST).canonical()

    assert jcs(canonical) == EXPECTED_CANONICAL_JSON
    assert canonical == json.loads(EXPECTED_CANONICAL_JSON)


def test_canonical_spells_out_every_default() -> None:
    manifest = AgentManifest(
        agent_id="planner", prompt=PromptSpec(template="Plan."), tools=[ToolSpec(name="t")]
    )

    assert manifest.canonical() == {
        "v": 1,
        "agent_id": "planner",
        "prompt": {"template": "Plan.", "variables": []},
        "tools": [{"name": "t", "description": "", "parameters": {}, "source": None}],
        "config": {},
    }


def test_defaults_and_explicit_defaults_give_the_same_checksum() -> None:
    short = {"agent_id": "a", "prompt": {"template": "Hi."}, "tools": [{"name": "t"}]}
    full = {
        "v": 1,
        "agent_id": "a",
        "prompt": {"template": "Hi.", "variables": []},
        "tools": [{"name": "t", "description": "", "parameters": {}, "source": None}],
        "config": {},
    }

    assert compute_checksum(short) == compute_checksum(full)


def test_canonical_returns_a_copy() -> None:
    manifest = AgentManifest.model_validate(MANIFEST)
    before = manifest.checksum()

    canonical = manifest.canonical()
    canonical["config"]["model"] = "other"
    canonical["tools"][0]["parameters"]["type"] = "array"

    assert manifest.checksum() == before


def test_checksum_survives_the_trip_to_the_idp() -> None:
    # The shim hashes the model and sends model_dump(mode="json"); the IdP recomputes.
    manifest = AgentManifest.model_validate(MANIFEST)
    over_the_wire = json.loads(json.dumps(manifest.model_dump(mode="json")))

    assert compute_checksum(over_the_wire) == manifest.checksum()
    assert compute_checksum(manifest) == manifest.checksum()


def test_checksum_treats_equal_json_numbers_alike() -> None:
    # JCS writes 1.0 as 1: the config means the same, so the agent is the same.
    assert compute_checksum(manifest_with(config={"top_p": 1.0})) == compute_checksum(
        manifest_with(config={"top_p": 1})
    )


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Plan.", "Plan."),
        ("  Plan.  ", "Plan."),
        ("a\r\nb", "a\nb"),
        ("a\rb", "a\nb"),
        ("a\n\n\n  \t\nb", "a\nb"),
        ("\n\n  a  \n  b\t\n\n", "a\nb"),
        ("one  two", "one  two"),
        ("   \r\n\t", ""),
    ],
)
def test_normalise_prompt_strips_lines_and_drops_empty_ones(template: str, expected: str) -> None:
    assert normalise_prompt(template) == expected


def test_normalise_prompt_strips_exactly_the_unicode_white_space_characters() -> None:
    # DESIGN §3: the 25 White_Space code points, whatever this Python's str.isspace says.
    stripped = {chr(c) for c in range(0x3001) if normalise_prompt(f"{chr(c)}x{chr(c)}") == "x"}
    assert stripped == set(PROMPT_WHITESPACE)
    assert len(PROMPT_WHITESPACE) == 25


@pytest.mark.parametrize("char", ["\x1c", "\x1d", "\x1e", "\x1f", "\ufeff", "\u200b"])
def test_normalise_prompt_keeps_characters_other_languages_strip(char: str) -> None:
    # Python's str.strip() removes U+001C..U+001F, JavaScript's trim() removes U+FEFF:
    # neither is whitespace in the spec, so an edit adding one changes the checksum.
    assert normalise_prompt(f"{char}Plan.{char}") == f"{char}Plan.{char}"
    assert compute_checksum(prompt_with(f"{char}Plan.")) != compute_checksum(prompt_with("Plan."))


def test_normalise_prompt_strips_unicode_spaces_so_they_do_not_change_the_checksum() -> None:
    assert compute_checksum(prompt_with("\u3000Plan.\u00a0\r")) == compute_checksum(
        prompt_with("Plan.")
    )


# ------------------------------------------------------------------------ validation


def test_refuses_duplicate_tool_names() -> None:
    tools = [{"name": "read_file"}, {"name": "list_repos"}, {"name": "read_file"}]

    error = refused(Reason.INVALID_MANIFEST, lambda: compute_checksum(manifest_with(tools=tools)))

    assert "'read_file'" in error.description


def test_refuses_placeholder_that_is_not_a_declared_variable() -> None:
    error = refused(
        Reason.INVALID_MANIFEST,
        lambda: compute_checksum(prompt_with("Patch {repo} as {role}.", ["repo"])),
    )

    assert "{role}" in error.description


@pytest.mark.parametrize("variable", ["", "a b", "1st", "a-b", "a.b", "a[0]", "{x}"])
def test_refuses_variable_that_is_not_an_identifier(variable: str) -> None:
    refused(
        Reason.INVALID_MANIFEST,
        lambda: compute_checksum(prompt_with("Plan.", [variable])),
    )


@pytest.mark.parametrize(
    "template",
    [
        "{user.__class__}",
        "{user[0]}",
        "{user['password']}",
        "{user!r}",
        "{user!s}",
        "{user:>10}",
        "{user:{user}}",
        "{}",
        "{0}",
        "{ user }",
    ],
)
def test_refuses_placeholder_with_access_conversion_or_format_spec(template: str) -> None:
    # Even when the base name is declared: these read or reshape undeclared data.
    refused(
        Reason.INVALID_MANIFEST,
        lambda: compute_checksum(prompt_with(f"Hello {template}.", ["user"])),
    )


@pytest.mark.parametrize("template", ["{", "}", "a {user", "a user}", "{user!}", "{{user}"])
def test_refuses_malformed_template(template: str) -> None:
    refused(
        Reason.INVALID_MANIFEST,
        lambda: compute_checksum(prompt_with(template, ["user"])),
    )


def test_accepts_escaped_braces_and_unused_declared_variables() -> None:
    manifest = AgentManifest.model_validate(
        prompt_with('Answer as {{"repo": {repo}}}.', ["repo", "unused"])
    )

    assert manifest.canonical()["prompt"] == {
        "template": 'Answer as {{"repo": {repo}}}.',
        "variables": ["repo", "unused"],
    }


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), -float("inf"), 2**53, -(2**60), {1: "a"}, b"bytes", object()],
)
def test_refuses_config_value_that_is_not_json(value: Any) -> None:
    refused(
        Reason.MALFORMED_REQUEST,
        lambda: compute_checksum(manifest_with(config={"model": "m", "extra": {"x": [value]}})),
    )


@pytest.mark.parametrize("value", [float("nan"), 2**64, {2: "a"}])
def test_refuses_tool_parameters_that_are_not_json(value: Any) -> None:
    tools = [{"name": "t", "parameters": {"type": "object", "default": value}}]

    refused(Reason.MALFORMED_REQUEST, lambda: compute_checksum(manifest_with(tools=tools)))


def nested(levels: int) -> dict[str, Any]:
    """An object ``levels`` objects deep (``{}`` is one level)."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


def test_refuses_config_and_parameters_nested_too_deep() -> None:
    too_deep = nested(5000)

    refused(Reason.INVALID_MANIFEST, lambda: compute_checksum(manifest_with(config=too_deep)))
    refused(
        Reason.INVALID_MANIFEST,
        lambda: compute_checksum(manifest_with(tools=[{"name": "t", "parameters": too_deep}])),
    )


def test_accepts_nesting_up_to_the_limit_counting_arrays() -> None:
    arrays: list[Any] = []
    for _ in range(MAX_JSON_NESTING - 2):
        arrays = [arrays]

    assert DIGEST.fullmatch(compute_checksum(manifest_with(config=nested(MAX_JSON_NESTING))))
    assert DIGEST.fullmatch(compute_checksum(manifest_with(config={"k": arrays})))
    refused(
        Reason.INVALID_MANIFEST,
        lambda: compute_checksum(manifest_with(config=nested(MAX_JSON_NESTING + 1))),
    )
    refused(
        Reason.INVALID_MANIFEST, lambda: compute_checksum(manifest_with(config={"k": [arrays]}))
    )


@pytest.mark.parametrize(
    "agent_id",
    [
        "",
        " patcher",
        "patcher ",
        "patch er",
        "patch\ter",
        "patch\x00er",
        "x" * 129,
        "pätcher",
        "a/b",
    ],
)
def test_refuses_malformed_agent_id(agent_id: str) -> None:
    refused(Reason.INVALID_MANIFEST, lambda: compute_checksum(manifest_with(agent_id=agent_id)))


@pytest.mark.parametrize("agent_id", ["p", "agent:planner@v2", "x" * MAX_AGENT_ID_LENGTH])
def test_accepts_agent_id_without_whitespace_up_to_the_limit(agent_id: str) -> None:
    assert DIGEST.fullmatch(compute_checksum(manifest_with(agent_id=agent_id)))


@pytest.mark.parametrize("version", [0, 2, True, 1.0, "1", None])
def test_refuses_manifest_version_other_than_integer_1(version: Any) -> None:
    refused(Reason.INVALID_MANIFEST, lambda: compute_checksum(manifest_with(v=version)))


@pytest.mark.parametrize(
    "source", ["", "sha256:" + "A" * 64, "sha256:abc", "sha512:" + "0" * 64, "0" * 64]
)
def test_refuses_tool_source_that_is_not_a_sha256_digest(source: str) -> None:
    tools = [{"name": "t", "source": source}]

    refused(Reason.INVALID_MANIFEST, lambda: compute_checksum(manifest_with(tools=tools)))


@pytest.mark.parametrize("name", ["", "   ", " read_file", "read_file\n", "x" * 129])
def test_refuses_malformed_tool_name(name: str) -> None:
    refused(
        Reason.INVALID_MANIFEST,
        lambda: compute_checksum(manifest_with(tools=[{"name": name}])),
    )


@pytest.mark.parametrize(
    "manifest",
    [
        manifest_with(owner="mallory"),
        manifest_with(prompt={"template": "Plan.", "examples": []}),
        manifest_with(tools=[{"name": "t", "function": "rm -rf /"}]),
    ],
)
def test_refuses_unknown_fields(manifest: dict[str, Any]) -> None:
    error = refused(Reason.INVALID_MANIFEST, lambda: compute_checksum(manifest))

    assert "unknown field" in error.description


@pytest.mark.parametrize(
    "manifest",
    [
        manifest_with(agent_id=7),
        manifest_with(prompt="Plan."),
        manifest_with(prompt={"template": "Plan.", "variables": "repo"}),
        manifest_with(prompt={"template": b"Plan."}),
        manifest_with(tools={"name": "t"}),
        manifest_with(tools=["read_file"]),
        manifest_with(config=[["model", "m"]]),
        {"agent_id": "a"},
        {"prompt": {"template": "Plan."}},
        {},
    ],
)
def test_refuses_fields_of_the_wrong_type_or_missing(manifest: dict[str, Any]) -> None:
    refused(Reason.INVALID_MANIFEST, lambda: compute_checksum(manifest))


@pytest.mark.parametrize("manifest", [None, [], "manifest", 1, [MANIFEST]])
def test_refuses_manifest_that_is_not_an_object(manifest: Any) -> None:
    refused(Reason.INVALID_MANIFEST, lambda: compute_checksum(manifest))


def test_error_names_where_the_problem_is() -> None:
    tools = [{"name": "ok"}, {"name": "t", "source": "md5:x"}]

    error = refused(Reason.INVALID_MANIFEST, lambda: compute_checksum(manifest_with(tools=tools)))

    assert "tools[1].source" in error.description


@pytest.mark.parametrize(
    "build",
    [
        lambda: AgentManifest(agent_id="a b", prompt=PromptSpec(template="x")),
        lambda: AgentManifest.model_validate({"agent_id": "a"}),
        lambda: AgentManifest.model_validate_json('{"agent_id": "a", "prompt": 1}'),
        lambda: PromptSpec(template="Hello {name}."),
        lambda: PromptSpec.model_validate({"template": 1}),
        lambda: ToolSpec(name=""),
        lambda: ToolSpec.model_validate({"name": "t", "parameters": {"x": float("nan")}}),
    ],
)
def test_models_raise_invalid_request_never_a_pydantic_error(build: Callable[[], object]) -> None:
    with pytest.raises(InvalidRequest):
        build()


# --------------------------------------------------------------------------- secrets

SECRET_KEYS = [
    "api_key",
    "API_KEY",
    "apiKey",
    "apikey",
    "openai_api_key",
    "OPENAI-API-KEY",
    "x-api-key",
    "secret",
    "client_secret",
    "secret_key",
    "password",
    "db_password",
    "passwd",
    "token",
    "access_token",
    "refresh_token",
    "access_key",
    "aws_secret_access_key",
    "private_key",
    "Authorization",
    "proxy_authorization",
    "credentials",
    "google_credentials",
]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_refuses_config_key_that_names_a_secret(key: str) -> None:
    value = "sk-live-DO-NOT-LEAK"

    top = refused(
        Reason.SECRET_IN_MANIFEST, lambda: compute_checksum(manifest_with(config={key: value}))
    )
    deep = refused(
        Reason.SECRET_IN_MANIFEST,
        lambda: compute_checksum(
            manifest_with(config={"model": "m", "client": {"headers": [{"a": 1}, {key: value}]}})
        ),
    )

    assert key in top.description
    assert f"config.client.headers[1].{key}" in deep.description
    for error in (top, deep):
        assert value not in error.description
        assert value not in repr(error)
        assert value not in str(error.to_oauth())


@pytest.mark.parametrize("secret", [SecretStr("sk-live-1"), SecretBytes(b"sk-live-1")])
def test_refuses_secret_values_in_config(secret: Any) -> None:
    error = refused(
        Reason.SECRET_IN_MANIFEST,
        lambda: compute_checksum(manifest_with(config={"client": {"auth": [secret]}})),
    )

    assert "config.client.auth[0]" in error.description
    assert "sk-live-1" not in error.description


@pytest.mark.parametrize(
    "key", ["model", "max_tokens", "tokenizer", "temperature", "key_id", "monkey", "top_k"]
)
def test_accepts_config_keys_that_only_resemble_secrets(key: str) -> None:
    assert DIGEST.fullmatch(compute_checksum(manifest_with(config={key: 1})))


def test_secret_check_comes_before_other_problems() -> None:
    # A manifest that is wrong in several ways still never echoes a secret.
    bad = manifest_with(agent_id="a b", config={"password": float("nan")})

    refused(Reason.SECRET_IN_MANIFEST, lambda: compute_checksum(bad))


def test_tool_parameters_may_name_secret_fields() -> None:
    # A JSON schema describing an "api_key" argument holds no secret.
    schema = {"type": "object", "properties": {"api_key": {"type": "string"}}}

    assert DIGEST.fullmatch(
        compute_checksum(manifest_with(tools=[{"name": "t", "parameters": schema}]))
    )


def test_strip_secrets_drops_secret_keys_and_values_at_any_depth() -> None:
    config = {
        "model": "gpt-4o",
        "OpenAI_API_Key": "sk-1",
        "client": {"timeout": 30, "auth": SecretStr("x"), "headers": {"Authorization": "Bearer"}},
        "fallbacks": [{"model": "m2", "api_key": "sk-2"}, SecretBytes(b"y"), "plain"],
        "max_tokens": 256,
    }

    assert strip_secrets(config) == {
        "model": "gpt-4o",
        "client": {"timeout": 30, "headers": {}},
        "fallbacks": [{"model": "m2"}, "plain"],
        "max_tokens": 256,
    }


def test_strip_secrets_leaves_its_input_alone() -> None:
    config = {"model": "m", "inner": {"password": "p"}}

    strip_secrets(config)

    assert config == {"model": "m", "inner": {"password": "p"}}


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_stripped_config_is_accepted(key: str) -> None:
    config = strip_secrets({"model": "m", key: "v", "nested": {key: "v"}})

    assert DIGEST.fullmatch(compute_checksum(manifest_with(config=config)))


def test_refuses_secret_added_to_config_after_validation() -> None:
    # Dicts inside a frozen model can still be mutated; the manifest must not leave.
    manifest = AgentManifest.model_validate(manifest_with(config={"client": {}}))
    manifest.config["client"]["password"] = "hunter2"

    error = refused(Reason.SECRET_IN_MANIFEST, manifest.checksum)

    assert "hunter2" not in error.description


def test_a_tool_spec_built_once_is_not_checked_again_inside_each_manifest() -> None:
    # Legitimate: a spec reused across manifests (adapters keep them) is taken as built.
    tool = ToolSpec(name="read_file", parameters={"type": "object"})
    first = AgentManifest(agent_id="a", prompt=PromptSpec(template="x"), tools=[tool])
    assert first.tools[0] is tool
    # Attack: its dict changed in place afterwards to hold what JSON cannot carry (or
    # nested too deep): no checksum is taken of it, with a typed refusal.
    tool.parameters["extra"] = {1, 2}
    later = AgentManifest(agent_id="a", prompt=PromptSpec(template="x"), tools=[tool])
    refused(Reason.MALFORMED_REQUEST, later.checksum)
    deep: dict[str, Any] = {}
    tool.parameters["extra"] = deep
    for _ in range(5000):
        deep["d"] = deep = {}
    assert "nested more than" in refused(Reason.INVALID_MANIFEST, later.checksum).description
    # A dict given directly is still checked when the manifest is built.
    refused(
        Reason.INVALID_MANIFEST,
        lambda: AgentManifest.model_validate(
            {"agent_id": "a", "prompt": {"template": "x"}, "tools": [{"name": " x"}]}
        ),
    )


# ------------------------------------------------------------------------ properties

WORD = st.text(alphabet=string.ascii_letters + string.digits + ".,;:!?'-()\"", min_size=1)
VARIABLE = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
# Config keys that never look like secrets, so that every generated manifest is valid.
SAFE_KEY = st.text(alphabet=string.ascii_letters + "_", min_size=1, max_size=8).filter(
    lambda key: strip_secrets({key: 0}) == {key: 0}
)
JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(SAFE_KEY, inner, max_size=4),
    max_leaves=8,
)
JSON_OBJECT = st.dictionaries(SAFE_KEY, JSON_VALUE, max_size=5)


@st.composite
def templates(draw: st.DrawFn) -> tuple[list[list[str]], list[str]]:
    """Prompt lines as lists of tokens (words and ``{variable}`` placeholders)."""
    variables = draw(st.lists(VARIABLE, unique=True, max_size=3))
    token = WORD if not variables else WORD | st.sampled_from(variables).map("{{{}}}".format)
    lines = draw(st.lists(st.lists(token, min_size=1, max_size=6), min_size=1, max_size=5))
    return lines, variables


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    lines, variables = draw(templates())
    names = draw(st.lists(st.from_regex(r"[a-z_]{1,10}", fullmatch=True), unique=True, max_size=3))
    tools = [
        {
            "name": name,
            "description": draw(st.text(max_size=20)),
            "parameters": draw(JSON_OBJECT),
            **({"source": "sha256:" + "ab" * 32} if draw(st.booleans()) else {}),
        }
        for name in names
    ]
    return {
        "agent_id": draw(st.from_regex(r"[a-z][a-z0-9:._-]{0,20}", fullmatch=True)),
        "prompt": {
            "template": "\n".join(" ".join(line) for line in lines),
            "variables": variables,
        },
        "tools": tools,
        "config": draw(JSON_OBJECT),
    }


def reordered(value: Any, rnd: random.Random) -> Any:
    """The same JSON value with the keys of every object in another order."""
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {key: reordered(item, rnd) for key, item in items}
    if isinstance(value, list):
        return [reordered(item, rnd) for item in value]
    return value


def mutated(value: Any, data: st.DataObject) -> Any:
    """The JSON value with one change somewhere in it (an object stays an object)."""
    if isinstance(value, dict):
        if len(value) > 0 and data.draw(st.booleans()):
            key = data.draw(st.sampled_from(sorted(value)))
            return {**value, key: mutated(value[key], data)}
        key = data.draw(SAFE_KEY.filter(lambda k: k not in value))
        return {**value, key: data.draw(JSON_VALUE)}
    if isinstance(value, list) and value and data.draw(st.booleans()):
        index = data.draw(st.integers(0, len(value) - 1))
        return [*value[:index], mutated(value[index], data), *value[index + 1 :]]
    return data.draw(JSON_VALUE.filter(lambda new: jcs(new) != jcs(value)))


@settings(max_examples=100, deadline=None)
@given(manifests(), st.randoms(use_true_random=False))
def test_checksum_ignores_key_order(manifest: dict[str, Any], rnd: random.Random) -> None:
    assert compute_checksum(reordered(manifest, rnd)) == compute_checksum(manifest)


@settings(max_examples=100, deadline=None)
@given(manifests(), st.randoms(use_true_random=False))
def test_checksum_ignores_tool_order(manifest: dict[str, Any], rnd: random.Random) -> None:
    shuffled = copy.deepcopy(manifest)
    rnd.shuffle(shuffled["tools"])

    assert compute_checksum(shuffled) == compute_checksum(manifest)


@settings(max_examples=100, deadline=None)
@given(manifests(), st.data())
def test_checksum_ignores_prompt_whitespace(manifest: dict[str, Any], data: st.DataObject) -> None:
    padding = st.text(alphabet=" \t\u00a0\u3000", max_size=3)
    newline = st.sampled_from(["\n", "\r\n", "\r"])
    untidy = data.draw(padding)
    for line in manifest["prompt"]["template"].split("\n"):
        for _ in range(data.draw(st.integers(0, 2))):
            untidy += data.draw(padding) + data.draw(newline)
        untidy += data.draw(padding) + line + data.draw(padding) + data.draw(newline)
    changed = copy.deepcopy(manifest)
    changed["prompt"]["template"] = untidy + data.draw(padding)

    assert compute_checksum(changed) == compute_checksum(manifest)


@settings(max_examples=100, deadline=None)
@given(manifests(), st.data())
def test_checksum_changes_when_a_prompt_word_changes(
    manifest: dict[str, Any], data: st.DataObject
) -> None:
    lines = [line.split(" ") for line in manifest["prompt"]["template"].split("\n")]
    words = [
        (i, j) for i, line in enumerate(lines) for j, word in enumerate(line) if "{" not in word
    ]
    assume(words)
    i, j = data.draw(st.sampled_from(words))
    lines[i][j] = data.draw(WORD.filter(lambda w: w != lines[i][j]))
    changed = copy.deepcopy(manifest)
    changed["prompt"]["template"] = "\n".join(" ".join(line) for line in lines)

    assert compute_checksum(changed) != compute_checksum(manifest)


@settings(max_examples=100, deadline=None)
@given(manifests(), st.data())
def test_checksum_changes_when_a_tool_schema_changes(
    manifest: dict[str, Any], data: st.DataObject
) -> None:
    assume(manifest["tools"])
    changed = copy.deepcopy(manifest)
    tool = data.draw(st.sampled_from(changed["tools"]))
    tool["parameters"] = mutated(tool["parameters"], data)

    assert compute_checksum(changed) != compute_checksum(manifest)


@settings(max_examples=100, deadline=None)
@given(manifests(), st.data())
def test_checksum_changes_when_a_tool_description_or_source_changes(
    manifest: dict[str, Any], data: st.DataObject
) -> None:
    assume(manifest["tools"])
    changed = copy.deepcopy(manifest)
    tool = data.draw(st.sampled_from(changed["tools"]))
    if data.draw(st.booleans()):
        old = tool["description"]
        tool["description"] = data.draw(st.text(max_size=20).filter(lambda d: d != old))
    else:
        tool["source"] = "sha256:" + ("cd" if tool.get("source") else "ab") * 32

    assert compute_checksum(changed) != compute_checksum(manifest)


@settings(max_examples=100, deadline=None)
@given(manifests(), st.data())
def test_checksum_changes_when_config_changes(
    manifest: dict[str, Any], data: st.DataObject
) -> None:
    changed = copy.deepcopy(manifest)
    changed["config"] = mutated(changed["config"], data)

    assert compute_checksum(changed) != compute_checksum(manifest)


@settings(max_examples=100, deadline=None)
@given(manifests(), st.data())
def test_checksum_changes_when_identity_tools_or_variables_change(
    manifest: dict[str, Any], data: st.DataObject
) -> None:
    changed = copy.deepcopy(manifest)
    change = data.draw(st.sampled_from(["agent_id", "add_tool", "drop_tool", "add_variable"]))
    if change == "agent_id":
        changed["agent_id"] += "2"
    elif change == "add_tool":
        changed["tools"].append({"name": "added tool"})
    elif change == "drop_tool":
        assume(changed["tools"])
        changed["tools"].pop()
    else:
        new = data.draw(VARIABLE.filter(lambda v: v not in manifest["prompt"]["variables"]))
        changed["prompt"]["variables"].append(new)

    assert compute_checksum(changed) != compute_checksum(manifest)


@settings(max_examples=100, deadline=None)
@given(manifests())
def test_checksum_survives_json_round_trip(manifest: dict[str, Any]) -> None:
    model = AgentManifest.model_validate(manifest)
    wire = json.loads(json.dumps(model.model_dump(mode="json")))

    assert compute_checksum(wire) == model.checksum() == compute_checksum(manifest)


MANIFEST_FIELDS = ["v", "agent_id", "prompt", "template", "variables", "tools", "name"]
ANYTHING = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["{", "}", "{x}", "{x.y}", "sha256:", "api_key", "\ud800"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.sampled_from(MANIFEST_FIELDS), inner, max_size=4)
    ),
    max_leaves=20,
)


def fuzzed(value: Any, data: st.DataObject) -> Any:
    """The value with one part (possibly all of it) replaced by anything at all."""
    if isinstance(value, dict) and value and data.draw(st.integers(0, 3)):
        key = data.draw(st.sampled_from(sorted(value)))
        return {**value, key: fuzzed(value[key], data)}
    if isinstance(value, list) and value and data.draw(st.integers(0, 3)):
        index = data.draw(st.integers(0, len(value) - 1))
        return [*value[:index], fuzzed(value[index], data), *value[index + 1 :]]
    return data.draw(ANYTHING)


@settings(max_examples=300, deadline=None)
@given(st.one_of(ANYTHING, manifests()), st.data())
def test_compute_checksum_raises_nothing_but_ajwt_errors(
    candidate: Any, data: st.DataObject
) -> None:
    candidate = fuzzed(candidate, data) if data.draw(st.booleans()) else candidate
    reason: Reason | None = None
    checksum = ""
    try:
        checksum = compute_checksum(candidate)
    except AJWTError as exc:
        reason = exc.reason
    if reason is None:
        assert DIGEST.fullmatch(checksum)
    else:
        assert reason in {
            Reason.INVALID_MANIFEST,
            Reason.SECRET_IN_MANIFEST,
            Reason.MALFORMED_REQUEST,
        }


# ------------------------------------------------------------------------ deep mode

SOURCE = '''
def read_file(repo: str, path: str, *, limit: int = 10_000) -> str:
    """Read one file of a repository."""
    with open(f"{repo}/{path}", encoding="utf-8") as handle:
        return handle.read()[:limit]
'''


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(
            """
def read_file(
    repo: str,
    path: str,
    *,
    limit: int = 10000,
) -> str:
    with open(f'{repo}/{path}', encoding=u'utf-8') as handle:
        return (handle.read())[:limit]
""",
            id="reformatted",
        ),
        pytest.param(
            SOURCE.replace("Read one file of a repository.", "Return a file's text.\n\n    Long."),
            id="docstring-changed",
        ),
        pytest.param(
            "# A tool.\n"
            + SOURCE.replace("-> str:", "-> str:  # the text").replace(
                "    with", "    # read it\n    with"
            ),
            id="comments-added",
        ),
        pytest.param("\n".join("        " + line for line in SOURCE.splitlines()), id="indented"),
    ],
)
def test_source_digest_ignores_formatting_comments_and_docstrings(variant: str) -> None:
    assert tool_source_digest(variant) == tool_source_digest(SOURCE)


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(SOURCE.replace("10_000", "20_000"), id="constant"),
        pytest.param(SOURCE.replace("[:limit]", "[:limit + 1]"), id="operator"),
        pytest.param(SOURCE.replace('"utf-8"', '"latin-1"'), id="string"),
        pytest.param(SOURCE.replace("{repo}/{path}", "{repo}/../{path}"), id="f-string"),
        pytest.param(SOURCE.replace("def read_file", "@cache\ndef read_file"), id="decorator"),
        pytest.param(SOURCE.replace("limit: int", "limit: float"), id="annotation"),
        pytest.param(SOURCE.replace("path", "file_path"), id="name"),
        pytest.param(SOURCE.replace('"""Read one file of a repository."""', "pass"), id="pass"),
    ],
)
def test_source_digest_changes_with_any_code_change(variant: str) -> None:
    assert tool_source_digest(variant) != tool_source_digest(SOURCE)


def test_source_digest_treats_a_docstring_only_body_as_pass() -> None:
    assert tool_source_digest("def f():\n    '''Doc.'''") == tool_source_digest(
        "def f():\n    pass"
    )
    assert tool_source_digest("class C:\n    '''Doc.'''\n    pass") == tool_source_digest(
        "class C:\n    pass"
    )


def test_source_digest_is_the_same_on_every_python_version() -> None:
    # The tree is written out in one form on 3.11, 3.12 and 3.13 (ast.dump is not).
    source = "def add(a, b):\n    '''Add.'''\n    return a + b  # sum\n"
    dump = (
        "Module(body=[FunctionDef(name='add', args=arguments(args=[arg(arg='a'), "
        "arg(arg='b')]), body=[Return(value=BinOp(left=Name(id='a', ctx=Load()), op=Add(), "
        "right=Name(id='b', ctx=Load())))])])"
    )

    assert tool_source_digest(source) == "sha256:" + hashlib.sha256(dump.encode()).hexdigest()


def _add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b  # the sum


def _passthrough(fn: Callable[..., Any]) -> Callable[..., Any]:
    return fn


@_passthrough
def _decorated(a: int, b: int) -> int:
    return a + b


class _Tools:
    def banner(self) -> str:
        text = """
column zero"""
        return text


def test_source_digest_of_a_function_is_the_digest_of_its_source() -> None:
    assert tool_source_digest(_add) == tool_source_digest(
        "def _add(a: int, b: int) -> int:\n    return a + b"
    )


def test_source_digest_of_a_decorated_function_includes_the_decorator() -> None:
    assert tool_source_digest(_decorated) == tool_source_digest(
        "@_passthrough\ndef _decorated(a: int, b: int) -> int:\n    return a + b"
    )


def test_source_digest_of_a_method_with_a_column_zero_string() -> None:
    expected = 'def banner(self) -> str:\n    text = """\ncolumn zero"""\n    return text'

    assert tool_source_digest(_Tools.banner) == tool_source_digest(expected)
    assert tool_source_digest(_Tools().banner) == tool_source_digest(expected)


def test_source_digest_usable_as_tool_source() -> None:
    tool = ToolSpec(name="add", source=tool_source_digest(_add))

    assert DIGEST.fullmatch(tool.source or "")


class _CallableTool:
    def __call__(self, x: int) -> int:
        return x


def _defined_without_source() -> Callable[..., Any]:
    # Like a function typed into a REPL: no source file behind it.
    namespace: dict[str, Any] = {}
    exec("def typed_in_a_repl(x):\n    return x", namespace)  # noqa: S102
    function: Callable[..., Any] = namespace["typed_in_a_repl"]
    return function


@pytest.mark.parametrize(
    "tool",
    [
        pytest.param(len, id="builtin"),
        pytest.param(str.upper, id="builtin-method"),
        pytest.param(_defined_without_source(), id="no-source-file"),
        pytest.param(functools.partial(_add, 1), id="partial"),
        pytest.param(_CallableTool(), id="callable-instance"),
    ],
)
def test_source_digest_refuses_callables_without_readable_source(tool: Any) -> None:
    refused(Reason.INVALID_MANIFEST, lambda: tool_source_digest(tool))


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("def f(:\n    pass", id="syntax"),
        pytest.param("x = '\0'", id="null-byte"),
        pytest.param("x = " + "(" * 1000 + ")" * 1000, id="parentheses"),
        pytest.param("x = " + "-" * 200_000 + "1", id="deep-unary"),
        pytest.param("x = " + "+".join(["1"] * 20_000), id="deep-tree"),
    ],
)
def test_source_digest_refuses_source_it_cannot_parse(source: str) -> None:
    refused(Reason.INVALID_MANIFEST, lambda: tool_source_digest(source))


# -------------------------------------------------------------------- rendering


def test_render_substitutes_declared_variables() -> None:
    rendered = render_prompt(
        "Patch {repo} for {package}; then {repo} again.",
        ["repo", "package"],
        {"repo": "acme/api", "package": "requests"},
    )

    assert rendered.text == "Patch acme/api for requests; then acme/api again."
    assert rendered.input_digest == json_digest({"repo": "acme/api", "package": "requests"})


@pytest.mark.parametrize(
    "value", ["{secret}", "{repo}", "{0}", "{repo.__class__}", "{{", "}", "{repo!r:>99}"]
)
def test_render_does_not_expand_placeholders_inside_values(value: str) -> None:
    rendered = render_prompt("Patch <{repo}>.", ["repo", "secret"], {"repo": value})

    assert rendered.text == f"Patch <{value}>."


def test_render_turns_escaped_braces_into_literal_braces() -> None:
    rendered = render_prompt('Reply as {{"repo": "{repo}"}} }}{{', ["repo"], {"repo": "a"})

    assert rendered.text == 'Reply as {"repo": "a"} }{'


def test_render_refuses_unknown_placeholder() -> None:
    error = refused(
        Reason.UNKNOWN_PLACEHOLDER,
        lambda: render_prompt("Patch {repo} as {role}.", ["repo"], {"repo": "a", "role": "x"}),
    )

    assert "{role}" in error.description


def test_render_refuses_value_for_undeclared_variable() -> None:
    error = refused(
        Reason.UNDECLARED_VARIABLE,
        lambda: render_prompt("Patch {repo}.", ["repo"], {"repo": "a", "system": "obey"}),
    )

    assert "'system'" in error.description
    assert "obey" not in error.description


def test_render_refuses_declared_placeholder_without_value() -> None:
    refused(
        Reason.MISSING_VARIABLE,
        lambda: render_prompt("Patch {repo} with {package}.", ["repo", "package"], {"repo": "a"}),
    )


@pytest.mark.parametrize(
    "placeholder",
    ["{repo.owner}", "{repo[0]}", "{repo!r}", "{repo!a}", "{repo:>40}", "{repo:{repo}}", "{}"],
)
def test_render_refuses_attribute_index_conversion_and_format_spec(placeholder: str) -> None:
    refused(
        Reason.UNKNOWN_PLACEHOLDER,
        lambda: render_prompt(f"Patch {placeholder}.", ["repo"], {"repo": "a"}),
    )


@pytest.mark.parametrize("template", ["Patch {repo", "Patch repo}", "{"])
def test_render_refuses_malformed_template(template: str) -> None:
    refused(Reason.INVALID_MANIFEST, lambda: render_prompt(template, ["repo"], {"repo": "a"}))


def test_render_refuses_value_that_is_not_a_string() -> None:
    values: Any = {"repo": 42}

    refused(Reason.MALFORMED_REQUEST, lambda: render_prompt("Patch {repo}.", ["repo"], values))


def test_render_refuses_one_string_as_the_variables() -> None:
    with pytest.raises(TypeError):
        render_prompt("Patch {repo}.", "repo", {"repo": "a"})


def test_render_ignores_declared_variable_the_template_does_not_use() -> None:
    rendered = render_prompt("Patch {repo}.", ["repo", "note"], {"repo": "a", "note": "n"})

    assert rendered.text == "Patch a."
    assert rendered.input_digest == json_digest({"repo": "a"})


def test_render_without_placeholders_digests_the_empty_object() -> None:
    rendered = render_prompt("Plan.", [], {})

    assert rendered == RenderedPrompt(text="Plan.", input_digest=json_digest({}))


def test_rendered_prompt_repr_leaves_out_the_text() -> None:
    rendered = render_prompt("Patch {repo}.", ["repo"], {"repo": "confidential-repo"})

    assert "confidential-repo" not in repr(rendered)
    assert rendered.input_digest in repr(rendered)


def test_prompt_spec_renders_with_its_own_variables() -> None:
    prompt = PromptSpec(template="Read {path}.", variables=["path"])

    assert prompt.render({"path": "a.txt"}).text == "Read a.txt."
    refused(Reason.UNDECLARED_VARIABLE, lambda: prompt.render({"path": "a", "repo": "b"}))


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text(), st.text(alphabet="ab {}", max_size=10))
def test_render_inserts_values_verbatim(first: str, second: str, literal: str) -> None:
    escaped = literal.replace("{", "{{").replace("}", "}}")

    rendered = render_prompt(f"{escaped}<{{x}}|{{y}}>", ["x", "y"], {"x": first, "y": second})

    assert rendered.text == f"{literal}<{first}|{second}>"


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(VARIABLE, st.text(max_size=20), min_size=1, max_size=4),
    st.randoms(use_true_random=False),
    st.data(),
)
def test_input_digest_is_stable_and_value_sensitive(
    values: dict[str, str], rnd: random.Random, data: st.DataObject
) -> None:
    template = " ".join("{" + name + "}" for name in values)
    shuffled = dict(rnd.sample(sorted(values.items()), len(values)))
    name = data.draw(st.sampled_from(sorted(values)))
    changed = {**values, name: data.draw(st.text(max_size=20).filter(lambda v: v != values[name]))}

    digest = render_prompt(template, values, values).input_digest

    assert render_prompt(template, list(shuffled), shuffled).input_digest == digest
    assert render_prompt(template, values, changed).input_digest != digest
