"""Where a stage's figures go: a Pushgateway, or a textfile beside its outputs.

Telemetry must never fail a stage. A push is a ``PUT`` (it replaces the whole
group, so a retried task that succeeds clears an earlier ``stage_failed``),
with a short timeout and a few retries; when every attempt fails the stage
logs one warning and goes on. Log lines and warnings show the gateway without
its userinfo: credentials in ``SAFETAX_PUSHGATEWAY``
(``https://user:pass@host:9091``) are sent as HTTP basic auth, never printed.

Without a gateway, a local run writes the node-exporter textfile format
(``metrics.prom``, written to a temporary file and renamed, so a collector
never reads half a file).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, push_to_gateway, write_to_textfile
from prometheus_client.exposition import basic_auth_handler, default_handler

from safetax.config import Checks

log = logging.getLogger("safetax.telemetry")

GATEWAY_ENV = "SAFETAX_PUSHGATEWAY"
TEXTFILE_NAME = "metrics.prom"  # the textfile collector reads *.prom


def resolve_gateway(gateway: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    """The Pushgateway URL: ``gateway`` if given, else ``$SAFETAX_PUSHGATEWAY``, else None.

    ``host:port`` becomes ``http://host:port``; an empty value means no gateway.

    >>> resolve_gateway("pushgateway.monitoring:9091")
    'http://pushgateway.monitoring:9091'
    >>> resolve_gateway(None, env={"SAFETAX_PUSHGATEWAY": "https://gw.example:443/"})
    'https://gw.example:443'
    >>> resolve_gateway(None, env={}) is None
    True
    """
    where = "gateway"
    if gateway is None:
        gateway, where = (os.environ if env is None else env).get(GATEWAY_ENV), f"${GATEWAY_ENV}"
    gateway = (gateway or "").strip()
    if not gateway:
        return None
    url = gateway if "://" in gateway else f"http://{gateway}"
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError on a non-numeric port
    except ValueError:
        raise ValueError(f"{where} has an invalid port: {redact_url(url)!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{where} must be host:port or http(s)://host:port, got {redact_url(url)!r}")
    return url.rstrip("/")


def redact_url(url: str) -> str:
    """``url`` with any userinfo replaced by ``***``, for logs.

    >>> redact_url("https://user:s3cret@gw:9091")
    'https://***@gw:9091'
    >>> redact_url("http://gw:9091")
    'http://gw:9091'
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def _split_credentials(url: str) -> tuple[str, Callable[..., Callable[[], None]]]:
    """The URL without userinfo and the push handler that sends the userinfo as basic auth."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, default_handler
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    password = unquote(parts.password or "")
    return bare, partial(basic_auth_handler, username=unquote(parts.username), password=password)


@dataclass(frozen=True)
class PushPolicy:
    """How hard to try: a push must not hold a stage up for long."""

    timeout_s: float = 5.0  # per attempt; a healthy in-cluster gateway answers in milliseconds
    retries: int = 2  # attempts after the first
    backoff_s: float = 0.5  # wait before retry n is backoff_s * n
    interval_s: float = 30.0  # minimum time between periodic pushes during training

    def __post_init__(self) -> None:
        checks = Checks("PushPolicy")
        checks.positive("timeout_s", self.timeout_s)
        checks.non_negative("retries", self.retries)
        checks.non_negative("backoff_s", self.backoff_s)
        checks.non_negative("interval_s", self.interval_s)
        checks.raise_if_any()


def push(registry: CollectorRegistry, gateway: str, grouping_key: Mapping[str, str],
         policy: PushPolicy = PushPolicy(), job: str = "safetax",
         sleep: Callable[[float], None] = time.sleep) -> bool:
    """PUT ``registry`` to the group ``job`` + ``grouping_key``; False (and a warning) when it fails."""
    url, handler = _split_credentials(gateway)
    error: BaseException | None = None
    for attempt in range(policy.retries + 1):
        if attempt:
            sleep(policy.backoff_s * attempt)
        try:
            push_to_gateway(url, job=job, registry=registry, grouping_key=dict(grouping_key),
                            timeout=policy.timeout_s, handler=handler)
            log.debug("pushed metrics to %s %s", redact_url(gateway), dict(grouping_key))
            return True
        except Exception as exc:  # noqa: BLE001 - any failure to push is a warning, never a stage failure
            error = exc
    reason = _redact_text(f"{type(error).__name__}: {error}", gateway)
    log.warning("telemetry: push to Pushgateway %s failed after %d attempt(s) (%s); the stage goes on",
                redact_url(gateway), policy.retries + 1, reason)
    return False


def _redact_text(text: str, url: str) -> str:
    """``text`` with the userinfo of ``url`` blanked out, should an error message echo it."""
    parts = urlsplit(url)
    for secret in (parts.password, parts.username):
        if secret:
            text = text.replace(secret, "***").replace(unquote(secret), "***")
    return text


def write_textfile(registry: CollectorRegistry, out_dir: Path) -> Path | None:
    """Atomically write ``out_dir/metrics.prom``; None (and a warning) when the write fails."""
    path = Path(out_dir) / TEXTFILE_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), registry)
    except OSError as exc:
        log.warning("telemetry: could not write %s (%s); the stage goes on", path, exc)
        return None
    log.debug("wrote metrics to %s", path)
    return path
