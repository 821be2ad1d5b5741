"""Where the published package lives and how to read it.

Everything that reads ``profiles/`` (validator, docs, installer) goes through here, so the folder
layout of the FHIR NPM package is known in one place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from adapter.fhir.resource import Resource

EXAMPLE_DIR = "example"
INDEX_FILE = ".index.json"
MANIFEST_FILE = "package.json"
README_FILE = "README.md"
CRITERIA_FILE = "questionnaire-criteria.yaml"
TOPIC_CODE = "SubscriptionTopic"


def profiles_dir() -> Path:
    """``MMR_PROFILES_DIR`` or the repository's ``profiles/``."""
    return Path(os.environ.get("MMR_PROFILES_DIR") or Path(__file__).resolve().parents[2] / "profiles")


def example(name: str) -> dict[str, Any]:
    """One of the published examples (``profiles/example/``), as an EHR vendor would start from it."""
    return dict(read_json(profiles_dir() / EXAMPLE_DIR / name))


def read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def dump_json(data: Any) -> str:
    """The one JSON layout of every file in the package (stable, so diffs stay small)."""
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def resource_files(directory: Path) -> Iterator[Path]:
    """The FHIR resource files of one package folder, in a stable order."""
    for path in sorted(directory.glob("*.json")):
        if path.name not in (MANIFEST_FILE, INDEX_FILE):
            yield path


def is_topic(resource: Resource) -> bool:
    """A backport SubscriptionTopic, encoded as a ``Basic`` resource."""
    codings = (resource.get("code") or {}).get("coding") or ()
    return resource.get("resourceType") == "Basic" and any(c.get("code") == TOPIC_CODE for c in codings)


@dataclass(frozen=True)
class Package:
    """The conformance resources of ``profiles/`` (examples excluded), indexed for look-up."""

    directory: Path
    resources: tuple[Resource, ...]
    by_url: dict[str, Resource] = field(default_factory=dict)

    def profiles(self) -> list[Resource]:
        return [r for r in self.resources if r.get("resourceType") == "StructureDefinition"]

    def of_type(self, resource_type: str) -> list[Resource]:
        return [r for r in self.resources if r.get("resourceType") == resource_type]

    def get(self, canonical: str | None) -> Resource | None:
        """A resource by canonical, with or without ``|version``."""
        return self.by_url.get((canonical or "").split("|")[0])

    @property
    def manifest(self) -> dict[str, Any]:
        return read_json(self.directory / MANIFEST_FILE)


def load_package(directory: Path | None = None) -> Package:
    directory = directory or profiles_dir()
    resources = tuple(read_json(p) for p in resource_files(directory))
    by_url = {r["url"]: r for r in resources if isinstance(r.get("url"), str)}
    return Package(directory, resources, by_url)


@cache
def package() -> Package:
    """The package of ``profiles/``, read once per process."""
    return load_package()
