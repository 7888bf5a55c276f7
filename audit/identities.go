package audit

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// IdentityReport is what CheckIdentities found.
type IdentityReport struct {
	Events     int      `json:"events"` // identity events read from the log
	Stations   int      `json:"stations"`
	People     int      `json:"people"`
	Issuers    int      `json:"issuers"`
	Violations []string `json:"violations,omitempty"`
}

// OK reports no violation.
func (r IdentityReport) OK() bool { return len(r.Violations) == 0 }

// maxIdentityViolations bounds the report: a table rewritten wholesale is
// shown by its first rows.
const maxIdentityViolations = 50

// CheckIdentities compares the ledger's stations, role certificates
// (people) and issuers with what the audit log's identity events say they
// are. Those tables decide who may provision from which pools, which role
// certificates the API refuses and which CA signs, and neither `ledger
// check` (the IMEIs, pools, intents and devices) nor the log's proofs cover
// them: a row changed behind tacline's back, or restored from a doctored
// backup, would otherwise be served as it is.
//
// It reads, in one snapshot, the log's head and its identity leaves
// (store.IdentitySnapshot), proves each leaf in the tree of the head (so a
// leaf changed in place is caught: the head itself is what restore proves
// against signed checkpoints), folds the events in log order and compares:
//   - stations: every row has a station.enrolled event; its factory, line,
//     pools and certificate serial are the last enrolment's, and it is
//     disabled exactly when a station.disabled event follows that
//     enrolment; every enrolled station has its row;
//   - people: every role certificate (by serial) has its person.enrolled or
//     person.disabled event, the person and roles of its enrolment, and is
//     disabled exactly when a person.disabled event names it;
//   - issuers: the active issuer of each kind is the one the last
//     issuer.activated of that kind named; an issuer is revoked exactly
//     when an issuer.revoked event names it; label, kind and curve are the
//     events'. An issuer added inactive emits no event and needs none.
//
// A field an event does not carry is not compared. Run on a ledger whose
// audit log is configured (audit.disabled is for benchmarks only: the
// events of such a run are in no log).
func CheckIdentities(ctx context.Context, db *store.DB) (IdentityReport, error) {
	snap, err := db.IdentitySnapshot(ctx)
	if err != nil {
		return IdentityReport{}, err
	}
	rep := IdentityReport{Events: len(snap.Leaves), Stations: len(snap.Stations), People: len(snap.People), Issuers: len(snap.Issuers)}
	violate := func(format string, args ...any) {
		if len(rep.Violations) < maxIdentityViolations {
			rep.Violations = append(rep.Violations, fmt.Sprintf(format, args...))
		}
	}
	if err := proveLeaves(ctx, db, snap); err != nil {
		return rep, err
	}
	want, err := foldIdentities(snap.Leaves, violate)
	if err != nil {
		return rep, err
	}
	compareStations(want, snap.Stations, violate)
	comparePeople(want, snap.People, violate)
	compareIssuers(want, snap.Issuers, violate)
	return rep, nil
}

// proveLeaves checks that the head's root is the tree of the stored hashes
// and that every identity leaf, as stored, is in that tree.
func proveLeaves(ctx context.Context, db *store.DB, snap *store.IdentitySnapshot) error {
	if len(snap.Leaves) == 0 {
		return nil
	}
	size := snap.Head.Size
	r := &cachingHashReader{r: dbHashReader{ctx, db}, known: map[int64]tlog.Hash{}}
	root, err := tlog.TreeHash(size, r)
	if err != nil {
		return treeErr(err, size)
	}
	if root != snap.Head.Root {
		return tacerr.New(tacerr.LedgerInvariant, "the audit log's head names root %x for %d leaves, but its stored hashes make %x", snap.Head.Root[:8], size, root[:8])
	}
	idx := make([]int64, len(snap.Leaves))
	for i, l := range snap.Leaves {
		idx[i] = l.Index
	}
	proofs, err := InclusionProofs(ctx, db, size, idx)
	if err != nil {
		return err
	}
	for i, l := range snap.Leaves {
		if err := tlog.CheckRecord(proofs[i], size, root, l.Index, tlog.RecordHash(l.Data)); err != nil {
			return tacerr.New(tacerr.LedgerInvariant, "audit leaf %d, an identity event, is not the leaf the log's tree holds at that index (changed in place): %v", l.Index, err)
		}
	}
	return nil
}

