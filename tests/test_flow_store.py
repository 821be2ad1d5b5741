"""The flow store against a real FHIR server: journeys the real routine wrote, version by version.

A rebuild holds each journey's referral, every version of its Tasks (owners, holds, the decision),
its appointments (a moved and a patient-cancelled one), its programme and the directory; a refresh
after more changes ends exactly where a rebuild ends; the adapter's own tables (calendar,
task_state, directory) are the mappings'. Runs on the sandbox and on HAPI (MMR_TEST_FHIR=hapi).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from adapter.config import ConfigError, Settings, load_settings
from adapter.fhir.client import FhirClient
from adapter.flow import store
from adapter.mappings import directory, task_state_tables
from adapter.operations import flow
from adapter.polling import poll
from tests.support.journeys import HBG, LUND, Journey, by_name, install_directory, journeys, write

TODAY = date(2026, 12, 7)


@pytest.fixture(scope="module")
def written(fhir: FhirClient) -> list[Journey]:
    """The fixed journeys, whole, on the server."""
    install_directory(fhir)
    found = journeys()
    write(fhir, found)
    return found


def keyed(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    return con.execute(sql, params or []).fetchall()


def referral_rows(con: duckdb.DuckDBPyConnection, journeys_: list[Journey]) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every view table about these journeys (the server may hold other tests' referrals)."""
    ids = [j.referral for j in journeys_]
    out = {}
    for table in ("mmr_referral", "mmr_task_version", "mmr_appointment", "mmr_careplan"):
        order = ", ".join(store.columns(con, table))
        out[table] = keyed(con, f"SELECT * FROM {table} WHERE referral IN ? ORDER BY {order}", [ids])
    for table in ("mmr_organization", "mmr_practitioner_role", "mmr_location", "calendar", "task_state", "directory"):
        order = ", ".join(store.columns(con, table))
        out[table] = keyed(con, f"SELECT * FROM {table} ORDER BY {order}")
    return out


def test_a_rebuild_holds_every_journey_as_the_views_give_it(fhir: FhirClient, written: list[Journey]) -> None:
    con = store.open_store(":memory:")
    result = store.rebuild(con, fhir, TODAY)
    assert result.rebuilt and result.loaded["mmr_referral"] >= len(written)

    sv = by_name(written, "sv")
    referral = keyed(
        con, "SELECT identifier, status, performer, subject FROM mmr_referral WHERE referral = ?", [sv.referral]
    )
    assert referral == [(sv.key, "active", LUND, sv.patient)]
    (authored,) = keyed(
        con, "SELECT strftime(authored_on, '%Y-%m-%d %H:%M') FROM mmr_referral WHERE referral = ?", [sv.referral]
    )[0]
    assert authored == "2026-03-02 08:00"  # Stockholm time, as issued

    # the review Task, every version: recommended on arrival, decided by the reviewer, completed by the adapter
    review = sv.task("referral-review")["id"]
    versions = keyed(
        con,
        "SELECT version, kind, status, business_status, owner_type, decision, strftime(changed_at, '%m-%d %H:%M'), "
        "strftime(period_end, '%m-%d %H:%M') FROM mmr_task_version WHERE task = ? ORDER BY version",
        [review],
    )
    assert versions == [
        (1, "review", "received", "recommended", "PractitionerRole", None, "03-02 09:00", "03-05 16:00"),
        (2, "review", "received", "decided", "PractitionerRole", "MMRsv", "03-03 14:00", "03-05 16:00"),
        (3, "review", "completed", "decided", "PractitionerRole", "MMRsv", "03-03 14:01", "03-05 16:00"),
    ]
    kinds = {k for (k,) in keyed(con, "SELECT DISTINCT kind FROM mmr_task_version WHERE referral = ?", [sv.referral])}
    assert kinds == {"review", "booking"}

    # forwarded: the review at Lund, then the MMRpv unit's intake and booking; the clock stays the referral's
    pv = by_name(written, "pv")
    kinds = {k for (k,) in keyed(con, "SELECT DISTINCT kind FROM mmr_task_version WHERE referral = ?", [pv.referral])}
    assert kinds == {"review", "intake", "booking"}
    assert keyed(
        con,
        "SELECT decision FROM mmr_task_version WHERE referral = ? AND kind = 'review' AND status = 'completed'",
        [pv.referral],
    ) == [("MMRpv",)]
    # its appointment at a site counts for the site's unit (the Location's managing organisation); moved once
    pv_appointment = keyed(
        con,
        "SELECT status, location, organization, strftime(start, '%Y-%m-%d') FROM mmr_appointment WHERE referral = ?",
        [pv.referral],
    )
    assert pv_appointment == [("booked", HBG, directory().mmrpv.hsa_id, "2026-04-14")]
    assert keyed(
        con, "SELECT status, strftime(period_start, '%Y-%m-%d') FROM mmr_careplan WHERE referral = ?", [pv.referral]
    ) == [("active", "2026-04-14")]

    # the patient's own choice, recorded as the cookbook says
    chosen = by_name(written, "chosen")
    assert keyed(
        con, "SELECT status, waiting_reason, organization FROM mmr_appointment WHERE referral = ?", [chosen.referral]
    ) == [("cancelled", "patient-chosen", LUND)]

    # nobody owns the review after the clinic cleared its owner (the version it wrote: the session's
    # worker, when subscribed to this server, restores the owner in a later one)
    nobody = by_name(written, "nobody")
    cleared = keyed(
        con,
        "SELECT owner, owner_type FROM mmr_task_version WHERE referral = ? "
        "AND strftime(changed_at, '%m-%d %H:%M') = '03-09 15:00'",
        [nobody.referral],
    )
    assert cleared == [(None, None)]

    # the re-referral is the same patient's
    subjects = keyed(
        con,
        "SELECT DISTINCT subject FROM mmr_referral WHERE referral IN ?",
        [[by_name(written, "rejected").referral, by_name(written, "again").referral]],
    )
    assert len(subjects) == 1

    # the directory as setup installs it: a site's Location and its unit, a reviewer and her clinic
    assert keyed(con, "SELECT hsa_id, organization FROM mmr_location WHERE location = ?", [HBG]) == [
        (HBG, directory().mmrpv.hsa_id)
    ]
    reviewer = directory().clinics[1].reviewers[0].hsa_id
    assert keyed(con, "SELECT organization FROM mmr_practitioner_role WHERE role = ?", [reviewer]) == [(LUND,)]


