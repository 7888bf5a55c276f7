package hsm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"
	"github.com/tacline/tacline/tacerr"
)

func validConfig() Config {
	return Config{Module: "/usr/lib/softhsm/libsofthsm2.so", TokenLabel: "ca", PIN: "env:TACLINE_HSM_PIN"}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name      string
		edit      func(*Config)
		wantField string // "" means valid
	}{
		{name: "valid label and env pin", edit: func(*Config) {}},
		{name: "valid serial and file pin", edit: func(c *Config) { c.TokenLabel, c.TokenSerial, c.PIN = "", "3f4f4c9d68f669cf", "file:/run/pin" }},
		{name: "literal allowed in dev", edit: func(c *Config) { c.PIN, c.AllowLiteralPIN = "literal:1234", true }},
		{name: "no module", edit: func(c *Config) { c.Module = " " }, wantField: "hsm.module"},
		{name: "no token", edit: func(c *Config) { c.TokenLabel = "" }, wantField: "hsm.token_label"},
		{name: "label and serial", edit: func(c *Config) { c.TokenSerial = "1" }, wantField: "hsm.token_serial"},
		{name: "label too long", edit: func(c *Config) { c.TokenLabel = strings.Repeat("x", 33) }, wantField: "hsm.token_label"},
		{name: "serial too long", edit: func(c *Config) { c.TokenLabel, c.TokenSerial = "", strings.Repeat("1", 17) }, wantField: "hsm.token_serial"},
		{name: "no pin", edit: func(c *Config) { c.PIN = "" }, wantField: "hsm.pin"},
		{name: "bare pin", edit: func(c *Config) { c.PIN = "1234" }, wantField: "hsm.pin"},
		{name: "literal not allowed", edit: func(c *Config) { c.PIN = "literal:1234" }, wantField: "hsm.pin"},
		{name: "empty env name", edit: func(c *Config) { c.PIN = "env:" }, wantField: "hsm.pin"},
		{name: "empty file path", edit: func(c *Config) { c.PIN = "file:" }, wantField: "hsm.pin"},
		{name: "empty literal", edit: func(c *Config) { c.PIN, c.AllowLiteralPIN = "literal:", true }, wantField: "hsm.pin"},
		{name: "negative sessions", edit: func(c *Config) { c.Sessions = -1 }, wantField: "hsm.sessions"},
		{name: "too many sessions", edit: func(c *Config) { c.Sessions = MaxSessions + 1 }, wantField: "hsm.sessions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.edit(&c)
			err := c.Validate()
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			e, ok := tacerr.As(err)
			if !ok || e.Code != tacerr.InvalidConfig || e.Field != tt.wantField {
				t.Fatalf("Validate = %v, want invalid_config on %s", err, tt.wantField)
			}
			if strings.Contains(err.Error(), "1234") {
				t.Errorf("error shows the PIN: %v", err)
			}
		})
	}
}

