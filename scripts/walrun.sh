#!/bin/sh
# walrun.sh BIN DIR [bench provision flags]: runs `BIN bench provision --json
# --dir DIR` and, from 8 s after its start (the measured phase), copies the
# ledger and its WAL every 0.7 s into DIR.c1, DIR.c2, ... for
# scripts/walframes.py DIR. Prints the run's JSON.
set -e
BIN=$1 DIR=$2
shift 2
"$BIN" bench provision --json --dir "$DIR" "$@" >"$DIR.json" 2>/dev/null &
pid=$!
sleep 8
i=0
while kill -0 $pid 2>/dev/null && [ $i -lt 25 ]; do
	i=$((i + 1))
	mkdir -p "$DIR.c$i"
	# the WAL first: within one generation it only grows
	cp "$DIR/ledger.db-wal" "$DIR.c$i/copy.db-wal" 2>/dev/null || true
	cp "$DIR/ledger.db" "$DIR.c$i/copy.db" 2>/dev/null || true
	sleep 0.7
done
wait $pid
cat "$DIR.json"