def test_the_adapters_own_tables_are_the_mappings(fhir: FhirClient, written: list[Journey]) -> None:
    con = store.open_store(":memory:")
    store.rebuild(con, fhir, TODAY)
    working = dict(keyed(con, "SELECT day, working FROM calendar WHERE day BETWEEN '2026-04-02' AND '2026-04-07'"))
    assert working == {  # Easter 2026: Good Friday and Easter Monday off, the weekend between
        date(2026, 4, 2): True,
        date(2026, 4, 3): False,
        date(2026, 4, 4): False,
        date(2026, 4, 5): False,
        date(2026, 4, 6): False,
        date(2026, 4, 7): True,
    }
    assert keyed(con, "SELECT min(day), max(day) FROM calendar") == [(date(2015, 1, 1), date(2028, 12, 7))]
    rows = keyed(con, "SELECT kind, status, business_status, final, ends, waits_for FROM task_state")
    expected = sum(len(r.statuses) * len(r.business) for t in task_state_tables() for r in t.rows)
    assert len(rows) == expected
    assert ("review", "on-hold", "awaiting-patient", False, False, "questionnaire") in rows
    assert ("review", "rejected", "rejected", True, True, None) in rows
    d = directory()
    listed = keyed(con, "SELECT hsa_id, kind FROM directory ORDER BY ord")
    assert listed == [
        *((c.hsa_id, "clinic") for c in d.clinics),
        (d.mmrpv.hsa_id, "unit"),
        *((s.hsa_id, "site") for s in d.sites),
        (d.coordinator.hsa_id, "coordinator"),
    ]


