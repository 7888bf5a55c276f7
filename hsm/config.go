package hsm

import (
	"fmt"
	"os"
	"strings"

	"github.com/tacline/tacline/tacerr"
)

// DefaultSessions is the size of the session pool when Config.Sessions is 0.
const DefaultSessions = 8

// MaxSessions bounds Config.Sessions; tokens report their own (lower) limit,
// which crypto11 obeys as well.
const MaxSessions = 1024

// Config selects a PKCS#11 token and says how to log in to it. It is the
// `hsm:` section of tacline's configuration file.
type Config struct {
	// Module is the path of the PKCS#11 shared library
	// (/usr/lib/softhsm/libsofthsm2.so for SoftHSM2).
	Module string `yaml:"module" doc:"path of the PKCS#11 library (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)"`
	// TokenLabel or TokenSerial (exactly one) chooses the token. Slot
	// numbers are never used: SoftHSM2 and others renumber slots.
	TokenLabel  string `yaml:"token_label" doc:"label of the token to use (set this or token_serial; slots are never used)"`
	TokenSerial string `yaml:"token_serial" doc:"serial of the token to use (instead of token_label)"`
	// PIN says where the user PIN is: "env:NAME" or "file:PATH" (one line;
	// a trailing newline is ignored). "literal:PIN" is refused unless
	// AllowLiteralPIN is set (development only).
	PIN string `yaml:"pin" doc:"where the user PIN is: env:NAME or file:PATH (never the PIN itself)"`
	// Sessions is the size of the session pool (0: DefaultSessions).
	Sessions int `yaml:"sessions" doc:"size of the PKCS#11 session pool (0: 8)" default:"8"`
	// AllowUnsafeKeys lets Signer load private keys that are extractable or
	// not sensitive. Development only.
	AllowUnsafeKeys bool `yaml:"allow_unsafe_keys" doc:"accept extractable or non-sensitive private keys (development only)"`
	// AllowLiteralPIN permits "pin: literal:1234". Development only.
	AllowLiteralPIN bool `yaml:"allow_literal_pin" doc:"accept pin: literal:PIN (development only)"`
	// SoftHSMConf, when set, is exported as SOFTHSM2_CONF for this process
	// before the module is loaded. SoftHSM2 reads it once per load of the
	// library, so every Token of one process must agree on it.
	SoftHSMConf string `yaml:"softhsm2_conf" doc:"SOFTHSM2_CONF for this process (SoftHSM2 only; relative to this file)"`
	// HealthKey is the label of the key Health signs with; empty means the
	// first key a Signer was loaded for.
	HealthKey string `yaml:"health_key" doc:"label of the key the health probe signs with (empty: the first key loaded)"`
}

// PIN source prefixes.
const (
	pinEnv     = "env:"
	pinFile    = "file:"
	pinLiteral = "literal:"
)

// Validate checks the configuration without touching the token. Errors have
// code invalid_config and name the field ("hsm.pin").
func (c Config) Validate() error {
	if strings.TrimSpace(c.Module) == "" {
		return tacerr.Field(tacerr.InvalidConfig, "hsm.module", "the PKCS#11 module path is required (for SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)")
	}
	switch {
	case c.TokenLabel == "" && c.TokenSerial == "":
		return tacerr.Field(tacerr.InvalidConfig, "hsm.token_label", "set hsm.token_label or hsm.token_serial to choose the token")
	case c.TokenLabel != "" && c.TokenSerial != "":
		return tacerr.Field(tacerr.InvalidConfig, "hsm.token_serial", "set only one of hsm.token_label and hsm.token_serial")
	}
	if len(c.TokenLabel) > 32 {
		return tacerr.Field(tacerr.InvalidConfig, "hsm.token_label", "a PKCS#11 token label has at most 32 characters, got %d", len(c.TokenLabel))
	}
	if len(c.TokenSerial) > 16 {
		return tacerr.Field(tacerr.InvalidConfig, "hsm.token_serial", "a PKCS#11 token serial has at most 16 characters, got %d", len(c.TokenSerial))
	}
	if _, _, err := parsePINSpec(c.PIN, c.AllowLiteralPIN); err != nil {
		return err
	}
	if c.Sessions < 0 || c.Sessions > MaxSessions {
		return tacerr.Field(tacerr.InvalidConfig, "hsm.sessions", "must be between 0 (default %d) and %d, got %d", DefaultSessions, MaxSessions, c.Sessions)
	}
	if c.SoftHSMConf != "" && strings.ContainsRune(c.SoftHSMConf, 0) {
		return tacerr.Field(tacerr.InvalidConfig, "hsm.softhsm2_conf", "contains a NUL byte")
	}
	return nil
}

