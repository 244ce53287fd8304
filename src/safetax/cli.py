"""`safetax demo | compile | run | report | compare | ...`: the command line."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from safetax.timing import setup_logging

log = logging.getLogger("safetax")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="safetax", description="Safety alignment of reasoning LLMs without the safety tax.")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error (default: one message naming the "
                                                         "file, key or value, and exit status 2)")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the alignment pipeline locally on the tiny demo model and print the results",
                       description="Builds (once, then cached) a tiny reasoning model that complies with placeholder harmful "
                                   "requests, runs the alignment pipeline on it with KFP's local runner (LoRA and full "
                                   "fine-tuning on refusal data), and prints safety against reasoning for every checkpoint.")
    d.add_argument("--out", type=Path, default=Path("runs/demo"), help="local pipeline root for all artifacts (default: runs/demo)")
    d.add_argument("--cache-dir", type=Path, default=None, help="where the demo model is built and cached (default: $SAFETAX_CACHE or ~/.cache/safetax)")
    d.add_argument("--epochs", type=int, default=0, help="epochs for every method (default 0: each demo method's own setting)")
    d.add_argument("--safety-limit", type=int, default=0, help="evaluate only the first N held-out harmful prompts (default 0: all)")
    d.add_argument("--reasoning-limit", type=int, default=0, help="evaluate only the first N arithmetic problems (default 0: all)")
    d.add_argument("--max-new-tokens", type=int, default=96, help="generation budget per response (default 96; demo answers are short)")
    _platform_args(d)

    c = sub.add_parser("compile", help="compile the KFP pipelines (or the stages' components) to YAML",
                       description="Writes <pipeline>.yaml for every pipeline: KFP IR to upload in the KFP UI, or with "
                                   "--k8s-manifests the Pipeline/PipelineVersion custom resources of KFP's Kubernetes-native API; "
                                   "with --components, <stage>.yaml for every stage's component instead, for use in your own "
                                   "pipelines with kfp.components.load_component_from_file.")
    c.add_argument("--out", type=Path, required=True, help="output directory")
    c.add_argument("--components", action="store_true", help="write each stage's component spec instead of the pipelines")
    c.add_argument("--platform", default=None, help="platform YAML (per-stage GPUs, node selectors, resources, secrets); "
                                                     "default: $SAFETAX_PLATFORM, else the built-in defaults")
    c.add_argument("--k8s-manifests", action="store_true", help="write custom resources (version named by the spec's digest) instead of KFP IR")
    c.add_argument("--namespace", default=None, help="namespace of the custom resources (default: none, set by kustomize/kubectl)")

    g = sub.add_parser("register", help="register the pipelines with a cluster's Kubeflow Pipelines (idempotent)",
                       description="Compiles every pipeline with the platform file and registers a version named by the spec's "
                                   "digest: an unchanged spec is not registered twice, a changed one becomes a new version. "
                                   "This is what the Helm chart's registrar Job runs.")
    g.add_argument("--mode", choices=("cr", "api"), required=True,
                   help="cr: create Pipeline/PipelineVersion custom resources through the Kubernetes API (KFP in Kubernetes-native "
                        "API mode); api: upload through the KFP REST API")
    g.add_argument("--platform", default=None, help="platform YAML (default: $SAFETAX_PLATFORM, else the built-in defaults)")
    g.add_argument("--namespace", default="kubeflow", help="KFP's namespace for --mode cr (default: kubeflow)")
    g.add_argument("--host", default=None, help="KFP API endpoint for --mode api, e.g. http://ml-pipeline.kubeflow:8888")
    g.add_argument("--out", type=Path, default=None, help="with --mode cr: write the custom resources into this directory "
                                                          "instead of creating them (a dry run, or for GitOps); no cluster is contacted")
    g.add_argument("--skip-version-check", action="store_true",
                   help="do not check the KFP backend's version first (by default an older backend than the pipelines need is "
                        "refused with a message naming both versions)")

    pl = sub.add_parser("plan", help="validate a run's parameters here, as its first (plan) task will, without running it",
                        description="Checks every parameter of a run exactly as the pipeline's plan step does (every method "
                                    "config, eval set and its data file, judge, sampling, GPU counts, RPSA corpus, gate "
                                    "thresholds, store URI, and that the model and data URIs are reachable from here), prints "
                                    "each method's resolved config, and exits 2 listing every problem. Nothing is trained or "
                                    "generated.")
    pl.add_argument("--pipeline", default="alignment", choices=("alignment", "audit"),
                    help="which pipeline the parameters are for (default: alignment; audit: the audit's configuration only, "
                         "no checkpoint discovery)")
    pl.add_argument("--params", type=Path, required=True, help="JSON or YAML file with the pipeline parameters")
    es = sub.add_parser("estimate", help="the generated tokens and GPU-hours an alignment run's (or an audit's) evaluation will cost",
                        description="Counts the prompts of every eval set in its data file (after limit / sample), multiplies "
                                    "by samples and token budget (the protocol's values filled in, each set's own where given) "
                                    "and by the checkpoints the run evaluates (base, every epoch, every merge candidate), and "
                                    "prints a table with the total tokens and GPU-hours. With --pipeline audit: the cost of one "
                                    "audited checkpoint under the audit's profile. Nothing is generated.")
    es.add_argument("--params", type=Path, required=True, help="JSON or YAML file with the pipeline's parameters")
    es.add_argument("--pipeline", default="alignment", choices=("alignment", "audit"),
                    help="which pipeline the parameters are for (default: alignment; audit: the cost per audited checkpoint)")
    es.add_argument("--platform", default=None,
                    help="platform file whose defaults.tokens_per_second (output tokens/s of one model replica) is used "
                         "(default: $SAFETAX_PLATFORM, else 5000 tokens/s)")
    es.add_argument("--tokens-per-second", type=float, default=0.0, help="throughput per model replica (overrides the platform's)")
    es.add_argument("--budget-fraction", type=float, default=0.06,
                    help="mean share of max_new_tokens a response uses (default 0.06: ~2k of a 32k budget, R1-distilled "
                         "models on the seeds' benchmarks)")
    _schedule_parser(sub)
    m = sub.add_parser("metrics", help="the Pushgateway's retention: prune the groups of finished runs",
                       description="Deletes from a Pushgateway the per-run groups (those with a run_id) of safetax-alignment "
                                   "and safetax-audit runs whose last push is older than --older-than (Prometheus keeps "
                                   "their history). An audit's verdict groups are never deleted: every audit run "
                                   "re-publishes them from its ledger. The chart runs this as a CronJob.")
    macts = m.add_subparsers(dest="metrics_command", required=True)
    pr = macts.add_parser("prune", help="delete the groups of alignment runs last pushed longer ago than --older-than")
    pr.add_argument("--pushgateway", required=True, metavar="HOST:PORT",
                    help="the Pushgateway, host:port or http(s)://[user:pass@]host:port (credentials never printed)")
    pr.add_argument("--older-than", default="7d", help="age of the last push, e.g. 7d, 12h, 30m (default: 7d)")
    pr.add_argument("--dry-run", action="store_true", help="list what would be deleted and delete nothing")
    from safetax.data import cli as data_cli

    data_cli.add_parser(sub)

    r = sub.add_parser("run", help="run a pipeline locally with parameters from a JSON/YAML file",
                       description="Runs a pipeline with KFP's local runner (no cluster needed).")
    r.add_argument("--pipeline", default="alignment", choices=("alignment", "audit"),
                   help="alignment (refusal SFT and evaluation; prints the results table) or audit (audits the new "
                        "checkpoints under checkpoint_prefix; prints where its ledger and reports are) (default: alignment)")
    r.add_argument("--params", type=Path, required=True, help="JSON or YAML file with the pipeline parameters")
    r.add_argument("--compiled", type=Path, default=None, metavar="YAML",
                   help="run this compiled pipeline (e.g. pipelines/alignment.yaml, what a cluster runs) instead of building "
                        "--pipeline from the installed package; --pipeline still says how to print the results")
    r.add_argument("--out", type=Path, default=Path("runs/local"), help="local pipeline root (default: runs/local)")
    _platform_args(r)
    _report_parsers(sub)
    return p


def _report_parsers(sub: argparse._SubParsersAction) -> None:
    rp = sub.add_parser("report", help="re-render the report of a finished run (nothing is recomputed)",
                        description="Writes report.md, report.html (one self-contained page), the plots and results.csv "
                                    "of a finished alignment run from what it left: its run directory (e.g. runs/demo, "
                                    "or one runs/demo/safetax-alignment-<time>/) or its store prefix "
                                    "(<store_uri>/<run id>, s3:// or a local folder).")
    rp.add_argument("run", help="run directory, pipeline root (its newest run) or store prefix")
    rp.add_argument("--out", type=Path, default=None,
                    help="output folder (default: <run dir>/report, or ./report-<run id> for an s3:// prefix)")
    cp = sub.add_parser("compare", help="put several runs' checkpoints in one table and one plot",
                        description="One report of the checkpoints of several finished runs: each row's checkpoint and "
                                    "method are prefixed by its run; drops and STR stay against each run's own base.")
    cp.add_argument("runs", nargs="+", help="two or more run directories or store prefixes")
    cp.add_argument("--out", type=Path, default=Path("runs/compare"), help="output folder (default: runs/compare)")


def _schedule_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("schedule", help="manage KFP recurring runs declared in a schedules file",
                       description="Recurring runs as code: a YAML file declares them, `sync` makes KFP match it.")
    actions = s.add_subparsers(dest="schedule_command", required=True)
    y = actions.add_parser(
        "sync", help="create, replace and delete recurring runs so that KFP matches the file (idempotent)",
        description="Validates the file (nothing is contacted when it is invalid), lists the recurring runs KFP holds, "
                    "prints the plan (+ create, ~ replace, - delete, = unchanged) and applies it. Only runs whose "
                    "description carries the marker [managed-by: safetax/OWNER] are replaced or deleted; a run without "
                    "it, or with another owner, is never touched, and one with a declared name is a conflict that stops "
                    "the sync. A changed run is deleted and created again (KFP cannot update one). Inside a cluster, "
                    "the service-account token at $KF_PIPELINES_SA_TOKEN_PATH (default "
                    "/var/run/secrets/kubeflow/pipelines/token) authenticates the calls when it exists. This is what "
                    "the Helm chart's schedule-sync Job runs.")
    y.add_argument("--file", type=Path, required=True,
                   help="schedules YAML: `recurringRuns: [{name, cron, pipeline, version, parameters, maxConcurrency, "
                        "enabled, experiment, description}]`; cron in 5 fields or KFP's 6 (seconds first)")
    y.add_argument("--host", default=None,
                   help="KFP API endpoint, e.g. http://ml-pipeline.kubeflow:8888 (default: $KF_PIPELINES_ENDPOINT, "
                        "else kfp's discovery: in-cluster service, then the kubeconfig's API proxy)")
    y.add_argument("--owner", default="safetax",
                   help="owner written into the marker of the runs this sync creates, and the only owner whose runs it "
                        "replaces or deletes (default: safetax; the Helm chart passes its release name)")
    y.add_argument("--namespace", default=None,
                   help="namespace of the recurring runs and experiments for multi-user KFP (a profile namespace); "
                        "default: none (single-user KFP)")
    y.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")


def _schedule(args: argparse.Namespace) -> None:
    from safetax.config import ConfigError
    from safetax.runner.schedules import ScheduleError, sync

    try:
        sync(args.file, host=args.host, owner=args.owner, dry_run=args.dry_run, namespace=args.namespace)
    except (ConfigError, ScheduleError) as e:
        import sys

        print(f"safetax schedule {args.schedule_command}: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _platform_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action="store_true",
                   help="show the local runner's full output (every task's executor input and logs) instead of one line per "
                        "finished stage, warnings and errors (the full output always goes to <out>/logs/<pipeline>-<time>.log)")
    p.add_argument("--store", default="", metavar="URI",
                   help="run store: every stage also publishes its outputs to <URI>/<run id>/<stage>/<method> with a manifest, "
                        "e.g. s3://safetax/runs (endpoint and credentials from SAFETAX_S3_ENDPOINT, SAFETAX_S3_ACCESS_KEY, "
                        "SAFETAX_S3_SECRET_KEY, SAFETAX_S3_REGION) or a local folder; for the demo, its inputs (model, data) "
                        "are uploaded there first and read back from it (default: none)")
    p.add_argument("--pushgateway", default=None, metavar="HOST:PORT",
                   help="Prometheus Pushgateway for the stages' metrics (default: $SAFETAX_PUSHGATEWAY; with none, each "
                        "stage writes metrics.prom beside its outputs)")


def _apply_platform_args(args: argparse.Namespace) -> None:
    import os

    if args.pushgateway is not None:
        os.environ["SAFETAX_PUSHGATEWAY"] = args.pushgateway  # the local runner's task subprocesses inherit it


def _print_results(results_dir: Path) -> None:
    import pandas as pd

    from safetax.analysis.report import format_table

    print(format_table(pd.read_csv(results_dir / "results.csv")))
    print(f"\nreport: {results_dir / 'report.md'}\nhtml:   {results_dir / 'report.html'}\nplot:   {results_dir / 'tradeoff.png'}")


def _demo(args: argparse.Namespace) -> None:
    from safetax.demo import build_demo
    from safetax.presets import demo_params
    from safetax.runner import run_local

    start = time.perf_counter()
    assets = build_demo(cache_dir=args.cache_dir)
    params = demo_params(assets, safety_limit=args.safety_limit, reasoning_limit=args.reasoning_limit, max_new_tokens=args.max_new_tokens)
    if args.epochs:
        params["methods"] = [{**m, "epochs": args.epochs} for m in params["methods"]]
    if args.store:
        from safetax.presets import upload_demo_inputs

        params = upload_demo_inputs(params, assets, args.store) | {"store_uri": args.store}
    # Portable CPU kernels in every task too, so that every row (not only the base model's) is the same on any
    # x86-64 machine with the pinned torch (about a fifth slower than AVX2/AVX-512 kernels); a user may override it.
    import os

    before = os.environ.get("ATEN_CPU_CAPABILITY")
    os.environ.setdefault("ATEN_CPU_CAPABILITY", "default")
    try:
        results = run_local("alignment", params, args.out, verbose=args.verbose)
    finally:  # only the run's tasks: a process that calls the demo (a test) keeps its own kernels for what follows
        if before is None:
            os.environ.pop("ATEN_CPU_CAPABILITY", None)
    log.info("demo finished in %.1fs", time.perf_counter() - start)
    _print_results(results)


def load_params(path: Path, pipeline: str, compiled: Path | None = None) -> dict:
    """A parameter file as a mapping whose keys are the pipeline's parameters; errors name the file and the key."""
    import yaml

    from safetax.runner import pipeline_inputs

    if not path.is_file():
        raise FileNotFoundError(f"parameter file {path} does not exist")
    try:
        text = path.read_text()
        params = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"parameter file {path}: not valid {'YAML' if path.suffix in ('.yaml', '.yml') else 'JSON'}: "
                         f"{str(e).splitlines()[0]}") from None
    if not isinstance(params, dict):
        raise ValueError(f"parameter file {path}: must be a mapping of parameter names to values, got {type(params).__name__}")
    inputs = pipeline_inputs(pipeline, compiled)
    unknown = sorted(set(params) - set(inputs))
    missing = sorted(k for k, required in inputs.items() if required and k not in params)
    if unknown or missing:
        problems = [f"unknown parameter {k!r}" for k in unknown] + [f"missing required parameter {k!r}" for k in missing]
        raise ValueError(f"parameter file {path}: " + "; ".join(problems) + f" (the {pipeline} pipeline's parameters: "
                         f"{', '.join(sorted(inputs))})")
    return params


