"""Route policy (DESIGN §7 step 7): what a verified intent token must also satisfy here."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from ajwt_core.dpop import BodyBinding
from ajwt_core.errors import InsufficientScope, Reason
from ajwt_core.rs.token_cache import TokenFacts
from ajwt_core.tokens import IntentTokenClaims, format_scope


def _frozen(values: Iterable[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


@dataclass(frozen=True)
class RoutePolicy:
    """Per-route requirements. ``None`` means "any"; empty ``scopes`` means none needed.

    ``body_binding`` says when the proof must carry ``bh`` (the hash of the body, DESIGN
    §5.3): by default when the request has a body (``"if_body"``); ``"required"`` on
    every request; ``"optional"`` lets a plain RFC 9449 client call the route (a ``bh``
    that is present is checked in every case).

    >>> policy = RoutePolicy.of(scopes=["repo:write"], tools=["create_pull_request"])
    >>> sorted(policy.scopes), sorted(policy.tools or ()), policy.body_binding
    (['repo:write'], ['create_pull_request'], <BodyBinding.IF_BODY: 'if_body'>)
    >>> RoutePolicy.of(body_binding="optional").body_binding
    <BodyBinding.OPTIONAL: 'optional'>

    A route may pin the agents it serves to reviewed versions (DESIGN §12 Governance):
    ``agent_checksums`` (the token's ``agent.checksum`` is one of them) and/or
    ``agent_versions`` (``{agent id: versions}``; an agent not listed is refused):

    >>> pinned = RoutePolicy.of(agent_versions={"patcher": [3, 4]})
    >>> sorted(pinned.agent_versions or ())
    [('patcher', 3), ('patcher', 4)]
    """

    scopes: frozenset[str] = frozenset()
    workflows: frozenset[str] | None = None
    steps: frozenset[str] | None = None
    tools: frozenset[str] | None = None
    agents: frozenset[str] | None = None
    agent_checksums: frozenset[str] | None = None
    #: ``(agent id, version)`` pairs allowed here.
    agent_versions: frozenset[tuple[str, int]] | None = None
    max_delegation_depth: int | None = None
    require_shim_checksum: bool = False
    allow_bearer: bool = False
    public: bool = False
    body_binding: BodyBinding = BodyBinding.IF_BODY
    #: Set: every request is refused after its token is verified, with this sentence
    #: (``method_not_allowed``; a route table's answer for a method it declares no
    #: policy for on a path it knows).
    refuse: str | None = None
    metadata: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def of(
        cls,
        *,
        scopes: Iterable[str] = (),
        workflows: Iterable[str] | None = None,
        steps: Iterable[str] | None = None,
        tools: Iterable[str] | None = None,
        agents: Iterable[str] | None = None,
        agent_checksums: Iterable[str] | None = None,
        agent_versions: Mapping[str, Iterable[int]] | None = None,
        max_delegation_depth: int | None = None,
        require_shim_checksum: bool = False,
        allow_bearer: bool = False,
        public: bool = False,
        body_binding: BodyBinding | str = BodyBinding.IF_BODY,
    ) -> RoutePolicy:
        return cls(
            agent_checksums=_frozen(agent_checksums),
            agent_versions=None
            if agent_versions is None
            else frozenset(
                (agent, int(version))
                for agent, versions in agent_versions.items()
                for version in versions
            ),
            scopes=frozenset(scopes),
            workflows=_frozen(workflows),
            steps=_frozen(steps),
            tools=_frozen(tools),
            agents=_frozen(agents),
            max_delegation_depth=max_delegation_depth,
            require_shim_checksum=require_shim_checksum,
            allow_bearer=allow_bearer,
            public=public,
            body_binding=BodyBinding(body_binding),
        )

    def check(
        self,
        claims: IntentTokenClaims | TokenFacts,
        shim_checksum: str | None = None,
        accepted_shims: Collection[str] = (),
    ) -> None:
        """Refuse with ``insufficient_scope`` (403) and the reason of the first failed rule."""
        facts = claims if isinstance(claims, TokenFacts) else TokenFacts.of(claims)
        if self.refuse is not None:
            raise InsufficientScope(Reason.METHOD_NOT_ALLOWED, self.refuse)
        if not self.scopes <= facts.scopes:
            missing = self.scopes - facts.scopes
            raise InsufficientScope(
                Reason.SCOPE_EXCEEDED, f"this route needs scope {format_scope(missing)}"
            )
        if self.workflows is not None and facts.workflow_id not in self.workflows:
            raise InsufficientScope(Reason.WORKFLOW_NOT_ALLOWED, "workflow not allowed here")
        if self.steps is not None and facts.step not in self.steps:
            raise InsufficientScope(
                Reason.STEP_NOT_ALLOWED, f"step {facts.step!r} not allowed here"
            )
        if self.tools is not None and facts.tool not in self.tools:
            raise InsufficientScope(
                Reason.TOOL_NOT_ALLOWED, f"tool {facts.tool!r} not allowed here"
            )
        agent = facts.agent_id
        if self.agents is not None and agent not in self.agents:
            raise InsufficientScope(Reason.AGENT_NOT_ALLOWED, f"agent {agent!r} not allowed here")
        if self.agent_checksums is not None and facts.agent_checksum not in self.agent_checksums:
            raise InsufficientScope(
                Reason.AGENT_CHECKSUM_NOT_ALLOWED,
                f"agent {agent!r} with checksum {facts.agent_checksum} is not one "
                "this route accepts",
            )
        if self.agent_versions is not None and (
            (agent, facts.agent_version) not in self.agent_versions
        ):
            raise InsufficientScope(
                Reason.AGENT_VERSION_NOT_ALLOWED,
                f"agent {agent!r} version {facts.agent_version} is not one this route accepts",
            )
        if self.max_delegation_depth is not None and (
            facts.delegation_depth > self.max_delegation_depth
        ):
            raise InsufficientScope(
                Reason.DELEGATION_TOO_DEEP,
                f"delegation depth {facts.delegation_depth} exceeds {self.max_delegation_depth}",
            )
        if self.require_shim_checksum:
            value = (shim_checksum or "").removeprefix("sha256=")
            if not value or value not in accepted_shims:
                raise InsufficientScope(
                    Reason.SHIM_CHECKSUM_REQUIRED, "an accepted X-Shim-Checksum is required"
                )
