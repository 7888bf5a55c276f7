package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// URN prefixes of tacline identities in a certificate's URI SANs
// (package ca writes them).
const (
	stationURNPrefix = "urn:tacline:station:"
	roleURNPrefix    = "urn:tacline:role:"
	siteURNPrefix    = "urn:tacline:site:"
)

// identifier turns a verified client certificate into an Actor.
type identifier struct {
	tacline map[string]bool // DER of the client_ca certificates
	stepca  map[string]bool // DER of the stepca_station_ca certificates
	rules   []IdentityRule
	// roots are every trusted client CA; revoked knows step-ca's
	// revocations (nil: none). Both are set before serving.
	roots   *x509.CertPool
	revoked RevocationChecker

	mu    sync.RWMutex
	cache map[string]verified // DER of a client certificate -> its chains
}

func newIdentifier(taclineCAs []*x509.Certificate, rules []IdentityRule) *identifier {
	id := &identifier{tacline: make(map[string]bool, len(taclineCAs)), rules: rules}
	for _, c := range taclineCAs {
		id.tacline[string(c.Raw)] = true
	}
	return id
}

// caller is an authenticated client: its Actor and the certificate it
// presented.
type caller struct {
	actor   provisioner.Actor
	leaf    *x509.Certificate
	tacline bool   // the certificate chains to a client_ca (tacline) CA
	stepca  bool   // the certificate chains to a stepca_station_ca CA
	site    string // the factory site the certificate names (role site)
}

// identify reads the identity of the verified client certificate in cs.
func (id *identifier) identify(cs *tls.ConnectionState) (caller, error) {
	chains, err := id.chains(cs)
	if err != nil {
		return caller{}, err
	}
	leaf := chains[0][0]
	c := caller{leaf: leaf, tacline: fromCA(chains, id.tacline), stepca: fromCA(chains, id.stepca)}
	if c.stepca && id.revoked != nil {
		if at, ok := id.revoked.Revoked(leaf); ok {
			return caller{}, tacerr.New(tacerr.Unauthorized, "client certificate %q (serial %x) was revoked at step-ca at %s: bootstrap the station again with a new token (`tacline station bootstrap`)",
				leaf.Subject.CommonName, leaf.SerialNumber, at.UTC().Format(time.RFC3339))
		}
	}
	var station string
	roles := map[provisioner.Role]bool{}
	setStation := func(s string) error {
		if station != "" && station != s {
			return tacerr.New(tacerr.Unauthorized, "client certificate %q names two stations (%s and %s); a certificate identifies one station", leaf.Subject.CommonName, station, s)
		}
		station = s
		roles[provisioner.RoleStation] = true
		return nil
	}
	if c.tacline || c.stepca {
		// A step-ca station provisioner writes the station URN from the
		// operator's token (docs/stepca.md); roles come only from tacline's CA.
		for _, u := range leaf.URIs {
			s := u.String()
			switch {
			case strings.HasPrefix(s, stationURNPrefix):
				sid := strings.TrimPrefix(s, stationURNPrefix)
				if !stationID.MatchString(sid) {
					return caller{}, tacerr.New(tacerr.Unauthorized, "client certificate names station %q, which is not a valid station id", sid)
				}
				if err := setStation(sid); err != nil {
					return caller{}, err
				}
			case strings.HasPrefix(s, siteURNPrefix) && c.tacline:
				name := strings.TrimPrefix(s, siteURNPrefix)
				if !store.ValidSiteName(name) || (c.site != "" && c.site != name) {
					return caller{}, tacerr.New(tacerr.Unauthorized, "client certificate %q names site %q, which is not one valid site name", leaf.Subject.CommonName, name)
				}
				c.site = name
				roles[provisioner.RoleSite] = true
			case strings.HasPrefix(s, roleURNPrefix) && c.tacline:
				// Unknown roles are ignored: they grant nothing.
				if r := provisioner.Role(strings.TrimPrefix(s, roleURNPrefix)); r.Valid() {
					roles[r] = true
				}
			}
		}
	}
	for _, r := range id.rules {
		if !r.matches(leaf) {
			continue
		}
		if r.Station != "" {
			if err := setStation(r.Station); err != nil {
				return caller{}, err
			}
		}
		for _, role := range r.Roles {
			roles[provisioner.Role(role)] = true
		}
	}
	if len(roles) == 0 {
		return caller{}, tacerr.New(tacerr.Unauthorized, "client certificate %q carries no tacline identity: it needs a urn:tacline:station: or urn:tacline:role: URI SAN from the station CA, or a server.identity_map rule", leaf.Subject.CommonName)
	}
	if roles[provisioner.RoleStation] && station == "" {
		return caller{}, tacerr.New(tacerr.Unauthorized, "client certificate %q has role station but names no station: issue it with `tacline station enroll`", leaf.Subject.CommonName)
	}
	if c.site != "" && station != "" {
		return caller{}, tacerr.New(tacerr.Unauthorized, "client certificate %q names a station and a site; a certificate identifies one", leaf.Subject.CommonName)
	}
	c.actor = provisioner.Actor{ID: actorID(leaf, station), Station: station}
	if c.site != "" {
		c.actor.ID = "site:" + c.site
	}
	// A stable order, so that logs and tests see the same list.
	for _, r := range provisioner.AllRoles {
		if roles[r] {
			c.actor.Roles = append(c.actor.Roles, r)
		}
	}
	return c, nil
}

