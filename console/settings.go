package console

import (
	"os"
	"time"

	"github.com/tacline/tacline/tacerr"
)

// Settings is the `console:` section of the configuration.
type Settings struct {
	// Refresh is how often the overview's live panels reload (0: 5s).
	Refresh time.Duration `yaml:"refresh" doc:"how often the overview's live panels reload; at least 1s (0: 5s)" default:"5s"`
	// WorkDir keeps uploaded register files, reconciliation results and
	// audit exports made from the console (empty: a temporary directory,
	// removed when the server stops).
	WorkDir string `yaml:"work_dir" doc:"directory for uploaded register files, reconciliation results and audit exports made in the console (empty: a temporary directory removed at shutdown)"`
	// CheckTexts is a translation of the public check page (LoadTexts);
	// empty: English.
	CheckTexts string `yaml:"check_texts" doc:"YAML file translating the public /check page (lang and texts; keys left out stay English; empty: English)"`
	// CSRFKeyFile holds the key the console's form tokens are made with.
	// Replicas serving one console address must share it; empty: a random
	// key per process (forms then fail on another replica and after a
	// restart).
	CSRFKeyFile string `yaml:"csrf_key_file" doc:"file of at least 32 random bytes (mode 0600, e.g. head -c 32 /dev/urandom) that the console's form tokens are made with; every replica behind one console address needs the same file (empty: a random key per process, so a form fails on another replica or after a restart)"`
}

// MinCSRFKeyBytes is the shortest key console.csrf_key_file may hold.
const MinCSRFKeyBytes = 32

// LoadCSRFKey reads a console CSRF key file: at least MinCSRFKeyBytes
// bytes, readable by its owner only.
func LoadCSRFKey(path string) ([]byte, error) {
	const field = "console.csrf_key_file"
	st, err := os.Stat(path)
	if err != nil {
		return nil, tacerr.Field(tacerr.InvalidConfig, field, "cannot be read: %v (make one with: umask 077; head -c 32 /dev/urandom > %s)", err, path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, tacerr.Field(tacerr.InvalidConfig, field, "%s is readable or writable by others (mode %04o): chmod 600 it", path, st.Mode().Perm())
	}
	if !st.Mode().IsRegular() {
		return nil, tacerr.Field(tacerr.InvalidConfig, field, "%s is not a regular file", path)
	}
	key, err := os.ReadFile(path)
	if err != nil {
		return nil, tacerr.Field(tacerr.InvalidConfig, field, "cannot be read: %v", err)
	}
	if len(key) < MinCSRFKeyBytes {
		return nil, tacerr.Field(tacerr.InvalidConfig, field, "%s holds %d bytes, at least %d random bytes needed (head -c 32 /dev/urandom > %s)", path, len(key), MinCSRFKeyBytes, path)
	}
	return key, nil
}

// Validate names the first wrong field; it reads the texts file.
func (s Settings) Validate() error {
	if s.Refresh != 0 && s.Refresh < time.Second {
		return tacerr.Field(tacerr.InvalidConfig, "console.refresh", "must be at least 1s (or left out for 5s), got %s", s.Refresh)
	}
	if s.CheckTexts != "" {
		if _, err := LoadTexts(s.CheckTexts); err != nil {
			return err
		}
	}
	if s.CSRFKeyFile != "" {
		if _, err := LoadCSRFKey(s.CSRFKeyFile); err != nil {
			return err
		}
	}
	return nil
}

// ResolvePaths makes the section's relative paths relative to the
// configuration file (abs).
func (s *Settings) ResolvePaths(abs func(string) string) {
	if s.WorkDir != "" {
		s.WorkDir = abs(s.WorkDir)
	}
	if s.CheckTexts != "" {
		s.CheckTexts = abs(s.CheckTexts)
	}
	if s.CSRFKeyFile != "" {
		s.CSRFKeyFile = abs(s.CSRFKeyFile)
	}
}

// Apply copies the settings into cfg, loading the texts file.
func (s Settings) Apply(cfg *Config) error {
	cfg.Refresh, cfg.WorkDir = s.Refresh, s.WorkDir
	if s.CSRFKeyFile != "" {
		key, err := LoadCSRFKey(s.CSRFKeyFile)
		if err != nil {
			return err
		}
		cfg.CSRFKey = key
	}
	if s.CheckTexts == "" {
		return nil
	}
	t, err := LoadTexts(s.CheckTexts)
	if err != nil {
		return err
	}
	cfg.Texts = t
	return nil
}
