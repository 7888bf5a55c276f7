package console

import (
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
}

// Apply copies the settings into cfg, loading the texts file.
func (s Settings) Apply(cfg *Config) error {
	cfg.Refresh, cfg.WorkDir = s.Refresh, s.WorkDir
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
