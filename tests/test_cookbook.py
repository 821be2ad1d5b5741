"""docs/integration.md runs: every request in it is sent, every answer it shows is waited for.

The cookbook is literate: each ``http`` block is a request to the FHIR server (``<!-- as NAME -->``
before it keeps the answer as ``$NAME``; ``<!-- mistake -->`` or ``<!-- mistake as NAME -->`` marks
a request the page shows as a participant's mistake), each ``json`` block after ``<!-- expect: GET URL [as
NAME] -->`` is what the server must come to hold (a subset of the first resource the search
finds), each ``bash`` block after ``<!-- run -->`` is run line by line through the CLI. Each
``##`` section is one scenario with fresh ``$key``, ``$patient`` and ``$referrer``.

Every body a request sends is first checked with the project's validator (``mmr-adapter
validate``, :func:`adapter.conformance.validate.validate_resource`): a resource as sent, a JSON
Patch as the resource it makes of the one the server holds. A body must be valid, and one marked
as a mistake must be invalid, so the page cannot drift from the profiles either way.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import pytest

from adapter.conformance.validate import validate_resource
from adapter.fhir.client import FhirClient
from adapter.pipeline.state import State
from tests.support.stack import Stack, unique, wait_for

DOC = Path(__file__).resolve().parent.parent / "docs" / "integration.md"
DIRECTIVE = re.compile(r"^<!--\s*(.*?)\s*-->$")
VARIABLE = re.compile(r"\$([a-z]+)(?:\.(version))?")
MISTAKE = "mistake"


@dataclass
class Block:
    line: int
    kind: str  # http, json, bash
    text: str
    directive: str = ""


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


def _named(directive: str) -> str:
    """``NAME`` of ``as NAME`` or ``mistake as NAME``; empty without one."""
    rest = directive.removeprefix(MISTAKE).strip()
    return rest[3:].strip() if rest.startswith("as ") else ""


def sections(text: str) -> list[Section]:
    """The doc's ``##`` sections that hold blocks; a block no runner understands is an error."""
    found: list[Section] = []
    lines = text.splitlines()
    directive, i = "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            found.append(Section(line[3:].strip()))
        elif m := DIRECTIVE.match(line.strip()):
            directive = m.group(1)
        elif line.startswith("```") and len(line) > 3:
            kind, start, body = line[3:].strip(), i + 1, []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            ok = (
                (kind == "http" and (directive.removeprefix(MISTAKE).strip() == "" or _named(directive)))
                or (kind == "json" and directive.startswith("expect: "))
                or (kind == "bash" and directive == "run")
            )
            assert ok and found, f"docs/integration.md:{start}: a {kind} block the cookbook test cannot run"
            found[-1].blocks.append(Block(start, kind, "\n".join(body), directive))
            directive = ""
        elif line.strip():
            directive = ""
        i += 1
    return [s for s in found if s.blocks]


SECTIONS = sections(DOC.read_text(encoding="utf-8"))


