package issuance

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	_ "embed"
	"encoding/binary"
	"fmt"
	"sync"

	zx509 "github.com/zmap/zcrypto/x509"
)

// smallKeyLint is zlint's community lint that reports an ECDSA public key
// whose private scalar d, or its negation, is at most 2^16 (so anyone can
// recover it). zlint answers it with a baby-step giant-step search over
// crypto/elliptic's generic big.Int arithmetic: 16 point additions, ~90 us
// per P-256 certificate, the most expensive lint tacline runs. For P-256
// keys tacline answers the same question with one lookup in a table of the
// x-coordinates of d*G for every d in [1, 2^16] (d*G and -d*G share x); the
// verdict, name and bound are zlint's (TestSmallKeyMatchesZlint compares
// them).
//
// The table ships in the binary (p256small.bin: the low 64 bits of x(d*G),
// big-endian, for d = 1, 2, ..., 2^16; TestSmallKeyTableFile recomputes it
// with point additions and compares). Computing it at start-up took 0.3 s
// on a quiet machine and over 1.5 s on a loaded one, during which a
// restarted server's first requests waited; indexing the shipped file
// takes a few milliseconds. Keys on other curves still go to zlint's own
// implementation.
const (
	smallKeyLint = "e_ecdsa_small_private_key"
	smallKeyBits = 16 // zlint's default Bits for the lint
)

//go:embed p256small.bin
var p256SmallFile []byte

var p256Small smallKeyTable

type smallKeyTable struct {
	once sync.Once
	x    map[uint64]uint32 // low 64 bits of x(d*G) -> d
}

// warm starts indexing the table in the background.
func (t *smallKeyTable) warm() { go t.once.Do(t.build) }

func (t *smallKeyTable) build() {
	m := make(map[uint64]uint32, 1<<smallKeyBits)
	for i := 0; i+8 <= len(p256SmallFile); i += 8 {
		m[binary.BigEndian.Uint64(p256SmallFile[i:])] = uint32(i/8) + 1
	}
	t.x = m
}

// computeP256Small computes the contents of p256small.bin.
func computeP256Small() []byte {
	c := elliptic.P256()
	p := c.Params()
	out := make([]byte, 0, 8<<smallKeyBits)
	x, y := p.Gx, p.Gy
	var buf [32]byte
	for d := uint32(1); ; d++ {
		out = append(out, x.FillBytes(buf[:])[24:]...)
		if d == 1<<smallKeyBits {
			return out
		}
		//lint:ignore SA1019 one-off table of small multiples; crypto/ecdh has no point addition and this is ~4x faster than a scalar multiplication per entry
		x, y = c.Add(x, y, p.Gx, p.Gy)
	}
}

// smallScalar returns d (1 <= d <= 2^16) when pub is d*G or -d*G on P-256;
// ok is false when pub is not a P-256 key (the caller asks zlint instead).
func smallScalar(pub *ecdsa.PublicKey) (d uint32, ok bool, err error) {
	if pub.Curve != elliptic.P256() {
		return 0, false, nil
	}
	raw, err := pub.Bytes()
	if err != nil {
		return 0, true, err
	}
	p256Small.once.Do(p256Small.build)
	cand, hit := p256Small.x[binary.BigEndian.Uint64(raw[1+24:33])]
	if !hit {
		return 0, true, nil
	}
	// Confirm on the whole x-coordinate (the table keys on 64 bits).
	var s [32]byte
	binary.BigEndian.PutUint32(s[28:], cand)
	k, err := ecdh.P256().NewPrivateKey(s[:])
	if err != nil {
		return 0, true, err
	}
	if string(k.PublicKey().Bytes()[1:33]) != string(raw[1:33]) {
		return 0, true, nil
	}
	return cand, true, nil
}

// certECDSAKey is the certificate's ECDSA public key, as zlint reads it.
func certECDSAKey(c *zx509.Certificate) *ecdsa.PublicKey {
	if c.PublicKeyAlgorithm != zx509.ECDSA {
		return nil
	}
	switch k := c.PublicKey.(type) {
	case *zx509.AugmentedECDSA:
		return k.Pub
	case *ecdsa.PublicKey:
		return k
	}
	return nil
}

// smallKeyDetails is zlint's wording for the finding.
func smallKeyDetails(d uint32) string {
	return fmt.Sprintf("the ECDSA private key is %d, or its negation modulo the group order, and so can be trivially recovered by anyone", d)
}
