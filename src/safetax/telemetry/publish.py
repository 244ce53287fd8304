"""Where a stage's figures go: a Pushgateway, or a textfile beside its outputs.

Telemetry must never fail a stage, nor hold one up. A push is a ``PUT`` (it replaces the whole
group, so a retried task that succeeds clears an earlier ``stage_failed``) with a short timeout
(:class:`PushPolicy`: 5 s to connect and 5 s per read); a refused connection or an error answer is
retried a few times, a timeout is not (a gateway that accepts and never answers would otherwise cost
the timeout once per attempt). After ``breaker_failures`` failed pushes in a row to one gateway, its
:class:`CircuitBreaker` opens: periodic pushes are skipped for ``breaker_open_s`` seconds (logged once),
and other pushes get a single attempt, until a push succeeds again. Periodic pushes during training go
through a :class:`BackgroundPusher` (a thread that sends the latest snapshot), so the training loop never
waits on the network. When every attempt fails the caller logs one warning and goes on. Log lines and
warnings show the gateway without its userinfo: credentials in ``SAFETAX_PUSHGATEWAY``
(``https://user:pass@host:9091``) are sent as HTTP basic auth, never printed.

Without a gateway, a local run writes the node-exporter textfile format
(``metrics.prom``, written to a temporary file and renamed, so a collector
never reads half a file).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
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

    timeout_s: float = 5.0  # connect and per-read timeout; a healthy in-cluster gateway answers in milliseconds
    retries: int = 2  # attempts after the first, for refused connections and error answers (never after a timeout)
    backoff_s: float = 0.5  # wait before retry n is backoff_s * n
    interval_s: float = 30.0  # minimum time between periodic pushes during training
    breaker_failures: int = 3  # failed pushes in a row that open the gateway's circuit breaker
    breaker_open_s: float = 300.0  # periodic pushes skipped this long once it is open (5 minutes)

    def __post_init__(self) -> None:
        checks = Checks("PushPolicy")
        checks.positive("timeout_s", self.timeout_s)
        checks.non_negative("retries", self.retries)
        checks.non_negative("backoff_s", self.backoff_s)
        checks.non_negative("interval_s", self.interval_s)
        checks.positive("breaker_failures", self.breaker_failures)
        checks.non_negative("breaker_open_s", self.breaker_open_s)
        checks.raise_if_any()


class CircuitBreaker:
    """Failed pushes in a row to one gateway; open (periodic pushes skipped) after ``failures`` of them,
    for ``open_s`` seconds, after which one periodic push may try again. Any success closes it. Shared by
    every push of the process to that gateway (:func:`breaker_for`); thread-safe."""

    def __init__(self, failures: int = 3, open_s: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures, self.open_s, self._clock = failures, open_s, clock
        self._count = 0
        self._open_until: float | None = None
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._open_until is not None

    def allow_periodic(self) -> bool:
        """Whether a periodic push may go now: the breaker is closed, or its open period is over (a trial)."""
        with self._lock:
            return self._open_until is None or self._clock() >= self._open_until

    def record(self, ok: bool) -> bool:
        """Count one push; returns True when this failure opened the breaker (the caller logs it, once)."""
        with self._lock:
            if ok:
                self._count, self._open_until = 0, None
                return False
            self._count += 1
            if self._count < self.failures:
                return False
            opened = self._open_until is None
            self._open_until = self._clock() + self.open_s
            return opened


_BREAKERS: dict[str, CircuitBreaker] = {}
_BREAKERS_LOCK = threading.Lock()


def breaker_for(gateway: str, policy: PushPolicy = PushPolicy(),
                clock: Callable[[], float] = time.monotonic) -> CircuitBreaker:
    """The process's circuit breaker of ``gateway`` (created with ``policy`` and ``clock`` on first use)."""
    key = redact_url(gateway)
    with _BREAKERS_LOCK:
        if key not in _BREAKERS:
            _BREAKERS[key] = CircuitBreaker(policy.breaker_failures, policy.breaker_open_s, clock)
        return _BREAKERS[key]


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError)