def _plan(args: argparse.Namespace) -> None:
    from safetax.runner import pipeline_defaults

    params = pipeline_defaults(args.pipeline) | load_params(args.params, args.pipeline)
    if args.pipeline == "audit":
        from safetax.audit.inputs import AuditJudge
        from safetax.stages.audit import AuditConfig, check_run
        from safetax.stages.engine_params import EngineParams

        def some(cls: type) -> dict[str, object]:
            return {k: v for k, v in params.items() if k in cls.__dataclass_fields__}

        cfg = AuditConfig.from_dict(some(AuditConfig))
        check_run(cfg, AuditJudge(**some(AuditJudge)), EngineParams(**some(EngineParams)))
        print(f"{args.params}: valid audit parameters (judge, engine, eval data and models checked; checkpoints are "
              "listed by the run)")
        return
    from safetax.stages.plan import AlignmentParams, plan

    fields = AlignmentParams.__dataclass_fields__
    for item in plan(AlignmentParams(**{k: v for k, v in params.items() if k in fields})):
        flags = [f for f, on in (("rpsa", item["is_rpsa"]), ("merge", item["merges"])) if on]
        print(f"{item['label']}: {item['method']}, {item['config'].get('epochs') or 'default'} epoch(s)"
              + (f" [{', '.join(flags)}]" if flags else ""))