def contains(actual: Any, expected: Any) -> bool:
    """``actual`` holds at least ``expected``: objects key by key, lists element by element in any order."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and contains(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and all(any(contains(a, e) for a in actual) for e in expected)
    return bool(actual == expected)


class Cookbook:
    def __init__(self, stack: Stack, fhir: FhirClient) -> None:
        self.stack, self.base = stack, fhir.base_url
        self.http = httpx.Client(timeout=30)
        self.values: dict[str, Any] = {
            "key": unique("REMISS"),
            "patient": unique("pat").lower(),
            "referrer": unique("ref").lower(),
            "reviewer": unique("rev").lower(),
        }

    def fill(self, text: str) -> str:
        def value(m: re.Match[str]) -> str:
            found = self.values[m.group(1)]
            if isinstance(found, dict):
                return str(found["meta"]["versionId"] if m.group(2) else found["id"])
            return str(found)

        return VARIABLE.sub(value, text).replace("[base]", self.base)

    def run(self, block: Block) -> None:
        where = f"docs/integration.md:{block.line}"
        if block.kind == "bash":
            for command in self.fill(block.text).splitlines():
                args = shlex.split(command)
                assert args[0] == "mmr-adapter", where
                done = subprocess.run(
                    [sys.executable, "-m", "adapter.cli", *args[1:]],
                    env=self.stack.env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert done.returncode == 0, f"{where}: {command}: {done.stderr}"
        elif block.kind == "http":
            self.send(block, where)
        else:
            self.expect(block, where)

    def validated(self, method: str, url: str, headers: dict[str, str], body: str, block: Block, where: str) -> None:
        """The body is what the profiles allow (or, marked a mistake, what they refuse)."""
        if not body.strip():
            return
        if headers.get("Content-Type", "").startswith("application/json-patch+json"):
            current = self.http.get(url, headers={"Cache-Control": "no-cache"}).json()
            resource = jsonpatch.apply_patch(current, json.loads(body))
        else:
            resource = json.loads(body)
        found = [
            f"{'/'.join(i.get('expression') or ())}: {i.get('diagnostics')}"
            for i in validate_resource(resource)["issue"]
            if i["severity"] in ("error", "fatal")
        ]
        if block.directive.startswith(MISTAKE):
            assert found, f"{where}: {method} is shown as a mistake, yet mmr-adapter validate accepts it"
        else:
            assert not found, f"{where}: {method} sends what mmr-adapter validate refuses: {found}"

    def send(self, block: Block, where: str) -> None:
        for _ in range(5):
            head, _, body = self.fill(block.text).partition("\n\n")
            request, *header_lines = head.splitlines()
            method, url = request.split()
            headers = dict(h.split(": ", 1) for h in header_lines)
            self.validated(method, url, headers, body, block, where)
            reply = self.http.request(method, url, headers=headers, content=body.encode())
            if reply.status_code != 412:
                break
            # Someone (the adapter) wrote first: read the resource again, as a client would, and retry.
            name = next(n for n, v in self.values.items() if isinstance(v, dict) and url.endswith("/" + v["id"]))
            self.values[name] = self.http.get(url).json()
        assert reply.is_success, f"{where}: {method} answered {reply.status_code}: {reply.text[:500]}"
        if name := _named(block.directive):
            self.values[name] = reply.json()
        elif method in ("PATCH", "PUT"):  # keep a resource we hold current
            for name, held in self.values.items():
                if isinstance(held, dict) and held.get("id") == reply.json().get("id"):
                    self.values[name] = reply.json()

    def expect(self, block: Block, where: str) -> None:
        query, _, name = block.directive.removeprefix("expect: ").partition(" as ")
        method, url = self.fill(query).split(maxsplit=1)
        assert method == "GET", where
        wanted = json.loads(self.fill(block.text))
        seen: list[Any] = []

        def arrived() -> dict[str, Any] | None:
            found = [
                e["resource"]
                for e in self.http.get(url, headers={"Cache-Control": "no-cache"}).json().get("entry") or ()
                if e.get("search", {}).get("mode", "match") == "match"
            ]
            seen[:] = found
            return next((r for r in found if contains(r, wanted)), None)

        try:
            resource = wait_for(arrived, timeout=30, what=f"{where}: what the cookbook shows")
        except pytest.fail.Exception as exc:
            raise AssertionError(f"{exc}; the server holds {json.dumps(seen, ensure_ascii=False)[:1500]}") from None
        if name:
            self.values[name] = resource


@pytest.mark.parametrize("section", SECTIONS, ids=[s.title for s in SECTIONS])
def test_the_cookbook_runs(section: Section, stack: Stack, fhir: FhirClient, state: State) -> None:
    cookbook = Cookbook(stack, fhir)
    try:
        for block in section.blocks:
            cookbook.run(block)
    finally:
        state.clock.set(None)
        cookbook.http.close()


def test_every_block_of_the_cookbook_is_run() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert sum(len(s.blocks) for s in SECTIONS) == text.count("\n```") // 2
    with pytest.raises(AssertionError, match="cannot run"):
        sections("## x\n\n```json\n{}\n```\n")  # an answer with no request for it
    [shown] = sections("## x\n\n<!-- mistake as bad -->\n```http\nPOST [base]/Task\n```\n")
    assert shown.blocks[0].directive.startswith(MISTAKE) and _named(shown.blocks[0].directive) == "bad"
