package console

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

type searchData struct {
	Query    string
	LiveURL  string // the results' live panel
	NotFound string
	Device   *provisioner.Device
	IMEIs    []imeiView
	Cert     *certView
	History  *historyView
	CanAct   bool
}

type imeiView struct {
	store.IMEIRecord
	Text       string
	Deliveries []register.Delivery
	DelivErr   *errorNote
	CanVoid    bool
}

type certView struct {
	Subject, Issuer, Serial, Key, SigAlg string
	NotBefore, NotAfter                  time.Time
	NoExpiry                             bool
	URIs                                 []string
	Other                                []string
	Err                                  *errorNote // the stored certificate does not parse
}

type historyView struct {
	IMEI       string
	Events     []audit.ProvenEvent
	Pending    int
	Checkpoint int64
	Valid      bool
	Reason     string
	Err        string     // why nothing can be proven yet
	Fail       *errorNote // the proof could not be read
}

// maxSearchQuery is the most bytes of a search the console reads (and
// echoes); a serial or an IMEI is far shorter.
const maxSearchQuery = 128

// search finds a device by serial or IMEI.
func (c *Console) search(w http.ResponseWriter, r *http.Request, p *page) {
	p.Title = "Devices and IMEIs"
	d := &searchData{Query: strings.TrimSpace(r.URL.Query().Get("q")), CanAct: hasAny(p.Actor, changeRoles)}
	p.Data = d
	if d.Query == "" {
		c.render(w, r, http.StatusOK, "search", p)
		return
	}
	d.Query = clip(d.Query, maxSearchQuery)
	ctx := r.Context()
	readIMEI, err := c.as(p, "GET "+wire.PathIMEI)
	if err != nil {
		c.fail(w, r, p, err)
		return
	}
	readDevice, err := c.as(p, "GET "+wire.PathDevice)
	if err != nil {
		c.fail(w, r, p, err)
		return
	}
	var recs []store.IMEIRecord
	serial := d.Query
	if m, err := imei.Parse(d.Query); err == nil {
		rec, err := c.cfg.Ops.IMEI(ctx, readIMEI, m)
		switch {
		case tacerr.Is(err, tacerr.NotFound):
			// Not an IMEI of the ledger: it may still be a serial.
		case err != nil:
			c.fail(w, r, p, err)
			return
		case rec.DeviceSerial == "":
			recs = []store.IMEIRecord{rec}
		default:
			serial = rec.DeviceSerial
		}
	}
	if recs == nil {
		dev, err := c.cfg.Ops.Device(ctx, readDevice, serial)
		switch {
		case tacerr.Is(err, tacerr.NotFound):
			d.NotFound = "No device with serial " + d.Query + " and no IMEI " + d.Query + " in the ledger."
		case err != nil:
			c.fail(w, r, p, err)
			return
		default:
			d.Device = dev
			for _, m := range dev.IMEIs {
				rec, err := c.cfg.Ops.IMEI(ctx, readIMEI, m)
				if err != nil {
					c.fail(w, r, p, err)
					return
				}
				recs = append(recs, rec)
			}
			d.Cert = c.decodeCert(r, p, dev.CertDER)
		}
	}
	for _, rec := range recs {
		v := imeiView{IMEIRecord: rec, Text: rec.IMEI.String(),
			CanVoid: d.CanAct && (rec.State == store.StateReserved || rec.State == store.StateBound)}
		var err error
		if v.Deliveries, err = register.Deliveries(ctx, c.cfg.DB, rec.IMEI); err != nil {
			n := c.note(r, p, err)
			v.DelivErr = &n
		}
		d.IMEIs = append(d.IMEIs, v)
	}
	if len(recs) > 0 {
		d.History = c.history(r, p, recs[0].IMEI)
	}
	p.Flash = doneNotice(r.URL.Query().Get("done"), d)
	status := http.StatusOK
	if d.NotFound != "" {
		status = http.StatusNotFound
	}
	d.LiveURL = "/console/search?fragment=1&q=" + url.QueryEscape(d.Query)
	c.render(w, r, status, "search", p)
}