// identities is the state the identity events describe.
type identities struct {
	stations map[string]*wantStation
	people   map[string]*wantPerson // by lower-case serial
	issuers  map[string]*wantIssuer // by key id
	active   map[string]string      // kind -> key id of its last issuer.activated
}

type wantStation struct {
	attrs    map[string]string // of the last station.enrolled
	leaf     int64
	disabled bool
}

type wantPerson struct {
	attrs    map[string]string // of its person.enrolled (none: recorded by a disable alone)
	leaf     int64
	disabled bool
}

type wantIssuer struct {
	attrs   map[string]string // label, kind, curve as the events name them
	leaf    int64
	revoked bool
}

// foldIdentities applies the identity events in log order.
func foldIdentities(leaves []store.AuditLeaf, violate func(string, ...any)) (*identities, error) {
	w := &identities{stations: map[string]*wantStation{}, people: map[string]*wantPerson{}, issuers: map[string]*wantIssuer{}, active: map[string]string{}}
	for _, l := range leaves {
		e, err := DecodeEvent(l.Data)
		if err != nil {
			return nil, tacerr.Wrap(tacerr.LedgerInvariant, err, "audit leaf %d", l.Index)
		}
		a := e.Attrs
		switch e.Type {
		case store.EventStationEnrolled:
			w.stations[a["station"]] = &wantStation{attrs: a, leaf: l.Index}
		case store.EventStationDisabled:
			s := w.stations[a["station"]]
			if s == nil {
				violate("audit leaf %d disables station %q, which no earlier event enrolled", l.Index, a["station"])
				continue
			}
			s.disabled = true
		case store.EventPersonEnrolled:
			w.people[strings.ToLower(a["cert_serial"])] = &wantPerson{attrs: a, leaf: l.Index}
		case store.EventPersonDisabled:
			serial := strings.ToLower(a["cert_serial"])
			p := w.people[serial]
			if p == nil {
				// A role certificate the ledger never recorded, disabled by
				// its serial: recorded then, with no person and no roles.
				p = &wantPerson{attrs: map[string]string{"person": a["person"], "roles": ""}, leaf: l.Index}
				w.people[serial] = p
			}
			p.disabled = true
		case store.EventIssuerActivated:
			k := a["key_id"]
			if w.issuers[k] == nil {
				w.issuers[k] = &wantIssuer{leaf: l.Index}
			}
			w.issuers[k].attrs = a
			w.active[a["kind"]] = k
		case store.EventIssuerRevoked:
			k := a["key_id"]
			if w.issuers[k] == nil {
				w.issuers[k] = &wantIssuer{attrs: a, leaf: l.Index}
			}
			w.issuers[k].revoked = true
			if w.active[a["kind"]] == k {
				delete(w.active, a["kind"])
			}
		}
	}
	return w, nil
}

// differ lists the fields whose row value is not the event's (a field the
// event lacks is not compared).
func differ(attrs map[string]string, row map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(row)) {
		if v, ok := attrs[k]; ok && v != row[k] {
			out = append(out, fmt.Sprintf("%s %q (the event: %q)", k, row[k], v))
		}
	}
	return out
}

