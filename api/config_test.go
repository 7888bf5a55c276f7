package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/tacline/tacline/tacerr"
)

func TestConfigValidate(t *testing.T) {
	base := Config{Listen: "127.0.0.1:8443", TLSCert: "s.pem", TLSKey: "k.pem", ClientCA: []string{"ca.pem"}}
	tests := []struct {
		name      string
		mutate    func(*Config)
		wantField string
	}{
		{"valid", func(*Config) {}, ""},
		{"valid with map", func(c *Config) {
			c.MappedCA = []string{"step.pem"}
			c.IdentityMap = []IdentityRule{{URI: "spiffe://x/y", Station: "S1"}, {CN: "qa", Roles: []string{"auditor", "regulator"}}}
		}, ""},
		{"no listen", func(c *Config) { c.Listen = "" }, "server.listen"},
		{"listen without port", func(c *Config) { c.Listen = "127.0.0.1" }, "server.listen"},
		{"no cert", func(c *Config) { c.TLSCert = "" }, "server.tls_cert"},
		{"no key", func(c *Config) { c.TLSKey = "" }, "server.tls_key"},
		{"no client ca", func(c *Config) { c.ClientCA = nil }, "server.client_ca"},
		{"empty client ca", func(c *Config) { c.ClientCA = []string{"a.pem", ""} }, "server.client_ca[1]"},
		{"empty mapped ca", func(c *Config) { c.MappedCA = []string{""} }, "server.mapped_ca[0]"},
		{"rule matches nothing", func(c *Config) { c.IdentityMap = []IdentityRule{{Station: "S1"}} }, "server.identity_map[0].uri"},
		{"rule matches two ways", func(c *Config) { c.IdentityMap = []IdentityRule{{URI: "a:b", CN: "x", Station: "S1"}} }, "server.identity_map[0].uri"},
		{"rule grants nothing", func(c *Config) { c.IdentityMap = []IdentityRule{{CN: "x"}} }, "server.identity_map[0].station"},
		{"rule bad station", func(c *Config) { c.IdentityMap = []IdentityRule{{CN: "x", Station: "has space"}} }, "server.identity_map[0].station"},
		{"rule unknown role", func(c *Config) {
			c.IdentityMap = []IdentityRule{{CN: "y", Roles: []string{"auditor"}}, {CN: "x", Roles: []string{"operator", "root"}}}
		}, "server.identity_map[1].roles[1]"},
		{"negative timeout", func(c *Config) { c.WriteTimeout = -time.Second }, "server.write_timeout"},
		{"negative gc percent", func(c *Config) { c.GCPercent = -1 }, "server.gc_percent"},
		{"negative memory limit", func(c *Config) { c.MemoryLimitMiB = -5 }, "server.memory_limit_mib"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			c.ClientCA = append([]string(nil), base.ClientCA...)
			tc.mutate(&c)
			err := c.Validate()
			if tc.wantField == "" {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				return
			}
			e, ok := tacerr.As(err)
			if !ok || e.Code != tacerr.InvalidConfig || e.Field != tc.wantField || e.Message == "" {
				t.Fatalf("err %v, want invalid_config on %s", err, tc.wantField)
			}
		})
	}
}

