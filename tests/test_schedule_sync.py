"""`safetax schedule sync` through the real kfp.Client against a local HTTP server that speaks the
KFP v2beta1 REST API the client calls (healthz at construction, pipelines and versions, experiments,
recurring runs), with in-memory state and KFP's own limits: pages of at most two items, 6-field
cron only, max_concurrency 1-10, existing pipeline version and experiment."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from safetax.cli import main
from safetax.runner.schedules import ScheduleError, sync

API = "/apis/v2beta1"
REPO = Path(__file__).resolve().parents[1]
PAGE = 2  # the server's page size cap: every list the client makes spans pages


class FakeKFP:
    """In-memory KFP API state; ``requests`` logs (method, path, query, authorization header)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, list[str]], str | None]] = []
        self._ids = 0
        self._clock = datetime(2025, 1, 1, tzinfo=timezone.utc)

    def _next(self, prefix: str) -> tuple[str, str]:
        self._ids += 1
        self._clock += timedelta(minutes=1)
        return f"{prefix}-{self._ids}", self._clock.strftime("%Y-%m-%dT%H:%M:%SZ")

    def add_pipeline(self, name: str) -> str:
        pid, at = self._next("pipeline")
        self.pipelines[pid] = {"pipeline_id": pid, "display_name": name, "created_at": at}
        self.versions[pid] = []
        return pid

    def add_version(self, pipeline_id: str, name: str, spec: dict[str, Any] | None = None) -> str:
        """What an upload (the chart's registrar) does: a new version, newer than every other, with its compiled spec."""
        vid, at = self._next("version")
        self.versions[pipeline_id].append({"pipeline_id": pipeline_id, "pipeline_version_id": vid, "display_name": name,
                                           "created_at": at, "pipeline_spec": spec or {}})
        return vid

    def add_run(self, body: dict[str, Any]) -> dict[str, Any]:
        rid, at = self._next("run")
        mode = body.get("mode", "ENABLE")
        run = {**body, "recurring_run_id": rid, "created_at": at, "updated_at": at, "namespace": "",
               "max_concurrency": str(body.get("max_concurrency", 1)), "mode": mode,
               "status": "ENABLED" if mode == "ENABLE" else "DISABLED"}
        if not run.get("no_catchup"):
            run.pop("no_catchup", None)  # proto3 JSON leaves out a false bool (KFP's default: catch up)
        self.runs[rid] = run
        return run

    def changes(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path, _, _ in self.requests if method != "GET"]

    # --- the handlers: (status, body) ---

    def get(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        if path == f"{API}/healthz":
            return 200, {"multi_user": False, "pipeline_store": "database"}
        if path == f"{API}/pipelines":
            return 200, _page(list(self.pipelines.values()), query, "pipelines")
        if path.startswith(f"{API}/pipelines/") and path.endswith("/versions"):
            pid = path.split("/")[-2]
            if pid not in self.versions:
                return 404, {"code": 5, "message": f"pipeline {pid} not found"}
            listed = [{k: v for k, v in version.items() if k != "pipeline_spec"} for version in self.versions[pid]]
            return 200, _page(listed, query, "pipeline_versions")  # without the (large) specs
        if path.startswith(f"{API}/pipelines/") and "/versions/" in path:
            pid, vid = path.split("/")[-3], path.split("/")[-1]
            found = [v for v in self.versions.get(pid, []) if v["pipeline_version_id"] == vid]
            return (200, found[0]) if found else (404, {"code": 5, "message": f"pipeline version {vid} not found"})
        if path == f"{API}/experiments":
            return 200, _page(list(self.experiments.values()), query, "experiments")
        if path == f"{API}/recurringruns":
            runs = [r for r in self.runs.values() if r["experiment_id"] in query.get("experiment_id", [r["experiment_id"]])]
            return 200, _page(runs, query, "recurringRuns")  # the v2beta1 proto's json_name
        return 404, {"code": 5, "message": f"no route GET {path}"}

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if path == f"{API}/experiments":
            eid, at = self._next("experiment")
            self.experiments[eid] = {**body, "experiment_id": eid, "created_at": at, "storage_state": "AVAILABLE"}
            return 200, self.experiments[eid]
        if path == f"{API}/recurringruns":
            if problem := self._invalid(body):
                return 400, {"code": 3, "message": problem}
            return 200, self.add_run(body)
        return 404, {"code": 5, "message": f"no route POST {path}"}

    def _invalid(self, body: dict[str, Any]) -> str:
        cron = body.get("trigger", {}).get("cron_schedule", {}).get("cron", "")
        reference = body.get("pipeline_version_reference") or {}
        versions = self.versions.get(reference.get("pipeline_id", ""), [])
        if not body.get("display_name"):
            return "display name is required"
        if len(cron.split()) != 6:
            return f"cron {cron!r}: the server wants 6 fields"
        if not 1 <= int(body.get("max_concurrency", 1)) <= 10:
            return "The max concurrency of the job is out of range. Support 1-10."
        if not any(v["pipeline_version_id"] == reference.get("pipeline_version_id") for v in versions):
            return f"pipeline version {reference} not found"
        if body.get("experiment_id") not in self.experiments:
            return f"experiment {body.get('experiment_id')} not found"
        return ""

    def delete(self, path: str) -> tuple[int, Any]:
        rid = path.rsplit("/", 1)[-1]
        if path.startswith(f"{API}/recurringruns/") and self.runs.pop(rid, None):
            return 200, {}
        return 404, {"code": 5, "message": f"recurring run {rid} not found"}


def _page(items: list[dict[str, Any]], query: dict[str, list[str]], key: str) -> dict[str, Any]:
    """One page, filtered by the client's JSON filter (display_name EQUALS), at most PAGE items."""
    if "filter" in query:
        for predicate in json.loads(query["filter"][0]).get("predicates", []):
            value = predicate.get("string_value", predicate.get("stringValue"))
            items = [i for i in items if i.get(predicate["key"]) == value]
    start = int(query.get("page_token", ["0"])[0] or 0)
    size = min(int(query.get("page_size", [PAGE])[0]), PAGE)
    more = start + size < len(items)
    return {key: items[start:start + size], "total_size": len(items), "next_page_token": str(start + size) if more else ""}


def _handler(state: FakeKFP) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            with state.lock:
                state.requests.append((method, url.path, query, self.headers.get("Authorization")))
                status, answer = (state.get(url.path, query) if method == "GET" else
                                  state.post(url.path, body) if method == "POST" else state.delete(url.path))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's names)
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def do_DELETE(self) -> None:  # noqa: N802
            self._serve("DELETE")

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture()
def kfp_api() -> Iterator[tuple[FakeKFP, str]]:
    state = FakeKFP()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture()
def cluster(kfp_api: tuple[FakeKFP, str]) -> tuple[FakeKFP, str, str]:
    """A KFP with the audit pipeline registered twice (the newer version is "latest") and another pipeline."""
    state, host = kfp_api
    pid = state.add_pipeline("safetax-audit")
    state.add_version(pid, "safetax-audit-aaaa", compiled("audit"))
    state.add_version(pid, "safetax-audit-bbbb", compiled("audit"))
    other = state.add_pipeline("safetax-alignment")
    state.add_version(other, "safetax-alignment-cccc", compiled("alignment"))
    return state, host, pid


@functools.cache
def compiled(pipeline: str) -> dict[str, Any]:
    """A compiled pipeline of pipelines/ as KFP's API returns a version's spec: the PipelineSpec and the platform spec
    under `pipeline_spec` and `platform_spec` (the shape KFP stores a YAML of two documents in)."""
    pipeline_spec, platform_spec = yaml.safe_load_all((REPO / "pipelines" / f"{pipeline}.yaml").read_text())
    return {"pipeline_spec": pipeline_spec, "platform_spec": platform_spec}


def write(path: Path, *runs: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"recurringRuns": list(runs)}))
    return path


