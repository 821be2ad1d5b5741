"""``profiles/README.md`` and the package indexes, generated from the JSON files of ``profiles/``.

Integration teams read the README; it is derived from the resources' own description and purpose
so that it cannot say something the machine-readable contract does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from adapter.conformance.package import (
    CRITERIA_FILE,
    EXAMPLE_DIR,
    INDEX_FILE,
    MANIFEST_FILE,
    README_FILE,
    dump_json,
    is_topic,
    read_json,
    resource_files,
)
from adapter.fhir.resource import Resource
from adapter.mappings import task_state_tables

ST = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic"
INDEX_KEYS = ("resourceType", "id", "url", "version", "kind", "type", "supplements", "content")


# ---------------------------------------------------------------- index


def index(directory: Path) -> dict[str, Any]:
    """The ``.index.json`` of one package folder (FHIR NPM package index, version 1)."""
    files = []
    for path in resource_files(directory):
        resource = read_json(path)
        files.append({"filename": path.name, **{k: resource[k] for k in INDEX_KEYS if k in resource}})
    return {"index-version": 1, "files": files}


# ---------------------------------------------------------------- markdown helpers


def cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ").strip()


def table(headers: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    headers = list(headers)
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return [*out, ""]


def code(text: Any) -> str:
    return f"`{text}`" if text not in (None, "") else ""


# ---------------------------------------------------------------- sections


def _element_rows(sd: Resource) -> list[list[str]]:
    rows = []
    for e in sd["differential"]["element"][1:]:
        card = _card(e)
        types = []
        for t in e.get("type") or ():
            targets = [p.rsplit("/", 1)[-1] for p in t.get("targetProfile") or t.get("profile") or ()]
            types.append(f"{t['code']}({' | '.join(targets)})" if targets else t["code"])
        value = next((f"{k}: {_compact(v)}" for k, v in e.items() if k.startswith(("fixed", "pattern"))), "")
        binding = e.get("binding")
        bound = f"{binding['strength']} {binding['valueSet']}" if binding else ""
        slicing = e.get("slicing")
        note = e.get("short", "")
        if slicing:
            note = f"sliced by {slicing['discriminator'][0]['path']} ({slicing['rules']}) {note}".strip()
        rows.append([code(e["id"]), card, ", ".join(types), value, bound, note])
    return rows


def _card(e: Resource) -> str:
    """The cardinality the profile sets; the other bound stays the base resource's."""
    if "min" in e and "max" in e:
        return f"{e['min']}..{e['max']}"
    return f"min {e['min']}" if "min" in e else f"max {e['max']}" if "max" in e else ""


def _compact(value: Any) -> str:
    """A pattern as ``system|code`` where it is one, otherwise its JSON."""
    if isinstance(value, dict) and list(value) == ["coding"] and len(value["coding"]) == 1:
        c = value["coding"][0]
        return f"{c.get('system', '')}|{c.get('code', '')}"
    return code(value)


def profiles_section(resources: list[Resource]) -> list[str]:
    sds = [r for r in resources if r["resourceType"] == "StructureDefinition"]
    out = ["## Profiles", ""]
    out += table(
        ["Profile", "Resource", "Canonical", "Carries", "Why"],
        [[s["title"], s["type"], code(s["url"]), s.get("description"), s.get("purpose")] for s in sds],
    )
    for s in sds:
        out += [f"### {s['title']} (`{s['id']}`)", "", s.get("description", ""), ""]
        out += table(["Element", "Card.", "Type", "Fixed / pattern", "Binding", "Note"], _element_rows(s))
        constraints = [c for e in s["differential"]["element"] for c in e.get("constraint") or ()]
        if constraints:
            out += table(
                ["Invariant", "Rule", "FHIRPath"],
                [[code(c["key"]), c["human"], code(c["expression"])] for c in constraints],
            )
    return out