func TestConfigYAML(t *testing.T) {
	src := `listen: 127.0.0.1:8443
tls_cert: server.pem
tls_key: server-key.pem
client_ca: [station-ca.pem]
mapped_ca: [/etc/step/root_ca.crt]
identity_map:
  - uri: spiffe://acme/line3/s7
    station: F1-L3-S07
read_timeout: 5s
write_timeout: 1m
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	c.ResolvePaths(func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join("/etc/tacline", p)
	})
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	read, write, idle := c.timeouts()
	if c.TLSCert != "/etc/tacline/server.pem" || c.ClientCA[0] != "/etc/tacline/station-ca.pem" || c.MappedCA[0] != "/etc/step/root_ca.crt" ||
		read != 5*time.Second || write != time.Minute || idle != DefaultIdleTimeout || c.IdentityMap[0].Station != "F1-L3-S07" {
		t.Fatalf("decoded %+v", c)
	}
}

// TestNewFileErrors: New names the field whose file is missing or wrong.
func TestNewFileErrors(t *testing.T) {
	pki := newPKI(t)
	notCA := pki.serverCert
	tests := []struct {
		name      string
		mutate    func(*Config)
		wantField string
		wantMsg   string
	}{
		{"missing cert", func(c *Config) { c.TLSCert = filepath.Join(pki.dir, "nope.pem") }, "server.tls_cert", "nope.pem"},
		{"missing key", func(c *Config) { c.TLSKey = filepath.Join(pki.dir, "nope-key.pem") }, "server.tls_key", "nope-key.pem"},
		{"key of another certificate", func(c *Config) { c.TLSKey = pki.write(t, "other-key.pem", pemBlock("PRIVATE KEY", mustPKCS8(t))) }, "server.tls_key", "not a certificate and its key"},
		{"client ca missing", func(c *Config) { c.ClientCA = []string{filepath.Join(pki.dir, "gone.pem")} }, "server.client_ca[0]", "gone.pem"},
		{"client ca not PEM", func(c *Config) { c.ClientCA = []string{pki.write(t, "junk.pem", []byte("junk"))} }, "server.client_ca[0]", "PEM"},
		{"client ca not a CA", func(c *Config) { c.ClientCA = []string{notCA} }, "server.client_ca[0]", "not a CA"},
		{"cert with text before it", func(c *Config) {
			c.TLSCert = pki.write(t, "subj.pem", prepend(t, "subject=CN=server\n", pki.serverCert))
		}, "server.tls_cert", "subj.pem: text before the first PEM block at line 1 (byte 0)"},
		{"key with text after it", func(c *Config) { c.TLSKey = pki.write(t, "key-junk.pem", append(read(t, pki.serverKey), "junk\n"...)) }, "server.tls_key", "key-junk.pem: trailing data after PEM block 1 at line"},
		{"client ca with text before it", func(c *Config) {
			c.ClientCA = []string{pki.write(t, "bag.pem", prepend(t, "Bag Attributes\n    friendlyName: ca\n", pki.caFile))}
		}, "server.client_ca[0]", "bag.pem: text before the first PEM block at line 1"},
		{"mapped ca not a CA", func(c *Config) { c.MappedCA = []string{pki.caFile, notCA} }, "server.mapped_ca[1]", "not a CA"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := pki.config()
			tc.mutate(&c)
			_, err := New(c, newFake(t, pki), prometheus.NewRegistry(), nil)
			e, ok := tacerr.As(err)
			if !ok || e.Field != tc.wantField || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("err %v, want field %s mentioning %q", err, tc.wantField, tc.wantMsg)
			}
			if bytes.Contains([]byte(err.Error()), []byte("PRIVATE KEY")) {
				t.Fatalf("error shows key material: %v", err)
			}
		})
	}
	// Two servers on one registry: the second is refused, not a panic.
	reg := prometheus.NewRegistry()
	if _, err := New(pki.config(), newFake(t, pki), reg, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := New(pki.config(), newFake(t, pki), reg, nil); !tacerr.Is(err, tacerr.Internal) {
		t.Fatalf("second server on one registry: %v", err)
	}
}

func mustPKCS8(t *testing.T) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(genKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestListenAndServe: a busy address is an invalid_config error naming
// server.listen; the TLS configuration asks for client certificates.
func TestListenAndServe(t *testing.T) {
	pki := newPKI(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := pki.config()
	cfg.Listen = busy.Addr().String()
	srv, err := New(cfg, newFake(t, pki), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = srv.ListenAndServe(context.Background())
	if e, ok := tacerr.As(err); !ok || e.Field != "server.listen" {
		t.Fatalf("listen on a busy address: %v", err)
	}
	tc := srv.TLSConfig()
	if tc.MinVersion != tls.VersionTLS12 || tc.ClientAuth != tls.RequestClientCert || len(tc.Certificates) != 1 || tc.ClientCAs == nil {
		t.Fatalf("TLS config %+v", tc)
	}
	tc.MinVersion = tls.VersionTLS10 // a clone: the server's stays
	if srv.TLSConfig().MinVersion != tls.VersionTLS12 {
		t.Fatal("TLSConfig returned the server's own configuration")
	}
}

// TuneRuntime applies gc_percent (default 400) and memory_limit_mib unless
// the environment sets GOGC or GOMEMLIMIT.
func TestTuneRuntime(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	gc, lim := Config{}.TuneRuntime()
	if gc != DefaultGCPercent || debug.SetGCPercent(gc) != DefaultGCPercent {
		t.Fatalf("default gc percent = %d, want %d", gc, DefaultGCPercent)
	}
	if lim != -1 {
		t.Fatalf("default memory limit = %d, want none (-1)", lim)
	}
	gc, lim = Config{GCPercent: 150, MemoryLimitMiB: 512}.TuneRuntime()
	if gc != 150 || lim != 512<<20 || debug.SetMemoryLimit(-1) != 512<<20 {
		t.Fatalf("configured: gc %d, limit %d", gc, lim)
	}
	// The environment wins.
	t.Setenv("GOGC", "250")
	debug.SetGCPercent(250) // what the runtime read from GOGC at start-up
	if gc, _ := (Config{GCPercent: 150}).TuneRuntime(); gc != 250 {
		t.Fatalf("gc percent with GOGC set = %d, want 250", gc)
	}
}

func read(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func prepend(t *testing.T, text, file string) []byte { return append([]byte(text), read(t, file)...) }
