#!/bin/bash
# opreads.sh BIN CONFIG PORT [N]: times the reads operators make on the
# ledger of CONFIG (a `bench provision --prefill` environment: it has the
# operator identity): N calls (default 5) each of `pool list` and
# `register status`, then, with `BIN serve` listening on 127.0.0.1:PORT,
# of GET /v1/pools, /console/ (the overview) and /metrics with the operator
# identity. Prints wall milliseconds per call (a trailing ! marks a failed
# call) and the load average before and after. docs/benchmarks.md,
# "Session 7 (branch flatcounts)".
BIN=$1 CFG=$2 PORT=$3 N=${4:-5}
D=$(dirname "$CFG")
ms() {
	local s rc
	s=$(date +%s%N)
	"$@" >/dev/null 2>&1
	rc=$?
	echo -n "$((($(date +%s%N) - s) / 1000000))$([ $rc = 0 ] || echo '!') "
}
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo -n "pool list ms:       "; for _ in $(seq "$N"); do ms "$BIN" pool list --config "$CFG"; done; echo
echo -n "register status ms: "; for _ in $(seq "$N"); do ms "$BIN" register status --config "$CFG"; done; echo
sed "s/listen: 127.0.0.1:8443/listen: 127.0.0.1:$PORT/" "$CFG" >"$D/opreads.yaml"
"$BIN" serve --config "$D/opreads.yaml" >"$D/opreads-serve.log" 2>&1 &
spid=$!
for _ in $(seq 100); do curl -sk "https://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.3; done
ID=$D/identities/person-operator
C="curl -sfk --cert $ID/cert.pem --key $ID/key.pem"
echo -n "GET /v1/pools ms:   "; for _ in $(seq "$N"); do ms $C "https://127.0.0.1:$PORT/v1/pools"; done; echo
echo -n "GET /console/ ms:   "; for _ in $(seq "$N"); do ms $C "https://127.0.0.1:$PORT/console/"; done; echo
echo -n "GET /metrics ms:    "; for _ in $(seq "$N"); do ms $C "https://127.0.0.1:$PORT/metrics"; done; echo
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
kill $spid
wait $spid 2>/dev/null
