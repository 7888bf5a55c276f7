#!/usr/bin/env bash
# Lints api/openapi.yaml and register/openapi.yaml with Redocly CLI's
# recommended rules (tools/openapi-lint/redocly.yaml) and fails on any error
# or warning. Redocly CLI is pinned in tools/openapi-lint/package-lock.json;
# when it is missing it is installed from the npm registry with `npm ci`
# (and Node.js from Debian's packages when node is missing), and this says so.
set -euo pipefail
cd "$(dirname "$0")/../tools/openapi-lint"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "openapi-lint: installing missing packages: nodejs npm" >&2
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
want=$(node -p 'require("./package-lock.json").packages["node_modules/@redocly/cli"].version')
have=$(node -p 'try { require("./node_modules/@redocly/cli/package.json").version } catch { "" }')
if [ "$have" != "$want" ]; then
	echo "openapi-lint: installing Redocly CLI $want from the npm registry (npm ci)" >&2
	npm ci --prefer-offline --no-audit --no-fund --loglevel=error >&2
fi

export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
report=$(mktemp)
trap 'rm -f "$report"' EXIT
failed=0
for doc in api/openapi.yaml register/openapi.yaml; do
	status=0
	node_modules/.bin/redocly lint --format=json "../../$doc" >"$report" 2>/dev/null || status=$?
	totals=$(node -e '
		const t = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).totals;
		console.log(t.errors + " " + t.warnings + " " + t.ignored);
	' "$report") || { echo "openapi-lint: $doc: redocly gave no report (exit $status)" >&2; exit 1; }
	read -r errors warnings ignored <<<"$totals"
	if [ "$status" -ne 0 ] || [ "$errors" -ne 0 ] || [ "$warnings" -ne 0 ]; then
		node_modules/.bin/redocly lint --format=codeframe "../../$doc" 2>&1 | grep -v '[║╔╚]' >&2 || true
		echo "openapi-lint: $doc: FAILED: $errors errors, $warnings warnings (0 of each allowed)" >&2
		failed=1
		continue
	fi
	echo "openapi-lint: $doc: 0 errors, 0 warnings ($ignored ignored, see tools/openapi-lint/.redocly.lint-ignore.yaml)"
done
exit $failed