// String describes the configuration without the PIN itself: a literal PIN
// is shown as "literal:<redacted>".
func (c Config) String() string {
	token := "label=" + c.TokenLabel
	if c.TokenSerial != "" {
		token = "serial=" + c.TokenSerial
	}
	return fmt.Sprintf("hsm{module=%s token %s pin=%s sessions=%d}", c.Module, token, redactPIN(c.PIN), c.Sessions)
}

// GoString keeps %#v from printing a literal PIN.
func (c Config) GoString() string { return c.String() }

func redactPIN(spec string) string {
	if strings.HasPrefix(spec, pinLiteral) {
		return pinLiteral + "<redacted>"
	}
	if strings.HasPrefix(spec, pinEnv) || strings.HasPrefix(spec, pinFile) {
		return spec
	}
	return "<redacted>"
}

// parsePINSpec splits a PIN source into its kind ("env", "file",
// "literal") and argument. It never echoes a literal PIN in its errors.
func parsePINSpec(spec string, allowLiteral bool) (kind, arg string, err error) {
	const field = "hsm.pin"
	switch {
	case spec == "":
		return "", "", tacerr.Field(tacerr.InvalidConfig, field, `the PIN source is required: "env:NAME" or "file:PATH"`)
	case strings.HasPrefix(spec, pinEnv):
		arg = strings.TrimPrefix(spec, pinEnv)
		if arg == "" || strings.ContainsAny(arg, "=\x00") {
			return "", "", tacerr.Field(tacerr.InvalidConfig, field, `"env:" needs an environment variable name, e.g. "env:TACLINE_HSM_PIN"`)
		}
		return "env", arg, nil
	case strings.HasPrefix(spec, pinFile):
		arg = strings.TrimPrefix(spec, pinFile)
		if arg == "" || strings.ContainsRune(arg, 0) {
			return "", "", tacerr.Field(tacerr.InvalidConfig, field, `"file:" needs a path, e.g. "file:/run/secrets/hsm-pin"`)
		}
		return "file", arg, nil
	case strings.HasPrefix(spec, pinLiteral):
		if !allowLiteral {
			return "", "", tacerr.Field(tacerr.InvalidConfig, field, `a literal PIN is for development only: use "env:NAME" or "file:PATH", or set hsm.allow_literal_pin: true on a development machine`)
		}
		arg = strings.TrimPrefix(spec, pinLiteral)
		if arg == "" {
			return "", "", tacerr.Field(tacerr.InvalidConfig, field, `"literal:" is followed by nothing`)
		}
		return "literal", arg, nil
	}
	// Do not echo spec: it may be a PIN typed in the wrong place.
	return "", "", tacerr.Field(tacerr.InvalidConfig, field, `unknown PIN source: use "env:NAME" or "file:PATH" (the value is not shown because it may be a PIN)`)
}

// resolvePIN reads the PIN from where the configuration says it is.
func (c Config) resolvePIN() (string, error) {
	const field = "hsm.pin"
	kind, arg, err := parsePINSpec(c.PIN, c.AllowLiteralPIN)
	if err != nil {
		return "", err
	}
	var pin string
	switch kind {
	case "env":
		pin = os.Getenv(arg)
		if pin == "" {
			return "", tacerr.Field(tacerr.InvalidConfig, field, "environment variable %s is unset or empty; export the HSM user PIN in it", arg)
		}
	case "file":
		b, err := os.ReadFile(arg)
		if err != nil {
			// The path is configuration, not a secret; the OS error names it.
			return "", tacerr.Field(tacerr.InvalidConfig, field, "cannot read the PIN file: %v", err)
		}
		pin = strings.TrimRight(string(b), "\r\n")
		if pin == "" {
			return "", tacerr.Field(tacerr.InvalidConfig, field, "PIN file %s is empty", arg)
		}
		if strings.ContainsAny(pin, "\r\n") {
			return "", tacerr.Field(tacerr.InvalidConfig, field, "PIN file %s has more than one line; it must hold only the PIN", arg)
		}
	case "literal":
		pin = arg
	}
	return pin, nil
}

func (c Config) sessions() int {
	if c.Sessions == 0 {
		return DefaultSessions
	}
	return c.Sessions
}

func (c Config) tokenName() string {
	if c.TokenSerial != "" {
		return "serial " + c.TokenSerial
	}
	return fmt.Sprintf("label %q", c.TokenLabel)
}
