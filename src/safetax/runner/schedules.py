"""`safetax schedule sync`: make a KFP's recurring runs match a schedules file, through the real kfp Client.

Authentication (kfp 2.17): ``kfp.Client(host=...)`` with an explicit host sends no credentials of its
own; only ``kfp.Client()`` without a host, inside a cluster, reads the projected service-account
token. So :func:`kfp_client` passes ``existing_token`` when given, else, when the token file exists
(``$KF_PIPELINES_SA_TOKEN_PATH``, default ``/var/run/secrets/kubeflow/pipelines/token``: a projected
token with audience ``pipelines.kubeflow.org``, which multi-user KFP requires),
``ServiceAccountTokenVolumeCredentials``, which re-reads the file before every request as the
kubelet rotates it. Standalone (single-user) KFP needs neither.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from safetax.schedules import (DEFAULT_OWNER, DesiredRun, ExistingRun, Plan, RecurringRun, check_owner, load_schedules,
                               plan, root_inputs, unknown_parameters)

log = logging.getLogger(__name__)
TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"  # kfp.client.KF_PIPELINES_SA_TOKEN_ENV
DEFAULT_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"  # kfp.client.KF_PIPELINES_SA_TOKEN_PATH
PAGE_SIZE = 100


class ScheduleError(RuntimeError):
    """The KFP side of a sync failed: an unknown pipeline or version, a conflict, an API error."""


def kfp_client(host: str | None, existing_token: str | None = None) -> Any:
    """A ``kfp.Client`` for ``host`` (None: kfp's own discovery), authenticated as the module docstring says."""
    import kfp
    from kfp.client import ServiceAccountTokenVolumeCredentials

    token_path = os.environ.get(TOKEN_PATH_ENV) or DEFAULT_TOKEN_PATH
    kwargs: dict[str, Any] = {}
    if existing_token:
        kwargs["existing_token"] = existing_token
    elif host and Path(token_path).is_file():
        kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(path=token_path)
        log.info("authenticating with the service-account token %s", token_path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*only works with Kubeflow Pipeline.*")
        return kfp.Client(host=host, **kwargs)


def _pages(list_page: Callable[[str], Any], items: str) -> Iterator[Any]:
    """Every item of a paged KFP list call (``list_page(page_token)``)."""
    token = ""
    while True:
        response = list_page(token)
        yield from getattr(response, items) or []
        token = response.next_page_token or ""
        if not token:
            return


def list_recurring_runs(client: Any, namespace: str | None = None) -> list[ExistingRun]:
    """Every recurring run (all experiments) in ``namespace`` (None: all the API shows; single-user KFP)."""
    runs = _pages(lambda t: client.list_recurring_runs(page_token=t, page_size=PAGE_SIZE, namespace=namespace),
                  "recurring_runs")
    return [_existing(run) for run in runs]


def _existing(run: Any) -> ExistingRun:
    cron_schedule = run.trigger.cron_schedule if run.trigger else None
    reference = run.pipeline_version_reference
    if run.mode in ("ENABLE", "DISABLE"):
        enabled = run.mode == "ENABLE"
    else:
        enabled = run.status != "DISABLED"
    return ExistingRun(
        name=run.display_name or "", id=run.recurring_run_id, cron=(cron_schedule.cron or "") if cron_schedule else "",
        pipeline_id=(reference.pipeline_id or "") if reference else "",
        version_id=(reference.pipeline_version_id or "") if reference else (run.pipeline_version_id or ""),
        parameters=dict((run.runtime_config.parameters or {}) if run.runtime_config else {}),
        max_concurrency=int(run.max_concurrency or 1), enabled=enabled, description=run.description or "",
        experiment_id=run.experiment_id or "", no_catchup=bool(run.no_catchup))  # proto3 JSON omits a false no_catchup


def resolve(client: Any, runs: list[RecurringRun], namespace: str | None = None) -> list[DesiredRun]:
    """Resolve each run's pipeline, version ("latest": the newest by created_at) and experiment to ids.

    A missing experiment resolves to "" (created by :func:`apply`); an unknown pipeline or version, or a parameter
    that is not a root input of the version's compiled spec, is a :class:`ScheduleError` naming the entry and listing
    what exists, for every entry at once.
    """
    pipelines: dict[str, list[Any]] = {}
    for scope in dict.fromkeys([None, namespace]):  # shared pipelines, then the namespace's own
        for p in _pages(lambda t: client.list_pipelines(page_token=t, page_size=PAGE_SIZE, namespace=scope), "pipelines"):
            known = pipelines.setdefault(p.display_name or p.name, [])
            if all(k.pipeline_id != p.pipeline_id for k in known):
                known.append(p)
    experiments = {e.display_name: e.experiment_id for e in _pages(
        lambda t: client.list_experiments(page_token=t, page_size=PAGE_SIZE, namespace=namespace), "experiments")}
    versions: dict[str, list[Any]] = {}
    specs: dict[str, Any] = {}
    errors, resolved = [], []
    for run in runs:
        found = pipelines.get(run.pipeline, [])
        if len(found) != 1:
            what = "not found" if not found else f"ambiguous ({len(found)} pipelines have that name)"
            errors.append(f"{run.name}: pipeline {run.pipeline!r} {what}; pipelines: {sorted(pipelines) or 'none'}")
            continue
        pipeline_id = found[0].pipeline_id
        if pipeline_id not in versions:
            listed = _pages(lambda t: client.list_pipeline_versions(pipeline_id, page_token=t, page_size=PAGE_SIZE),
                            "pipeline_versions")
            versions[pipeline_id] = sorted(listed, key=lambda v: v.created_at, reverse=True)  # newest first
        candidates = versions[pipeline_id] if run.version == "latest" else [
            v for v in versions[pipeline_id] if run.version in (v.display_name, v.name)]
        if not candidates:
            names = [v.display_name or v.name for v in versions[pipeline_id][:10]]
            errors.append(f"{run.name}: pipeline {run.pipeline!r} has no version {run.version!r}; "
                          f"newest versions: {names or 'none'}")
            continue
        version = candidates[0]
        if problem := _parameter_problem(client, run, pipeline_id, version, specs):
            errors.append(problem)
            continue
        resolved.append(DesiredRun(run, pipeline_id, version.pipeline_version_id, experiments.get(run.experiment, ""),
                                   version.display_name or version.name or ""))
    if errors:
        raise ScheduleError("cannot resolve the schedules' pipelines:\n" + "\n".join(f"  - {e}" for e in errors))
    return resolved


def _parameter_problem(client: Any, run: RecurringRun, pipeline_id: str, version: Any, specs: dict[str, Any]) -> str:
    """:func:`unknown_parameters` against the version's compiled spec (a list may leave it out: then fetched once)."""
    version_id = version.pipeline_version_id
    if version_id not in specs:
        spec = getattr(version, "pipeline_spec", None)
        specs[version_id] = spec or client.get_pipeline_version(pipeline_id, version_id).pipeline_spec
    allowed = root_inputs(specs[version_id])
    name = version.display_name or version.name or version_id
    if allowed is None:
        log.warning("%s: pipeline %r version %r has no readable spec: its parameters are not checked", run.name,
                    run.pipeline, name)
        return ""
    return unknown_parameters(run, allowed, name)


def apply(client: Any, the_plan: Plan, namespace: str | None = None, report: Callable[[str], None] = print) -> None:
    """Carry out a plan: delete, replace (delete, then create with the same name), create."""
    experiment_ids: dict[str, str] = {}
    for run, reason in the_plan.delete:
        client.delete_recurring_run(run.id)
        report(f"deleted {run.name} ({run.id}; {reason})")
    for replacement in the_plan.replace:
        client.delete_recurring_run(replacement.existing.id)
        new_id = _create(client, replacement.desired, the_plan.owner, namespace, experiment_ids)
        report(f"replaced {replacement.desired.spec.name} ({replacement.existing.id} -> {new_id})")
    for desired in the_plan.create:
        new_id = _create(client, desired, the_plan.owner, namespace, experiment_ids)
        report(f"created {desired.spec.name} ({new_id})")


def _create(client: Any, desired: DesiredRun, owner: str, namespace: str | None, experiment_ids: dict[str, str]) -> str:
    spec = desired.spec
    if not desired.experiment_id and spec.experiment not in experiment_ids:
        with contextlib.redirect_stdout(io.StringIO()):  # create_experiment prints a UI link
            experiment = client.create_experiment(spec.experiment, namespace=namespace)
        experiment_ids[spec.experiment] = experiment.experiment_id
        log.info("created experiment %s (%s)", spec.experiment, experiment.experiment_id)
    created = client.create_recurring_run(
        experiment_id=desired.experiment_id or experiment_ids[spec.experiment], job_name=spec.name,
        description=desired.description(owner), cron_expression=spec.kfp_cron, max_concurrency=spec.max_concurrency,
        params=dict(spec.parameters), pipeline_id=desired.pipeline_id, version_id=desired.version_id,
        enabled=spec.enabled, no_catchup=not spec.catchup)
    return created.recurring_run_id


def sync(file: str | Path, host: str | None = None, owner: str = DEFAULT_OWNER, dry_run: bool = False,
         namespace: str | None = None, existing_token: str | None = None,
         report: Callable[[str], None] = print) -> Plan:
    """Make KFP's recurring runs owned by ``owner`` match ``file``; report the plan, then apply it unless ``dry_run``.

    The file is validated before KFP is contacted (:class:`~safetax.config.ConfigError`). Runs are
    listed in ``namespace`` (multi-user KFP: the profile namespace) across all experiments, so a run
    moved to another experiment is found and replaced. A name conflict with a run safetax does not
    own stops the sync before anything changes (:class:`ScheduleError`).
    """
    from kfp_server_api.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    check_owner(owner)
    runs = load_schedules(file)
    try:
        client = kfp_client(host, existing_token)
        the_plan = plan(resolve(client, runs, namespace), list_recurring_runs(client, namespace), owner)
        report(the_plan.render())
        if the_plan.conflicts:
            raise ScheduleError(f"{len(the_plan.conflicts)} conflict(s) with recurring runs safetax/{owner} does not "
                                "manage; nothing was changed:\n" + "\n".join(f"  - {c}" for c in the_plan.conflicts))
        if dry_run:
            report("dry run: nothing changed")
        elif the_plan.changes:
            apply(client, the_plan, namespace, report)
        return the_plan
    except ApiException as e:
        raise ScheduleError(f"KFP API at {host or 'the default endpoint'} answered {e.status} {e.reason}: "
                            f"{str(e.body or '')[:500]}") from None
    except HTTPError as e:
        raise ScheduleError(f"cannot reach the KFP API at {host or 'the default endpoint'}: {e}") from None

