"""``mmr-adapter dlq replay``: put parked events back on the queue, without printing."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from adapter.pipeline.envelope import Envelope
from adapter.pipeline.state import State
from adapter.pipeline.worker import enqueue


def replay_dead_letters(state: State, ids: Iterable[str]) -> Iterator[tuple[str, bool]]:
    """Take each entry out of the dead-letter store and queue its event again.

    Yields each id with whether it was there (it may never have been, or another replay took it
    first), one at a time, so the caller reports each as it happens.
    """
    for entry_id in ids:
        entry = state.dlq.take(entry_id)
        if entry is not None:
            enqueue(Envelope.from_dict(entry["envelope"]))
        yield entry_id, entry is not None