func compareStations(w *identities, rows []store.StationRecord, violate func(string, ...any)) {
	seen := map[string]bool{}
	for _, r := range rows {
		seen[r.ID] = true
		s := w.stations[r.ID]
		if s == nil {
			violate("station %q has no station.enrolled event in the audit log: it was not enrolled by tacline", r.ID)
			continue
		}
		if d := differ(s.attrs, map[string]string{"factory": r.Factory, "line": r.Line, "pools": strings.Join(r.Pools, ","), "cert_serial": r.CertSerial}); len(d) > 0 {
			violate("station %q differs from its enrolment (audit leaf %d): %s", r.ID, s.leaf, strings.Join(d, ", "))
		}
		if disabled := !r.DisabledAt.IsZero(); disabled != s.disabled {
			violate("station %q is %s in the ledger but %s in the audit log (enrolled at leaf %d)", r.ID, enabled(!disabled), enabled(!s.disabled), s.leaf)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(w.stations)) {
		if !seen[id] {
			violate("station %q, enrolled at audit leaf %d, is not in the ledger", id, w.stations[id].leaf)
		}
	}
}

func comparePeople(w *identities, rows []store.PersonCert, violate func(string, ...any)) {
	seen := map[string]bool{}
	for _, r := range rows {
		serial := strings.ToLower(r.CertSerial)
		seen[serial] = true
		p := w.people[serial]
		if p == nil {
			violate("role certificate %s (person %q, roles %s) has no person.enrolled or person.disabled event in the audit log: it was not recorded by tacline", serial, r.Person, strings.Join(r.Roles, ","))
			continue
		}
		if d := differ(p.attrs, map[string]string{"person": r.Person, "roles": strings.Join(r.Roles, ",")}); len(d) > 0 {
			violate("role certificate %s differs from its enrolment (audit leaf %d): %s", serial, p.leaf, strings.Join(d, ", "))
		}
		if disabled := !r.DisabledAt.IsZero(); disabled != p.disabled {
			violate("role certificate %s (person %q) is %s in the ledger but %s in the audit log (leaf %d)", serial, r.Person, enabled(!disabled), enabled(!p.disabled), p.leaf)
		}
	}
	for _, serial := range slices.Sorted(maps.Keys(w.people)) {
		if !seen[serial] {
			violate("role certificate %s, recorded at audit leaf %d, is not in the ledger", serial, w.people[serial].leaf)
		}
	}
}

func compareIssuers(w *identities, rows []store.IssuerRecord, violate func(string, ...any)) {
	byKey := map[string]store.IssuerRecord{}
	for _, r := range rows {
		byKey[r.KeyID] = r
		i := w.issuers[r.KeyID]
		if r.Active && w.active[r.Kind] != r.KeyID {
			want := "no issuer of that kind"
			if k := w.active[r.Kind]; k != "" {
				want = "issuer " + k
			}
			violate("issuer %s (%s, label %q) is the active %s issuer in the ledger, but the audit log's last issuer.activated of that kind names %s", r.KeyID, r.Kind, r.Label, r.Kind, want)
		}
		switch revoked := !r.RevokedAt.IsZero(); {
		case revoked && (i == nil || !i.revoked):
			violate("issuer %s (%s, label %q) is revoked in the ledger, but no issuer.revoked event in the audit log names it", r.KeyID, r.Kind, r.Label)
		case !revoked && i != nil && i.revoked:
			violate("issuer %s (%s, label %q) is not revoked in the ledger, but the audit log revoked it", r.KeyID, r.Kind, r.Label)
		}
		if i != nil {
			if d := differ(i.attrs, map[string]string{"label": r.Label, "kind": r.Kind, "curve": r.Curve}); len(d) > 0 {
				violate("issuer %s differs from its audit events (leaf %d): %s", r.KeyID, i.leaf, strings.Join(d, ", "))
			}
		}
	}
	for _, kind := range slices.Sorted(maps.Keys(w.active)) {
		k := w.active[kind]
		if r, ok := byKey[k]; !ok || !r.Active {
			violate("the audit log's last issuer.activated of kind %s names issuer %s, which is not the ledger's active %s issuer", kind, k, kind)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(w.issuers)) {
		if _, ok := byKey[k]; !ok {
			violate("issuer %s, named at audit leaf %d, is not in the ledger", k, w.issuers[k].leaf)
		}
	}
}

func enabled(b bool) string {
	if b {
		return "enabled"
	}
	return "disabled"
}

// VerifyLeaves recomputes the log's root from every leaf as stored, in
// index order, and compares it with the head's, returning the leaves
// read. The stored hashes are what the log's proofs (and CheckIdentities)
// read, and a leaf's data can be changed without them: a leaf changed,
// removed or added in place, an identity event's type altered so that the
// partial index no longer finds it among them, is ledger_invariant here.
// It reads the whole log once (a restore's cost, about an export's
// verification; ledger check does not).
func VerifyLeaves(ctx context.Context, db *store.DB) (int64, error) {
	head, err := db.AuditHead(ctx)
	if err != nil {
		return 0, err
	}
	var t compactTree
	t.init(0, nil)
	err = db.AuditLeaves(ctx, 0, head.Size, func(idx int64, data []byte) error {
		if idx != t.n {
			return tacerr.New(tacerr.LedgerInvariant, "audit leaf %d is missing from the log of %d leaves (the next stored is %d)", t.n, head.Size, idx)
		}
		t.append(tlog.RecordHash(data))
		return nil
	})
	if err != nil {
		return t.n, err
	}
	if t.n != head.Size {
		return t.n, tacerr.New(tacerr.LedgerInvariant, "the audit log's head counts %d leaves, but %d are stored", head.Size, t.n)
	}
	if t.root() != head.Root {
		return t.n, tacerr.New(tacerr.LedgerInvariant, "the audit log's %d leaves, as stored, do not hash to its head's root %x: a leaf was changed in place", t.n, head.Root[:8])
	}
	return t.n, nil
}
