"""The validator: every example passes, every broken example fails with the right issue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from adapter.cli.conformance import validate
from adapter.conformance.package import EXAMPLE_DIR, profiles_dir, resource_files
from adapter.conformance.validate import validate_against, validate_file, validate_resource
from adapter.mappings import codes

DATA = Path(__file__).parent / "data" / "conformance"
EXPECTED: dict[str, dict[str, str | None]] = yaml.safe_load((DATA / "expected.yaml").read_text(encoding="utf-8"))
EXAMPLES = list(resource_files(profiles_dir() / EXAMPLE_DIR))
CONFORMANCE = list(resource_files(profiles_dir()))


def errors(outcome: dict) -> list[dict]:
    return [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_valid(path: Path) -> None:
    outcome = validate_file(path)
    assert outcome["resourceType"] == "OperationOutcome"
    assert errors(outcome) == []
    assert outcome["issue"][-1]["diagnostics"] == "valid"


@pytest.mark.parametrize("path", CONFORMANCE, ids=lambda p: p.name)
def test_every_conformance_resource_is_valid_fhir(path: Path) -> None:
    assert errors(validate_file(path)) == []


@pytest.mark.parametrize(
    "path", [p for p in EXAMPLES if "meta" in json.loads(p.read_text(encoding="utf-8"))], ids=lambda p: p.name
)
def test_examples_are_picked_by_code_without_meta_profile(path: Path) -> None:
    """Profile selection by type and code gives the same profile as meta.profile."""
    resource = json.loads(path.read_text(encoding="utf-8"))
    declared = resource.pop("meta")["profile"]
    outcome = validate_resource(resource)
    assert errors(outcome) == []
    for profile in declared:
        assert profile in outcome["issue"][-1]["details"]["text"]


def test_every_broken_example_has_an_expectation() -> None:
    on_disk = {p.name for p in DATA.glob("*.json")}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_example_fails_with_the_right_issue(name: str) -> None:
    want = EXPECTED[name]
    found = errors(validate_file(DATA / name))
    assert found, f"{name} validated"
    matching = [i for i in found if want["expression"] in i["expression"] and want["message"] in i["diagnostics"]]
    assert matching, f"{name}: no issue at {want['expression']} saying {want['message']!r}; got {found}"
    if want["profile"]:
        assert f"(profile {codes().base}/StructureDefinition/{want['profile']})" in matching[0]["diagnostics"]


def test_a_task_of_another_workflow_is_checked_for_structure_only() -> None:
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
    }
    outcome = validate_resource(task)
    assert errors(outcome) == []
    assert "structure only" in outcome["issue"][-1]["details"]["text"]


def test_validate_against_holds_a_resource_to_the_named_profile_whatever_its_codes() -> None:
    referral = json.loads((profiles_dir() / EXAMPLE_DIR / "ServiceRequest-mmr-example-referral.json").read_text())
    profile = f"{codes().base}/StructureDefinition/mmr-referral"
    assert errors(validate_against(referral, profile)) == []
    other = {
        **referral,
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "71388002"}]},
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "1234"}]}],
    }
    other.pop("meta", None)
    assert errors(validate_resource(other)) == []  # no code selects the referral profile
    found = [i["diagnostics"] for i in errors(validate_against(other, profile))]
    assert any(d.startswith("ServiceRequest.code: must match pattern") for d in found), found
    assert any(d.startswith("ServiceRequest.category:referral: minimum cardinality 1") for d in found), found
    assert errors(validate_against(referral, f"{codes().base}/StructureDefinition/nope"))[0]["code"] == "not-found"


def test_unreadable_file_is_fatal(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert validate_file(bad)["issue"][0]["severity"] == "fatal"


def test_validate_command_prints_one_outcome_per_file_and_sets_the_exit_code() -> None:
    good = str(EXAMPLES[0])
    runner = CliRunner()
    ok = runner.invoke(validate, [good])
    assert ok.exit_code == 0
    assert json.loads(ok.output)["meta"]["source"] == good
    bad = runner.invoke(validate, [good, str(DATA / "review-missing-focus.json")])
    assert bad.exit_code == 1
    decoder, text, outcomes = json.JSONDecoder(), bad.output.strip(), []
    while text:
        obj, end = decoder.raw_decode(text)
        outcomes.append(obj)
        text = text[end:].strip()
    assert [errors(o) == [] for o in outcomes] == [True, False]
