#!/bin/sh
# bench-ab.sh ROUNDS BIN... -- [bench provision flags]: alternates the
# binaries, ROUNDS times, on the same `bench provision` flags and prints one
# line per run: binary, devices/s, p50 and p99 ms, server CPU us and the
# PostgreSQL backends' CPU us (0 on SQLite), write
# syscalls and KiB written per device, errors, ledger check, load average.
R=$1
shift
bins=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
	bins="$bins $1"
	shift
done
[ "$1" = "--" ] && shift
for r in $(seq 1 "$R"); do
	for b in $bins; do
		l=$(cut -d' ' -f1-3 /proc/loadavg)
		"$b" bench provision --json --dir "var/ab-$(basename "$b")" "$@" 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print('$b', round(d['devices_per_second']), round(d['p50_ms'],1), round(d['p99_ms'],1), round(d['server_cpu_us_per_device']), round(d.get('db_cpu_us_per_device', 0)), round(d['server_write_syscalls_per_device'],1), round(d['server_written_kib_per_device'],1), d['errors'], d['ledger_ok'], '$l')"
	done
done
