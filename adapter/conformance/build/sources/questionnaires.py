"""The patient questionnaires the adapter itself asks: the MMR intake and the 12-month follow-up.

Original items in Swedish. The licensed NRS instruments are only referenced by canonical (never
copied); the region installs its licensed copies under those canonicals.
``profiles/questionnaire-criteria.yaml`` says which answers feed which MMRpv criterion.
"""

from __future__ import annotations

from typing import Any

from adapter.conformance.build.sources.common import Resource, base, metadata, url
from adapter.mappings import directory

Item = dict[str, Any]
RELATED_ARTIFACT = "http://hl7.org/fhir/StructureDefinition/cqf-relatedArtifact"

YES_NO = [("ja", "Ja"), ("nej", "Nej")]
YES_NO_UNSURE = [*YES_NO, ("osaker", "Osäker")]
YES_NO_DONT_KNOW = [*YES_NO, ("vet-ej", "Vet inte")]
COMPARED = [
    ("mycket-battre", "Mycket bättre"),
    ("battre", "Bättre"),
    ("oforandrad", "Oförändrad"),
    ("samre", "Sämre"),
    ("mycket-samre", "Mycket sämre"),
]
OCCUPATION = [
    ("arbetar", "Arbetar helt eller delvis (även med förebyggande sjukskrivning)"),
    ("sjukskriven-deltid", "Sjukskriven på deltid (25, 50 eller 75 procent)"),
    ("sjukskriven-heltid", "Sjukskriven på heltid"),
    ("sjukersattning", "Stadigvarande sjukersättning (hel eller partiell)"),
    ("arbetssokande", "Arbetssökande"),
    ("studerar", "Studerar"),
    ("annat", "Annat"),
]


def nrs_canonicals() -> dict[str, str]:
    """Where the region installs its licensed NRS questionnaires (placeholders; never in this package)."""
    return {"baseline": url("Questionnaire", "nrs-baseline"), "twelve-months": url("Questionnaire", "nrs-12-months")}


def choice(
    link_id: str,
    text: str,
    options: list[tuple[str, str]],
    required: bool = True,
    enable_when: list[tuple[str, str]] | None = None,
) -> Item:
    item: Item = {"linkId": link_id, "text": text, "type": "choice"}
    _enable(item, enable_when)
    item["required"] = required
    item["answerOption"] = [{"valueCoding": {"code": code, "display": display}} for code, display in options]
    return item


def free(
    link_id: str,
    text: str,
    type_: str = "text",
    required: bool = False,
    enable_when: list[tuple[str, str]] | None = None,
) -> Item:
    item: Item = {"linkId": link_id, "text": text, "type": type_}
    _enable(item, enable_when)
    item["required"] = required
    return item


def group(link_id: str, text: str, items: list[Item]) -> Item:
    """A section; required when a question in it is (unconditionally): in FHIR a group that is not
    required may be left out with all its questions, required or not, which would let an answer
    without the questions the criteria read count as complete."""
    required = any(i.get("required") and not i.get("enableWhen") for i in items)
    return {"linkId": link_id, "text": text, "type": "group", "required": required, "item": items}


def display(link_id: str, text: str) -> Item:
    return {"linkId": link_id, "text": text, "type": "display"}


def _enable(item: Item, conditions: list[tuple[str, str]] | None) -> None:
    """Show the item only when another item has one of the given answer codes."""
    if not conditions:
        return
    item["enableWhen"] = [{"question": q, "operator": "=", "answerCoding": {"code": code}} for q, code in conditions]
    if len(conditions) > 1:
        item["enableBehavior"] = "any"


def _nrs_reference(key: str, label: str) -> dict[str, Any]:
    return {
        "url": RELATED_ARTIFACT,
        "valueRelatedArtifact": {
            "type": "depends-on",
            "label": "NRS",
            "display": label,
            "resource": nrs_canonicals()[key],
        },
    }


def _questionnaire(
    id_: str, name: str, title: str, description: str, purpose: str, nrs: dict[str, Any], items: list[Item]
) -> Resource:
    q = metadata("Questionnaire", id_, name, title, description, purpose)
    head = {k: q.pop(k) for k in ("resourceType", "id")}
    return {**head, "language": "sv", "extension": [nrs], **q, "subjectType": ["Patient"], "item": items}