def task_states_section() -> list[str]:
    """The state table of each Task kind, from ``mappings/task-states.yaml``."""
    out = [
        "## Task states",
        "",
        "Every (status, businessStatus) a Task of the adapter's can be stored at, from "
        "`mappings/task-states.yaml`; the tests hold every Task version the adapter writes to these "
        "tables. One event is one transaction: a referral that arrives complete at a clinic with a "
        "reviewer pool is registered, assigned and assessed in its review Task's first version, which "
        "records each moment on an element of its own. Only a person makes a review `in-progress`. A "
        "Task someone else closes gets the final business status its table gives that status "
        '("settles to").',
        "",
    ]
    for t in task_state_tables():
        out += [f"### {t.kind} (`{t.code}`, profile `{t.profile}`)", ""]
        out += table(
            ["status", "businessStatus", "written by", "means", "next, and by whom", "records"],
            [
                [
                    " / ".join(code(s) for s in r.statuses),
                    " / ".join(code(b) for b in r.business) + (" (final)" if r.final else ""),
                    r.by,
                    r.means,
                    r.next,
                    r.records,
                ]
                for r in t.rows
            ],
        )
        if t.settle:
            out += ["Settles to: " + ", ".join(f"{code(k)} → {code(v)}" for k, v in t.settle.items()) + ".", ""]
    return out


def terminology_section(resources: list[Resource]) -> list[str]:
    out = ["## Code systems", ""]
    out += table(
        ["Code system", "Canonical", "Concepts (sv display)", "Why"],
        [
            [
                r["title"],
                code(r["url"]),
                "; ".join(f"{code(c['code'])} {c.get('display', '')}" for c in r["concept"]),
                r.get("purpose") or r.get("description"),
            ]
            for r in resources
            if r["resourceType"] == "CodeSystem"
        ],
    )
    out += ["## Value sets", ""]
    out += table(
        ["Value set", "Canonical", "Includes", "Carries"],
        [
            [
                r["title"],
                code(r["url"]),
                "; ".join(
                    code(i["system"])
                    + (" (" + ", ".join(c["code"] for c in i["concept"]) + ")" if i.get("concept") else " (all)")
                    for i in r["compose"]["include"]
                ),
                r.get("description"),
            ]
            for r in resources
            if r["resourceType"] == "ValueSet"
        ],
    )
    for cm in (r for r in resources if r["resourceType"] == "ConceptMap"):
        out += [f"## Concept map: {cm['title']}", "", cm.get("description", ""), "", cm.get("purpose", ""), ""]
        out += table(
            ["Source system", "Code", "Target system", "Target", "Equivalence"],
            [
                [code(g["source"]), code(e["code"]), code(g["target"]), code(t["code"]), t["equivalence"]]
                for g in cm["group"]
                for e in g["element"]
                for t in e.get("target") or ()
            ],
        )
    return out


def _items(items: Iterable[Resource], depth: int = 0) -> list[list[str]]:
    rows = []
    for i in items:
        when = ", ".join(
            f"{w['question']} = {(w.get('answerCoding') or {}).get('code', '')}" for w in i.get("enableWhen") or ()
        )
        answers = ", ".join(o["valueCoding"]["code"] for o in i.get("answerOption") or ())
        rows.append(
            [
                ("↳ " * depth) + code(i["linkId"]),
                i["type"],
                "yes" if i.get("required") else "",
                i.get("text"),
                answers,
                when,
            ]
        )
        rows += _items(i.get("item") or (), depth + 1)
    return rows


