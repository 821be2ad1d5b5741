"""The alert rules and the dashboard hold: ``promtool`` checks the rules and runs their unit tests,
every alert has a severity, an argued threshold and a runbook entry, and every metric the rules and
the dashboard name is one the adapter exports, read from a live /metrics after an end-to-end referral.

promtool is a real part like redis-server: without it this file fails, it never skips.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from adapter.fhir.client import FhirClient
from adapter.pipeline.state import State
from tests.support.referrals import new_referral, review_tasks
from tests.support.stack import Stack, wait_for
from tests.test_docs import anchors

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "ops" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "ops" / "prometheus" / "alerts.test.yml"
DASHBOARDS = sorted((ROOT / "ops" / "grafana" / "dashboards").glob("*.json"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"
SEVERITIES = {"critical", "warning"}
# Series Prometheus makes itself for every scrape target, not exported by the adapter.
SYNTHETIC = {"up"}
# Grafana's variables, as a duration PromQL parses (their value is Grafana's business).
GRAFANA_VARIABLES = re.compile(r"\$__(rate_interval|interval|range)\b")


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail(
            "promtool is missing: it comes with Debian's prometheus package "
            "(apt-get install -y --no-install-recommends prometheus; .ci/run installs it)"
        )
    return subprocess.run(["promtool", *map(str, args)], capture_output=True, text=True, timeout=120)


def alert_rules(path: Path = RULES) -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]


# ------------------------------------------------------------------ promtool


def test_promtool_finds_the_rules_valid() -> None:
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_fail_when_a_threshold_moves(tmp_path: Path) -> None:
    """The unit tests pin the thresholds: the heartbeat's 180 s moved to 100 s fails them."""
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    text = RULES.read_text(encoding="utf-8")
    assert "max(mmr_heartbeat_age_seconds) > 180" in text
    (tmp_path / RULES.name).write_text(
        text.replace("max(mmr_heartbeat_age_seconds) > 180", "max(mmr_heartbeat_age_seconds) > 100")
    )
    result = promtool("test", "rules", tmp_path / RULE_TESTS.name)
    assert result.returncode != 0 and "MmrNotificationsStopped" in result.stdout + result.stderr


def test_the_prometheus_configuration_is_valid(tmp_path: Path) -> None:
    """``promtool check config`` on the compose prometheus's configuration (its rule file included),
    with the token file it reads at run time present."""
    for source in (ROOT / "ops" / "prometheus").glob("*.yml"):
        shutil.copy(source, tmp_path / source.name)
    config = tmp_path / "prometheus.yml"
    token = tmp_path / "token"
    token.write_text("none")
    config.write_text(config.read_text(encoding="utf-8").replace("/tmp/mmr-operator-token", str(token)))
    result = promtool("check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------ every alert: severity, threshold, runbook, tests


def test_every_alert_has_a_severity_and_a_runbook_entry() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {
        "MmrNotificationsStopped",
        "MmrQueueBackingUp",
        "MmrQueueOldestEventOld",
        "MmrDeadLetters",
        "MmrTimersNotFiring",
        "MmrReconciliationOld",
        "MmrWorkerAbsent",
        "MmrFhirServerErrors",
        "MmrNotifyFailing",
        "MmrNotifyRefusing",
        "MmrRedisUnreachable",
        "MmrReviewsOverdue",
        "MmrNobodyResponsible",
    }
    entries = anchors(RUNBOOKS)
    for rule in rules:
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert (ROOT / path).resolve() == RUNBOOKS.resolve(), rule["alert"]
        assert anchor == rule["alert"].lower() and anchor in entries, f"{rule['alert']}: no runbook entry #{anchor}"
        assert rule["annotations"].get("summary"), rule["alert"]


def test_every_alert_has_its_threshold_argued_in_a_comment() -> None:
    lines = RULES.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines):
        if match := re.match(r"\s*- alert: (\w+)", line):
            comment = []
            for above in reversed(lines[:n]):
                if not above.strip().startswith("#"):
                    break
                comment.append(above)
            assert len(comment) >= 2, f"{match[1]}: no comment above it arguing its threshold"


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    assert tests["rule_files"] == [RULES.name]
    fired, quiet = set(), set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test") or ():
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names - fired == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"


# ------------------------------------------------------------------ the metric names, against a live /metrics


def metric_names(expression: str) -> set[str]:
    """The metric names an expression selects, from PromQL's own syntax tree (functions, label names,
    ``by``/``on`` clauses and durations are no metrics); Grafana's ``$__…`` variables read as durations."""
    tree = promql_parser.parse(GRAFANA_VARIABLES.sub("5m", expression))
    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            else:  # {__name__="..."}: only an exact name can be checked
                (name,) = [
                    m.value
                    for m in node.matchers.matchers
                    if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal
                ]
                names.add(name)
        return True

    promql_parser.walk(tree, visit)
    return names


