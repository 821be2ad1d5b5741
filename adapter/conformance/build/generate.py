"""Write ``profiles/`` from its sources: ``python -m adapter.conformance.build.generate [--check]``.

The JSON files are generated so that codes.yaml stays the single source of the canonical base and
the concepts; ``--check`` (and a test) fails when the files on disk have drifted from the sources.
"""

from __future__ import annotations

import sys
from pathlib import Path

from adapter.conformance.build import docs
from adapter.conformance.build.sources import examples, measures, profiles, questionnaires, terminology, topics
from adapter.conformance.build.sources.common import (
    DATE,
    FHIR_VERSION,
    PACKAGE_NAME,
    PUBLISHER,
    VERSION,
    Resource,
    base,
)
from adapter.conformance.package import EXAMPLE_DIR, MANIFEST_FILE, dump_json, profiles_dir, resource_files


def filename(resource: Resource) -> str:
    """The FHIR package file name: ``{resourceType}-{id}.json``."""
    return f"{resource['resourceType']}-{resource['id']}.json"


def conformance_resources() -> list[Resource]:
    return [*terminology.build(), *profiles.build(), *questionnaires.build(), *measures.build(), *topics.build()]


def manifest() -> dict[str, object]:
    """``package.json`` in the FHIR NPM package format."""
    return {
        "name": PACKAGE_NAME,
        "version": VERSION,
        "type": "fhir.ig",
        "date": DATE.replace("-", "") + "000000",
        "title": "MMR referral workflow: multimodal pain rehabilitation (Region Skåne routine)",
        "description": "Profiles, terminology, questionnaires and subscription topics of the FHIR R4 adapter for "
        "the referral workflow of multimodal pain rehabilitation (MMRpv/MMRsv).",
        "canonical": base(),
        "url": base(),
        "fhirVersions": [FHIR_VERSION],
        "dependencies": {"hl7.fhir.r4.core": FHIR_VERSION},
        "author": PUBLISHER,
        "license": "Apache-2.0",
        "jurisdiction": "urn:iso:std:iso:3166#SE",
        "language": "sv",
    }


def expected_files() -> dict[str, str]:
    """Relative path -> content of every generated file (README and indexes excluded: see docs)."""
    files = {filename(r): dump_json(r) for r in conformance_resources()}
    files.update({f"{EXAMPLE_DIR}/{filename(r)}": dump_json(r) for r in examples.build()})
    files[MANIFEST_FILE] = dump_json(manifest())
    return files


def _stale(directory: Path, expected: dict[str, str]) -> list[Path]:
    """Resource files on disk that the sources no longer produce."""
    on_disk = [*resource_files(directory), *resource_files(directory / EXAMPLE_DIR)]
    return [p for p in on_disk if p.relative_to(directory).as_posix() not in expected]


def generate(directory: Path | None = None, check: bool = False) -> list[str]:
    """Write (or with ``check`` only compare) the package; returns the paths that differed."""
    directory = directory or profiles_dir()
    expected = expected_files()
    differing = []
    for rel, content in expected.items():
        path = directory / rel
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            differing.append(rel)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content, encoding="utf-8")
    for path in _stale(directory, expected):
        differing.append(path.relative_to(directory).as_posix())
        if not check:
            path.unlink()
    differing += docs.write_docs(directory, check=check)
    return differing


def main(argv: list[str] | None = None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    differing = generate(check=check)
    for rel in differing:
        print(("drifted: " if check else "wrote: ") + rel)
    return 1 if check and differing else 0


if __name__ == "__main__":
    raise SystemExit(main())
