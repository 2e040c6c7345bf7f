"""In-memory data of the reference resource server: repositories, files, advisories."""

from __future__ import annotations

from typing import Any

REPOS: list[dict[str, Any]] = [
    {
        "name": "acme/storefront",
        "default_branch": "main",
        "language": "JavaScript",
        "dependencies": {"lodash": "4.17.15", "express": "4.17.1"},
    },
    {
        "name": "acme/billing",
        "default_branch": "main",
        "language": "Python",
        "dependencies": {"requests": "2.19.0", "pyyaml": "5.3"},
    },
    {
        "name": "acme/docs",
        "default_branch": "main",
        "language": "Markdown",
        "dependencies": {},
    },
]

FILES: dict[tuple[str, str], str] = {
    ("acme/storefront", "package.json"): (
        '{\n  "name": "storefront",\n  "dependencies": {\n'
        '    "lodash": "4.17.15",\n    "express": "4.17.1"\n  }\n}\n'
    ),
    ("acme/billing", "requirements.txt"): "requests==2.19.0\npyyaml==5.3\n",
    ("acme/docs", "README.md"): "# Acme docs\n",
}

ADVISORIES: list[dict[str, Any]] = [
    {
        "id": "GHSA-p6mc-m468-83gw",
        "cve": "CVE-2020-8203",
        "package": "lodash",
        "ecosystem": "npm",
        "severity": "high",
        "summary": "Prototype pollution in zipObjectDeep",
        "vulnerable": "< 4.17.19",
        "patched": "4.17.21",
    },
    {
        "id": "GHSA-x84v-xcm2-53pg",
        "cve": "CVE-2018-18074",
        "package": "requests",
        "ecosystem": "pip",
        "severity": "moderate",
        "summary": "Authorization header leaked on HTTPS to HTTP redirect",
        "vulnerable": "< 2.20.0",
        "patched": "2.20.0",
    },
    {
        "id": "GHSA-8q59-q68h-6hv4",
        "cve": "CVE-2020-14343",
        "package": "pyyaml",
        "ecosystem": "pip",
        "severity": "critical",
        "summary": "Arbitrary code execution in full_load",
        "vulnerable": "< 5.4",
        "patched": "5.4",
    },
]
