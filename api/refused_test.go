package api

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/policy"
	"github.com/tacline/tacline/provisioner/provtest"
	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/store/storetest"
)

// refusedN is how many refused requests TestRefusedRequestsSpendNothing
// sends per database (TACLINE_REFUSED_N overrides it, for the figure in
// docs/benchmarks.md).
func refusedN(t *testing.T) int {
	if v := os.Getenv("TACLINE_REFUSED_N"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("TACLINE_REFUSED_N=%q is not a positive number", v)
		}
		return n
	}
	return 300
}

// TestRefusedRequestsSpendNothing is a property test: generated requests
// that must be refused (fuzzed serials, CSRs, products, pools, counts,
// bodies, other factories' objects, taken serials and keys, reused request
// ids) are sent over mTLS to the real service on SQLite and on PostgreSQL,
// with the audit log and the register outbox attached. Every one must get a
// 4xx problem and leave the ledger's row counts, audit leaves and outbox
// rows as they were; after recovery runs past the intent timeout, no IMEI
// was voided. It logs the figure "IMEIs voided per 10,000 refused requests".
func TestRefusedRequestsSpendNothing(t *testing.T) {
	for _, d := range storetest.Dialects {
		t.Run(string(d), func(t *testing.T) { testRefusedRequests(t, d) })
	}
}

