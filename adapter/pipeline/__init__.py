"""The imperative shell: queue, worker, locks, de-duplication, dead letters, timers, reconciliation."""
