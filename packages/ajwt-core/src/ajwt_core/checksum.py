"""Agent manifests and their checksum: an agent's identity (DESIGN §3).

An agent is what its prompt template, tools and configuration make it, so its
registered identity is a digest of exactly those::

    checksum = "sha256:" + hex(SHA-256(JCS(manifest.canonical())))

Every framework adapter only *extracts* an :class:`AgentManifest` from its agent
object; this module alone decides what is hashed, so the same agent gets the same
checksum in every framework, in the shim and in the IdP (which recomputes it from the
manifest JSON with :func:`compute_checksum`).

The manifest is also the template whitelist against prompt tampering (threat T5): only
the declared ``variables`` may be filled at run time, through :func:`render_prompt`.

>>> manifest = AgentManifest(
...     agent_id="planner",
...     prompt=PromptSpec(template="Plan the fix for {repo}.", variables=["repo"]),
...     tools=[ToolSpec(name="read_file", parameters={"type": "object"})],
...     config={"model": "gpt-4o", "temperature": 0},
... )
>>> manifest.checksum() == compute_checksum(manifest.model_dump(mode="json"))
True
>>> manifest.prompt.render({"repo": "acme/api"}).text
'Plan the fix for acme/api.'

Invalid manifests raise only :class:`~ajwt_core.errors.InvalidRequest` (reason
``invalid_manifest``, or ``secret_in_manifest`` for a secret in the config), never a
pydantic ``ValidationError``:

>>> try:
...     compute_checksum({"agent_id": "planner", "prompt": {"template": "Hi {name}"}})
... except InvalidRequest as exc:
...     print(exc.reason.value)
...     print(exc.description)
invalid_manifest
the agent manifest has an invalid 'prompt': the prompt template uses placeholder {name}, \
which is not a declared variable (no variables are declared)
"""

from __future__ import annotations

import ast
import copy
import inspect
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from string import Formatter
from typing import Any, Final, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    SecretBytes,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from ajwt_core.canonical import jcs, json_digest, sha256_digest
from ajwt_core.errors import InvalidRequest, Reason

__all__ = [
    "MANIFEST_VERSION",
    "MAX_AGENT_ID_LENGTH",
    "MAX_JSON_NESTING",
    "MAX_TOOL_NAME_LENGTH",
    "PROMPT_WHITESPACE",
    "AgentManifest",
    "PromptSpec",
    "RenderedPrompt",
    "ToolSpec",
    "compute_checksum",
    "normalise_prompt",
    "render_prompt",
    "strip_secrets",
    "tool_source_digest",
]

#: The manifest format version (the ``v`` field); a new format gets a new number.
MANIFEST_VERSION: Final = 1
#: Longest agent id (the IdP stores agent ids in 128-character columns).
MAX_AGENT_ID_LENGTH: Final = 128
_AGENT_ID = re.compile(r"[A-Za-z0-9._:@-]+")
#: Longest tool name (as for workflow steps, DESIGN §6.3).
MAX_TOOL_NAME_LENGTH: Final = 128
#: Most objects/arrays nested in one another in ``config`` and in tool ``parameters``
#: (the outer object counts): bounds the work and recursion spent on an untrusted
#: manifest; real configs and JSON schemas stay far below.
MAX_JSON_NESTING: Final = 64

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_FORMATTER = Formatter()

# Config keys that name secrets, compared with case and separators removed
# ("OpenAI-Api-Key" -> "openaiapikey"). A key is a secret if it ends with one of the
# suffixes ("openai_api_key", "client_secret", "refresh_token") or contains one of the
# words anywhere ("secret_key", "db_password_file").
_SECRET_SUFFIXES: Final = (
    "apikey",
    "secret",
    "password",
    "passwd",
    "token",
    "accesskey",
    "privatekey",
    "authorization",
    "credential",
    "credentials",
)
_SECRET_WORDS: Final = ("secret", "password", "passwd")
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


# --------------------------------------------------------------------------- secrets


def _is_secret_key(key: str) -> bool:
    compact = _NOT_ALNUM.sub("", key.lower())
    return compact.endswith(_SECRET_SUFFIXES) or any(word in compact for word in _SECRET_WORDS)


def _is_secret_value(value: object) -> bool:
    return isinstance(value, SecretStr | SecretBytes)