func TestResolvePIN(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("HSMTEST_PIN_SET", "s3cret-env")
	t.Setenv("HSMTEST_PIN_EMPTY", "")
	tests := []struct {
		name    string
		spec    string
		literal bool
		want    string
		wantErr string
	}{
		{name: "env", spec: "env:HSMTEST_PIN_SET", want: "s3cret-env"},
		{name: "env empty", spec: "env:HSMTEST_PIN_EMPTY", wantErr: "HSMTEST_PIN_EMPTY is unset or empty"},
		{name: "file with newline", spec: "file:" + write("a", "s3cret-file\n"), want: "s3cret-file"},
		{name: "file with crlf", spec: "file:" + write("b", "s3cret-crlf\r\n"), want: "s3cret-crlf"},
		{name: "file empty", spec: "file:" + write("c", "\n"), wantErr: "is empty"},
		{name: "file two lines", spec: "file:" + write("d", "s3cret\nsecond\n"), wantErr: "more than one line"},
		{name: "file missing", spec: "file:" + filepath.Join(dir, "missing"), wantErr: "cannot read the PIN file"},
		{name: "literal", spec: "literal:s3cret-lit", literal: true, want: "s3cret-lit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			c.PIN, c.AllowLiteralPIN = tt.spec, tt.literal
			got, err := c.resolvePIN()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !tacerr.Is(err, tacerr.InvalidConfig) {
					t.Fatalf("resolvePIN = %q, %v; want invalid_config containing %q", got, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error shows the PIN: %v", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("resolvePIN = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestConfigStringRedactsLiteralPIN(t *testing.T) {
	c := validConfig()
	c.PIN, c.AllowLiteralPIN = "literal:9876-secret", true
	for _, s := range []string{c.String(), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
		if strings.Contains(s, "9876-secret") {
			t.Errorf("formatted config shows the PIN: %s", s)
		}
		if !strings.Contains(s, "libsofthsm2.so") {
			t.Errorf("formatted config lost the module: %s", s)
		}
	}
}

func FuzzPINSpec(f *testing.F) {
	for _, s := range []string{"env:X", "file:/p", "literal:1234", "", "1234", "env:", "file:", "literal:", "env:A=B", "env:\x00"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, spec string, allowLiteral bool) {
		kind, arg, err := parsePINSpec(spec, allowLiteral)
		if err != nil {
			e, ok := tacerr.As(err)
			if !ok || e.Field != "hsm.pin" {
				t.Fatalf("error without field: %v", err)
			}
			// The message must not depend on a PIN that may be in spec: a
			// different PIN in the same place gives the same message.
			other := ""
			if secret, ok := strings.CutPrefix(spec, pinLiteral); ok && secret != "" {
				other = pinLiteral + "other-pin"
			} else if spec != "" && !strings.HasPrefix(spec, pinEnv) && !strings.HasPrefix(spec, pinFile) && !strings.HasPrefix(spec, pinLiteral) {
				other = "other-pin"
			}
			if other != "" {
				if _, _, err2 := parsePINSpec(other, allowLiteral); err2 == nil || err2.Error() != err.Error() {
					t.Fatalf("error for %q depends on the PIN: %v vs %v", spec, err, err2)
				}
			}
			return
		}
		if kind+":"+arg != spec {
			t.Fatalf("parse(%q) = %q, %q: does not round-trip", spec, kind, arg)
		}
		if kind == "literal" && !allowLiteral {
			t.Fatalf("literal accepted without allow_literal_pin")
		}
		if kind == "literal" && redactPIN(spec) != pinLiteral+"<redacted>" {
			t.Fatalf("redactPIN(%q) = %q", spec, redactPIN(spec))
		}
	})
}

func FuzzParseKeyType(f *testing.F) {
	for _, s := range []string{"p256", "P-384", "rsa3072", "ed25519", "", " p256 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		kt, err := ParseKeyType(s)
		if err != nil {
			if !tacerr.Is(err, tacerr.InvalidInput) {
				t.Fatalf("error code: %v", err)
			}
			return
		}
		if back, err := ParseKeyType(kt.String()); err != nil || back != kt {
			t.Fatalf("%q -> %v does not round-trip: %v, %v", s, kt, back, err)
		}
	})
}

func FuzzParseSlotLabels(f *testing.F) {
	f.Add("Slot 1\n    Token info:\n        Label:            my label                        \n")
	f.Add("Label:\nLabel: x\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, out string) {
		for _, l := range ParseSlotLabels(out) {
			if l == "" || l != strings.TrimSpace(l) || strings.Contains(l, "\n") {
				t.Fatalf("bad label %q from %q", l, out)
			}
		}
	})
}

func TestParseSlotLabels(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want []string
	}{
		{name: "two slots, one free", out: "Slot 7\n    Token info:\n        Label:            my label                        \nSlot 1\n        Label:                                            \n", want: []string{"my label"}},
		{name: "nothing", out: "Available slots:\n", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseSlotLabels(tt.out)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("ParseSlotLabels = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMapErr(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		want      tacerr.Code
		retryable bool
		recover   bool
	}{
		{name: "wrong pin", err: pkcs11.Error(pkcs11.CKR_PIN_INCORRECT), want: tacerr.HSMPINIncorrect},
		{name: "pin locked", err: pkcs11.Error(pkcs11.CKR_PIN_LOCKED), want: tacerr.HSMPINLocked},
		{name: "token absent", err: pkcs11.Error(pkcs11.CKR_TOKEN_NOT_PRESENT), want: tacerr.HSMTokenAbsent, retryable: true, recover: true},
		{name: "device removed", err: pkcs11.Error(pkcs11.CKR_DEVICE_REMOVED), want: tacerr.HSMTokenAbsent, retryable: true, recover: true},
		{name: "device error", err: pkcs11.Error(pkcs11.CKR_DEVICE_ERROR), want: tacerr.HSMDeviceError, retryable: true},
		{name: "session invalid", err: fmt.Errorf("wrapped: %w", pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID)), want: tacerr.HSMUnavailable, retryable: true, recover: true},
		{name: "session closed", err: pkcs11.Error(pkcs11.CKR_SESSION_CLOSED), want: tacerr.HSMUnavailable, retryable: true, recover: true},
		{name: "not logged in", err: pkcs11.Error(pkcs11.CKR_USER_NOT_LOGGED_IN), want: tacerr.HSMUnavailable, retryable: true, recover: true},
		{name: "stale handle", err: pkcs11.Error(pkcs11.CKR_OBJECT_HANDLE_INVALID), want: tacerr.HSMKeyNotFound, recover: true},
		{name: "crypto11 token not found", err: fmt.Errorf("could not find PKCS#11 token"), want: tacerr.HSMTokenAbsent, retryable: true},
		{name: "module load", err: fmt.Errorf("failed to create module context: failed to open module"), want: tacerr.InvalidConfig},
		{name: "session pool exhausted", err: fmt.Errorf("get session: %w", context.DeadlineExceeded), want: tacerr.HSMUnavailable, retryable: true},
		{name: "tacerr passes through", err: tacerr.New(tacerr.HSMKeyUnsafe, "x"), want: tacerr.HSMKeyUnsafe},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mapErr(tt.err, "do it")
			e, ok := tacerr.As(got)
			if !ok || e.Code != tt.want || e.Retryable() != tt.retryable {
				t.Fatalf("mapErr(%v) = %v (retryable %v), want %s retryable %v", tt.err, got, ok && e.Retryable(), tt.want, tt.retryable)
			}
			if needsRecovery(tt.err) != tt.recover {
				t.Fatalf("needsRecovery(%v) = %v, want %v", tt.err, !tt.recover, tt.recover)
			}
			if isPINFault(tt.err) != (tt.want == tacerr.HSMPINIncorrect || tt.want == tacerr.HSMPINLocked) {
				t.Fatalf("isPINFault(%v) wrong", tt.err)
			}
		})
	}
}