// doneNotice is the notice the search shows after the void or revoke form
// sent the caller here (?done=), only when the ledger shows that change on
// what d found: a link cannot announce a revocation that did not happen.
func doneNotice(done string, d *searchData) string {
	switch done {
	case "revoked":
		if d.Device != nil && d.Device.State == lifecycle.StateRevoked {
			return "The device was revoked."
		}
	case "voided":
		voided := len(d.IMEIs) > 0
		for _, v := range d.IMEIs {
			voided = voided && v.State == lifecycle.StateVoided
		}
		if voided {
			return "The IMEI and its device group were voided."
		}
	}
	return ""
}

// history is the audit log's events of m with their inclusion proofs,
// verified here against the log key the server trusts.
func (c *Console) history(r *http.Request, p *page, m imei.IMEI) *historyView {
	h := &historyView{IMEI: m.String()}
	b, err := audit.Prove(r.Context(), c.cfg.DB, m.String())
	if err == nil {
		h.Events, h.Pending = b.Events, b.Pending
		var data []byte
		if data, err = json.Marshal(b); err == nil {
			res := audit.VerifyProof(data, c.cfg.LogKey)
			h.Valid, h.Reason, h.Checkpoint = res.Valid, res.Reason, res.TreeSize
			return h
		}
		err = tacerr.Wrap(tacerr.Internal, err, "encode the inclusion proofs")
	}
	if tacerr.Is(err, tacerr.NotFound) {
		h.Err = "No audit checkpoint has been signed yet, so nothing can be proven; the server signs one within its checkpoint interval."
		return h
	}
	n := c.note(r, p, err)
	h.Fail = &n
	return h
}

// noExpiry is 802.1AR's notAfter for "no well-defined expiration".
var noExpiry = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

func (c *Console) decodeCert(r *http.Request, p *page, der []byte) *certView {
	if len(der) == 0 {
		return nil
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		n := c.note(r, p, tacerr.Wrap(tacerr.LedgerInvariant, err, "the stored certificate does not parse"))
		return &certView{Subject: "the stored certificate does not parse", Err: &n}
	}
	v := &certView{Subject: cert.Subject.String(), Issuer: cert.Issuer.String(), Serial: hex.EncodeToString(cert.SerialNumber.Bytes()),
		SigAlg: cert.SignatureAlgorithm.String(), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, NoExpiry: cert.NotAfter.Equal(noExpiry)}
	switch k := cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		v.Key = "ECDSA " + k.Curve.Params().Name
	default:
		v.Key = cert.PublicKeyAlgorithm.String()
	}
	for _, u := range cert.URIs {
		v.URIs = append(v.URIs, u.String())
	}
	if cert.KeyUsage&x509.KeyUsageDigitalSignature != 0 {
		v.Other = append(v.Other, "key usage: digital signature")
	}
	if cert.BasicConstraintsValid && !cert.IsCA {
		v.Other = append(v.Other, "not a CA")
	}
	return v
}

// The reasons a caller may give (package lifecycle's lists).
var (
	voidReasons   = words(lifecycle.ChosenVoidReasons)
	revokeReasons = words(lifecycle.RevokeDeviceReasons)
)

func words[T ~string](ws []T) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = string(w)
	}
	return out
}

type confirmData struct {
	Action  string // void | revoke
	Target  string // the IMEI or the device serial
	Reasons []string
	Error   string
	Device  *provisioner.Device
	Record  *store.IMEIRecord
}

func (c *Console) voidConfirm(w http.ResponseWriter, r *http.Request, p *page) {
	c.confirm(w, r, p, "void", r.URL.Query().Get("imei"), "", http.StatusOK)
}

func (c *Console) revokeConfirm(w http.ResponseWriter, r *http.Request, p *page) {
	c.confirm(w, r, p, "revoke", r.URL.Query().Get("serial"), "", http.StatusOK)
}