def exported_names(metrics_text: str) -> set[str]:
    """The names a Prometheus scraping this text can select: each family's own (counters with
    ``_total``, histograms with ``_bucket``, ``_sum``, ``_count``), also those without samples yet."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
    suffixes["summary"] = ("", "_sum", "_count", "_created")
    names = set()
    for family in text_string_to_metric_families(metrics_text):
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def rule_expressions(path: Path = RULES) -> dict[str, str]:
    return {f"{path.name}: {r['alert']}": r["expr"] for r in alert_rules(path)}


def dashboard_expressions(paths: Iterable[Path] = DASHBOARDS) -> dict[str, str]:
    found = {}
    for path in paths:
        for panel in json.loads(path.read_text(encoding="utf-8"))["panels"]:
            for target in panel.get("targets") or ():
                found[f"{path.name}: {panel['title']} {target['refId']}"] = target["expr"]
    return found


def unknown_metrics(expressions: dict[str, str], exported: set[str]) -> dict[str, set[str]]:
    """Per expression, the metric names it uses that are not exported (Prometheus's own ``up`` aside)."""
    return {
        where: missing for where, expr in expressions.items() if (missing := metric_names(expr) - exported - SYNTHETIC)
    }


@pytest.fixture(scope="module")
def live_metrics(stack: Stack, fhir: FhirClient, state: State) -> str:
    """/metrics after an end-to-end referral, with what shows only once it happened: a notification
    refused, a heartbeat that came back, a reconciliation completed, and the flow's now-gauges as
    beat's flow job keeps them in Redis (``adapter/pipeline/flow_job.py``; from a figures dict built
    here: the flow store and its figures are tested on their own)."""
    from adapter.flow import gauges
    from adapter.pipeline import heartbeat
    from adapter.pipeline.worker import RECONCILE, app
    from tests.support.flow_figures import figures

    state.flow.set([sample.to_json() for sample in gauges.samples(figures())])

    sr = new_referral(fhir)  # notified by the server's Subscription, like an EHR's referral
    wait_for(lambda: review_tasks(fhir, sr["id"]), what="the review Task")
    assert stack.notify("POST", "", b"", token="not-the-token").status_code == 401
    written = heartbeat.write(fhir, state)
    wait_for(lambda: (state.heartbeat.last_delivered() or 0.0) >= written, what="the heartbeat's notification")
    asked = time.time()
    app.send_task(RECONCILE, kwargs={"requested_at": asked}, queue=stack.queue)
    wait_for(lambda: (state.reconciliation.last() or 0.0) > asked - 1, what="a reconciliation to complete")
    reply = httpx.get(f"{stack.api_url}/metrics", timeout=10)
    assert reply.status_code == 200
    return reply.text


@pytest.mark.e2e
def test_every_metric_the_rules_and_the_dashboard_name_is_exported(live_metrics: str) -> None:
    exported = exported_names(live_metrics)
    expressions = {**rule_expressions(), **dashboard_expressions()}
    assert len(DASHBOARDS) == 1 and len(expressions) > len(alert_rules())
    used = set().union(*map(metric_names, expressions.values()))
    assert {"mmr_heartbeat_age_seconds", "mmr_event_processing_seconds_bucket", "mmr_events_total"} <= used
    assert unknown_metrics(expressions, exported) == {}
    # Each one of them has samples after the run: none is only declared.
    sampled = {s.name for f in text_string_to_metric_families(live_metrics) for s in f.samples}
    assert used - SYNTHETIC - sampled == set()


@pytest.mark.e2e
def test_the_metric_check_names_a_rule_using_a_missing_metric(live_metrics: str, tmp_path: Path) -> None:
    """The same check on a rule file with a misspelt name and a gauge read as a counter fails, naming both."""
    text = RULES.read_text(encoding="utf-8")
    drifted = tmp_path / "alerts.yml"
    drifted.write_text(
        text.replace("max(mmr_heartbeat_age_seconds) > 180", "max(mmr_heartbeat_age_second) > 180").replace(
            "max(mmr_dead_letters) > 0", "max(rate(mmr_dead_letters_total[5m])) > 0"
        )
    )
    missing = unknown_metrics(rule_expressions(drifted), exported_names(live_metrics))
    assert missing == {
        "alerts.yml: MmrNotificationsStopped": {"mmr_heartbeat_age_second"},
        "alerts.yml: MmrDeadLetters": {"mmr_dead_letters_total"},
    }