def _estimate(args: argparse.Namespace) -> None:
    from safetax.estimate import TOKENS_PER_SECOND, estimate_audit, estimate_run
    from safetax.platform import load_platform
    from safetax.runner import pipeline_defaults

    params = pipeline_defaults(args.pipeline) | load_params(args.params, args.pipeline)
    rate = args.tokens_per_second or load_platform(args.platform).tokens_per_second or TOKENS_PER_SECOND
    how = estimate_run if args.pipeline == "alignment" else estimate_audit
    print(how(params, tokens_per_second=rate, budget_fraction=args.budget_fraction).table(audit=args.pipeline == "audit"))


def _run(args: argparse.Namespace) -> None:
    from safetax.runner import run_local

    params = load_params(args.params, args.pipeline, args.compiled)
    if args.store:
        params["store_uri"] = args.store
    results = run_local(args.pipeline, params, args.out, compiled=args.compiled, verbose=args.verbose)
    if results is None:  # the audit: its outputs live in its store
        root = f"{str(params.get('store_uri', '')).rstrip('/')}/audits/{params.get('audit_name', '')}"
        reports = sorted(Path(args.out).glob("**/audit-*/results/report.md"), key=lambda q: q.stat().st_mtime)
        if reports:
            print(reports[-1].read_text())
        print(f"ledger and reports: {root}/")
    elif (results / "results.csv").is_file():
        _print_results(results)
    else:
        print(results)


