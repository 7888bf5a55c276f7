#!/usr/bin/env bash
# Builds the tacline Debian package with dpkg-deb only (make deb).
#   scripts/build-deb.sh [OUTDIR]     (default: bin/)
# BIN=path uses an already built tacline binary (tests); otherwise it is
# built here with the package version stamped in (tacline --version).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bin}
arch=$(dpkg --print-architecture)
rev=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
date=$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date -u +%Y%m%d)
version=${VERSION:-0.1.0~git${date}.${rev}}
stage=$(mktemp -d "${TMPDIR:-/tmp}/tacline-deb-XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
mkdir -p "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/tacline" \
	"$root/usr/share/doc/tacline" "$root/usr/share/tacline/prometheus" "$root/usr/share/tacline/grafana"
if [ -n "${BIN:-}" ]; then
	install -m 0755 "$BIN" "$root/usr/bin/tacline"
else
	go build -trimpath -ldflags "-X main.version=$version" -o "$root/usr/bin/tacline" ./cmd/tacline
fi
install -m 0644 deploy/debian/tacline.service "$root/lib/systemd/system/tacline.service"
install -m 0640 deploy/debian/tacline.yaml "$root/etc/tacline/tacline.yaml"
install -m 0640 deploy/debian/softhsm2.conf "$root/etc/tacline/softhsm2.conf"
install -m 0644 deploy/prometheus/alerts.yml "$root/usr/share/tacline/prometheus/alerts.yml"
install -m 0644 deploy/grafana/tacline.json "$root/usr/share/tacline/grafana/tacline.json"
for d in operations configuration architecture hsm audit-format; do
	[ -f "docs/$d.md" ] && install -m 0644 "docs/$d.md" "$root/usr/share/doc/tacline/$d.md"
done
install -m 0644 README.md "$root/usr/share/doc/tacline/README.md"
printf 'tacline\nSee https://github.com/tacline/tacline for the license of this software.\n' > "$root/usr/share/doc/tacline/copyright"
for s in postinst prerm postrm; do
	install -m 0755 "deploy/debian/$s" "$root/DEBIAN/$s"
done
printf '/etc/tacline/tacline.yaml\n/etc/tacline/softhsm2.conf\n' > "$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" deploy/debian/control.in > "$root/DEBIAN/control"
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
mkdir -p "$out"
deb="$out/tacline_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >/dev/null
echo "$deb"
