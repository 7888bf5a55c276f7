#!/bin/sh
# walrun.sh BIN DIR [bench provision flags]: runs `BIN bench provision --json
# --dir DIR` and, from 8 s after its start (the measured phase), copies the
# ledger and its WAL every 0.7 s into DIR.c1, DIR.c2, ... for
# scripts/walframes.py DIR. Prints the run's JSON.
#
# With --prefill N the ledger watched is DIR/prefilled/ledger.db, from 8 s
# after the prefilled ledger's server started (its server.log appears once
# the fill and the empty ledger's run are done), and a copy holds only the
# WAL and the number of devices read from the live ledger right after it
# (copy.devices): copying a ledger of gigabytes takes longer than a WAL
# generation. The number is the devices table's largest rowid, one b-tree
# descent: devices rows are never deleted, so it equals COUNT(*), which
# scanned 10^7 rows between two copies. walframes.py then maps the pages
# with the ledger left at the end of the run.
set -e
BIN=$1 DIR=$2
shift 2
db="$DIR/ledger.db" copies=25 pause=0.7
case " $* " in *" --prefill "*) db="$DIR/prefilled/ledger.db" copies=100 pause=0.2 ;; esac
"$BIN" bench provision --json --dir "$DIR" "$@" >"$DIR.json" 2>/dev/null &
pid=$!
if [ "$db" != "$DIR/ledger.db" ]; then
	while kill -0 $pid 2>/dev/null && [ ! -e "$DIR/prefilled/server.log" ]; do sleep 0.5; done
fi
sleep 8
i=0
while kill -0 $pid 2>/dev/null && [ $i -lt $copies ]; do
	i=$((i + 1))
	mkdir -p "$DIR.c$i"
	# the WAL first: within one generation it only grows
	cp "$db-wal" "$DIR.c$i/copy.db-wal" 2>/dev/null || true
	if [ "$db" = "$DIR/ledger.db" ]; then
		cp "$db" "$DIR.c$i/copy.db" 2>/dev/null || true
	else
		python3 -c "import sqlite3,sys; print(sqlite3.connect('file:'+sys.argv[1]+'?mode=ro', uri=True).execute('SELECT COALESCE(MAX(rowid), 0) FROM devices').fetchone()[0])" "$db" >"$DIR.c$i/copy.devices" 2>/dev/null || true
	fi
	sleep $pause
done
wait $pid
cat "$DIR.json"
