"""The package is what its sources say: generated files, README and indexes have not drifted."""

from __future__ import annotations

import json

from click.testing import CliRunner

from adapter.cli.conformance import profiles_build, profiles_doc
from adapter.conformance.build.docs import expected_docs
from adapter.conformance.build.generate import expected_files
from adapter.conformance.build.sources.common import FHIR_VERSION, VERSION
from adapter.conformance.build.sources.elements import differential_order
from adapter.conformance.package import EXAMPLE_DIR, INDEX_FILE, package, profiles_dir, resource_files


def test_generated_files_match_their_sources() -> None:
    """Fails when codes.yaml or a source changed without ``mmr-adapter profiles-build``."""
    drifted = [
        rel
        for rel, text in expected_files().items()
        if not (profiles_dir() / rel).exists() or (profiles_dir() / rel).read_text(encoding="utf-8") != text
    ]
    assert drifted == []


def test_readme_and_indexes_match_the_json_files() -> None:
    """Fails when README.md or .index.json has drifted: run ``mmr-adapter profiles-doc``."""
    for rel, text in expected_docs(profiles_dir()).items():
        assert (profiles_dir() / rel).read_text(encoding="utf-8") == text, rel


def test_profiles_doc_check_exits_0_when_current() -> None:
    result = CliRunner().invoke(profiles_doc, ["--check"])
    assert result.exit_code == 0, result.output


def test_profiles_doc_check_exits_1_on_drift(tmp_path, monkeypatch) -> None:
    for path in [*profiles_dir().glob("*.json"), profiles_dir() / "README.md", profiles_dir() / INDEX_FILE]:
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / EXAMPLE_DIR).mkdir()
    for path in (profiles_dir() / EXAMPLE_DIR).glob("*.json"):
        (tmp_path / EXAMPLE_DIR / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / EXAMPLE_DIR / INDEX_FILE).write_text(
        (profiles_dir() / EXAMPLE_DIR / INDEX_FILE).read_text(encoding="utf-8"), encoding="utf-8"
    )
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + "\nhand edit\n", encoding="utf-8")
    monkeypatch.setenv("MMR_PROFILES_DIR", str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(profiles_doc, ["--check"]).exit_code == 1
    assert runner.invoke(profiles_doc, []).exit_code == 0
    assert runner.invoke(profiles_doc, ["--check"]).exit_code == 0
    assert runner.invoke(profiles_build, ["--check"]).exit_code == 0


def test_readme_lists_every_resource() -> None:
    readme = (profiles_dir() / "README.md").read_text(encoding="utf-8")
    for resource in package().resources:
        assert resource.get("url", resource["id"]) in readme or resource["id"] in readme


def test_manifest_is_a_loadable_fhir_package_manifest() -> None:
    manifest = json.loads((profiles_dir() / "package.json").read_text(encoding="utf-8"))
    assert manifest["version"] == VERSION
    assert manifest["fhirVersions"] == [FHIR_VERSION]
    assert manifest["dependencies"] == {"hl7.fhir.r4.core": "4.0.1"}
    assert manifest["name"] == manifest["name"].lower() and "." in manifest["name"]
    assert manifest["canonical"].startswith("https://")


def test_index_lists_every_resource_file() -> None:
    for directory in (profiles_dir(), profiles_dir() / EXAMPLE_DIR):
        index = json.loads((directory / INDEX_FILE).read_text(encoding="utf-8"))
        assert index["index-version"] == 1
        assert [f["filename"] for f in index["files"]] == [p.name for p in resource_files(directory)]


def test_every_canonical_resource_is_versioned_and_r4() -> None:
    for resource in package().resources:
        if "url" in resource:
            assert resource["version"] == VERSION
        if resource["resourceType"] == "StructureDefinition":
            assert resource["fhirVersion"] == FHIR_VERSION
            assert resource["derivation"] == "constraint" and "differential" in resource


def test_every_differential_follows_the_base_element_order() -> None:
    """Snapshot generators walk base and differential together: HAPI left every element that came out of
    order out of the snapshot, and so validated without the profile's cardinalities and fixed values."""
    sds = [r for r in package().resources if r.get("resourceType") == "StructureDefinition"]
    assert sds
    for sd in sds:
        elements = sd["differential"]["element"]
        assert elements == differential_order(elements), sd["id"]
    review = next(sd for sd in sds if sd["id"] == "mmr-review-task")
    paths = [e["id"] for e in review["differential"]["element"]]
    assert paths.index("Task.statusReason") < paths.index("Task.businessStatus") < paths.index("Task.focus")