def test_a_refresh_after_changes_ends_where_a_rebuild_ends(fhir: FhirClient, tmp_path: Path) -> None:
    install_directory(fhir)
    written = journeys()
    write(fhir, written, upto=-1)
    settings = load_settings(fhir_base_url=fhir.base_url, flow_db=tmp_path / "flow.duckdb")
    first = flow.refresh(settings, today=TODAY)  # no checkpoint yet: a rebuild
    assert first.rebuilt
    write(fhir, written, start=-1)  # each journey's last transaction: a fulfilled visit, a cancellation, ...
    # and one deletion (an Appointment nothing refers to: HAPI refuses to delete one a Task points at)
    fhir.delete("Appointment", by_name(written, "chosen").latest("Appointment")[0]["id"])
    second = flow.refresh(settings, today=TODAY)
    assert not second.rebuilt

    # The session's worker, subscribed to the shared server, may still be answering these journeys'
    # events (an owner restored, a reminder), between the refresh and the rebuild: so the two are
    # taken again, a refresh each time, until they agree. A refresh that misses a change never does.
    pair: list[dict[str, list[tuple[Any, ...]]]] = []

    def agree() -> bool:
        if pair:
            assert not flow.refresh(settings, today=TODAY).rebuilt
        fresh = store.open_store(":memory:")
        store.rebuild(fresh, fhir, TODAY)
        held = duckdb_at(settings.flow_path)
        try:
            pair[:] = [referral_rows(held, written), referral_rows(fresh, written)]
        finally:
            held.close()
        return pair[0] == pair[1]

    if not poll(agree, timeout=60, interval=1):
        assert pair[0] == pair[1]  # pytest's diff of the last pair
    rebuilt = pair[1]
    chosen = by_name(written, "chosen")
    assert not [r for r in rebuilt["mmr_appointment"] if r[1] == chosen.referral]
    sv = by_name(written, "sv")
    assert [r[2] for r in rebuilt["mmr_appointment"] if r[1] == sv.referral] == ["fulfilled"]


def test_a_refresh_reads_only_what_changed_since_its_checkpoint(fhir: FhirClient) -> None:
    install_directory(fhir)
    written = journeys()
    write(fhir, written, upto=-1)
    con = store.open_store(":memory:")
    first = store.rebuild(con, fhir, TODAY)
    write(fhir, written, start=-1)
    changed = sum(1 for j in written for r in j.transactions[-1].resources if r["resourceType"] == "Task")
    # no overlap: exactly the Task versions written since (and whatever else the session wrote meanwhile)
    second = store.refresh(con, fhir, TODAY, overlap=timedelta(0))
    assert changed <= second.loaded["mmr_task_version"] < first.loaded["mmr_task_version"]
    assert second.checkpoint > first.checkpoint


def duckdb_at(path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'Europe/Stockholm'")
    return con


def test_a_refresh_against_another_server_rebuilds(fhir: FhirClient, written: list[Journey]) -> None:
    con = store.open_store(":memory:")
    con.execute(
        "INSERT INTO flow_meta VALUES ('checkpoint', '2026-01-01T00:00:00+00:00'), ('server', 'http://elsewhere/fhir')"
    )
    con.execute("INSERT INTO mmr_referral (referral) VALUES ('from-elsewhere')")
    result = store.refresh(con, fhir, TODAY)
    assert result.rebuilt
    assert keyed(con, "SELECT count(*) FROM mmr_referral WHERE referral = 'from-elsewhere'") == [(0,)]
    assert store.meta(con)["server"] == fhir.base_url


def test_the_store_lives_in_the_state_directory_and_the_guarantee_may_only_be_shortened(tmp_path: Path) -> None:
    settings = load_settings(state_dir=tmp_path)
    assert settings.flow_path == tmp_path / "flow.duckdb" and settings.care_guarantee_days == 90
    assert load_settings(care_guarantee_days=60).care_guarantee_days == 60
    for wrong in (0, 91):
        with pytest.raises(ConfigError, match=r"^MMR_CARE_GUARANTEE_DAYS: .*1 to 90 days"):
            load_settings(care_guarantee_days=wrong)


def test_the_commands_refresh_reads_every_page(
    fhir: FhirClient, written: list[Journey], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``flow --rebuild`` (operations.flow.refresh) pages through every search as a rebuild with the
    session's client does: on HAPI a ``no-store`` search is answered synchronously, one page and no
    ``next`` link, which kept 100 of 10 000 referrals in the benchmark. Pages of 5 make it show on HAPI."""
    monkeypatch.setattr(store, "PAGE", 5)
    settings = Settings(fhir_base_url=fhir.base_url, state_dir=tmp_path)
    flow.refresh(settings, rebuild=True)
    con = duckdb.connect(str(settings.flow_path), read_only=True)
    try:
        held = {row[0] for row in con.execute("SELECT identifier FROM mmr_referral").fetchall()}
        appointments = {row[0] for row in con.execute("SELECT referral FROM mmr_appointment").fetchall()}
    finally:
        con.close()
    # Every journey, not the first page's five: the shared server holds other tests' referrals too,
    # and its worker may still be writing, so the check is what this module wrote, not a total.
    assert {j.key for j in written} <= held and len(held) > store.PAGE
    assert {j.referral for j in written if j.latest("Appointment")} <= appointments