def intake() -> Resource:
    sites = [(s.key, s.ort) for s in directory().sites] + [("ingen-preferens", "Ingen särskild")]
    items = [
        group(
            "smarta",
            "Din smärta",
            [
                choice(
                    "smarta-duration",
                    "Hur länge har du haft din smärta?",
                    [
                        ("under-3-man", "Kortare än 3 månader"),
                        ("3-12-man", "3–12 månader"),
                        ("1-5-ar", "1–5 år"),
                        ("over-5-ar", "Mer än 5 år"),
                    ],
                ),
                free("smarta-lokalisation", "Var i kroppen har du ont? Beskriv med egna ord."),
                choice(
                    "smarta-hinder",
                    "Hur mycket hindrar smärtan dig i vardagen?",
                    [
                        ("inte-alls", "Inte alls"),
                        ("lite", "Lite"),
                        ("ganska-mycket", "Ganska mycket"),
                        ("mycket", "Mycket"),
                    ],
                ),
            ],
        ),
        group(
            "utredning",
            "Utredning och behandling",
            [
                choice(
                    "diagnos-besked", "Har vården gett dig en förklaring eller diagnos för din smärta?", YES_NO_UNSURE
                ),
                choice(
                    "utredning-pagar",
                    "Väntar du på undersökningar, provsvar eller bedömning hos en annan specialist för din smärta?",
                    YES_NO_DONT_KNOW,
                ),
                choice(
                    "behandling-planerad",
                    "Är någon operation eller annan medicinsk behandling av smärtan planerad eller under utprovning?",
                    YES_NO_DONT_KNOW,
                ),
            ],
        ),
        group(
            "maende",
            "Ditt psykiska mående",
            [
                choice(
                    "psykiatri-kontakt",
                    "Har du i dag kontakt med specialistpsykiatrin, eller väntar du på en bedömning där?",
                    YES_NO,
                ),
                free(
                    "psykiatri-kontakt-beskrivning",
                    "Beskriv kortfattat vad kontakten gäller.",
                    enable_when=[("psykiatri-kontakt", "ja")],
                ),
                choice(
                    "psykisk-paverkan",
                    "Hur mycket har oro, nedstämdhet eller sömnproblem påverkat din vardag den senaste månaden?",
                    [("inte-alls", "Inte alls"), ("lite", "Lite"), ("mattligt", "Måttligt"), ("mycket", "Mycket")],
                ),
                choice(
                    "beroende",
                    "Har du under det senaste året haft problem med alkohol, narkotika eller "
                    "beroendeframkallande läkemedel?",
                    [*YES_NO, ("vill-ej-svara", "Vill inte svara")],
                ),
            ],
        ),
        group(
            "arbete",
            "Arbete och försörjning",
            [
                choice("sysselsattning", "Vilket stämmer bäst in på dig just nu?", OCCUPATION),
                choice(
                    "sjukskrivning-langd",
                    "Hur länge har du varit sjukskriven i en sammanhängande period?",
                    [
                        ("under-3-man", "Kortare än 3 månader"),
                        ("3-12-man", "3–12 månader"),
                        ("over-12-man", "Mer än 12 månader"),
                    ],
                    enable_when=[("sysselsattning", "sjukskriven-deltid"), ("sysselsattning", "sjukskriven-heltid")],
                ),
            ],
        ),
        group(
            "grupp",
            "Behandling i grupp",
            [
                choice(
                    "grupp-delta",
                    "Kan du tänka dig att delta i behandling i grupp tillsammans med andra som har långvarig smärta?",
                    YES_NO_UNSURE,
                ),
                choice(
                    "grupp-narvaro",
                    "Kan du delta regelbundet, på bestämda tider, under programmets veckor?",
                    YES_NO_UNSURE,
                ),
                choice(
                    "mottagning-onskemal",
                    "Vilken mottagning skulle passa dig bäst om du erbjuds rehabilitering i primärvården?",
                    sites,
                    required=False,
                ),
                free(
                    "grupp-hinder",
                    "Finns det något som gör det svårt för dig att delta i grupp, till exempel "
                    "resor eller arbetstider?",
                ),
            ],
        ),
        display(
            "nrs-info",
            "Frågeformulären från Nationellt register över smärtrehabilitering (NRS) besvarar "
            "du separat, om mottagningen ber om det.",
        ),
    ]
    return _questionnaire(
        "mmr-intake",
        "MmrIntake",
        "Inför bedömning: multimodal smärtrehabilitering",
        "The patient's answers before the level assessment: pain duration and impact, and one group of items "
        "for each of the four MMRpv criteria (diagnosis/investigation, psychiatric comorbidity, work and sick "
        "leave, group treatment). The NRS baseline form is referenced by canonical, not copied.",
        "Gives the review the patient's own evidence for each criterion; questionnaire-criteria.yaml maps "
        "answers to criterion results.",
        _nrs_reference("baseline", "NRS formulär vid första besöket"),
        items,
    )


def follow_up() -> Resource:
    items = [
        choice("sysselsattning", "Vilket stämmer bäst in på dig just nu?", OCCUPATION),
        choice("smarta-jamfort", "Hur är din smärta i dag jämfört med innan rehabiliteringen?", COMPARED),
        choice("vardag-jamfort", "Hur klarar du din vardag i dag jämfört med innan rehabiliteringen?", COMPARED),
        choice(
            "strategier",
            "Använder du fortfarande det du lärde dig under rehabiliteringen?",
            [("ja-ofta", "Ja, ofta"), ("ibland", "Ibland"), ("nej", "Nej")],
        ),
        choice("vardkontakter", "Har du sökt vård för din smärta under de senaste 12 månaderna?", YES_NO),
        free(
            "vardkontakter-antal", "Ungefär hur många gånger?", type_="integer", enable_when=[("vardkontakter", "ja")]
        ),
        free("kommentar", "Vill du berätta något mer om hur det har gått?"),
        display(
            "nrs-info",
            "Frågeformuläret från Nationellt register över smärtrehabilitering (NRS) för "
            "uppföljningen efter 12 månader besvarar du separat.",
        ),
    ]
    return _questionnaire(
        "mmr-follow-up",
        "MmrFollowUp",
        "Uppföljning 12 månader efter multimodal smärtrehabilitering",
        "The patient's own account 12 months after the programme: work situation, pain and everyday life "
        "compared with before, use of what was learnt, and care sought. The NRS 12-month form is referenced "
        "by canonical, not copied.",
        f"The questionnaire of the follow-up Task ({base()}/StructureDefinition/mmr-follow-up-task).",
        _nrs_reference("twelve-months", "NRS formulär 12 månader efter avslutad rehabilitering"),
        items,
    )


def build() -> list[Resource]:
    return [intake(), follow_up()]
