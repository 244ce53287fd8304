"""The gateway address: explicit, from $SAFETAX_PUSHGATEWAY, normalised, never logged with credentials."""

from __future__ import annotations

import pytest

from safetax.telemetry import PushPolicy, redact_url, resolve_gateway


@pytest.mark.parametrize("given,url", [
    ("pushgateway:9091", "http://pushgateway:9091"),
    ("http://127.0.0.1:9091/", "http://127.0.0.1:9091"),
    ("https://gw.example.org:443", "https://gw.example.org:443"),
    ("https://u:p@gw.example.org", "https://u:p@gw.example.org"),
    ("", None),
    ("  ", None),
])
def test_explicit_addresses_are_normalised(given: str, url: str | None) -> None:
    assert resolve_gateway(given, env={"SAFETAX_PUSHGATEWAY": "ignored:1"}) == url


def test_the_environment_is_read_only_without_an_explicit_address() -> None:
    assert resolve_gateway(None, env={"SAFETAX_PUSHGATEWAY": "gw:9091"}) == "http://gw:9091"
    assert resolve_gateway(None, env={"SAFETAX_PUSHGATEWAY": ""}) is None
    assert resolve_gateway(None, env={}) is None


@pytest.mark.parametrize("bad,message", [
    ("ftp://gw:21", "host:port or http"),
    ("http://:9091", "host:port or http"),
    ("gw:port", "invalid port"),
])
def test_bad_addresses_name_the_source_without_credentials(bad: str, message: str) -> None:
    with pytest.raises(ValueError, match=rf"\$SAFETAX_PUSHGATEWAY (has|must).*{message}"):
        resolve_gateway(None, env={"SAFETAX_PUSHGATEWAY": bad})
    with_credentials = bad.replace("://", "://user:secret@") if "://" in bad else f"user:secret@{bad}"
    with pytest.raises(ValueError, match=rf"^gateway (has|must).*{message}") as info:
        resolve_gateway(with_credentials)
    assert "secret" not in str(info.value)


def test_redaction_hides_userinfo_only() -> None:
    assert redact_url("http://user:pw@gw:9091/prefix") == "http://***@gw:9091/prefix"
    assert redact_url("http://gw:9091") == "http://gw:9091"


def test_push_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="`timeout_s` must be > 0") as info:
        PushPolicy(timeout_s=0, retries=-1)
    assert "`retries` must be >= 0" in str(info.value)