def strip_secrets(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` without anything that looks like a secret, at any depth.

    Adapters call this on a framework's model settings before building a manifest
    (DESIGN §3: "secrets excluded"). It drops keys named like secrets (``api_key``,
    ``openai_api_key``, ``client_secret``, ``password``, ``access_token``,
    ``Authorization``… case and separators ignored) and pydantic ``SecretStr`` /
    ``SecretBytes`` values; it walks nested mappings and lists.

    >>> from pydantic import SecretStr
    >>> strip_secrets({"model": "gpt-4o", "OpenAI-API-Key": "sk-…",
    ...                "client": {"timeout": 30, "auth": SecretStr("x"), "Password": "y"}})
    {'model': 'gpt-4o', 'client': {'timeout': 30}}
    """
    return {
        key: _without_secrets(value)
        for key, value in config.items()
        if not (isinstance(key, str) and _is_secret_key(key)) and not _is_secret_value(value)
    }


def _without_secrets(value: Any) -> Any:
    if isinstance(value, Mapping):
        return strip_secrets(value)
    if isinstance(value, list | tuple):
        kept = [_without_secrets(item) for item in value if not _is_secret_value(item)]
        return kept if isinstance(value, list) else tuple(kept)
    return value


def _path_text(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _check_json_tree(value: Any, root: str, *, refuse_secrets: bool) -> None:
    """Bound the nesting of a JSON value and, for ``config``, refuse secrets in it.

    Iterative, so that no input can exhaust the stack. Only key *names* ever reach a
    message: a secret's value never does.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, (root,))]
    while stack:
        node, path = stack.pop()
        if refuse_secrets and _is_secret_value(node):
            raise InvalidRequest(
                Reason.SECRET_IN_MANIFEST,
                f"the agent manifest's {_path_text(path)[:120]!r} holds a secret value; "
                "secrets must stay out of the manifest (strip them with strip_secrets)",
            )
        if not isinstance(node, Mapping | list | tuple):
            continue
        # ``path`` holds one entry per object or array from the root down to ``node``.
        if len(path) > MAX_JSON_NESTING:
            raise InvalidRequest(
                Reason.INVALID_MANIFEST,
                f"the agent manifest's {root!r} is nested more than {MAX_JSON_NESTING} levels deep",
            )
        children: list[tuple[Any, tuple[str | int, ...]]] = []
        if isinstance(node, Mapping):
            for key, child in node.items():
                if refuse_secrets and isinstance(key, str) and _is_secret_key(key):
                    raise InvalidRequest(
                        Reason.SECRET_IN_MANIFEST,
                        f"the agent manifest's {_path_text((*path, key))[:120]!r} looks like "
                        "a secret; secrets must stay out of the manifest (strip them with "
                        "strip_secrets)",
                    )
                children.append((child, (*path, str(key))))
        else:
            children = [(child, (*path, index)) for index, child in enumerate(node)]
        # Reversed, so that the first offending key in document order is reported.
        stack.extend(reversed(children))


def _check_json(value: Any, subject: str) -> None:
    try:
        jcs(value)
    except InvalidRequest as exc:
        # Keep the canonicaliser's reason; say which part of the manifest it refused.
        raise InvalidRequest(exc.reason, f"{subject}: {exc.description}") from None


# ------------------------------------------------------------------- prompt templates


#: The characters :func:`normalise_prompt` strips from the ends of a line: exactly the
#: 25 code points of the Unicode ``White_Space`` property (Go's ``unicode.IsSpace``,
#: Rust's ``char::is_whitespace``, ``\\p{White_Space}`` in a JavaScript regex). Neither
#: Python's ``str.strip()`` (which adds U+001C..U+001F) nor JavaScript's ``trim()``
#: (which adds U+FEFF) is this set, so it is spelled out (DESIGN §3).
PROMPT_WHITESPACE: Final = (
    "\t\n\v\f\r \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def normalise_prompt(template: str) -> str:
    """The prompt template as hashed (DESIGN §3): whitespace-only edits don't count.

    Every CR LF pair, then every remaining CR, becomes LF; the text is split at LF;
    each line loses the :data:`PROMPT_WHITESPACE` characters at both ends; lines left
    empty are dropped; the rest are joined with LF (no final LF).

    >>> normalise_prompt("  You plan the fix.\\r\\n\\r\\n\\tRead {repo} first.   \\n")
    'You plan the fix.\\nRead {repo} first.'
    >>> normalise_prompt("\\ufeffPlan.\\x1c")  # BOM and U+001C are not whitespace here
    '\\ufeffPlan.\\x1c'
    """
    lines = template.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(stripped for line in lines if (stripped := line.strip(PROMPT_WHITESPACE)))


def _quote(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _placeholder_text(name: str, spec: str, conversion: str | None) -> str:
    return _quote(
        "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
    )


def _refused_placeholder(name: str, spec: str, conversion: str | None) -> InvalidRequest:
    text = _placeholder_text(name, spec, conversion)
    if not name:
        problem = "is positional"
    elif "." in name or "[" in name:
        problem = "uses attribute or index access"
    elif conversion is not None:
        problem = "uses a conversion"
    elif spec:
        problem = "uses a format spec"
    else:
        problem = "is not a valid variable name"
    return InvalidRequest(
        Reason.UNKNOWN_PLACEHOLDER,
        f"the prompt template's placeholder {text} {problem}: a placeholder must be the "
        "plain name of a declared variable (attribute and index access, conversions and "
        "format specs could read or reshape data the template does not declare)",
    )


def _parse_template(template: str) -> list[tuple[str, str | None]]:
    """The template as ``(literal text, placeholder name or None)`` pairs.

    Python ``str.format`` / LangChain f-string syntax: ``{{`` and ``}}`` come back as
    literal braces. Raises ``InvalidRequest``: ``unknown_placeholder`` for a placeholder
    that is not a plain name, ``invalid_manifest`` for an unparsable template.
    """
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:
        # The parser's message names the problem, never the template's text.
        raise InvalidRequest(
            Reason.INVALID_MANIFEST,
            f"the prompt template is malformed: {exc} (write {{{{ and }}}} for literal braces)",
        ) from None
    segments: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parsed:
        if name is not None and (conversion is not None or spec or not name.isidentifier()):
            raise _refused_placeholder(name, spec or "", conversion)
        segments.append((literal, name))
    return segments


def _declared_text(declared: Iterable[str]) -> str:
    names = sorted(declared)
    if not names:
        return "no variables are declared"
    return "declared: " + ", ".join(repr(_quote(n)) for n in names)


def _unknown_placeholder(name: str, declared: Iterable[str]) -> InvalidRequest:
    return InvalidRequest(
        Reason.UNKNOWN_PLACEHOLDER,
        f"the prompt template uses placeholder {{{_quote(name)}}}, which is not a declared "
        f"variable ({_declared_text(declared)})",
    )


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """A prompt filled by :func:`render_prompt`.

    ``input_digest`` is what the intent token carries as ``intent.input_digest``; the
    text itself never leaves the process (DESIGN T12), so it is kept out of ``repr``.
    """

    text: str = field(repr=False)
    input_digest: str


def render_prompt(
    template: str, variables: Iterable[str], values: Mapping[str, str]
) -> RenderedPrompt:
    """Fill the declared ``variables`` of ``template``, and nothing else (DESIGN §3).

    Values are inserted verbatim: a value is never parsed as a template, so ``{x}`` in
    a user's input stays ``{x}``; ``{{`` and ``}}`` in the template are literal braces.
    ``input_digest`` is ``json_digest({name: value})`` over the variables the template
    uses. Raises :class:`~ajwt_core.errors.InvalidRequest` with reason
    ``unknown_placeholder`` (a placeholder that is not a declared variable, or that uses
    attribute/index access, a conversion or a format spec), ``undeclared_variable`` (a
    value for a name that is not declared), ``missing_variable`` (a placeholder without
    a value) or ``invalid_manifest`` (an unparsable template).

    A declared variable the template does not use may be given a value: it is ignored
    and is not part of ``input_digest``.

    >>> rendered = render_prompt(
    ...     "Patch {repo}; answer as {{json}}.", ["repo"], {"repo": "acme/{secret}"})
    >>> rendered.text
    'Patch acme/{secret}; answer as {json}.'
    >>> rendered.input_digest == json_digest({"repo": "acme/{secret}"})
    True
    >>> render_prompt("Patch {repo}.", ["repo"], {"repo": "acme/api", "role": "admin"})
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ajwt_core.errors.InvalidRequest: a value was given for 'role', which is not a declared...
    """
    if isinstance(variables, str):
        raise TypeError("variables must be a collection of names, not one string")
    declared = frozenset(variables)
    segments = _parse_template(template)
    for _, name in segments:
        if name is not None and name not in declared:
            raise _unknown_placeholder(name, declared)
    for name in values:
        if name not in declared:
            raise InvalidRequest(
                Reason.UNDECLARED_VARIABLE,
                f"a value was given for {_quote(str(name))!r}, which is not a declared "
                f"variable of the prompt template ({_declared_text(declared)})",
            )
    parts: list[str] = []
    used: dict[str, str] = {}
    for literal, name in segments:
        parts.append(literal)
        if name is None:
            continue
        if name not in values:
            raise InvalidRequest(
                Reason.MISSING_VARIABLE,
                f"the prompt template uses {{{_quote(name)}}} but no value was given for it",
            )
        value = values[name]
        if not isinstance(value, str):
            raise InvalidRequest(
                Reason.MALFORMED_REQUEST,
                f"the value for {name!r} must be a string, not {type(value).__name__}",
            )
        parts.append(value)
        used[name] = value
    return RenderedPrompt(text="".join(parts), input_digest=json_digest(used))


# ------------------------------------------------------------- pydantic error mapping

# Set while a manifest model validates, so that a nested model (a tool inside a
# manifest) lets its errors reach the outermost model, which reports them with their
# location ("tools[1].name") as one InvalidRequest.
_validating: ContextVar[bool] = ContextVar("ajwt_checksum_validating", default=False)


def _location(loc: tuple[int | str, ...]) -> str:
    return _quote(_path_text(loc), 80)


def _describe(error: ErrorDetails) -> str:
    """One pydantic error as the rest of a sentence ("the tool has an unknown field 'x'").

    Input values never reach the message (a config value may be a secret): only the
    location, pydantic's description of the expected input, and the input's type.
    """
    where = _location(error["loc"])
    if error["type"] == "missing":
        return f"misses the field {where!r}"
    if error["type"] == "extra_forbidden":
        return f"has an unknown field {where!r}"
    if error["type"] == "value_error":
        # Our own checks: their message is a complete clause.
        message = str(error.get("ctx", {}).get("error", error["msg"]))
        return f"has an invalid {where!r}: {message}" if where else f"is invalid: {message}"
    message = error["msg"].removeprefix("Input ")
    message = message[:1].lower() + message[1:]
    what = f"{where!r}" if where else "value"
    return f"has an invalid {what}: {message} (got {type(error['input']).__name__})"


_Model = TypeVar("_Model", bound=BaseModel)


def _validate_outermost(
    data: Any, handler: ModelWrapValidatorHandler[_Model], subject: str
) -> _Model:
    if _validating.get():
        return handler(data)
    token = _validating.set(True)
    try:
        return handler(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise InvalidRequest(
            Reason.INVALID_MANIFEST, f"{subject} {_describe(errors[0])}{more}"
        ) from None
    finally:
        _validating.reset(token)


_MODEL_CONFIG = ConfigDict(frozen=True, extra="forbid", strict=True)

# _nested_instance: a ToolSpec or PromptSpec given as a field of a manifest being
# validated was validated when it was built (its fields are frozen), and pydantic would
# run its model validators again on every manifest (an adapter builds one per read of
# the live agent: 3 JCS passes for 3 tools, ~80 µs). It is taken as is. Only a dict
# inside it can change after it was built: the manifest's ``canonical()`` (JCS) and the
# shim's serialisation of each read still refuse what JSON cannot carry, with a typed
# error, and ``canonical()`` re-checks the config for secrets.


# ----------------------------------------------------------------------------- models


class ToolSpec(BaseModel):
    """One tool the agent may call: its name, description and JSON-schema parameters.

    ``source`` is the deep-mode digest of the tool's code (:func:`tool_source_digest`),
    or ``None``.

    >>> ToolSpec(name="read_file", parameters={"type": "object"}).canonical()
    {'name': 'read_file', 'description': '', 'parameters': {'type': 'object'}, 'source': None}
    """

    model_config = _MODEL_CONFIG

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        # The same rule as tool names in workflow steps, which must match these.
        if not name.strip():
            raise ValueError("the tool name is empty")
        if len(name) > MAX_TOOL_NAME_LENGTH:
            raise ValueError(f"the tool name is longer than {MAX_TOOL_NAME_LENGTH} characters")
        if name != name.strip() or not name.isprintable():
            raise ValueError(
                f"the tool name {_quote(name)!r} must be printable and must not start or "
                "end with whitespace"
            )
        return name

    @field_validator("source")
    @classmethod
    def _check_source(cls, source: str | None) -> str | None:
        if source is not None and not _DIGEST.fullmatch(source):
            raise ValueError("the source digest must be 'sha256:' followed by 64 lowercase hex")
        return source

    @model_validator(mode="after")
    def _check_parameters(self) -> Self:
        _check_json_tree(self.parameters, "parameters", refuse_secrets=False)
        _check_json(self.parameters, f"the parameters of tool {_quote(self.name)!r} are not JSON")
        return self

    # Defined last, so that pydantic runs it around all the other validators above.
    @model_validator(mode="wrap")
    @classmethod
    def _raise_invalid_request(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        if type(data) is cls and _validating.get():
            return data  # checked when built; see _nested_instance
        return _validate_outermost(data, handler, "the tool")

    def canonical(self) -> dict[str, Any]:
        """The tool as hashed: every field spelled out, ``source`` null when absent."""
        # Its dict may have changed in place since it was built (see _nested_instance).
        _check_json_tree(self.parameters, "parameters", refuse_secrets=False)
        return {
            "name": self.name,
            "description": self.description,
            "parameters": copy.deepcopy(self.parameters),
            "source": self.source,
        }


class PromptSpec(BaseModel):
    """The agent's prompt template and the variables that may be filled at run time.

    The template uses Python ``str.format`` / LangChain f-string syntax. Every
    placeholder must be the plain name of a declared variable: ``{a.b}``, ``{a[0]}``,
    ``{a!r}`` and ``{a:>10}`` are refused, since they could read or reshape data the
    template does not declare. Declared variables need not all be used.

    >>> PromptSpec(template="Read {path}.", variables=["path"]).render({"path": "a.txt"}).text
    'Read a.txt.'
    """

    model_config = _MODEL_CONFIG

    template: str
    variables: list[str] = Field(default_factory=list)

    @field_validator("variables")
    @classmethod
    def _check_variables(cls, variables: list[str]) -> list[str]:
        for name in variables:
            if not name.isidentifier():
                raise ValueError(
                    f"variable {_quote(name)!r} is not a valid identifier (letters, digits "
                    "and underscores, not starting with a digit)"
                )
        return variables

    @model_validator(mode="after")
    def _check_placeholders(self) -> Self:
        # Placeholders are plain names on one line, so normalise_prompt() cannot change
        # them: checking the raw template checks the hashed one too.
        try:
            for _, name in _parse_template(self.template):
                if name is not None and name not in self.variables:
                    raise _unknown_placeholder(name, set(self.variables))
        except InvalidRequest as exc:
            raise ValueError(exc.description) from None
        return self

    # Defined last, so that pydantic runs it around all the other validators above.
    @model_validator(mode="wrap")
    @classmethod
    def _raise_invalid_request(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        if type(data) is cls and _validating.get():
            return data  # checked when built; see _nested_instance
        return _validate_outermost(data, handler, "the prompt")

    def render(self, values: Mapping[str, str]) -> RenderedPrompt:
        """Fill the template's declared variables; see :func:`render_prompt`."""
        return render_prompt(self.template, self.variables, values)


class AgentManifest(BaseModel):
    """What an agent is (DESIGN §3): id, prompt template, tools and configuration.

    Build one directly or validate untrusted JSON with :meth:`model_validate` (or
    :func:`compute_checksum`); either raises only :class:`~ajwt_core.errors.InvalidRequest`.
    ``config`` is the model configuration (model, temperature…), JSON only, without
    secrets: run it through :func:`strip_secrets` first.
    """

    model_config = _MODEL_CONFIG

    v: Literal[1] = MANIFEST_VERSION
    agent_id: str
    prompt: PromptSpec
    tools: list[ToolSpec] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)

    @field_validator("v", mode="before")
    @classmethod
    def _check_version(cls, v: Any) -> Any:
        # Literal[1] also admits True and 1.0, which would hash differently.
        if type(v) is not int:
            raise ValueError(f"the manifest version must be the integer {MANIFEST_VERSION}")
        return v

    @field_validator("agent_id")
    @classmethod
    def _check_agent_id(cls, agent_id: str) -> str:
        if not agent_id:
            raise ValueError("the agent id is empty")
        if len(agent_id) > MAX_AGENT_ID_LENGTH:
            raise ValueError(f"the agent id is longer than {MAX_AGENT_ID_LENGTH} characters")
        if not _AGENT_ID.fullmatch(agent_id):
            # The same alphabet as workflow agent ids and the IdP's identifiers.
            raise ValueError(
                f"the agent id {_quote(agent_id)!r} may contain only letters, digits and . _ : @ -"
            )
        return agent_id

    @field_validator("config")
    @classmethod
    def _check_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        _check_json_tree(config, "config", refuse_secrets=True)
        _check_json(config, "the agent manifest's 'config' is not JSON")
        return config

    @model_validator(mode="after")
    def _check_tool_names(self) -> Self:
        seen: set[str] = set()
        for tool in self.tools:
            if tool.name in seen:
                raise ValueError(f"tool name {_quote(tool.name)!r} is used by more than one tool")
            seen.add(tool.name)
        return self

    # Defined last, so that pydantic runs it around all the other validators above.
    @model_validator(mode="wrap")
    @classmethod
    def _raise_invalid_request(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        return _validate_outermost(data, handler, "the agent manifest")

    def canonical(self) -> dict[str, Any]:
        """The manifest exactly as hashed (DESIGN §3).

        The template is normalised (:func:`normalise_prompt`), variables are sorted and
        deduplicated, tools are sorted by name with every field spelled out.
        """
        # Dicts inside a frozen model can still be mutated after validation: make sure
        # no secret slipped into the config since (the manifest is sent to the IdP).
        _check_json_tree(self.config, "config", refuse_secrets=True)
        return {
            "v": MANIFEST_VERSION,
            "agent_id": self.agent_id,
            "prompt": {
                "template": normalise_prompt(self.prompt.template),
                "variables": sorted(set(self.prompt.variables)),
            },
            "tools": [tool.canonical() for tool in sorted(self.tools, key=lambda t: t.name)],
            "config": copy.deepcopy(self.config),
        }

    def checksum(self) -> str:
        """``"sha256:" + hex(SHA-256(JCS(canonical())))``: the agent's identity.

        Whitespace-only edits of the prompt, the order of tools and the order of keys
        do not change it; any other edit does.

        >>> manifest = AgentManifest(
        ...     agent_id="patcher",
        ...     prompt=PromptSpec(template="Upgrade {package}.", variables=["package"]),
        ...     config={"model": "gpt-4o"},
        ... )
        >>> manifest.checksum()
        'sha256:5256f598ec3f0e57fc915cd05c06929ea71ae30accae32f3d552d71bb5a84d61'
        >>> AgentManifest(
        ...     agent_id="patcher",
        ...     prompt=PromptSpec(
        ...         template="\\r\\n  Upgrade {package}.  \\r\\n", variables=["package"]
        ...     ),
        ...     config={"model": "gpt-4o"},
        ... ).checksum() == manifest.checksum()
        True
        """
        return json_digest(self.canonical())


def compute_checksum(manifest: AgentManifest | Mapping[str, Any]) -> str:
    """The checksum of a manifest, or of manifest JSON as the IdP receives it.

    Raises only :class:`~ajwt_core.errors.InvalidRequest`: reason ``invalid_manifest`` for
    a malformed manifest, ``secret_in_manifest`` for a secret in its config, and the
    canonicaliser's ``malformed_request`` for a value JSON cannot carry (NaN, integers
    beyond ±2**53).

    >>> compute_checksum({"agent_id": "planner", "prompt": {"template": "Plan."}}) == (
    ...     compute_checksum({"v": 1, "agent_id": "planner", "config": {},
    ...                       "prompt": {"template": "  Plan.\\n\\n", "variables": []}}))
    True
    """
    if isinstance(manifest, AgentManifest):
        return manifest.checksum()
    if not isinstance(manifest, Mapping):
        raise InvalidRequest(
            Reason.INVALID_MANIFEST,
            f"the agent manifest must be a JSON object, not {type(manifest).__name__}",
        )
    return AgentManifest.model_validate(dict(manifest)).checksum()


# ------------------------------------------------------------------- deep-mode source

# Fields whose value is formatting, not behaviour: u"" prefixes, "# type:" comments.
_FORMATTING_FIELDS: Final = frozenset({"kind", "type_comment"})


def _source_of(tool: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(tool)
    except (OSError, TypeError) as exc:
        name = getattr(tool, "__qualname__", None) or type(tool).__name__
        raise InvalidRequest(
            Reason.INVALID_MANIFEST,
            f"the source code of tool {_quote(str(name))!r} cannot be read "
            f"({type(exc).__name__}); deep mode needs a function, method or class defined "
            "in a source file",
        ) from None


# What ast.parse raises on code it cannot take: CPython's parser reports a stack
# overflow on absurdly nested expressions as MemoryError.
_UNPARSABLE = (SyntaxError, ValueError, RecursionError, MemoryError)


def _parse_source(source: str) -> ast.Module:
    try:
        return ast.parse(textwrap.dedent(source))
    except _UNPARSABLE:
        pass
    # A method whose body holds a multi-line string at column 0 cannot be dedented:
    # parse it as the body of an "if" instead (its first line sets the indentation).
    try:
        wrapped = ast.parse("if 1:\n" + source)
    except _UNPARSABLE:
        raise InvalidRequest(
            Reason.INVALID_MANIFEST, "the tool's source code is not valid Python"
        ) from None
    block = wrapped.body[0]
    assert isinstance(block, ast.If)
    return ast.Module(body=block.body, type_ignores=[])


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _drop_non_code(tree: ast.Module) -> None:
    """Remove what does not change behaviour: docstrings, empty f-string pieces."""
    for node in list(ast.walk(tree)):
        if isinstance(node, ast.JoinedStr):
            # Python 3.12 leaves empty pieces in some f-string format specs; 3.11 and
            # 3.13 do not.
            node.values = [
                v for v in node.values if not (isinstance(v, ast.Constant) and v.value == "")
            ]
        elif isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and _is_text(body[0].value):
                # A body that was only a docstring behaves as "pass"; say so, so that
                # adding a docstring to a "pass" body changes nothing either.
                node.body = body[1:] or ([] if isinstance(node, ast.Module) else [ast.Pass()])


def _dump(node: object) -> str:
    """A stable text form of a syntax tree.

    Like ``ast.dump(tree, annotate_fields=True, include_attributes=False)``, but with
    ``None`` and empty-list fields omitted and formatting-only fields dropped, so that
    the same code gives the same text on every supported Python version (``ast.dump``
    itself prints ``type_params=[]`` on 3.12 and omits empty fields on 3.13).
    """
    if isinstance(node, ast.AST):
        fields = [
            f"{name}={_dump(value)}"
            for name, value in ast.iter_fields(node)
            if name not in _FORMATTING_FIELDS and value is not None and value != []
        ]
        return f"{type(node).__name__}({', '.join(fields)})"
    if isinstance(node, list):
        return "[" + ", ".join(_dump(item) for item in node) + "]"
    return repr(node)


def tool_source_digest(tool: Callable[..., Any] | str) -> str:
    """Deep mode (DESIGN §3): the digest of a tool's code, for :attr:`ToolSpec.source`.

    ``tool`` is a function, method or class (its source is read with
    :func:`inspect.getsource`) or source text. The code is parsed and docstrings are
    removed before hashing, so formatting, comments and docstrings do not change the
    digest; any change to the code, decorators included, does. Raises
    :class:`~ajwt_core.errors.InvalidRequest` (``invalid_manifest``) when the source cannot
    be read (builtins, code typed into a REPL) or parsed.

    >>> a = tool_source_digest("def add(a, b):\\n    '''Add.'''\\n    return a + b  # sum\\n")
    >>> a == tool_source_digest("def add(a,b): return (a+b)")
    True
    >>> a == tool_source_digest("def add(a, b): return a - b")
    False
    """
    source = tool if isinstance(tool, str) else _source_of(tool)
    try:
        tree = _parse_source(source)
        _drop_non_code(tree)
        text = _dump(tree)
    except (RecursionError, ValueError):
        raise InvalidRequest(
            Reason.INVALID_MANIFEST, "the tool's source code is too deeply nested or too large"
        ) from None
    return sha256_digest(text.encode("utf-8", "surrogatepass"))
