"""Prometheus metrics: the API's own, plus the worker's, which live in Redis so one scrape sees all."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from adapter.flow import gauges
from adapter.pipeline.state import ALIVE_WITHIN, LATENCY_BUCKETS, State


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


# (when the oldest queued event was received, messages taken by workers and not yet acknowledged)
QueueView = Callable[[], tuple[float | None, int]]


class PipelineCollector(Collector):
    """Reads the worker's counters, queue depth and dead letters from Redis at scrape time.

    Everything about the workers is read here rather than pushed by them: a scrape costs a few Redis
    commands, an event none (its counters ride on :meth:`State.finish_event`'s round trip).
    ``mmr_redis_up`` is always there, 0 when Redis did not answer this scrape, so an alert can say
    "Redis unreachable" instead of every other series just vanishing.
    """

    def __init__(
        self,
        state: State,
        queue_depth: Callable[[], int],
        queue_view: QueueView | None = None,
        *,
        workers_within: float = ALIVE_WITHIN,
    ) -> None:
        self.state = state
        self.queue_depth = queue_depth
        self.queue_view = queue_view
        self.workers_within = workers_within

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        try:
            now = datetime.now(UTC)
            events, latency = self.state.metrics.events_and_latency()
            workflow = self.state.metrics.workflow_counts()
            fhir_failures = self.state.metrics.fhir_failures()
            depth, dlq = self.queue_depth(), self.state.dlq.size()
            oldest, taken = self.queue_view() if self.queue_view else (None, None)
            due, reconciled = self.state.timers.due_count(now), self.state.reconciliation.last()
            due_age = self.state.timers.oldest_due_age(now)
            heartbeat_age = self.state.heartbeat.age(now.timestamp())
            workers = self.state.workers.count(now.timestamp(), self.workers_within)
            flow = [gauges.Sample.from_json(row) for row in self.state.flow.rows()]
        except Exception:  # Redis down: /health says so; the scrape still answers, and says so too
            yield GaugeMetricFamily("mmr_redis_up", "1 if Redis answered this scrape, else 0", value=0)
            return
        yield GaugeMetricFamily("mmr_redis_up", "1 if Redis answered this scrape, else 0", value=1)
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
        failed = CounterMetricFamily(
            "mmr_fhir_failures",
            "Event attempts the FHIR server failed, by its answer: none (unreachable, timed out), 4xx, 5xx",
            labels=["answer"],
        )
        for answer in ("none", "4xx", "5xx"):  # always all three: rate() needs the series before the first failure
            failed.add_metric([answer], float(fhir_failures.get(answer, 0)))
        yield failed
        yield GaugeMetricFamily("mmr_queue_depth", "Events waiting on the queue", value=depth)
        if taken is not None:
            yield GaugeMetricFamily(
                "mmr_events_in_progress",
                "Messages workers have taken and not yet finished (processing, or a retry held until its countdown)",
                value=taken,
            )
            yield GaugeMetricFamily(
                "mmr_queue_oldest_age_seconds",
                "Seconds since the oldest event still on the queue was received (0: the queue is empty)",
                value=max(now.timestamp() - oldest, 0.0) if oldest is not None else 0.0,
            )
        yield GaugeMetricFamily(
            "mmr_workers_alive", f"Worker processes heard from in the last {self.workers_within:g} s", value=workers
        )
        yield GaugeMetricFamily("mmr_dead_letters", "Events parked in the dead-letter store", value=dlq)
        # Both say whether beat (and a worker) run: due timers pile up and reconciliation grows old.
        yield GaugeMetricFamily("mmr_timers_due", "Timers already due and not yet fired", value=due)
        yield GaugeMetricFamily(
            "mmr_timers_oldest_due_age_seconds",
            "Seconds the longest-waiting due timer has been due (0: none due); what check-scheduler checks",
            value=due_age,
        )
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
        # The flow's now-figures, as beat last computed them from the flow store (absent before its first run).
        yield from gauges.families(flow)
        buckets = [(str(le), float(latency.get(str(le), 0))) for le in LATENCY_BUCKETS]
        buckets.append(("+Inf", float(latency.get("+Inf", 0))))
        yield HistogramMetricFamily(
            "mmr_event_processing_seconds",
            "From notification received to effect written",
            buckets=buckets,
            sum_value=float(latency.get("sum", 0)),
        )
