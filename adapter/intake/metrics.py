"""Prometheus metrics: the API's own, plus the worker's, which live in Redis so one scrape sees all."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from adapter.pipeline.state import LATENCY_BUCKETS, State


class IntakeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "mmr_notifications_received", "Notifications accepted, by shape", ["shape"], registry=registry
        )
        self.rejected = Counter(
            "mmr_notifications_rejected", "Notifications refused, by HTTP status", ["status"], registry=registry
        )
        self.accept_seconds = Histogram(
            "mmr_notify_seconds",
            "Time to accept a notification (until queued)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        )


class PipelineCollector(Collector):
    """Reads the worker's counters, queue depth and dead letters from Redis at scrape time."""

    def __init__(self, state: State, queue_depth: Callable[[], int]) -> None:
        self.state = state
        self.queue_depth = queue_depth

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        try:
            events, latency = self.state.metrics.events_and_latency()
            workflow = self.state.metrics.workflow_counts()
            depth, dlq = self.queue_depth(), self.state.dlq.size()
            due, reconciled = self.state.timers.due_count(datetime.now(UTC)), self.state.reconciliation.last()
            heartbeat_age = self.state.heartbeat.age(datetime.now(UTC).timestamp())
        except Exception:  # Redis down: /health says so; the scrape still answers
            return
        family = CounterMetricFamily("mmr_events", "Events by outcome and kind", labels=["outcome", "kind"])
        for field, value in sorted(events.items()):
            outcome, _, kind = field.partition("|")
            family.add_metric([outcome, kind], float(value))
        yield family
        counted = CounterMetricFamily(
            "mmr_workflow_events", "Workflow events, e.g. overdue reviews flagged", labels=["event"]
        )
        for name, value in sorted(workflow.items()):
            counted.add_metric([name], float(value))
        yield counted
        yield GaugeMetricFamily("mmr_queue_depth", "Events waiting on the queue", value=depth)
        yield GaugeMetricFamily("mmr_dead_letters", "Events parked in the dead-letter store", value=dlq)
        # Both say whether beat (and a worker) run: due timers pile up and reconciliation grows old.
        yield GaugeMetricFamily("mmr_timers_due", "Timers already due and not yet fired", value=due)
        if reconciled is not None:
            yield GaugeMetricFamily(
                "mmr_last_reconciliation_timestamp_seconds",
                "When the last completed reconciliation started (Unix time)",
                value=reconciled,
            )
        if heartbeat_age is not None:  # the dead-man's switch: grows when notifications stop arriving
            yield GaugeMetricFamily(
                "mmr_heartbeat_age_seconds",
                "Seconds since the newest heartbeat that came back as a notification was written",
                value=heartbeat_age,
            )
        buckets = [(str(le), float(latency.get(str(le), 0))) for le in LATENCY_BUCKETS]
        buckets.append(("+Inf", float(latency.get("+Inf", 0))))
        yield HistogramMetricFamily(
            "mmr_event_processing_seconds",
            "From notification received to effect written",
            buckets=buckets,
            sum_value=float(latency.get("sum", 0)),
        )
