"""The work of ``mmr-adapter flow``, without printing: bring the flow store up to date from the FHIR server.

The store (``adapter/flow/store.py``) is a cache of the FHIR record; this is the shell around it:
the settings say which server and which file, the clock says which days the calendar needs.
"""

from __future__ import annotations

from datetime import date, datetime

from adapter.config import Settings
from adapter.flow import store
from adapter.wiring import fhir_client


def refresh(settings: Settings, rebuild: bool = False, today: date | None = None) -> store.Result:
    """Read what changed on the server since the store's checkpoint (everything with ``rebuild``, or
    when the store has no checkpoint or one of another server) into ``settings.flow_path``."""
    con = store.open_store(settings.flow_path)
    try:
        # fresh: past HAPI's 60 s search cache, or a refresh would miss what changed just now
        with fhir_client(settings, fresh=True) as client:
            day = today or datetime.now().astimezone().date()
            return store.rebuild(con, client, day) if rebuild else store.refresh(con, client, day)
    finally:
        con.close()
