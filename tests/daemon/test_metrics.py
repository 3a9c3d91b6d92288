"""`GET /metrics` through `reconciler start` with the real Terraform: values checked after
real runs and requests, behind the token unless `metrics_token = false`."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from helpers import task_hcl, wait_for
from prometheus_client.parser import text_string_to_metric_families
from serverkit import daemon_process, wait_listening

MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "modules"
TOKEN = "metrics-token-1"


def fetch(port: int, path: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_after_real_runs(tmp_path: Path) -> None:
    shutil.copytree(MODULES / "services-file", tmp_path / "tasks" / "services-file")
    shutil.copytree(MODULES / "failing", tmp_path / "tasks" / "failing")
    (tmp_path / "tasks").mkdir(exist_ok=True)
    (tmp_path / "tasks" / "good.hcl").write_text(task_hcl("good", module="./services-file"))
    (tmp_path / "tasks" / "bad.hcl").write_text(task_hcl("bad", module="./failing"))
    extra = f'api_token = "{TOKEN}"\ndriver "terraform" {{\n  workers = 2\n}}\n'
    with daemon_process(tmp_path, extra) as (proc, port):
        wait_listening(port, proc)
        assert fetch(port, "/metrics")[0] == 401  # covered by the token

        def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            status, text = fetch(port, "/metrics", TOKEN)
            assert status == 200, text
            return samples(text)

        def ran(m: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> bool:
            good = m.get(("reconciler_runs_total", (("outcome", "success"), ("task", "good"))))
            bad = m.get(("reconciler_runs_total", (("outcome", "failure"), ("task", "bad"))))
            return good == 1 and bad == 1

        wait_for(lambda: ran(scraped()), timeout=120, what=(tmp_path / "daemon.log").read_text())
        status, body = fetch(port, "/v1/tasks", TOKEN)
        assert status == 200 and {t["name"] for t in json.loads(body)["tasks"]} == {"good", "bad"}
        m = scraped()
        assert m[("reconciler_run_duration_seconds_count", (("task", "good"),))] == 1
        assert m[("reconciler_run_duration_seconds_sum", (("task", "good"),))] > 0
        assert m[("reconciler_tasks", (("status", "successful"),))] == 1
        assert m[("reconciler_tasks", (("status", "errored"),))] == 1
        assert m[("reconciler_task_runs", (("state", "applied"),))] == 1
        key = (("code", "200"), ("method", "GET"), ("route", "/v1/tasks"))
        assert m[("reconciler_api_requests_total", key)] == 1
        refused = (("code", "401"), ("method", "GET"), ("route", "unmatched"))
        assert m[("reconciler_api_requests_total", refused)] >= 1  # the token came first
        passes = [
            v
            for (name, labels), v in m.items()
            if name == "reconciler_reconcile_duration_seconds_count"
        ]
        assert passes and passes[0] >= 1
        assert any(
            name == "reconciler_source_last_success_timestamp_seconds" and v > 1e9
            for (name, labels), v in m.items()
        )
        workers = {
            labels: v for (name, labels), v in m.items() if name == "reconciler_terraform_workers"
        }
        assert sum(workers.values()) == 2
        proc.terminate()
        assert proc.wait(30) == 0


def test_metrics_token_false_opens_only_metrics(tmp_path: Path) -> None:
    extra = f'api_token = "{TOKEN}"\nmetrics_token = false\n'
    with daemon_process(tmp_path, extra) as (proc, port):
        wait_listening(port, proc)
        status, text = fetch(port, "/metrics")
        assert status == 200 and "reconciler_tasks" in text
        assert fetch(port, "/v1/tasks")[0] == 401
        proc.terminate()
        assert proc.wait(30) == 0