// fromCA reports whether a verified chain passes through one of cas.
func fromCA(chains [][]*x509.Certificate, cas map[string]bool) bool {
	for _, chain := range chains {
		for _, c := range chain[1:] {
			if cas[string(c.Raw)] {
				return true
			}
		}
	}
	return false
}

func (r IdentityRule) matches(leaf *x509.Certificate) bool {
	switch {
	case r.URI != "":
		for _, u := range leaf.URIs {
			if u.String() == r.URI {
				return true
			}
		}
	case r.DNS != "":
		for _, d := range leaf.DNSNames {
			if strings.EqualFold(d, r.DNS) {
				return true
			}
		}
	case r.CN != "":
		return leaf.Subject.CommonName == r.CN
	}
	return false
}

// actorID names the caller in the ledger: the station id, else the
// certificate's common name, else its first URI SAN, else its serial.
func actorID(leaf *x509.Certificate, station string) string {
	switch {
	case station != "":
		return station
	case leaf.Subject.CommonName != "":
		return leaf.Subject.CommonName
	case len(leaf.URIs) > 0:
		return leaf.URIs[0].String()
	}
	return "serial:" + leaf.SerialNumber.Text(16)
}

// checkEnrolled looks the caller's station up (every request, so that a
// disabled station is refused at once) and, for certificates of the station
// CA, checks that the certificate is the station's current one; a caller
// without a station is checked as a person (checkPerson).
func checkEnrolled(ctx context.Context, p Provisioner, c caller) error {
	if c.actor.Station == "" {
		return checkPerson(ctx, p, c)
	}
	st, err := p.Station(ctx, c.actor.Station)
	if err != nil {
		if tacerr.Is(err, tacerr.NotFound) {
			return tacerr.Wrap(tacerr.Unauthorized, err, "station %s is not enrolled", c.actor.Station)
		}
		return err
	}
	return currentStation(c, st)
}

// checkPerson refuses a role certificate of the station CA that the ledger
// records as one person's and that was disabled (`tacline station disable
// --person`), or that was disabled by its serial (`--serial`: one enrolled
// before the ledger recorded them). Other role certificates the ledger does
// not record (issued before it recorded them, or by a mapped CA) are the
// CA's word alone.
func checkPerson(ctx context.Context, p Provisioner, c caller) error {
	if !c.tacline || c.site != "" {
		return nil
	}
	pc, err := p.PersonCertificate(ctx, c.leaf.SerialNumber.Text(16))
	switch {
	case tacerr.Is(err, tacerr.NotFound):
		return nil
	case err != nil:
		return err
	case !pc.DisabledAt.IsZero() && pc.Person == "":
		return tacerr.New(tacerr.Forbidden, "this role certificate (serial %s, %q) was disabled by its serial at %s; an admin can enroll one for you (tacline station enroll --roles ... --person NAME)",
			pc.CertSerial, c.leaf.Subject.CommonName, pc.DisabledAt.UTC().Format(time.RFC3339))
	case !pc.DisabledAt.IsZero():
		return tacerr.New(tacerr.Forbidden, "this certificate of %s (serial %s) was disabled at %s; an admin can enroll a new one (tacline station enroll --roles ... --person %s)",
			pc.Person, pc.CertSerial, pc.DisabledAt.UTC().Format(time.RFC3339), pc.Person)
	}
	return nil
}

// currentStation refuses a disabled station and, for certificates of the
// station CA, a certificate that is not the station's current one: the
// API's part of authenticating a station whose record was read (by
// checkEnrolled, or by the use case: provisioner.WithStationCheck).
func currentStation(c caller, st provisioner.Station) error {
	if st.Disabled {
		return tacerr.New(tacerr.Forbidden, "station %s is disabled; an operator can re-enable it", st.ID)
	}
	if c.tacline && st.CertSerial != "" {
		want, ok := new(big.Int).SetString(strings.ReplaceAll(st.CertSerial, ":", ""), 16)
		if !ok || want.Cmp(c.leaf.SerialNumber) != 0 {
			return tacerr.New(tacerr.Unauthorized, "this certificate of station %s has been replaced by a newer one; use the station's current certificate", st.ID)
		}
	}
	return nil
}