func testRefusedRequests(t *testing.T, d store.Dialect) {
	ctx := context.Background()
	env := provtest.New(t, d)
	l, err := audit.New(env.DB, audit.Config{Origin: "test.example/refused", KeyLabel: "audit"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Attach()
	env.DB.AddSink(register.Outbox{})
	rs := startRealEnv(t, env)
	s1, s2 := rs.as(t, ca.Station{ID: "S1"}), rs.as(t, ca.Station{ID: "S2"})

	// What the refusals refer to: a provisioned device, its key, a
	// pre-allocated group.
	takenDev := provtest.NewDevice(t)
	r := rs.do(t, s1, "POST", wire.PathProvision, wire.ProvisionRequest{RequestID: "taken", DeviceSerial: "TAKEN-1", Product: "EX-1", CSR: string(takenDev.CSR)})
	if r.status != http.StatusCreated {
		t.Fatalf("setup provision: %d %s", r.status, r.body)
	}
	otherDev := provtest.NewDevice(t)
	if r := rs.do(t, s1, "POST", wire.PathProvision, wire.ProvisionRequest{RequestID: "taken-2", DeviceSerial: "TAKEN-2", Product: "EX-1", CSR: string(otherDev.CSR)}); r.status != http.StatusCreated {
		t.Fatalf("setup provision: %d %s", r.status, r.body)
	}
	r = rs.do(t, s1, "POST", wire.PathAllocations, wire.AllocationRequest{RequestID: "labels", Pool: "F1-A", Count: 1})
	var labels wire.AllocationResponse
	if err := json.Unmarshal(r.body, &labels); err != nil || r.status != http.StatusCreated {
		t.Fatalf("setup allocation: %d %s", r.status, r.body)
	}
	group := labels.Devices[0]
	badCSRs := refusedCSRs(t)

	seed := uint64(time.Now().UnixNano())
	rng := mrand.New(mrand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)
	n := refusedN(t)
	start := storetest.ReadCounts(t, env.DB)
	if start["audit_leaves"] == 0 || start["register_outbox"] == 0 {
		t.Fatalf("the audit log and the outbox are not attached: %v", start)
	}
	voidedBefore := start["imeis.VOIDED"]
	okSerial := func(i int) string { return fmt.Sprintf("R-%d", i) }
	okCSR := func() string { return string(provtest.NewDevice(t).CSR) }
	kinds := map[string]int{}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("refused-%d", i)
		var c *http.Client = s1
		var method, path string = "POST", wire.PathProvision
		var body any
		kind := rng.IntN(14)
		switch kind {
		case 0: // a serial the rule refuses
			body = wire.ProvisionRequest{RequestID: id, DeviceSerial: badSerial(rng), Product: "EX-1", CSR: okCSR()}
		case 1: // a CSR that must be refused
			body = wire.ProvisionRequest{RequestID: id, DeviceSerial: okSerial(i), Product: "EX-1", CSR: badCSRs[rng.IntN(len(badCSRs))](rng)}
		case 2: // a product or pool the station may not use, an unapproved TAC
			p := wire.ProvisionRequest{RequestID: id, DeviceSerial: okSerial(i), CSR: okCSR()}
			switch rng.IntN(4) {
			case 0:
				p.Product = randText(rng, 1+rng.IntN(20))
			case 1:
				p.Pool = []string{"F2-B", "F3-X", "nope", randText(rng, 8)}[rng.IntN(4)]
			case 2:
				p.Product = "EX-1"
				p.IMEICount = []int{-1, 3, 6, 1000}[rng.IntN(4)]
			default:
				c, p.Product = rs.as(t, ca.Station{ID: "S3"}), "EX-X"
			}
			body = p
		case 3: // the serial is taken (also by a station of another factory)
			if rng.IntN(2) == 0 {
				c = s2
			}
			body = wire.ProvisionRequest{RequestID: id, DeviceSerial: "TAKEN-1", Product: "EX-1", CSR: okCSR()}
		case 4: // the key is bound to another device
			body = wire.ProvisionRequest{RequestID: id, DeviceSerial: okSerial(i), Product: "EX-1", CSR: string(takenDev.CSR)}
		case 5: // a used request id with another body
			body = wire.ProvisionRequest{RequestID: "taken", DeviceSerial: okSerial(i), Product: "EX-1", CSR: okCSR()}
		case 6: // a malformed body
			body = badBody(rng, wire.ProvisionRequest{RequestID: id, DeviceSerial: okSerial(i), Product: "EX-1", CSR: okCSR()})
		case 7: // bind: IMEIs never allocated, a partial group, another factory's labels, a bad serial
			b := wire.BindRequest{RequestID: id, IMEIs: group, DeviceSerial: okSerial(i), CSR: okCSR()}
			switch rng.IntN(4) {
			case 0:
				b.IMEIs = []string{fmt.Sprintf("00100100%06d", 400000+rng.IntN(90000))}
			case 1:
				b.IMEIs = group[:1]
			case 2:
				c = s2
			default:
				b.DeviceSerial = badSerial(rng)
			}
			path, body = wire.PathBind, b
		case 8: // allocations out of range or from a foreign pool
			a := wire.AllocationRequest{RequestID: id, Pool: "F1-A", Count: []int{0, -3, 1001, 5000}[rng.IntN(4)]}
			if rng.IntN(2) == 0 {
				a.Count, a.Pool = 1, []string{"F2-B", "", randText(rng, 6)}[rng.IntN(3)]
			}
			path, body = wire.PathAllocations, a
		case 9: // reissue by another factory, with a bad CSR, of an unknown device
			re := wire.ReissueRequest{RequestID: id, CSR: okCSR()}
			path = "/v1/devices/TAKEN-1/reissue"
			switch rng.IntN(3) {
			case 0:
				c = s2
			case 1:
				re.CSR = badCSRs[rng.IntN(len(badCSRs))](rng)
			default:
				path = "/v1/devices/NEVER-" + strconv.Itoa(i) + "/reissue"
			}
			body = re
		case 10: // void by another factory, with a bad reason, of an unknown IMEI
			v := wire.VoidRequest{Reason: "test"}
			path = "/v1/imeis/" + group[rng.IntN(len(group))] + "/void"
			switch rng.IntN(3) {
			case 0:
				c = s2
			case 1:
				v.Reason = randText(rng, 5)
			default:
				path = "/v1/imeis/" + fmt.Sprintf("00100100%06d", 400000+rng.IntN(90000)) + "/void"
			}
			body = v
		case 11: // revoke by a station (role)
			path, body = "/v1/devices/TAKEN-1/revoke", wire.RevokeRequest{Reason: "stolen"}
		case 12: // reissue with the key of another device
			path, body = "/v1/devices/TAKEN-1/reissue", wire.ReissueRequest{RequestID: id, CSR: string(otherDev.CSR)}
			if rng.IntN(2) == 0 {
				body = wire.ReissueRequest{RequestID: "taken", CSR: okCSR()} // a used request id
			}
		default: // a bad serial in bind or provision with everything else fine, on another factory's station
			c = s2
			body = wire.ProvisionRequest{RequestID: id, DeviceSerial: badSerial(rng), Product: "EX-1", CSR: okCSR()}
		}
		kinds[strconv.Itoa(kind)]++
		before := storetest.ReadCounts(t, env.DB)
		resp := rs.do(t, c, method, path, body)
		if resp.status < 400 || resp.status > 499 {
			t.Fatalf("request %d (kind %d, %s %s) answered %d, want a 4xx refusal: %s\nbody: %+v", i, kind, method, path, resp.status, resp.body, body)
		}
		if diff := before.Diff(storetest.ReadCounts(t, env.DB)); diff != "" {
			t.Fatalf("refused request %d (kind %d, %s %s, %d %s) changed the ledger: %s", i, kind, method, path, resp.status, resp.problem.Code, diff)
		}
	}
	// Recovery past the intent timeout would void what a refused request
	// left pending.
	env.Clock.Add(time.Hour)
	if _, err := env.Service.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	end := storetest.ReadCounts(t, env.DB)
	voided := end["imeis.VOIDED"] - voidedBefore
	if diff := start.Diff(end); diff != "" {
		t.Fatalf("after %d refused requests and recovery the ledger changed: %s", n, diff)
	}
	t.Logf("%s: %d refused requests (kinds %v): %d IMEIs voided, %.1f IMEIs voided per 10,000 refused requests",
		d, n, kinds, voided, float64(voided)*10000/float64(n))
}

// badSerial returns a generated device serial that the one rule refuses.
func badSerial(rng *mrand.Rand) string {
	fixed := []string{"", "SN_1", "A/B", "a b", "-SN", ".", "..", strings.Repeat("S", policy.MaxDeviceSerial+1), "SN\x00", "é", "x(1)", "SN+1"}
	if rng.IntN(3) == 0 {
		return fixed[rng.IntN(len(fixed))]
	}
	const alphabet = "abcXYZ019.:-_/ +()=?'\",;é\x01\x7f"
	for {
		b := make([]byte, 1+rng.IntN(80))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		if s := string(b); policy.CheckDeviceSerial(s) != nil {
			return s
		}
	}
}

func randText(rng *mrand.Rand, n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}

// badBody turns a valid request into a body the API must refuse: cut
// short, an unknown field, a field of the wrong type, or bytes that are not
// JSON.
func badBody(rng *mrand.Rand, req wire.ProvisionRequest) []byte {
	good, _ := json.Marshal(req)
	switch rng.IntN(4) {
	case 0:
		return good[:rng.IntN(len(good)-1)]
	case 1:
		return append(good[:len(good)-1], []byte(`,"`+randText(rng, 1+rng.IntN(10))+`":1}`)...)
	case 2:
		var m map[string]any
		_ = json.Unmarshal(good, &m)
		field := []string{"request_id", "device_serial", "product", "csr", "imei_count"}[rng.IntN(5)]
		if field == "imei_count" {
			m[field] = "two"
		} else {
			m[field] = rng.IntN(100)
		}
		b, _ := json.Marshal(m)
		return b
	}
	b := make([]byte, 1+rng.IntN(200))
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	if b[0] == '{' {
		b[0] = 'x'
	}
	return b
}

// refusedCSRs are generators of CSRs the default rules refuse: garbage,
// a broken PEM, a bad signature, a P-521, an Ed25519 and an RSA key.
func refusedCSRs(t *testing.T) []func(*mrand.Rand) string {
	t.Helper()
	csrPEM := func(key crypto.Signer) string {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device"}}, key)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaCSR := csrPEM(rsaKey)
	others := []string{csrPEM(p521), csrPEM(edKey), rsaCSR}
	return []func(*mrand.Rand) string{
		func(rng *mrand.Rand) string { return randText(rng, rng.IntN(300)) },
		func(rng *mrand.Rand) string {
			b := make([]byte, 1+rng.IntN(300))
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
			return "-----BEGIN CERTIFICATE REQUEST-----\n" + base64.StdEncoding.EncodeToString(b) + "\n-----END CERTIFICATE REQUEST-----\n"
		},
		func(rng *mrand.Rand) string { // a valid CSR whose signature no longer verifies
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			block, _ := pem.Decode([]byte(csrPEM(k)))
			block.Bytes[len(block.Bytes)-1-rng.IntN(8)] ^= 0x01
			return string(pem.EncodeToMemory(block))
		},
		func(rng *mrand.Rand) string { return others[rng.IntN(len(others))] },
	}
}
