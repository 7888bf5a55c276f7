#!/usr/bin/env bash
# Prints an administrative PostgreSQL DSN for the tests. Tests create their own
# randomly named databases through it and drop them afterwards.
#
# 1. $TACLINE_TEST_PG_DSN, if set, is used as it is.
# 2. A server answering on 127.0.0.1:5432 is used.
# 3. Otherwise a throwaway cluster is started from Debian's postgresql package
#    (installed if missing) under var/pgtest, on 127.0.0.1:55432.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${TACLINE_TEST_PG_DSN:-}" ]; then
	echo "$TACLINE_TEST_PG_DSN"
	exit 0
fi
probe() { # host port
	(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}
if probe 127.0.0.1 5432; then
	echo "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	exit 0
fi
port=55432
dir="$PWD/var/pgtest"
if probe 127.0.0.1 "$port"; then
	echo "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
	exit 0
fi
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$pgbin" ]; then
	echo "ensure-postgres: no PostgreSQL server answers; installing Debian's postgresql package" >&2
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq postgresql >/dev/null
	pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
echo "ensure-postgres: starting a throwaway cluster in $dir on 127.0.0.1:$port" >&2
runas=()
if [ "$(id -u)" -eq 0 ]; then
	runas=(runuser -u postgres --)
fi
rm -rf "$dir"
mkdir -p "$dir"
[ "$(id -u)" -ne 0 ] || chown postgres "$dir"
"${runas[@]}" "$pgbin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
"${runas[@]}" "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
	-o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on" start >/dev/null
echo "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
