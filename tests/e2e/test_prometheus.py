"""The service under a real Prometheus (Debian's package, see tests/prometheus.py): promtool
accepts the alert rules, the example configuration, every dashboard query and a real scrape's
exposition; a Prometheus on loopback scrapes two replicas, evaluates the alert rules and answers
the dashboard's queries, a ``histogram_quantile`` of the HTTP latencies among them.

Without the binaries these tests skip, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx

from app.settings import Settings
from tests import deploy_files, prometheus
from tests.api.helpers import (
    create_workflow,
    doubler,
    flaky_endpoint,
    linear,
    serving,
    start_run,
    wait_run,
)
from tests.e2e import live
from tests.providers import openai_server

HTTP_P99 = (
    "histogram_quantile(0.99, sum by (le) (rate(oxify_http_request_duration_seconds_bucket[1m])))"
)
NOTHING = linear({"id": "start", "type": "start"}, {"id": "end", "type": "end"}, name="nothing")
RUN_STARTS = 'oxify_http_requests_total{route="/v1/workflows/{workflow_id}/executions"}'


async def test_promtool_accepts_the_alert_rules(prometheus_bin: Path) -> None:
    code, output = await prometheus.promtool(
        prometheus_bin, "check", "rules", str(deploy_files.ALERTS)
    )
    assert code == 0, output
    assert f"SUCCESS: {len(deploy_files.alert_rules())} rules found" in output


SCRAPE_KEY_FILE = "/run/secrets/oxify_admin_key"


async def test_promtool_accepts_the_example_config(prometheus_bin: Path, tmp_path: Path) -> None:
    # promtool reads the scrape key's file: the one compose mounts, here a stand-in.
    key_file = tmp_path / "oxify_key"
    key_file.write_text("oxify_key\n")
    text = deploy_files.EXAMPLE_CONFIG.read_text()
    assert SCRAPE_KEY_FILE in text
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace(SCRAPE_KEY_FILE, str(key_file)))
    (tmp_path / "alerts.yml").write_text(deploy_files.ALERTS.read_text())
    code, output = await prometheus.promtool(prometheus_bin, "check", "config", str(config))
    assert code == 0, output


async def test_promtool_parses_every_dashboard_query(prometheus_bin: Path, tmp_path: Path) -> None:
    """Each query becomes a recording rule: ``check rules`` parses its PromQL."""
    exprs = [deploy_files.as_promql(expr) for expr in deploy_files.dashboard_exprs()]
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    rule_file = tmp_path / "dashboard.yml"
    rule_file.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    code, output = await prometheus.promtool(prometheus_bin, "check", "rules", str(rule_file))
    assert code == 0, output
    assert f"SUCCESS: {len(rules)} rules found" in output


def busy_run(llm_url: str, flaky_url: str) -> dict[str, Any]:
    """A streamed LLM call, an HTTP call retried once, then a failure: many metrics move."""
    llm = {"provider": "openai", "base_url": llm_url, "model": "gpt-4o-mini", "prompt": "hi"}
    retry = {"max_retries": 2, "initial_delay_ms": 1, "max_delay_ms": 1}
    return linear(
        {"id": "start", "type": "start"},
        {"id": "ask", "type": "llm", "config": {**llm, "stream": True}},
        {"id": "fetch", "type": "http", "config": {"url": flaky_url}, "retry": retry},
        {"id": "stop", "type": "fail", "config": {"message": "stop here"}},
        name="busy",
    )


async def test_promtool_has_nothing_to_say_about_the_exposition_after_runs(
    prometheus_bin: Path, pg_database_url: str
) -> None:
    async with (
        openai_server() as llm,
        flaky_endpoint(1) as flaky_url,
        serving(pg_database_url, shutdown_grace_s=2.0) as client,
    ):
        doubled = await start_run(
            client, await create_workflow(client, doubler()), {"inputs": {"n": 2}}
        )
        assert (await wait_run(client, doubled["id"]))["status"] == "completed"
        busy = await start_run(client, await create_workflow(client, busy_run(llm.url, flaky_url)))
        assert (await wait_run(client, busy["id"]))["status"] == "failed"
        exposition = (await client.get("/metrics")).content
    assert b"oxify_runs_finished_total" in exposition
    checked = await prometheus.promtool(prometheus_bin, "check", "metrics", stdin=exposition)
    assert checked == (0, "")


async def test_prometheus_scrapes_two_replicas(
    prometheus_bin: Path, fresh_pg_url: str, tmp_path: Path
) -> None:
    """Two replicas (two apps on real uvicorns in this process, each with its registry; in
    processes of their own, their start-up would dominate the test's time)."""
    async with (
        live.serve(replica_settings(fresh_pg_url, "r0")) as r0,
        live.serve(replica_settings(fresh_pg_url, "r1")) as r1,
    ):
        targets = [replica.url.removeprefix("http://") for replica in (r0, r1)]
        async with prometheus.serving(
            prometheus_bin, tmp_path, targets, [deploy_files.ALERTS]
        ) as server:
            for replica in (r0, r1):
                async with httpx.AsyncClient(base_url=replica.url, timeout=10) as client:
                    await wait_run(client, await live.start_run(client, NOTHING))

            await server.until('count(up{job="oxify"} == 1)', lambda r: prometheus.scalar(r) == 2)
            by_replica = f"count(count by (instance) ({RUN_STARTS}))"
            await server.until(by_replica, lambda r: prometheus.scalar(r) == 2)
            p99 = await server.until(HTTP_P99, lambda r: r != [] and finite(r))
            assert 0 < (prometheus.scalar(p99) or 0) <= 60  # seconds: the highest finite bucket

            for expr in deploy_files.dashboard_exprs():
                await server.query(deploy_files.as_promql(expr))  # answers, with no error
            evaluated = await server.rules_once(lambda rule: rule["health"] != "unknown")
            assert {rule["name"]: rule["health"] for rule in evaluated} == {
                rule["alert"]: "ok" for rule in deploy_files.alert_rules()
            }


def replica_settings(database_url: str, replica_id: str) -> Settings:
    return Settings(database_url=database_url, replica_id=replica_id, shutdown_grace_s=2)


def finite(result: list[dict[str, Any]]) -> bool:
    return math.isfinite(float(result[0]["value"][1]))
