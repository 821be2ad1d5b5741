"""profiles/ and mappings/codes.yaml agree: one canonical base, exactly the same concepts."""

from __future__ import annotations

import json

from adapter.conformance.package import EXAMPLE_DIR, package, profiles_dir, resource_files
from adapter.mappings import codes


def test_every_code_system_of_codes_yaml_is_published_with_exactly_its_concepts() -> None:
    c = codes()
    published = {cs["url"]: cs for cs in package().of_type("CodeSystem")}
    expected = {c.system(key): key for key in c.raw["code_systems"]}
    assert set(published) == set(expected)
    for url, key in expected.items():
        concepts = c.raw["code_systems"][key]["concepts"]
        cs = published[url]
        assert cs["content"] == "complete" and cs["count"] == len(concepts)
        assert cs["title"] == c.raw["code_systems"][key]["title"]
        got = {
            k["code"]: (k["display"], [(d["language"], d["value"]) for d in k.get("designation") or ()])
            for k in cs["concept"]
        }
        assert got == {code: (names["sv"], [("en", names["en"])]) for code, names in concepts.items()}, url


def test_every_code_system_has_a_value_set_of_all_its_codes() -> None:
    c = codes()
    value_sets = {vs["url"]: vs for vs in package().of_type("ValueSet")}
    for key in c.raw["code_systems"]:
        vs = value_sets[c.system(key).replace("/CodeSystem/", "/ValueSet/")]
        assert {"system": c.system(key)} in vs["compose"]["include"]


def test_task_type_value_set_holds_the_sdc_code() -> None:
    c = codes()
    vs = package().get(c.system("task-type").replace("/CodeSystem/", "/ValueSet/"))
    sdc = c.sdc_task_code
    assert {"system": sdc["system"], "concept": [{"code": sdc["code"], "display": "Complete Questionnaire"}]} in vs[
        "compose"
    ]["include"]


def test_concept_map_covers_confirmation_types_and_the_closing_code() -> None:
    c = codes()
    cm = package().get(f"{c.base}/ConceptMap/mmr-to-inera")
    mapped = {(g["source"], e["code"], t["code"]) for g in cm["group"] for e in g["element"] for t in e["target"]}
    for code in c.raw["code_systems"]["confirmation-type"]["concepts"]:
        assert (c.system("confirmation-type"), code, code) in mapped
    assert (c.system("closing-code"), "HE", "VR") in mapped
    assert (c.system("closing-code"), "HE", "VID") in mapped


def _urls(value: object) -> list[str]:
    """Every string in a resource that looks like one of the project's own canonicals (a URL: a text
    naming the ``mmr-adapter`` command is no canonical)."""
    if isinstance(value, dict):
        return [u for v in value.values() for u in _urls(v)]
    if isinstance(value, list):
        return [u for v in value for u in _urls(v)]
    return [value] if isinstance(value, str) and "mmr-adapter" in value and "://" in value else []


def test_one_canonical_base_everywhere() -> None:
    base = codes().base
    files = [*resource_files(profiles_dir()), *resource_files(profiles_dir() / EXAMPLE_DIR)]
    for path in files:
        resource = json.loads(path.read_text(encoding="utf-8"))
        for url in _urls(resource):
            assert base in url, f"{path.name}: {url} is not under {base}"
        if "url" in resource:
            assert resource["url"] == f"{base}/{resource['resourceType']}/{resource['id']}"
    assert package().manifest["canonical"] == base
