package castore_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/hsm/hsmtest"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/provisioner/issuance"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
	"github.com/tacline/tacline/tacerr"
	tverify "github.com/tacline/tacline/verify"
	"github.com/tacline/tacline/verify/online"
	"github.com/tacline/tacline/verify/revocation"
)

// TestHierarchyOpenSSL: the development ceremony's hierarchies pass
// `openssl verify -x509_strict -crl_check_all` with the issuing CA's and
// the root's CRLs (signed in the HSM), also at times past 2041 (no
// certificate outlives its issuer: the device CAs end 99991231235959Z like
// the device certificates); a device certificate with CRL distribution
// point and AIA passes zlint; and trusting the device root never accepts a
// station certificate, nor the infrastructure root a device certificate.
// Revoking the retired issuing CA puts it on the root's CRL (openssl then
// refuses its devices) and makes the online trust answer revoked.
func TestHierarchyOpenSSL(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) { testHierarchy(t, d) })
	}
}

func testHierarchy(t *testing.T, d store.Dialect) {
	ctx := context.Background()
	tok := hsmtest.Open(t, hsmtest.NewToken(t))
	db := storetest.Open(t, d)
	now := time.Now()
	dev, err := castore.InitDev(ctx, db, tok, "Acme Devices", "P-256", "test", now, ca.NoExpiry)
	if err != nil {
		t.Fatal(err)
	}
	if !dev.Issuing.NotAfter.Equal(ca.NoExpiry) || !dev.Root.NotAfter.Equal(ca.NoExpiry) {
		t.Fatalf("device CAs end %s and %s, want %s", dev.Issuing.NotAfter, dev.Root.NotAfter, ca.NoExpiry)
	}

	// A device certificate with CDP and AIA, linted and signed in the HSM.
	signer, err := tok.Signer(castore.IssuerLabel)
	if err != nil {
		t.Fatal(err)
	}
	prof := policy.DefaultProfile()
	prof.CRLDistributionPoint = "http://pki.acme.example/v1/crl/{issuer_key_id}.crl"
	prof.OCSPURL, prof.CAIssuersURL = "http://pki.acme.example/v1/ocsp", "http://pki.acme.example/ca/{issuer_key_id}.der"
	is, err := issuance.New(issuance.Config{IssuerCert: dev.Issuing, Chain: []*x509.Certificate{dev.Root}, Signer: signer, Profile: prof, Lint: issuance.DefaultLintConfig()})
	if err != nil {
		t.Fatal(err)
	}
	devKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	m, err := imei.Parse("490154203237518")
	if err != nil {
		t.Fatal(err)
	}
	token, err := is.Prepare(issuance.Request{DeviceSerial: "SN-1", Manufacturer: "Acme Devices", Model: "Widget", IMEIs: []imei.IMEI{m},
		PublicKey: devKey.Public(), NotBefore: now})
	if err != nil {
		t.Fatal(err)
	}
	device, _, err := is.Issue(token)
	if err != nil {
		t.Fatal(err)
	}
	keyID := ca.KeyID(dev.Issuing)
	if len(device.CRLDistributionPoints) != 1 || device.CRLDistributionPoints[0] != "http://pki.acme.example/v1/crl/"+keyID+".crl" ||
		len(device.OCSPServer) != 1 || len(device.IssuingCertificateURL) != 1 || !strings.Contains(device.IssuingCertificateURL[0], keyID) {
		t.Fatalf("CDP %v, OCSP %v, caIssuers %v", device.CRLDistributionPoints, device.OCSPServer, device.IssuingCertificateURL)
	}

	// CRLs of the issuing CA and of both roots, signed in the HSM.
	issuers, err := revocation.LoadIssuers(ctx, db, tok.Signer)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := revocation.NewPublisher(db, issuers, revocation.DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	recs, err := pub.WriteAll(ctx, filepath.Join(dir, "crl"))
	if err != nil || len(recs) != 3 {
		t.Fatalf("WriteAll: %d CRLs (want the issuing CA's and two roots'), %v", len(recs), err)
	}
	crlPEM := map[string]string{}
	for _, r := range recs {
		f := filepath.Join(dir, r.IssuerKeyID+".crl.pem")
		if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: r.DER}), 0o644); err != nil {
			t.Fatal(err)
		}
		crlPEM[r.IssuerKeyID] = f
	}
	write := func(name string, certs ...*x509.Certificate) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, ca.ChainPEM(certs...), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	root, issuing, infra, stationCA := write("root.pem", dev.Root), write("issuing.pem", dev.Issuing), write("infra-root.pem", dev.InfraRoot), write("station-ca.pem", dev.StationCA)
	devFile := write("device.pem", device)
	station, err := castore.EnrollStation(ctx, db, tok, castore.StationSpec{ID: "F1-L1-S01", Factory: "F1", Line: "L1"}, filepath.Join(dir, "creds"), "test")
	if err != nil {
		t.Fatal(err)
	}
	stFile := write("station.pem", station)

	verify := func(ok bool, args ...string) {
		t.Helper()
		out, err := exec.Command("openssl", append([]string{"verify", "-x509_strict"}, args...)...).CombinedOutput()
		if (err == nil) != ok || ok && !strings.Contains(string(out), ": OK") || !ok && !strings.Contains(string(out), "unable to get local issuer certificate") {
			t.Fatalf("openssl verify %s: %v (want success %v)\n%s", strings.Join(args, " "), err, ok, out)
		}
	}
	verify(true, "-crl_check_all", "-CAfile", root, "-untrusted", issuing, "-CRLfile", crlPEM[keyID], "-CRLfile", crlPEM[ca.KeyID(dev.Root)], devFile)
	verify(true, "-purpose", "sslclient", "-CAfile", infra, "-untrusted", stationCA, stFile)
	for _, at := range []time.Time{time.Date(2042, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)} {
		verify(true, "-attime", strconv.FormatInt(at.Unix(), 10), "-CAfile", root, "-untrusted", issuing, devFile)
	}
	// Separate roots: neither accepts the other's certificates.
	verify(false, "-CAfile", root, "-untrusted", stationCA, stFile)
	verify(false, "-CAfile", infra, "-untrusted", issuing, devFile)

	// Revoking the (retired) issuing CA: the root's next CRL lists it, and
	// openssl and the online trust refuse its devices.
	if err := db.RevokeIssuer(ctx, keyID, "compromised", "test"); !tacerr.Is(err, tacerr.InvalidState) {
		t.Fatalf("revoking the active issuer: %v", err)
	}
	rootSigner, err := tok.Signer(castore.RootLabel)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.RotateDev(ctx, castore.Issuers{DB: db, Kind: store.IssuerDevice, Actor: "test"}, castore.Keys{Token: tok}, dev.Root, rootSigner,
		ca.CeremonyOptions{IssuerLabel: "device-ca-2", Organization: "Acme Devices", Now: now, DeviceNotAfter: ca.NoExpiry}); err != nil {
		t.Fatal(err)
	}
	if err := db.RevokeIssuer(ctx, keyID, "compromised", "test"); err != nil {
		t.Fatal(err)
	}
	if err := db.RevokeIssuer(ctx, keyID, "compromised", "test"); !tacerr.Is(err, tacerr.Conflict) {
		t.Fatalf("second revocation: %v", err)
	}
	if err := db.ActivateIssuer(ctx, keyID, "test"); !tacerr.Is(err, tacerr.InvalidState) {
		t.Fatalf("activating a revoked issuer: %v", err)
	}
	if n, err := pub.Refresh(ctx); err != nil || n != 1 {
		t.Fatalf("refresh after the CA revocation published %d CRLs (want the root's): %v", n, err)
	}
	rootCRL, err := pub.CRL(ctx, ca.KeyID(dev.Root))
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := x509.ParseRevocationList(rootCRL.DER)
	if err != nil || parsed.CheckSignatureFrom(dev.Root) != nil || len(parsed.RevokedCertificateEntries) != 1 ||
		parsed.RevokedCertificateEntries[0].SerialNumber.Cmp(dev.Issuing.SerialNumber) != 0 || parsed.RevokedCertificateEntries[0].ReasonCode != 2 {
		t.Fatalf("root CRL after the revocation: %+v %v", parsed, err)
	}
	rootCRLFile := filepath.Join(dir, "root-2.crl.pem")
	if err := os.WriteFile(rootCRLFile, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: rootCRL.DER}), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "verify", "-x509_strict", "-crl_check_all", "-CAfile", root, "-untrusted", issuing,
		"-CRLfile", crlPEM[keyID], "-CRLfile", rootCRLFile, devFile).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "certificate revoked") {
		t.Fatalf("openssl verify of a device under the revoked CA: %v\n%s", err, out)
	}
	recs2, err := db.Issuers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	trust, err := online.TrustOf(recs2)
	if err != nil {
		t.Fatal(err)
	}
	res, err := tverify.Check(ctx, tverify.Input{IMEI: m, Chain: []*x509.Certificate{device, dev.Issuing, dev.Root}, Nonce: []byte("0123456789abcdef"), Signature: []byte{0x30, 0}}, trust, nil, nil)
	if err != nil || res.Verdict != tverify.Revoked {
		t.Fatalf("online trust on a device under the revoked CA: %+v %v", res, err)
	}
	// Offline (`tacline verify --crl`): the root's CRL revokes the CA.
	offTrust, err := tverify.NewTrust([]*x509.Certificate{dev.Root})
	if err != nil {
		t.Fatal(err)
	}
	var crls []*x509.RevocationList
	for _, der := range [][]byte{rootCRL.DER, recs[0].DER, recs[1].DER, recs[2].DER} {
		l, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		if l.Number.Int64() == 1 && string(l.RawIssuer) == string(dev.Root.RawSubject) {
			continue // the root's first CRL, before the revocation
		}
		crls = append(crls, l)
	}
	res, err = tverify.Check(ctx, tverify.Input{IMEI: m, Chain: []*x509.Certificate{device, dev.Issuing}, Nonce: []byte("0123456789abcdef"), Signature: []byte{0x30, 0}},
		offTrust, tverify.NewCRLSet(crls), nil)
	if err != nil || res.Verdict != tverify.Revoked || !strings.Contains(strings.Join(res.Reasons, " "), "issuing CA") {
		t.Fatalf("offline check with the root's CRL on a device under the revoked CA: %+v %v", res, err)
	}
}
