package config

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/tacerr"
)

func TestParse(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		yaml  string
		field string // expected field at fault; empty: valid
		msg   string
	}{
		{"valid", "manufacturer: Example\ndatabase: {driver: sqlite, dsn: ledger.db}\n", "", ""},
		{"unknown key", "manufacturer: Example\ndatabase: {driver: sqlite, dsn: x}\ndatabse: {}\n", "databse", "line 3"},
		{"unknown nested key", "manufacturer: Example\ndatabase: {driver: sqlite, dsn: x, pool: 3}\n", "pool", "unknown key"},
		{"missing manufacturer", "database: {driver: sqlite, dsn: x}\n", "manufacturer", "required"},
		{"bad driver", "manufacturer: E\ndatabase: {driver: oracle, dsn: x}\n", "database.driver", "not supported"},
		{"missing dsn", "manufacturer: E\ndatabase: {driver: postgres}\n", "database.dsn", "required"},
		{"stepca section without its url, issuer kind stepca", "manufacturer: E\ndatabase: {driver: sqlite, dsn: x}\nissuer: {kind: stepca}\nstepca: {provisioner: p}\n", "stepca.url", "step-ca's https URL"},
		{"stepca section without its url, issuer kind hsm", "manufacturer: E\ndatabase: {driver: sqlite, dsn: x}\nstepca: {provisioner: p}\n", "stepca.url", "step-ca's https URL"},
		{"stepca section without its key label, issuer kind hsm", "manufacturer: E\ndatabase: {driver: sqlite, dsn: x}\nstepca: {url: \"https://ca:9000\", root: r, issuer_cert: i, provisioner: p}\n", "stepca.key_label", "stepca section"},
		{"wrong type", "manufacturer: E\ndatabase: {driver: sqlite, dsn: x, max_conns: many}\n", "", "not valid YAML"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse([]byte(tc.yaml), dir)
			if tc.field == "" && tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if f.Database.DSN != filepath.Join(dir, "ledger.db") {
					t.Fatalf("relative DSN resolved to %q", f.Database.DSN)
				}
				return
			}
			e, ok := tacerr.As(err)
			if !ok || e.Code != tacerr.InvalidConfig || e.Field != tc.field || !strings.Contains(e.Error(), tc.msg) {
				t.Fatalf("Parse() = %v, want invalid_config on %q mentioning %q", err, tc.field, tc.msg)
			}
		})
	}
}

