package console

import (
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tacline/tacline/provisioner"
)

// Every text key a template asks for is in the catalogue, and every
// catalogue entry is used, so a translation can work from the catalogue
// alone.
func TestCatalogueCoversTemplates(t *testing.T) {
	used := map[string]bool{}
	keyRe := regexp.MustCompile(`\bt "([a-z.]+)"`)
	err := fs.WalkDir(templateFS, "templates", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(templateFS, path)
		if err != nil {
			return err
		}
		for _, m := range keyRe.FindAllStringSubmatch(string(b), -1) {
			used[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Keys built from a lookup's status (check.<status> and
	// check.<status>.t).
	for _, st := range []string{"registered", "revoked", "voided", "unknown"} {
		used["check."+st], used["check."+st+".t"] = true, true
	}
	used["check.invalid"], used["check.title"] = true, true // check.go
	for k := range used {
		if _, ok := catalogue[k]; !ok {
			t.Errorf("template text %q is not in the catalogue", k)
		}
	}
	for k := range catalogue {
		if !used[k] {
			t.Errorf("catalogue text %q is never used", k)
		}
	}
	if got := English().text("check.limited", 7); !strings.Contains(got, "wait 7 seconds") {
		t.Errorf("text(check.limited, 7) = %q", got)
	}
	if got := English().text("no.such.key"); got != "no.such.key" {
		t.Errorf("a missing key shows as %q, want the key", got)
	}
}

func TestLoadTexts(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	de, err := LoadTexts(write("de.yaml", "lang: de\ntexts:\n  check.title: IMEI prüfen\n  check.limited: Bitte warten Sie %d Sekunden.\n"))
	if err != nil {
		t.Fatal(err)
	}
	if de.Lang != "de" || de.text("check.title") != "IMEI prüfen" || de.text("check.limited", 3) != "Bitte warten Sie 3 Sekunden." {
		t.Fatalf("German texts: %q %q %q", de.Lang, de.text("check.title"), de.text("check.limited", 3))
	}
	if de.text("check.submit") != "Check" {
		t.Fatalf("a text the translation leaves out is %q, want the English one", de.text("check.submit"))
	}
	for _, tc := range []struct{ name, body, want string }{
		{"unknown key", "lang: de\ntexts:\n  check.nope: x\n", `unknown text "check.nope"`},
		{"lost marker", "lang: de\ntexts:\n  check.limited: Bitte warten.\n", "must keep the markers [%d]"},
		{"bad lang", "lang: German\ntexts: {}\n", "not a language tag"},
		{"unknown field", "lang: de\ntext: {}\n", "not a texts file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadTexts(write(strings.ReplaceAll(tc.name, " ", "-")+".yaml", tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadTexts = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

func TestForecast(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		free, used int64
		elapsed    time.Duration
		want       string
		soon       bool
	}{
		{"exhausted", 0, 10, time.Hour, "exhausted", true},
		{"idle", 100, 0, time.Hour, "no use in the last hour", false},
		{"one day left", 2400, 100, time.Hour, "2026-03-02 12:00 UTC", true},
		{"half an hour of data", 4800, 100, 30 * time.Minute, "2026-03-02 12:00 UTC", true},
		{"ten days left", 24000, 100, time.Hour, "2026-03-11", false},
		{"centuries", 1 << 40, 1, time.Hour, "more than 100 years", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, soon := forecast(now, tc.free, tc.used, tc.elapsed)
			if got != tc.want || soon != tc.soon {
				t.Fatalf("forecast = %q, %v; want %q, %v", got, soon, tc.want, tc.soon)
			}
		})
	}
}

func TestSparkline(t *testing.T) {
	pts, top := sparkline([]int64{0, 5, 10}, 200, 32)
	if top != 10 || pts != "0.0,31.0 100.0,16.0 200.0,1.0" {
		t.Fatalf("sparkline = %q, %d", pts, top)
	}
	if pts, _ := sparkline([]int64{0, 0}, 10, 10); pts != "0.0,9.0 10.0,9.0" {
		t.Fatalf("flat sparkline = %q", pts)
	}
}

func TestKeepNewest(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	var list []string
	for i := range 4 {
		p := filepath.Join(dir, strconv.Itoa(i))
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		keepNewest(&mu, &list, p, 2, func(s string) string { return s })
	}
	if want := []string{filepath.Join(dir, "3"), filepath.Join(dir, "2")}; !slices.Equal(list, want) {
		t.Fatalf("kept %v, want %v", list, want)
	}
	for i, want := range []bool{false, false, true, true} {
		if _, err := os.Stat(filepath.Join(dir, strconv.Itoa(i))); (err == nil) != want {
			t.Fatalf("file %d exists: %v, want %v", i, err == nil, want)
		}
	}
	if got := byID([]*reconRun{{ID: 1}, {ID: 2}}, 2); got == nil || got.ID != 2 {
		t.Fatalf("byID = %v", got)
	}
	if got := byID([]*reconRun{{ID: 1}}, 9); got != nil {
		t.Fatalf("byID of a missing id = %v, want nil", got)
	}
}

func TestSettings(t *testing.T) {
	texts := filepath.Join(t.TempDir(), "fr.yaml")
	if err := os.WriteFile(texts, []byte("lang: fr\ntexts:\n  check.submit: Vérifier\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		s    Settings
		want string // "" for valid
	}{
		{"defaults", Settings{}, ""},
		{"translated", Settings{Refresh: 2 * time.Second, CheckTexts: texts}, ""},
		{"refresh too fast", Settings{Refresh: 100 * time.Millisecond}, "console.refresh"},
		{"missing texts file", Settings{CheckTexts: texts + ".missing"}, "console.check_texts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
	var cfg Config
	if err := (Settings{CheckTexts: texts, WorkDir: "/w"}).Apply(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Texts == nil || cfg.Texts.Lang != "fr" || cfg.Texts.text("check.submit") != "Vérifier" || cfg.WorkDir != "/w" {
		t.Fatalf("Apply gave %+v", cfg)
	}
}

// console.csrf_key_file: replicas given the same file accept each other's
// form tokens; consoles with their own random keys do not; a bad file is
// refused naming the field.
func TestCSRFKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Repeat("k", n)), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.key", 32, 0o600)
	for _, tc := range []struct {
		name, file, want string
	}{
		{"missing", filepath.Join(dir, "none.key"), "console.csrf_key_file"},
		{"short", write("short.key", 31, 0o600), "at least 32"},
		{"readable by others", write("open.key", 32, 0o644), "chmod 600"},
		{"directory", dir, "console.csrf_key_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Settings{CSRFKeyFile: tc.file}.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "console.csrf_key_file") {
				t.Fatalf("Validate = %v, want an error naming console.csrf_key_file and %q", err, tc.want)
			}
		})
	}
	if err := (Settings{CSRFKeyFile: good}).Validate(); err != nil {
		t.Fatal(err)
	}
	replica := func(s Settings) *Console {
		var cfg Config
		if err := s.Apply(&cfg); err != nil {
			t.Fatal(err)
		}
		key, err := csrfKeyOf(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return &Console{cfg: cfg, csrfKey: key}
	}
	a := provisioner.Actor{ID: "operator-1"}
	post := func(token string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/console/devices/x/void", strings.NewReader(url.Values{"csrf": {token}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return r
	}
	shared1, shared2 := replica(Settings{CSRFKeyFile: good}), replica(Settings{CSRFKeyFile: good})
	tok := shared1.csrfToken(post(""), a)
	if reason := shared2.checkCSRF(post(tok), a, false); reason != "" {
		t.Fatalf("a replica with the same key file refused the other's token: %s", reason)
	}
	if reason := shared2.checkCSRF(post(tok), provisioner.Actor{ID: "operator-2"}, false); reason == "" {
		t.Fatal("a token was accepted for another actor")
	}
	own1, own2 := replica(Settings{}), replica(Settings{})
	if reason := own2.checkCSRF(post(own1.csrfToken(post(""), a)), a, false); reason == "" {
		t.Fatal("consoles with their own random keys accepted each other's token")
	}
}

// TestUntranslated: a translation written before a release added a text
// (as error.reference.repeat was added after texts files existed) shows
// that text in English; Untranslated names exactly the keys it leaves out
// (the server's start logs them: TestTranslationLacksKeyWarned), and none
// for a complete translation or English.
func TestUntranslated(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, leaveOut string) string {
		var b strings.Builder
		b.WriteString("lang: de\ntexts:\n")
		for k, v := range catalogue {
			if k != leaveOut {
				fmt.Fprintf(&b, "  %s: %q\n", k, "[de] "+v)
			}
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	full, err := LoadTexts(write("full.yaml", ""))
	if err != nil {
		t.Fatal(err)
	}
	if en := full.Untranslated(); len(en) != 0 || len(English().Untranslated()) != 0 {
		t.Fatalf("a complete translation leaves %v in English", en)
	}
	old := write("old.yaml", "error.reference.repeat")
	tx, err := LoadTexts(old)
	if err != nil {
		t.Fatal(err)
	}
	if en := tx.Untranslated(); !slices.Equal(en, []string{"error.reference.repeat"}) {
		t.Fatalf("Untranslated = %v, want [error.reference.repeat]", en)
	}
}
