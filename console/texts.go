package console

import (
	"strconv"
	"strings"
)

// catalogue holds every text of the public check page, by key. A country
// translates the page by replacing the values (keep the keys and the
// %s/%d markers); the console's staff pages are in English.
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
	"check.registered":   "Registered",
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
	"check.unavailable":  "The check is not available right now. Please try again in a few minutes.",
	"check.privacy":      "This page shows only the brand, model and status of an IMEI: nothing about owners, and no keys.",
	"check.share":        "You can share this result: the address of this page holds the IMEI.",
}

// text returns the catalogue's text for key with args filled in (%s, %d).
// A missing key shows as the key itself, so a gap in a translation is
// visible rather than blank.
func text(key string, args ...any) string {
	s, ok := catalogue[key]
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
