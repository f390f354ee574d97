package dtls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"slices"

	pionelliptic "github.com/pion/dtls/v3/pkg/crypto/elliptic"
)

// The ECDHE groups and ECDSA signature schemes both sides share (RFC 8422,
// RFC 7748, RFC 8446 §4.2.3 codepoints as TLS 1.2 uses them).

// CurveID names an ECDHE group (supported_groups).
type CurveID uint16

const (
	CurveP256   CurveID = 23
	CurveP384   CurveID = 24
	CurveX25519 CurveID = 29
)

// String names the group as the RFCs do.
func (c CurveID) String() string {
	switch c {
	case CurveP256:
		return "secp256r1"
	case CurveP384:
		return "secp384r1"
	case CurveX25519:
		return "x25519"
	}
	return fmt.Sprintf("group(%d)", uint16(c))
}

// defaultCurves is the order a Config without CurvePreferences offers and
// accepts: P-256 first, as RFC 7925 asks of constrained devices.
var defaultCurves = []CurveID{CurveP256, CurveX25519, CurveP384}

func (c *Config) curves() []CurveID {
	if len(c.CurvePreferences) > 0 {
		return c.CurvePreferences
	}
	return defaultCurves
}

// pionCurve is pion's implementation of an ECDHE group.
func pionCurve(c CurveID) (pionelliptic.Curve, bool) {
	switch c {
	case CurveP256:
		return pionelliptic.P256, true
	case CurveP384:
		return pionelliptic.P384, true
	case CurveX25519:
		return pionelliptic.X25519, true
	}
	return 0, false
}

// ECDSA signature schemes.
const (
	sigECDSAWithP256SHA256 uint16 = 0x0403
	sigECDSAWithP384SHA384 uint16 = 0x0503
)

// ecdsaSchemes are the signature schemes offered and accepted.
var ecdsaSchemes = []uint16{sigECDSAWithP256SHA256, sigECDSAWithP384SHA384}

// ecdsaScheme is the scheme of an ECDSA key: its curve fixes the hash.
func ecdsaScheme(pub crypto.PublicKey) (uint16, crypto.Hash, bool) {
	k, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return 0, 0, false
	}
	switch k.Curve {
	case elliptic.P256():
		return sigECDSAWithP256SHA256, crypto.SHA256, true
	case elliptic.P384():
		return sigECDSAWithP384SHA384, crypto.SHA384, true
	}
	return 0, 0, false
}

// schemeHash is the hash of an ECDSA scheme. In DTLS 1.2 a scheme is a
// (hash, signature) pair, not tied to the key's curve (RFC 5246 §7.4.1.4.1).
func schemeHash(scheme uint16) (crypto.Hash, bool) {
	switch scheme {
	case sigECDSAWithP256SHA256:
		return crypto.SHA256, true
	case sigECDSAWithP384SHA384:
		return crypto.SHA384, true
	}
	return 0, false
}

// ecdsaSign signs data with signer: under the scheme that matches its key
// when the peer accepts it, else under another ECDSA scheme it accepts.
func ecdsaSign(signer crypto.Signer, accepted []uint16, data ...[]byte) (uint16, []byte, error) {
	scheme, _, ok := ecdsaScheme(signer.Public())
	if !ok {
		return 0, nil, fmt.Errorf("the key is not ECDSA on P-256 or P-384")
	}
	if !offered(accepted, scheme) {
		scheme = 0
		for _, s := range ecdsaSchemes {
			if offered(accepted, s) {
				scheme = s
				break
			}
		}
		if scheme == 0 {
			return 0, nil, fmt.Errorf("the peer accepts no ECDSA signature scheme")
		}
	}
	hash, _ := schemeHash(scheme)
	h := hash.New()
	for _, d := range data {
		h.Write(d)
	}
	sig, err := signer.Sign(rand.Reader, h.Sum(nil), hash)
	return scheme, sig, err
}

// ecdsaVerify checks sig over data under scheme with pub, an ECDSA key on
// P-256 or P-384.
func ecdsaVerify(pub crypto.PublicKey, scheme uint16, sig []byte, data ...[]byte) bool {
	hash, ok := schemeHash(scheme)
	if _, _, isECDSA := ecdsaScheme(pub); !ok || !isECDSA {
		return false
	}
	h := hash.New()
	for _, d := range data {
		h.Write(d)
	}
	return ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), h.Sum(nil), sig)
}

// offered reports whether v is in list.
func offered[T comparable](list []T, v T) bool { return slices.Contains(list, v) }

// curveCodes is curves() as supported_groups carries them.
func (c *Config) curveCodes() []uint16 {
	out := make([]uint16, 0, len(c.curves()))
	for _, g := range c.curves() {
		out = append(out, uint16(g))
	}
	return out
}

// schemeCurve is the group of an ECDSA scheme's key.
func schemeCurve(scheme uint16) CurveID {
	if scheme == sigECDSAWithP384SHA384 {
		return CurveP384
	}
	return CurveP256
}