def questionnaires_section(resources: list[Resource]) -> list[str]:
    qs = [r for r in resources if r["resourceType"] == "Questionnaire"]
    out = ["## Questionnaires", ""]
    out += table(
        ["Questionnaire", "Canonical", "Version", "Carries", "Why", "References (not copied)"],
        [
            [
                q["title"],
                code(q["url"]),
                q["version"],
                q.get("description"),
                q.get("purpose"),
                ", ".join(
                    code(e["valueRelatedArtifact"]["resource"])
                    for e in q.get("extension") or ()
                    if "valueRelatedArtifact" in e
                ),
            ]
            for q in qs
        ],
    )
    out += [f"Which answers feed which MMRpv criterion: [`{CRITERIA_FILE}`]({CRITERIA_FILE}).", ""]
    for q in qs:
        out += [f"### {q['title']} (`{q['id']}`)", ""]
        out += table(["linkId", "Type", "Required", "Text", "Answer codes", "Enabled when"], _items(q["item"]))
    return out


def _ext(node: Resource, url: str) -> list[Resource]:
    return [e for e in node.get("extension") or () if e.get("url") == url]


def _sub(node: Resource, url: str) -> list[Any]:
    return [next(v for k, v in e.items() if k.startswith("value")) for e in _ext(node, url)]


def topics_section(resources: list[Resource]) -> list[str]:
    rows = []
    for t in (r for r in resources if is_topic(r)):
        triggers = "; ".join(
            f"{_sub(trig, 'resource')[0].rsplit('/', 1)[-1]} ({', '.join(_sub(trig, 'supportedInteraction'))}): "
            f"{code(_sub(trig, 'fhirPathCriteria')[0])}"
            for trig in _ext(t, f"{ST}.resourceTrigger")
        )
        filters = ", ".join(
            f"{_sub(f, 'resource')[0].rsplit('/', 1)[-1]}.{_sub(f, 'filterParameter')[0]}"
            for f in _ext(t, f"{ST}.canFilterBy")
        )
        rows.append(
            [
                _sub(t, f"{ST}.title")[0],
                code(_sub(t, f"{ST}.url")[0]),
                code(f"Basic/{t['id']}"),
                _sub(t, f"{ST}.description")[0],
                triggers,
                filters,
            ]
        )
    out = [
        "## Subscription topics (R4 backport, as `Basic`)",
        "",
        "Each topic is a `Basic` resource with the R5 cross-version `SubscriptionTopic` extensions, the form "
        "HAPI and sekmet-fhir accept; subscribe with a backport `Subscription` whose `criteria` is the topic "
        "canonical.",
        "",
    ]
    return out + table(["Topic", "Canonical", "Resource", "Event", "Triggers", "Filters"], rows)


def measures_section(resources: list[Resource]) -> list[str]:
    """The flow figures as Measures: what each counts, how it scores, the clock rule it follows."""
    rows = []
    for m in (r for r in resources if r["resourceType"] == "Measure"):
        groups = "; ".join(
            f"{g['code']['coding'][0]['code']}: "
            + ", ".join(
                f"{p['code']['coding'][0]['code']} {code(p['criteria']['expression'])}" for p in g["population"]
            )
            for g in m["group"]
        )
        guidance = m.get("guidance", "").split("\n\n")
        rows.append(
            [
                m["title"],
                code(m["url"]),
                m["scoring"]["coding"][0]["code"],
                groups,
                guidance[0].removeprefix("Clock rule: "),
            ]
        )
    return [
        "## Measures (the flow figures)",
        "",
        "One Measure per figure of `mmr-adapter flow`, from `mappings/measures.yaml`; `mmr-adapter flow --publish` "
        "writes their MeasureReports per organisation and for the region, per month (`adapter/flow/measures.py`). "
        "A population's criteria name the figures key that counts it (language `text/x-mmr-figure`); every group "
        "is stratified by organisation.",
        "",
        *table(["Measure", "Canonical", "Scoring", "Groups: populations (figures keys)", "Clock rule"], rows),
    ]


