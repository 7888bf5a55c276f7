package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tacline/tacline/tacerr"
)

// Every key has a meaning, and docs/configuration.md is exactly the
// generated reference (regenerate: tacline config reference > docs/configuration.md).
func TestReferenceIsCompleteAndDocsMatch(t *testing.T) {
	keys := Reference()
	seen := map[string]bool{}
	for _, k := range keys {
		if k.Doc == "" {
			t.Errorf("%s has no doc tag: add doc:\"...\" to its field", k.Path)
		}
		if seen[k.Path] {
			t.Errorf("%s listed twice", k.Path)
		}
		seen[k.Path] = true
	}
	for _, want := range []string{"database.dsn", "hsm.pin", "server.identity_map[].roles", "audit.checkpoint_every",
		"register.backoff.max", "authenticity.challenge_ttl", "authenticity.lookup_burst", "provisioning.issuer_refresh"} {
		if !seen[want] {
			t.Errorf("reference lacks %s", want)
		}
	}
	var buf bytes.Buffer
	if err := WriteReference(&buf); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join("..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(doc, buf.Bytes()) {
		t.Fatal("docs/configuration.md differs from `tacline config reference`: regenerate it with `tacline config reference > docs/configuration.md`")
	}
}

// Defaults shown are the values a file without the key gets.
func TestReferenceDefaults(t *testing.T) {
	got := map[string]string{}
	for _, k := range Reference() {
		got[k.Path] = k.Default
	}
	for path, want := range map[string]string{
		"provisioning.intent_timeout": "5m0s", "register.batch_size": "100", "register.retention": "720h0m0s",
		"csr.curves": "P-256, P-384", "audit.key_label": "tacline-audit", "hsm.allow_literal_pin": "false",
	} {
		if got[path] != want {
			t.Errorf("default of %s = %q, want %q", path, got[path], want)
		}
	}
}

func TestCheckNamesEveryField(t *testing.T) {
	dir := t.TempDir()
	yaml := "manufacturer: E\ndatabase: {driver: sqlite, dsn: nodir/ledger.db}\n" +
		"hsm: {module: /nonexistent/lib.so, token_label: t, pin: 'file:pin'}\n" +
		"server: {listen: '127.0.0.1:8443', tls_cert: cert.pem, tls_key: key.pem, client_ca: [ca.pem]}\n"
	f, err := Parse([]byte(yaml), dir)
	if err != nil {
		t.Fatal(err)
	}
	if errs := f.Check(false); len(errs) != 0 {
		t.Fatalf("Check(false) = %v, want none", errs)
	}
	var fields []string
	for _, e := range f.Check(true) {
		te, ok := tacerr.As(e)
		if !ok || te.Code != tacerr.InvalidConfig {
			t.Fatalf("Check error %v is not invalid_config", e)
		}
		fields = append(fields, te.Field)
	}
	want := "server.tls_cert server.tls_key hsm.module server.client_ca[0] hsm.pin database.dsn"
	if strings.Join(fields, " ") != want {
		t.Fatalf("Check(true) fields = %v, want %s", fields, want)
	}
	bad, err := Parse([]byte("manufacturer: E\ndatabase: {driver: sqlite, dsn: l.db}\nserver: {listen: nowhere}\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	fields = nil
	for _, e := range bad.Check(false) {
		te, _ := tacerr.As(e)
		fields = append(fields, te.Field)
	}
	if strings.Join(fields, " ") != "server.listen hsm.module" {
		t.Fatalf("Check(false) fields = %v", fields)
	}
}