NIGHTLY = {"name": "nightly-7b", "cron": "0 2 * * *", "pipeline": "safetax-audit", "description": "nightly audit",
           "parameters": {"audit_name": "nightly-7b", "thresholds": {"min_safety_score": 0.8}, "checkpoints": []}}
WEEKLY = {"name": "weekly-14b", "cron": "0 0 3 * * MON", "pipeline": "safetax-audit", "version": "safetax-audit-aaaa",
          "maxConcurrency": 2, "enabled": False, "experiment": "weekly-audits", "parameters": {"profile": "weekly"}}
EXTRA = [{"name": f"extra-{i}", "cron": f"{i} * * * *", "pipeline": "safetax-alignment"} for i in range(3)]


def quiet(_: str) -> None:
    pass


def by_name(state: FakeKFP) -> dict[str, dict[str, Any]]:
    return {run["display_name"]: run for run in state.runs.values()}


def test_first_sync_creates_second_is_a_no_op(cluster: tuple[FakeKFP, str, str], tmp_path: Path) -> None:
    state, host, pid = cluster
    file = write(tmp_path / "s.yaml", NIGHTLY, WEEKLY, *EXTRA)
    first = sync(file, host=host, owner="prod", report=quiet)
    assert [d.spec.name for d in first.create] == ["nightly-7b", "weekly-14b", "extra-0", "extra-1", "extra-2"]
    runs = by_name(state)
    nightly, weekly = runs["nightly-7b"], runs["weekly-14b"]
    latest, pinned = (v["pipeline_version_id"] for v in reversed(state.versions[pid]))
    assert nightly["trigger"]["cron_schedule"]["cron"] == "0 0 2 * * *"  # 5 fields reach KFP as 6
    assert nightly["pipeline_version_reference"] == {"pipeline_id": pid, "pipeline_version_id": latest}
    assert nightly["runtime_config"]["parameters"] == NIGHTLY["parameters"]
    assert nightly["description"] == "nightly audit [managed-by: safetax/prod]"
    assert (nightly["mode"], nightly["max_concurrency"], nightly["no_catchup"]) == ("ENABLE", "1", True)
    assert weekly["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * MON"
    assert weekly["pipeline_version_reference"]["pipeline_version_id"] == pinned
    assert (weekly["mode"], weekly["max_concurrency"], weekly["description"]) == ("DISABLE", "2", "[managed-by: safetax/prod]")
    experiments = {e["experiment_id"]: e["display_name"] for e in state.experiments.values()}
    assert experiments[nightly["experiment_id"]] == "safetax-audits" and experiments[weekly["experiment_id"]] == "weekly-audits"
    assert len(experiments) == 2  # each created once

    state.requests.clear()
    second = sync(file, host=host, owner="prod", report=quiet)
    assert len(second.unchanged) == 5 and second.changes == 0
    assert state.changes() == []
    # Every list spanned pages: the client followed next_page_token.
    assert any(q.get("page_token") for m, p, q, _ in state.requests if p.endswith("/recurringruns"))


def test_changes_replace_removals_delete_and_foreign_runs_survive(cluster: tuple[FakeKFP, str, str], tmp_path: Path) -> None:
    state, host, pid = cluster
    file = write(tmp_path / "s.yaml", NIGHTLY, WEEKLY)
    sync(file, host=host, owner="prod", report=quiet)
    experiment = by_name(state)["nightly-7b"]["experiment_id"]
    version = state.versions[pid][-1]["pipeline_version_id"]
    reference = {"pipeline_id": pid, "pipeline_version_id": version}
    for name, description in (("hand-made", "made in the UI"), ("staging-nightly", "[managed-by: safetax/staging]")):
        state.add_run({"display_name": name, "description": description, "experiment_id": experiment,
                       "trigger": {"cron_schedule": {"cron": "0 0 5 * * *"}}, "pipeline_version_reference": reference})
    old_id = by_name(state)["nightly-7b"]["recurring_run_id"]
    lines: list[str] = []
    result = sync(write(file, {**NIGHTLY, "cron": "30 2 * * *"}), host=host, owner="prod", report=lines.append)
    assert [r.reasons for r in result.replace] == [("cron '0 0 2 * * *' -> '0 30 2 * * *'",)]
    assert [run.name for run, _ in result.delete] == ["weekly-14b"]
    runs = by_name(state)
    assert old_id not in state.runs and runs["nightly-7b"]["recurring_run_id"] != old_id
    assert runs["nightly-7b"]["trigger"]["cron_schedule"]["cron"] == "0 30 2 * * *"
    assert set(runs) == {"nightly-7b", "hand-made", "staging-nightly"}  # foreign runs untouched
    assert ("DELETE", f"{API}/recurringruns/{old_id}") in state.changes()
    assert lines[0].startswith("recurring runs managed by safetax/prod:")
    assert "  ~ replace   nightly-7b  (cron '0 0 2 * * *' -> '0 30 2 * * *')" in lines[0]
    assert any(line.startswith("replaced nightly-7b") for line in lines)

    # Another release's sync sees only its own runs: ours and the hand-made one stay.
    other = sync(write(tmp_path / "other.yaml"), host=host, owner="staging", report=quiet)
    assert [run.name for run, _ in other.delete] == ["staging-nightly"]
    assert set(by_name(state)) == {"nightly-7b", "hand-made"}


def test_a_name_taken_by_a_foreign_run_is_a_conflict(cluster: tuple[FakeKFP, str, str], tmp_path: Path) -> None:
    state, host, pid = cluster
    sync(write(tmp_path / "s.yaml", WEEKLY), host=host, owner="prod", report=quiet)
    weekly = by_name(state)["weekly-14b"]
    state.add_run({**{k: weekly[k] for k in ("experiment_id", "trigger", "pipeline_version_reference")},
                   "display_name": "nightly-7b", "description": "someone else's"})
    before = dict(state.runs)
    state.requests.clear()
    with pytest.raises(ScheduleError, match="(?s)1 conflict.*nothing was changed.*nightly-7b: a recurring run of that name exists"):
        sync(write(tmp_path / "s.yaml", NIGHTLY), host=host, owner="prod", report=quiet)
    assert state.runs == before and state.changes() == []  # weekly-14b, no longer listed, was not deleted either


def test_runs_without_no_catchup_are_replaced_and_catchup_is_per_run(cluster: tuple[FakeKFP, str, str], tmp_path: Path) -> None:
    """Runs created before no_catchup was set (KFP backfills every missed interval) are replaced once; `catchup: true`
    asks for the backfill."""
    state, host, pid = cluster
    file = write(tmp_path / "s.yaml", NIGHTLY)
    sync(file, host=host, owner="prod", report=quiet)
    old = by_name(state)["nightly-7b"]
    del old["no_catchup"]  # as a sync before no_catchup created it
    result = sync(file, host=host, owner="prod", report=quiet)
    assert [r.reasons for r in result.replace] == [("catchup true -> false",)]
    assert by_name(state)["nightly-7b"]["no_catchup"] is True and old["recurring_run_id"] not in state.runs
    assert sync(file, host=host, owner="prod", report=quiet).changes == 0
    result = sync(write(file, {**NIGHTLY, "catchup": True}), host=host, owner="prod", report=quiet)
    assert [r.reasons for r in result.replace] == [("catchup false -> true",)]
    assert "no_catchup" not in by_name(state)["nightly-7b"]


def test_dry_run_changes_nothing(cluster: tuple[FakeKFP, str, str], tmp_path: Path) -> None:
    state, host, _ = cluster
    lines: list[str] = []
    result = sync(write(tmp_path / "s.yaml", NIGHTLY, WEEKLY), host=host, owner="prod", dry_run=True, report=lines.append)
    assert len(result.create) == 2 and lines[-1] == "dry run: nothing changed"
    assert "experiment safetax-audits" in lines[0]
    assert state.runs == {} and state.experiments == {} and state.changes() == []


def test_latest_follows_a_new_version_pinned_does_not(cluster: tuple[FakeKFP, str, str], tmp_path: Path) -> None:
    state, host, pid = cluster
    file = write(tmp_path / "s.yaml", NIGHTLY, WEEKLY)
    sync(file, host=host, owner="prod", report=quiet)
    pinned = by_name(state)["weekly-14b"]["recurring_run_id"]
    new_version = state.add_version(pid, "safetax-audit-dddd")  # the registrar uploads a new spec
    result = sync(file, host=host, owner="prod", report=quiet)
    assert [r.desired.spec.name for r in result.replace] == ["nightly-7b"]
    assert result.replace[0].reasons[0].endswith("-> safetax-audit-dddd")
    assert by_name(state)["nightly-7b"]["pipeline_version_reference"]["pipeline_version_id"] == new_version
    assert by_name(state)["weekly-14b"]["recurring_run_id"] == pinned  # unchanged


def test_unknown_pipeline_or_version_lists_what_exists(cluster: tuple[FakeKFP, str, str], tmp_path: Path) -> None:
    state, host, _ = cluster
    file = write(tmp_path / "s.yaml", {**NIGHTLY, "pipeline": "safetax-audits"}, {**WEEKLY, "version": "v9"})
    with pytest.raises(ScheduleError) as info:
        sync(file, host=host, report=quiet)
    message = str(info.value)
    assert "nightly-7b: pipeline 'safetax-audits' not found; pipelines: ['safetax-alignment', 'safetax-audit']" in message
    assert "weekly-14b: pipeline 'safetax-audit' has no version 'v9'; newest versions: ['safetax-audit-bbbb', 'safetax-audit-aaaa']" in message
    assert state.changes() == []


def test_parameters_the_pipeline_does_not_take_are_rejected_before_any_change(cluster: tuple[FakeKFP, str, str],
                                                                              tmp_path: Path) -> None:
    """Checked against the root inputs of the version each run would start (its compiled spec, from KFP)."""
    state, host, _ = cluster
    typo = {**NIGHTLY, "parameters": {**NIGHTLY["parameters"], "judge_batch_size": 16}}
    alignment = {**EXTRA[0], "parameters": {"store_uri": "s3://b/runs", "audit_name": "x"}}
    with pytest.raises(ScheduleError) as info:
        sync(write(tmp_path / "s.yaml", typo, WEEKLY, alignment), host=host, owner="prod", report=quiet)
    message = str(info.value)
    assert "nightly-7b: parameter(s) ['judge_batch_size'] are not inputs of pipeline 'safetax-audit' version " \
           "'safetax-audit-bbbb'" in message
    assert "'generation_batch_size'" in message and "'store_uri'" in message  # the allowed names
    assert "extra-0: parameter(s) ['audit_name'] are not inputs of pipeline 'safetax-alignment'" in message
    assert "weekly-14b" not in message  # `profile` is an input of safetax-audit
    assert state.changes() == []  # nothing created or deleted
    fixed = {**NIGHTLY, "parameters": {**NIGHTLY["parameters"], "generation_batch_size": 16}}
    assert len(sync(write(tmp_path / "s.yaml", fixed), host=host, owner="prod", report=quiet).create) == 1


def test_tokens_are_sent(kfp_api: tuple[FakeKFP, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state, host = kfp_api
    file = write(tmp_path / "s.yaml")
    sync(file, host=host, existing_token="given", report=quiet)
    assert {auth for *_, auth in state.requests} == {"Bearer given"}
    # In a pod: the projected service-account token, re-read before every request.
    token = tmp_path / "token"
    token.write_text("projected")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    state.requests.clear()
    sync(file, host=host, report=quiet)
    assert {auth for *_, auth in state.requests} == {"Bearer projected"}
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "absent"))
    state.requests.clear()
    sync(file, host=host, report=quiet)
    assert {auth for *_, auth in state.requests} == {None}


def test_cli(cluster: tuple[FakeKFP, str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state, host, _ = cluster
    file = write(tmp_path / "s.yaml", NIGHTLY)
    main(["schedule", "sync", "--file", str(file), "--host", host, "--owner", "prod", "--dry-run"])
    out = capsys.readouterr().out
    assert "+ create    nightly-7b  [0 0 2 * * *] safetax-audit@safetax-audit-bbbb (latest)" in out
    assert "dry run: nothing changed" in out and not state.runs
    main(["schedule", "sync", "--file", str(file), "--host", host, "--owner", "prod"])
    assert "created nightly-7b (run-" in capsys.readouterr().out and list(by_name(state)) == ["nightly-7b"]
    main(["schedule", "sync", "--file", str(file), "--host", host, "--owner", "prod"])
    assert "= unchanged nightly-7b" in capsys.readouterr().out


def test_cli_rejects_a_bad_file_before_contacting_kfp(kfp_api: tuple[FakeKFP, str], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    state, host = kfp_api
    file = write(tmp_path / "s.yaml", {**NIGHTLY, "cron": "0 25 * * *"}, {**WEEKLY, "maxConcurrency": 0})
    with pytest.raises(SystemExit) as info:
        main(["schedule", "sync", "--file", str(file), "--host", host])
    message = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in message
    assert message.startswith(f"safetax schedule sync: invalid schedules file {file} (2 problem(s))")
    assert "`recurringRuns[0] ('nightly-7b').cron` '0 25 * * *' is not a valid cron: field 2 of 5 (hour): 25 is out of range 0-23" in message
    assert "`recurringRuns[1] ('weekly-14b').maxConcurrency` must be an integer in [1, 10]" in message
    with pytest.raises(SystemExit, match="2"):
        main(["schedule", "sync", "--file", str(write(file, NIGHTLY)), "--host", host, "--owner", "Bad Owner"])
    assert "`owner` must be a Helm release name" in capsys.readouterr().err
    assert state.requests == []


def test_unreachable_kfp_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SystemExit, match="2"):
        main(["schedule", "sync", "--file", str(write(tmp_path / "s.yaml", NIGHTLY)), "--host", f"http://127.0.0.1:{port}"])
    assert f"cannot reach the KFP API at http://127.0.0.1:{port}" in capsys.readouterr().err


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["schedule", "sync", "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and "usage: safetax schedule sync" in out
    for option in ("--file", "--host", "--owner", "--namespace", "--dry-run"):
        assert option in out


def _chart_job(values: dict[str, Any], release: str, job_suffix: str = "-schedule-sync") -> tuple[list[str], str]:
    """A schedule Job's command line and the ConfigMap file it reads (its --file), as Helm renders them."""
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk (the [test] extra) renders the chart")
    with helm.Chart.load(str(Path(__file__).resolve().parents[1] / "helm" / "safetax")) as chart:
        # The NetworkPolicy off: it needs the API server's address, which an offline render cannot look up.
        offline = {**values, "networkPolicy": {**values.get("networkPolicy", {}), "enabled": False}}
        manifests = chart.render(offline, name=release, namespace="kubeflow", is_install=True)
    docs = [doc for name, text in manifests.items() if not name.endswith("NOTES.txt") for doc in yaml.safe_load_all(text) if doc]
    job = next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"].endswith(job_suffix))
    configmap = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-schedules"))
    container = job["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    mount = Path(args[args.index("--file") + 1])
    assert mount.parent == Path("/etc/safetax-schedules")
    return container["command"] + args, configmap["data"][mount.name]


def test_the_charts_job_keeps_kfp_in_line_with_audits(cluster: tuple[FakeKFP, str, str], tmp_path: Path) -> None:
    """The chart's exact sync command, against the KFP API: install with two audits, then remove them all."""
    state, host, pid = cluster
    file = tmp_path / "schedules.yaml"

    def run_job(values: dict[str, Any], job_suffix: str = "-schedule-sync") -> None:
        command, schedules = _chart_job(values, release="audits-prod", job_suffix=job_suffix)
        file.write_text(schedules)
        assert command[:3] == ["safetax", "schedule", "sync"]
        args = command[1:]
        args[args.index("--file") + 1] = str(file)
        args[args.index("--host") + 1] = host
        main(args)

    values = yaml.safe_load((Path(__file__).resolve().parents[1] / "helm" / "safetax" / "ci" / "audits-values.yaml").read_text())
    run_job(values)
    runs = by_name(state)
    assert set(runs) == {"nightly-7b", "weekly-14b"}
    assert runs["nightly-7b"]["description"] == "safetax audit nightly-7b [managed-by: safetax/audits-prod]"
    assert runs["nightly-7b"]["runtime_config"]["parameters"]["audit_schedule"] == "0 2 * * *"
    assert runs["weekly-14b"]["trigger"]["cron_schedule"]["cron"] == "0 30 3 * * MON" and runs["weekly-14b"]["mode"] == "DISABLE"
    assert runs["nightly-7b"]["no_catchup"] is True  # auditDefaults.catchup: false
    assert "no_catchup" not in runs["weekly-14b"]  # `catchup: true`: KFP backfills missed weeks
    run_job({})  # `audits: []`: the Job still runs and deletes the release's runs
    assert state.runs == {}


def test_the_charts_uninstall_hook_deletes_the_releases_runs_only(cluster: tuple[FakeKFP, str, str], tmp_path: Path) -> None:
    """`helm uninstall` runs the pre-delete cleanup Job: the release's recurring runs go, other owners' and hand-made ones stay."""
    state, host, _ = cluster
    values = yaml.safe_load((Path(__file__).resolve().parents[1] / "helm" / "safetax" / "ci" / "audits-values.yaml").read_text())
    file = tmp_path / "schedules.yaml"

    def run_job(release: str, job_suffix: str) -> None:
        command, schedules = _chart_job(values, release=release, job_suffix=job_suffix)
        file.write_text(schedules)
        args = command[1:]
        args[args.index("--file") + 1] = str(file)
        args[args.index("--host") + 1] = host
        main(args)

    run_job("audits-prod", "-schedule-sync")
    other = sync(write(tmp_path / "other.yaml", {**NIGHTLY, "name": "staging-nightly"}), host=host, owner="staging", report=quiet)
    assert len(other.create) == 1
    weekly = by_name(state)["weekly-14b"]
    state.add_run({**{k: weekly[k] for k in ("experiment_id", "trigger", "pipeline_version_reference")},
                   "display_name": "hand-made", "description": "made in the UI"})
    run_job("audits-prod", "-schedule-cleanup")
    assert set(by_name(state)) == {"staging-nightly", "hand-made"}
