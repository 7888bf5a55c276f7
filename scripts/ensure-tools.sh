#!/usr/bin/env bash
# Installs what tacline's build, tests and demo need and is missing, and says
# what it installs. Debian/Ubuntu packages only; nothing is downloaded from
# anywhere else.
set -euo pipefail

need=()
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
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