# What a user can fix from the message alone: no traceback for these unless --debug.
_USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, PermissionError, KeyError, RuntimeError,
                                                 UnicodeDecodeError, IsADirectoryError, NotADirectoryError)


def main(argv: list[str] | None = None) -> None:
    """The command line: a user's mistake ends with one or a few lines naming it and exit status 2 (``--debug``:
    the traceback too)."""
    parser = _parser()
    args = parser.parse_args(argv)
    setup_logging()
    try:
        _dispatch(args)
    except _USER_ERRORS as e:
        if getattr(args, "debug", False):
            raise
        import sys

        message = str(e) or type(e).__name__
        if isinstance(e, KeyError):
            message = f"missing key {e}"
        print(f"safetax {args.command}: error: {message}", file=sys.stderr)
        print("(run again with --debug for the traceback)", file=sys.stderr)
        raise SystemExit(2) from None


def _dispatch(args: argparse.Namespace) -> None:
    if args.command in ("demo", "run"):
        _apply_platform_args(args)
    if args.command == "demo":
        _demo(args)
    elif args.command == "compile":
        from safetax.runner import compile_manifests, compile_pipelines

        from safetax.runner import compile_components

        if args.components:
            paths = compile_components(args.out)
        elif args.k8s_manifests:
            paths = compile_manifests(args.out, args.platform, args.namespace)
        else:
            paths = compile_pipelines(args.out, args.platform)
        for path in paths:
            print(path)
    elif args.command == "register":
        from safetax.runner import register

        check = not args.skip_version_check and args.out is None
        for version in register(args.mode, args.platform, args.namespace, args.host, out=args.out, check_server=check):
            print(version)
    elif args.command == "schedule":
        _schedule(args)
    elif args.command == "estimate":
        _estimate(args)
    elif args.command == "metrics":
        from safetax.telemetry.prune import parse_duration, prune
        from safetax.telemetry.publish import redact_url

        try:
            doomed = prune(args.pushgateway, parse_duration(args.older_than), dry_run=args.dry_run)
        except OSError as e:  # URLError, connection refused, timeout: one line naming the gateway
            raise RuntimeError(f"--pushgateway {redact_url(args.pushgateway)}: cannot be reached "
                               f"({getattr(e, 'reason', e)})") from e
        print(f"{'would delete' if args.dry_run else 'deleted'} {len(doomed)} group(s) of finished runs")
    elif args.command == "plan":
        _plan(args)
    elif args.command in ("report", "compare"):
        from safetax.analysis import rerender

        path = rerender.report(args.run, args.out) if args.command == "report" else rerender.compare(args.runs, args.out)
        print(f"report: {path}\nhtml:   {path.with_name('report.html')}\nplot:   {path.with_name('tradeoff.png')}")
    elif args.command == "data":
        from safetax.data import cli as data_cli

        raise SystemExit(data_cli.main(args))
    else:
        _run(args)