// confirm shows what a void or revocation will change and asks for the
// reason and an explicit confirmation.
func (c *Console) confirm(w http.ResponseWriter, r *http.Request, p *page, action, target, problem string, status int) {
	d := &confirmData{Action: action, Target: strings.TrimSpace(target), Error: problem}
	p.Data = d
	ctx := r.Context()
	if action == "void" {
		p.Title, d.Reasons = "Void an IMEI", voidReasons
		m, err := imei.Parse(d.Target)
		if err != nil {
			c.fail(w, r, p, tacerr.Wrap(tacerr.InvalidIMEI, err, "%q is not an IMEI", d.Target))
			return
		}
		a, err := c.as(p, "GET "+wire.PathIMEI)
		if err != nil {
			c.fail(w, r, p, err)
			return
		}
		rec, err := c.cfg.Ops.IMEI(ctx, a, m)
		if err != nil {
			c.fail(w, r, p, err)
			return
		}
		d.Target, d.Record = m.String(), &rec
	} else {
		p.Title, d.Reasons = "Revoke a device", revokeReasons
		a, err := c.as(p, "GET "+wire.PathDevice)
		if err != nil {
			c.fail(w, r, p, err)
			return
		}
		dev, err := c.cfg.Ops.Device(ctx, a, d.Target)
		if err != nil {
			c.fail(w, r, p, err)
			return
		}
		d.Device = dev
	}
	c.render(w, r, status, "confirm", p)
}

func (c *Console) voidDo(w http.ResponseWriter, r *http.Request, p *page) {
	target := r.PostFormValue("imei")
	if r.PostFormValue("confirm") != "yes" {
		c.confirm(w, r, p, "void", target, "Tick the confirmation box: voiding cannot be undone.", http.StatusUnprocessableEntity)
		return
	}
	m, err := imei.Parse(target)
	if err != nil {
		c.fail(w, r, p, tacerr.Wrap(tacerr.InvalidIMEI, err, "%q is not an IMEI", target))
		return
	}
	a, err := c.as(p, "POST "+wire.PathVoidIMEI)
	if err != nil {
		c.fail(w, r, p, err)
		return
	}
	reason, err := lifecycle.ParseVoidReason("reason", r.PostFormValue("reason"))
	if err != nil {
		c.fail(w, r, p, err)
		return
	}
	if err := c.cfg.Ops.Void(r.Context(), provisioner.VoidInput{Actor: a, IMEI: m, Reason: reason, Note: r.PostFormValue("note")}); err != nil {
		c.fail(w, r, p, err)
		return
	}
	c.cfg.Log.Info("console: voided", "actor", p.Actor.ID, "imei", m.String(), "reason", r.PostFormValue("reason"))
	http.Redirect(w, r, "/console/search?done=voided&q="+url.QueryEscape(m.String()), http.StatusSeeOther)
}

func (c *Console) revokeDo(w http.ResponseWriter, r *http.Request, p *page) {
	serial := r.PostFormValue("serial")
	if r.PostFormValue("confirm") != "yes" {
		c.confirm(w, r, p, "revoke", serial, "Tick the confirmation box: a revocation cannot be undone.", http.StatusUnprocessableEntity)
		return
	}
	a, err := c.as(p, "POST "+wire.PathRevoke)
	if err != nil {
		c.fail(w, r, p, err)
		return
	}
	reason, err := lifecycle.ParseRevokeReason("reason", r.PostFormValue("reason"), lifecycle.RevokeDeviceReasons)
	if err != nil {
		c.fail(w, r, p, err)
		return
	}
	if err := c.cfg.Ops.Revoke(r.Context(), provisioner.RevokeInput{Actor: a, DeviceSerial: serial, Reason: reason}); err != nil {
		c.fail(w, r, p, err)
		return
	}
	c.cfg.Log.Info("console: revoked", "actor", p.Actor.ID, "device", serial, "reason", r.PostFormValue("reason"))
	http.Redirect(w, r, "/console/search?done=revoked&q="+url.QueryEscape(serial), http.StatusSeeOther)
}
