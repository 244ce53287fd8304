#!/usr/bin/env bash
# Debian packages the tests use for real: Prometheus + promtool, the Pushgateway, kubectl (kustomize), and
# Chromium (headless: the HTML report's browser test).
# Installs only what is missing; needs root or sudo. Called by `make test` and `make test-fast`.
set -euo pipefail
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v prometheus-pushgateway >/dev/null || missing+=(prometheus-pushgateway)
command -v kubectl >/dev/null || missing+=(kubernetes-client)
command -v chromium >/dev/null || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "installing Debian packages: ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
