"""If-None-Exist values escaped and URL-encoded the FHIR way, against the real sandbox.

The sandbox, like HAPI, URL-decodes the criteria and splits token values on unescaped ``,`` and
``|`` (``\\`` escaping ``, | $ \\``), so an unescaped identifier would match the wrong resources.
"""

from __future__ import annotations

import uuid

import pytest

from adapter.fhir.client import FhirClient
from adapter.fhir.search import escape, identifier_criteria, token
from adapter.workflow.core import create

SYSTEM = "https://test.example.se/id"
# The sandbox unescapes twice (once splitting on ",", again splitting on "|"), so a backslash before
# "," "|" "$" "\\" or at the end is lost there; HAPI unescapes once. Those cases are expected to fail
# on the sandbox, and are kept to say so (strict: the day the sandbox agrees with HAPI, they pass).
SANDBOX_DOUBLE_UNESCAPES = pytest.mark.xfail(strict=True, reason="sekmet-fhir 0.1.1 unescapes token values twice")
AWKWARD = [
    "a,b",
    "a|b",
    "a\\b",
    "a$b",
    "a+b",
    "a%20b",
    "a&b=c",
    "a#b",
    "å ä,ö|$+%&#",
    pytest.param("a\\|b\\,c\\$", marks=SANDBOX_DOUBLE_UNESCAPES),
    pytest.param("trailing\\", marks=SANDBOX_DOUBLE_UNESCAPES),
]


def patient(value: str) -> dict[str, object]:
    return {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": value}]}


def test_escape_and_encode() -> None:
    assert escape("a,b|c$d\\e") == "a\\,b\\|c\\$d\\\\e"
    assert token(SYSTEM, "a b+c%d&e#f") == f"{SYSTEM}|a%20b%2Bc%25d%26e%23f"
    assert token("urn:oid:1.2|3", "x") == "urn:oid:1.2%5C%7C3|x"
    assert identifier_criteria(SYSTEM, "REM-1") == f"identifier={SYSTEM}|REM-1"
    assert create({"resourceType": "Task"}, SYSTEM, "a,b").if_none_exist == f"identifier={SYSTEM}|a%5C%2Cb"


@pytest.mark.parametrize("awkward", AWKWARD)
def test_a_conditional_create_with_an_awkward_identifier_makes_one_resource(fhir: FhirClient, awkward: str) -> None:
    value = f"{uuid.uuid4().hex[:8]}-{awkward}"
    # Neighbours an unescaped value would match: its parts around , and |, and + read as a space.
    near = {
        value.replace(",", ""),
        value.split(",")[0],
        value.split("|")[-1],
        value.replace("+", " "),
        value.replace("\\", ""),
    } - {value}
    neighbours = {fhir.create(patient(v))["id"] for v in near}
    first = fhir.create(patient(value), if_none_exist=identifier_criteria(SYSTEM, value))
    second = fhir.create(patient(value), if_none_exist=identifier_criteria(SYSTEM, value))
    assert first["id"] == second["id"] and first["id"] not in neighbours
    assert first["identifier"][0]["value"] == value


def test_the_same_holds_inside_a_transaction(fhir: FhirClient) -> None:
    value = f"{uuid.uuid4().hex[:8]}-å ä,ö|$+%&#"
    fhir.create(patient(value.split(",")[0]))

    def bundle() -> dict[str, object]:
        write = create({"resourceType": "Patient"}, SYSTEM, value)
        return {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": write.full_url,
                    "resource": write.resource,
                    "request": {"method": "POST", "url": "Patient", "ifNoneExist": write.if_none_exist},
                }
            ],
        }

    locations = [fhir.transaction(bundle())["entry"][0]["response"]["location"] for _ in range(2)]
    ids = {loc.split("/_history")[0].rsplit("/", 1)[1] for loc in locations}
    assert len(ids) == 1
    assert [p["id"] for p in fhir.search("Patient", {"identifier": f"{SYSTEM}|{escape(value)}"})] == list(ids)