class _Snapshot:
    """A registry's samples frozen at one moment (``collect()`` is all that pushing reads)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._families = list(registry.collect())

    def collect(self) -> Iterator[Any]:
        return iter(self._families)


def push(registry: CollectorRegistry | _Snapshot, gateway: str, grouping_key: Mapping[str, str],
         policy: PushPolicy = PushPolicy(), job: str = "safetax",
         sleep: Callable[[float], None] = time.sleep, *, periodic: bool = False,
         breaker: CircuitBreaker | None = None) -> bool:
    """PUT ``registry`` to the group ``job`` + ``grouping_key``; False (and a warning) when it fails.

    ``periodic`` pushes are skipped (False, silently) while the gateway's breaker is open; other pushes
    then get one attempt. A timeout is never retried.
    """
    breaker = breaker or breaker_for(gateway, policy)
    if periodic and not breaker.allow_periodic():
        return False
    url, handler = _split_credentials(gateway)
    attempts = 1 if breaker.is_open else policy.retries + 1
    error: BaseException | None = None
    for attempt in range(attempts):
        if attempt:
            sleep(policy.backoff_s * attempt)
        try:
            push_to_gateway(url, job=job, registry=registry, grouping_key=dict(grouping_key),  # type: ignore[arg-type]
                            timeout=policy.timeout_s, handler=handler)
            log.debug("pushed metrics to %s %s", redact_url(gateway), dict(grouping_key))
            breaker.record(True)
            return True
        except Exception as exc:  # noqa: BLE001 - any failure to push is a warning, never a stage failure
            error = exc
            if _is_timeout(exc):  # accepted and never answered: another attempt would wait as long again
                attempts = attempt + 1
                break
    reason = _redact_text(f"{type(error).__name__}: {error}", gateway)
    log.warning("telemetry: push to Pushgateway %s failed after %d attempt(s) (%s); the stage goes on",
                redact_url(gateway), attempts, reason)
    if breaker.record(False):
        log.warning("telemetry: Pushgateway %s failed %d pushes in a row; periodic pushes are skipped for %.0f s "
                    "(the final push of each stage is still tried once)", redact_url(gateway), breaker.failures,
                    breaker.open_s)
    return False


class BackgroundPusher:
    """Periodic pushes off the caller's thread: :meth:`submit` hands over the registry's latest snapshot
    (replacing one not yet sent) and returns at once; a daemon thread sends it with :func:`push`."""

    def __init__(self, gateway: str, grouping_key: Mapping[str, str], policy: PushPolicy, job: str,
                 breaker: CircuitBreaker) -> None:
        self._args = (gateway, dict(grouping_key), policy, job)
        self._breaker = breaker
        self._cond = threading.Condition()
        self._pending: _Snapshot | None = None
        self._busy = False
        self._closed = False
        self.last_result: bool | None = None
        self._thread = threading.Thread(target=self._loop, name="safetax-telemetry-push", daemon=True)
        self._thread.start()

    def submit(self, registry: CollectorRegistry) -> bool:
        """Queue the registry's current figures; False (nothing queued) while the breaker is open."""
        if not self._breaker.allow_periodic():
            return False
        snapshot = _Snapshot(registry)
        with self._cond:
            self._pending = snapshot
            self._cond.notify_all()
        return True

    def _loop(self) -> None:
        gateway, key, policy, job = self._args
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                snapshot, self._pending, self._busy = self._pending, None, True
            ok = push(snapshot, gateway, key, policy, job, periodic=True, breaker=self._breaker)
            with self._cond:
                self._busy, self.last_result = False, ok
                self._cond.notify_all()

    def flush(self, timeout_s: float | None = None) -> bool | None:
        """Wait until what was submitted has been sent (or ``timeout_s`` passed); the last push's result."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending is None and not self._busy, timeout_s)
            return self.last_result

    def close(self, timeout_s: float) -> None:
        """Drop what is not yet sent, wait up to ``timeout_s`` for a push in flight (so that it cannot land
        after, and overwrite, the caller's final push), stop the thread."""
        with self._cond:
            self._pending = None
            self._cond.wait_for(lambda: not self._busy, timeout_s)
            self._closed = True
            self._cond.notify_all()


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