func TestLoadMissingFileSaysWhatToDo(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !tacerr.Is(err, tacerr.InvalidConfig) || !strings.Contains(err.Error(), "--config") {
		t.Fatalf("Load() = %v", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	dir := t.TempDir()
	f, err := Parse([]byte("manufacturer: Example\ndatabase: {driver: sqlite, dsn: /abs/ledger.db}\nhsm: {module: /usr/lib/softhsm/libsofthsm2.so, token_label: t, pin: 'env:PIN'}\n"), dir)
	if err != nil {
		t.Fatal(err)
	}
	out, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "c.yaml")
	os.WriteFile(p, out, 0o600)
	g, err := Load(p)
	if err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	if g.HSM.TokenLabel != "t" || g.Database.DSN != "/abs/ledger.db" || g.Manufacturer != "Example" {
		t.Fatalf("round trip lost data: %+v", g)
	}
}

func TestAuthenticityAndRevocationSections(t *testing.T) {
	f, err := Parse([]byte("manufacturer: E\ndatabase: {driver: sqlite, dsn: x}\nauthenticity: {public_verify: true, lookup_rate: 3, challenge_ttl: 30s}\nrevocation: {next_update: 6h}\n"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !f.Authenticity.API.PublicVerify || f.Authenticity.API.LookupRate != 3 || f.Authenticity.Online.ChallengeTTL.Seconds() != 30 ||
		f.Revocation.NextUpdate.Hours() != 6 || f.Authenticity.API.PublicBurst == 0 {
		t.Fatalf("sections = %+v %+v", f.Authenticity, f.Revocation)
	}
	_, err = Parse([]byte("manufacturer: E\ndatabase: {driver: sqlite, dsn: x}\nrevocation: {next_update: -1h}\n"), t.TempDir())
	if e, ok := tacerr.As(err); !ok || !strings.HasPrefix(e.Field, "revocation.") {
		t.Fatalf("negative next_update: %v", err)
	}
}

func TestIssuerRefresh(t *testing.T) {
	base := "manufacturer: E\ndatabase: {driver: sqlite, dsn: x}\n"
	f, err := Parse([]byte(base), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if f.Provisioning.IssuerRefresh.Seconds() != 5 {
		t.Fatalf("default provisioning.issuer_refresh = %s, want 5s", f.Provisioning.IssuerRefresh)
	}
	f, err = Parse([]byte(base+"provisioning: {issuer_refresh: 250ms}\n"), t.TempDir())
	if err != nil || f.Provisioning.IssuerRefresh.Milliseconds() != 250 {
		t.Fatalf("issuer_refresh: 250ms: %v, %v", f, err)
	}
	for _, v := range []string{"10ms", "2h", "0s"} {
		_, err := Parse([]byte(base+"provisioning: {issuer_refresh: "+v+"}\n"), t.TempDir())
		if e, ok := tacerr.As(err); !ok || e.Code != tacerr.InvalidConfig || e.Field != "provisioning.issuer_refresh" {
			t.Errorf("issuer_refresh: %s: %v, want invalid_config on provisioning.issuer_refresh", v, err)
		}
	}
	_, err = Parse([]byte(base+"provisioning: {issuer_refresh: 1s, issuer_refrsh: 2s}\n"), t.TempDir())
	if e, ok := tacerr.As(err); !ok || e.Field != "issuer_refrsh" {
		t.Errorf("misspelt key: %v, want unknown key issuer_refrsh", err)
	}
}

func TestRegisterRetention(t *testing.T) {
	base := "manufacturer: E\ndatabase: {driver: sqlite, dsn: x}\n"
	for _, tc := range []struct {
		name  string
		yaml  string
		want  time.Duration
		field string
	}{
		{"default 30 days", "", 30 * 24 * time.Hour, ""},
		{"default with a url", "register: {url: 'http://127.0.0.1:1'}\n", 30 * 24 * time.Hour, ""},
		{"forever", "register: {retention: 0s}\n", 0, ""},
		{"a week", "register: {retention: 168h, prune_batch: 500}\n", 168 * time.Hour, ""},
		{"negative", "register: {retention: -1h}\n", 0, "register.retention"},
		{"too short, with a url", "register: {url: 'http://127.0.0.1:1', retention: 30s}\n", 0, "register.retention"},
		{"batch", "register: {prune_batch: 20000}\n", 0, "register.prune_batch"},
		{"typo", "register: {retension: 1h}\n", 0, "retension"},
		{"plain http to a remote register", "register: {url: 'http://register.example/'}\n", 0, "register.url"},
		{"https to a remote register without a client certificate", "register: {url: 'https://register.example/'}\n", 0, "register.tls.cert_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse([]byte(base+tc.yaml), t.TempDir())
			if tc.field != "" {
				if e, ok := tacerr.As(err); !ok || e.Code != tacerr.InvalidConfig || e.Field != tc.field {
					t.Fatalf("Parse() = %v, want invalid_config on %s", err, tc.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Register.Retention != tc.want {
				t.Fatalf("retention = %s, want %s", f.Register.Retention, tc.want)
			}
		})
	}
}

// TestHQLeaseSettings: hq.lease has defaults, and every wrong value is
// refused naming its field; a site's lease_size is bounded too.
func TestHQLeaseSettings(t *testing.T) {
	base := "manufacturer: E\ndatabase: {driver: sqlite, dsn: x}\n"
	f, err := Parse([]byte(base), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if l := f.HQ.Lease; l.MaxSize != 100000 || l.DefaultTTL.Hours() != 720 || l.MaxTTL.Hours() != 2160 || l.MaxHeld != 4 {
		t.Fatalf("hq.lease defaults %+v", l)
	}
	f, err = Parse([]byte(base+"hq: {lease: {max_size: 5000, default_ttl: 24h, max_ttl: 48h, max_held: 2}}\n"), t.TempDir())
	if err != nil || f.HQ.Lease.MaxSize != 5000 || f.HQ.Lease.MaxTTL.Hours() != 48 || f.HQ.Lease.MaxHeld != 2 {
		t.Fatalf("hq.lease: %+v, %v", f, err)
	}
	_, wk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := audit.NewCosigner("hq.example/witness", wk, nil)
	if err != nil {
		t.Fatal(err)
	}
	site := "site: {name: s1, hq_url: 'https://hq:1', cert_file: c, key_file: k, ca_file: a, witness_key: '" + cs.Verifier().Key() + "', "
	for _, tc := range []struct{ yaml, field string }{
		{"hq: {lease: {max_size: 0}}", "hq.lease.max_size"},
		{"hq: {lease: {max_size: 1000001}}", "hq.lease.max_size"},
		{"hq: {lease: {default_ttl: 10s}}", "hq.lease.default_ttl"},
		{"hq: {lease: {default_ttl: 24h, max_ttl: 1h}}", "hq.lease.max_ttl"},
		{"hq: {lease: {max_held: 0}}", "hq.lease.max_held"},
		{"hq: {lease: {max_sise: 10}}", "max_sise"},
		{site + "pools: [{pool: p, lease_size: 2000000}]}", "site.pools[0].lease_size"},
		{site + "pools: [{lease_size: 10}]}", "site.pools[0].pool"},
	} {
		_, err := Parse([]byte(base+tc.yaml+"\n"), t.TempDir())
		if e, ok := tacerr.As(err); !ok || e.Code != tacerr.InvalidConfig || e.Field != tc.field {
			t.Errorf("%s: %v, want invalid_config on %s", tc.yaml, err, tc.field)
		}
	}
}