def examples_section(directory: Path) -> list[str]:
    rows = []
    for path in resource_files(directory / EXAMPLE_DIR):
        r = read_json(path)
        profile = ", ".join(p.rsplit("/", 1)[-1] for p in (r.get("meta") or {}).get("profile") or ())
        rows.append([f"[{path.name}]({EXAMPLE_DIR}/{path.name})", r["resourceType"], code(r.get("id")), profile])
    return [
        "## Examples",
        "",
        "Every example validates (`mmr-adapter validate profiles/example/*.json`). "
        "`Bundle-mmr-example-referral-bundle.json` is a transaction an EHR can POST to start the flow.",
        "",
        *table(["File", "Resource", "id", "Profile"], rows),
    ]


def index_section(idx: dict[str, Any]) -> list[str]:
    return [
        "## Package index",
        "",
        f"From [`{INDEX_FILE}`]({INDEX_FILE}).",
        "",
        *table(
            ["File", "Resource", "id", "Canonical", "Version"],
            [
                [f["filename"], f["resourceType"], code(f["id"]), code(f.get("url")), f.get("version", "")]
                for f in idx["files"]
            ],
        ),
    ]


def render_readme(directory: Path) -> str:
    manifest = read_json(directory / MANIFEST_FILE)
    resources = [read_json(p) for p in resource_files(directory)]
    deps = ", ".join(f"{k} {v}" for k, v in manifest.get("dependencies", {}).items())
    lines = [
        f"# {manifest['title']}",
        "",
        "<!-- Generated by `mmr-adapter profiles-doc` from the JSON files; do not edit by hand. -->",
        "",
        manifest["description"],
        "",
        *table(
            ["Package", "Version", "Canonical base", "FHIR", "Depends on"],
            [
                [
                    code(manifest["name"]),
                    manifest["version"],
                    code(manifest["canonical"]),
                    ", ".join(manifest["fhirVersions"]),
                    deps,
                ]
            ],
        ),
        "The JSON files are generated from `mappings/codes.yaml` (canonical base and concepts) and "
        "`adapter/conformance/build/sources/` by `python -m adapter.conformance.build.generate` (also "
        "`mmr-adapter profiles-build`); do not edit them by hand. Check a resource with "
        "`mmr-adapter validate FILE...`; install the package on a server with "
        "`adapter.conformance.install.install_package(client)` (conditional update on url and version; "
        "topics by id; examples are not installed).",
        "",
        "A profile applies to a resource that names it in `meta.profile`; otherwise by resource type and "
        "code: Task.code picks the Task profile, ServiceRequest.code `mmr` or category SNOMED CT 3457005 the "
        "referral, Communication.category a confirmation type the confirmation, EpisodeOfCare.type and "
        "CarePlan.category `mmr` the care commitment and programme; every Consent is held to the consent "
        "profile.",
        "",
        "Business identifiers: every resource the adapter creates carries an identifier whose system is "
        f"`{manifest['canonical']}/identifier/<kind>` (`task`, `communication`, `communicationrequest`, "
        "`episodeofcare`, `careplan`; `heartbeat` for the adapter's own `Basic/mmr-adapter-heartbeat`, the "
        "probe whose notification proves delivery).",
        "",
        *profiles_section(resources),
        *task_states_section(),
        *terminology_section(resources),
        *questionnaires_section(resources),
        *topics_section(resources),
        *measures_section(resources),
        *examples_section(directory),
        *index_section(index(directory)),
    ]
    return "\n".join(lines).rstrip() + "\n"


def expected_docs(directory: Path) -> dict[str, str]:
    return {
        README_FILE: render_readme(directory),
        INDEX_FILE: dump_json(index(directory)),
        f"{EXAMPLE_DIR}/{INDEX_FILE}": dump_json(index(directory / EXAMPLE_DIR)),
    }


def write_docs(directory: Path, check: bool = False) -> list[str]:
    """Write README and indexes (or with ``check`` only compare); returns the files that differed."""
    differing = []
    for rel, content in expected_docs(directory).items():
        path = directory / rel
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            differing.append(rel)
            if not check:
                path.write_text(content, encoding="utf-8")
    return differing
