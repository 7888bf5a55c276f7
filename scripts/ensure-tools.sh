#!/usr/bin/env bash
# Installs what tacline's build, tests and demo need and is missing, and says
# what it installs. Debian/Ubuntu packages, and axe-core from the npm registry
# at the version its package-lock.json pins; nothing is downloaded from
# anywhere else.
set -euo pipefail

need=()
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
# The console's browser test (console/browser_test.go) drives Chromium and
# runs axe-core from npm in its pages.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v npm >/dev/null 2>&1 || need+=(npm)
# promtool checks and unit-tests deploy/prometheus/alerts.yml (Debian's
# prometheus package; its service is not needed and not started here).
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# PostgreSQL's server binaries (initdb, pg_ctl, pg_basebackup): the
# point-in-time recovery test runs a cluster of its own.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
# dpkg-deb builds the Debian package (make deb).
command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
# chattr: the SQLite outage test makes the ledger file immutable.
command -v chattr >/dev/null 2>&1 || need+=(e2fsprogs)
if [ "${#need[@]}" -gt 0 ]; then
	echo "ensure-tools: installing missing packages: ${need[*]}" >&2
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq "${need[@]}" >/dev/null
	echo "ensure-tools: installed ${need[*]}" >&2
fi

# axe-core for the console's browser test, at the version pinned by
# console/testdata/axe/package-lock.json.
axe="$(cd "$(dirname "$0")/.." && pwd)/console/testdata/axe"
if [ ! -f "$axe/node_modules/axe-core/axe.min.js" ]; then
	echo "ensure-tools: installing axe-core from npm (npm ci in console/testdata/axe)" >&2
	(cd "$axe" && npm ci --no-audit --no-fund --silent)
	echo "ensure-tools: installed axe-core" >&2
fi
