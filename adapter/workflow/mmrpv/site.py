"""[11] Which of Helsingborg, Malmö, Kristianstad to suggest to the administrative function.

Nearest the patient, as data (``sites`` in mappings/mmrpv.yaml): the home address's municipality
(``district`` or ``city``, by name or SCB code, or a code in an address extension), else the
longest matching postal-code prefix, else the site named when the referral was forwarded (the
intake Task's ``location``), else ``default_site``. Only a suggestion: the unit books where it
books, and the Appointment's Location is what counts.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import Any

from adapter.fhir.resource import Resource
from adapter.mappings import Unit, directory
from adapter.workflow.core import Referral
from adapter.workflow.mmrpv.common import data
from adapter.workflow.referral import local, resolve


@dataclass(frozen=True)
class Suggestion:
    site: Unit
    basis: str  # municipality | postal-code | forwarding | default: logged, says nothing about the patient


def normalise(name: str) -> str:
    """``Malmö``, ``MALMO``, ``Malmö kommun`` all become ``malmo``."""
    folded = unicodedata.normalize("NFKD", name.casefold().strip().removesuffix(" kommun"))
    return "".join(c for c in folded if not unicodedata.combining(c))


@cache
def municipality_table() -> dict[str, str]:
    """Municipality name or code -> site key."""
    table: dict[str, str] = {}
    for site, entry in data()["sites"].items():
        for name in entry.get("municipalities") or ():
            table[normalise(str(name))] = site
        for code in entry.get("municipality_codes") or ():
            table[str(code)] = site
    return table


@cache
def postal_table() -> dict[str, str]:
    return {
        str(prefix): site for site, entry in data()["sites"].items() for prefix in entry.get("postal_prefixes") or ()
    }


def home_addresses(patient: Resource | None) -> list[dict[str, Any]]:
    """The patient's addresses, home first, old ones left out."""
    addresses = [a for a in (patient or {}).get("address") or () if isinstance(a, dict) and a.get("use") != "old"]
    return sorted(addresses, key=lambda a: a.get("use") != "home")


def _address_codes(address: dict[str, Any]) -> list[str]:
    out = []
    for ext in address.get("extension") or ():
        coding = (ext.get("valueCoding") or {}) if isinstance(ext, dict) else {}
        value = coding.get("code") or (ext.get("valueCode") if isinstance(ext, dict) else None)
        if value:
            out.append(str(value))
    return out


def by_municipality(address: dict[str, Any]) -> str | None:
    table = municipality_table()
    for value in (address.get("district"), address.get("city"), *_address_codes(address)):
        if isinstance(value, str) and (site := table.get(normalise(value)) or table.get(value.strip())):
            return site
    return None


def by_postal_code(address: dict[str, Any]) -> str | None:
    digits = "".join(c for c in str(address.get("postalCode") or "") if c.isdigit())
    table = postal_table()
    for length in range(len(digits), 0, -1):
        if site := table.get(digits[:length]):
            return site
    return None


def from_forwarding(intake: Resource | None) -> Unit | None:
    target = local(((intake or {}).get("location") or {}).get("reference")) or ""
    return directory().site_by_hsa(target.split("/", 1)[1]) if target.startswith("Location/") else None


def suggest_site(referral: Referral, intake: Resource | None) -> Suggestion:
    """The site nearest the patient, or the forwarded-to site, or the default."""
    d = directory()
    patient = resolve(referral, referral.service_request.get("subject"))
    addresses = home_addresses(patient)
    for rule, basis in ((by_municipality, "municipality"), (by_postal_code, "postal-code")):
        for address in addresses:
            if key := rule(address):
                return Suggestion(d.site(key), basis)
    if site := from_forwarding(intake):
        return Suggestion(site, "forwarding")
    return Suggestion(d.site(str(data()["default_site"])), "default")
