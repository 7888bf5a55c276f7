package console

import (
	"bytes"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tacline/tacline/tacerr"
)

// catalogue holds every text of the public check page, by key, in English,
// and the reference line under an error on any page (error.reference).
// A country translates the page with a texts file (console.check_texts,
// LoadTexts) that replaces some or all of the values; the console's staff
// pages are in English.
var catalogue = map[string]string{
	"check.title":        "Check an IMEI",
	"check.intro":        "Type the 15-digit IMEI of a phone or other device to see whether its manufacturer registered it. Dial *#06# on most phones to show it.",
	"check.label":        "IMEI",
	"check.hint":         "15 digits; spaces and dashes are fine.",
	"check.submit":       "Check",
	"check.invalid":      "This is not a valid IMEI: %s",
	"check.digits":       "%d of 15 digits",
	"check.checkdigit":   "The last digit does not match: please check the number.",
	"check.ok":           "The number is well formed.",
	"check.result":       "Result for %s",
	"check.registered":   "Registered, active",
	"check.registered.t": "The manufacturer registered this IMEI for a device that is in service.",
	"check.revoked":      "Revoked",
	"check.revoked.t":    "The manufacturer revoked this device's identity (for example after a theft or a cloning report). Do not buy it as new or genuine.",
	"check.voided":       "Not in use",
	"check.voided.t":     "The manufacturer allocated this IMEI but withdrew it before a device shipped with it. A device showing it is not genuine.",
	"check.unknown":      "Unknown",
	"check.unknown.t":    "The manufacturer has no device with this IMEI. It may belong to another manufacturer, or the number may be wrong or copied.",
	"check.brand":        "Brand",
	"check.model":        "Model",
	"check.status":       "Status",
	"check.limited":      "Too many checks from your network in a short time. Please wait %d seconds and try again: this keeps the service available for everyone.",
	"check.limited.site": "Too many checks from the networks around yours (the addresses your provider or organisation shares among many users) in a short time. Please wait %d seconds and try again: this keeps the service available for everyone.",
	"check.unavailable":  "The check is not available right now. Please try again in a few minutes.",
	"check.privacy":      "This page shows only the brand, model and status of an IMEI: nothing about owners, and no keys.",
	"check.share":        "You can share this result: the address of this page holds the IMEI.",
	// Under every error a page shows, staff pages' too: the error's code
	// and the request id under which the server log holds it.
	"error.reference": "Error code %s, request id %s: give both when you report this; the server log has the details.",
	// The same, for an error logged less than a minute before under
	// another request id (the console logs a repeated error once a minute).
	"error.reference.repeat": "Error code %s, request id %s: give both when you report this; the server log has the details under request id %s, the same error shortly before.",
}

// Texts is the check page's catalogue in one language: English with a
// translation's texts over it.
type Texts struct {
	Lang string // BCP 47 language tag of the page (en by default)
	m    map[string]string
	// english are the catalogue's keys the translation leaves out, sorted
	// (nil for English itself).
	english []string
}

// Untranslated returns the keys of the catalogue that a translation
// leaves out (shown in English on its page), sorted; none for English.
// A translation written before a release added a key lacks it: the
// console names them when it starts.
func (t *Texts) Untranslated() []string { return t.english }

// English is the catalogue as shipped.
func English() *Texts { return &Texts{Lang: "en", m: catalogue} }

// textsFile is the YAML of a translation.
type textsFile struct {
	Lang  string            `yaml:"lang"`
	Texts map[string]string `yaml:"texts"`
}

var (
	langTag = regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$`)
	marker  = regexp.MustCompile(`%[sd]`)
)

// LoadTexts reads a translation of the check page:
//
//	lang: de
//	texts:
//	  check.title: IMEI prüfen
//	  check.limited: Zu viele Anfragen. Bitte warten Sie %d Sekunden.
//
// Keys it leaves out stay English (Untranslated lists them). An unknown key, a missing or bad lang,
// or a text whose %s/%d markers differ from the English one is an error
// naming it.
func LoadTexts(path string) (*Texts, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidConfig, err, "console.check_texts: read %s", path)
	}
	var f textsFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidConfig, err, "console.check_texts: %s is not a texts file (lang: TAG, texts: {key: text})", path)
	}
	if !langTag.MatchString(f.Lang) {
		return nil, tacerr.Field(tacerr.InvalidConfig, "console.check_texts", "%s: lang %q is not a language tag such as de or pt-BR", path, f.Lang)
	}
	t := &Texts{Lang: f.Lang, m: make(map[string]string, len(catalogue))}
	for k, v := range catalogue {
		t.m[k] = v
	}
	for k, v := range f.Texts {
		en, ok := catalogue[k]
		if !ok {
			return nil, tacerr.Field(tacerr.InvalidConfig, "console.check_texts", "%s: unknown text %q; the keys are those of console/texts.go", path, k)
		}
		if !slices.Equal(marker.FindAllString(v, -1), marker.FindAllString(en, -1)) {
			return nil, tacerr.Field(tacerr.InvalidConfig, "console.check_texts", "%s: text %q must keep the markers %v of the English text, in order", path, k, marker.FindAllString(en, -1))
		}
		t.m[k] = v
	}
	for k := range catalogue {
		if _, ok := f.Texts[k]; !ok {
			t.english = append(t.english, k)
		}
	}
	slices.Sort(t.english)
	return t, nil
}

// text returns the text for key with args filled in (%s, %d). A missing
// key shows as the key itself, so a gap is visible rather than blank.
func (t *Texts) text(key string, args ...any) string {
	s, ok := t.m[key]
	if !ok {
		return key
	}
	for _, a := range args {
		switch v := a.(type) {
		case int:
			s = strings.Replace(s, "%d", strconv.Itoa(v), 1)
		case string:
			s = strings.Replace(s, "%s", v, 1)
		}
	}
	return s
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
