package dtls

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"github.com/pion/dtls/v3/pkg/crypto/ciphersuite"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
)

// CipherSuiteID is a TLS cipher suite code point.
type CipherSuiteID uint16

// The cipher suites this engine implements: RFC 7925's mandatory CCM-8
// suites first, then AES-128-GCM and AES-128-CCM (16-byte tag, RFC 6655 and
// RFC 7251), then AES-128-CBC with HMAC-SHA256 (RFC 5487, RFC 5289), which
// LwM2M 1.0 devices must support, for interoperability.
const (
	TLS_PSK_WITH_AES_128_CCM_8              CipherSuiteID = 0xC0A8 //nolint:revive
	TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8      CipherSuiteID = 0xC0AE //nolint:revive
	TLS_PSK_WITH_AES_128_GCM_SHA256         CipherSuiteID = 0x00A8 //nolint:revive
	TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 CipherSuiteID = 0xC02B //nolint:revive
	TLS_PSK_WITH_AES_128_CCM                CipherSuiteID = 0xC0A4 //nolint:revive
	TLS_ECDHE_ECDSA_WITH_AES_128_CCM        CipherSuiteID = 0xC0AC //nolint:revive
	TLS_PSK_WITH_AES_128_CBC_SHA256         CipherSuiteID = 0x00AE //nolint:revive
	TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 CipherSuiteID = 0xC023 //nolint:revive
	TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256   CipherSuiteID = 0xC037 //nolint:revive
)

// scsvRenegotiation is TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746).
const scsvRenegotiation uint16 = 0x00FF

type keyExchange uint8

const (
	kxPSK keyExchange = iota
	kxECDHE
	kxECDHEPSK // RFC 5489: ephemeral ECDH authenticated by the PSK
)

// usesPSK reports a suite authenticated by a pre-shared key.
func (s *cipherSuite) usesPSK() bool { return s.kx == kxPSK || s.kx == kxECDHEPSK }

// ephemeral reports a suite with an ECDHE exchange, which needs a group.
func (s *cipherSuite) ephemeral() bool { return s.kx == kxECDHE || s.kx == kxECDHEPSK }

// recordAEAD is the record protection of a suite.
type recordAEAD uint8

const (
	aeadCCM8 recordAEAD = iota
	aeadGCM
	aeadCCM // 16-byte tag
	// aeadCBC is not an AEAD: AES-128-CBC with HMAC-SHA256, MAC-then-encrypt
	// or, when negotiated, encrypt-then-MAC (RFC 7366).
	aeadCBC
)

type cipherSuite struct {
	id       CipherSuiteID
	name     string // IANA
	openssl  string
	kx       keyExchange
	aead     recordAEAD
	overhead int // explicit nonce + tag (CBC: IV, MAC and the most padding)
}

var cipherSuites = []*cipherSuite{
	{TLS_PSK_WITH_AES_128_CCM_8, "TLS_PSK_WITH_AES_128_CCM_8", "PSK-AES128-CCM8", kxPSK, aeadCCM8, 8 + 8},
	{TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8", "ECDHE-ECDSA-AES128-CCM8", kxECDHE, aeadCCM8, 8 + 8},
	{TLS_PSK_WITH_AES_128_GCM_SHA256, "TLS_PSK_WITH_AES_128_GCM_SHA256", "PSK-AES128-GCM-SHA256", kxPSK, aeadGCM, 8 + 16},
	{TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256", kxECDHE, aeadGCM, 8 + 16},
	{TLS_PSK_WITH_AES_128_CCM, "TLS_PSK_WITH_AES_128_CCM", "PSK-AES128-CCM", kxPSK, aeadCCM, 8 + 16},
	{TLS_ECDHE_ECDSA_WITH_AES_128_CCM, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM", "ECDHE-ECDSA-AES128-CCM", kxECDHE, aeadCCM, 8 + 16},
	{TLS_PSK_WITH_AES_128_CBC_SHA256, "TLS_PSK_WITH_AES_128_CBC_SHA256", "PSK-AES128-CBC-SHA256", kxPSK, aeadCBC, 16 + 32 + 16},
	{TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256", kxECDHE, aeadCBC, 16 + 32 + 16},
	{TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256, "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256", "ECDHE-PSK-AES128-CBC-SHA256", kxECDHEPSK, aeadCBC, 16 + 32 + 16},
}

func cipherSuiteByID(id uint16) *cipherSuite {
	for _, s := range cipherSuites {
		if uint16(s.id) == id {
			return s
		}
	}
	return nil
}

// String returns the IANA name of the suite.
func (id CipherSuiteID) String() string {
	if s := cipherSuiteByID(uint16(id)); s != nil {
		return s.name
	}
	return fmt.Sprintf("0x%04X", uint16(id))
}

// OpenSSLName returns the suite's OpenSSL cipher name (PSK-AES128-CCM8), or
// "" for a suite this package does not implement.
func (id CipherSuiteID) OpenSSLName() string {
	if s := cipherSuiteByID(uint16(id)); s != nil {
		return s.openssl
	}
	return ""
}

// CipherSuites returns the IDs of all implemented suites in preference order.
func CipherSuites() []CipherSuiteID {
	out := make([]CipherSuiteID, len(cipherSuites))
	for i, s := range cipherSuites {
		out[i] = s.id
	}
	return out
}

// ParseCipherSuites reads a comma-separated list of OpenSSL-style
// (PSK-AES128-CCM8) or IANA (TLS_PSK_WITH_AES_128_CCM_8) names.
func ParseCipherSuites(list string) ([]CipherSuiteID, error) {
	var out []CipherSuiteID
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			return nil, fmt.Errorf("dtls: empty cipher suite name in %q", list)
		}
		var found *cipherSuite
		for _, s := range cipherSuites {
			if strings.EqualFold(name, s.name) || strings.EqualFold(name, s.openssl) {
				found = s
			}
		}
		if found == nil {
			return nil, fmt.Errorf("dtls: unknown cipher suite %q (known: %s)", name, knownSuiteNames())
		}
		out = append(out, found.id)
	}
	return out, nil
}

func knownSuiteNames() string {
	var names []string
	for _, s := range cipherSuites {
		names = append(names, s.openssl)
	}
	return strings.Join(names, ", ")
}

// keyLens are the lengths of one side's MAC key, write key and implicit IV
// (RFC 5246 §6.3): AEAD suites have a 4-byte salt and no MAC key; CBC
// suites a 32-byte HMAC-SHA256 key and explicit IVs only.
func (s *cipherSuite) keyLens() (mac, key, iv int) {
	if s.aead == aeadCBC {
		return 32, 16, 0
	}
	return 0, 16, 4
}

// keyBlockLen is the key material of a session: both sides' MAC keys, write
// keys and IVs, in the order of RFC 5246 §6.3.
func (s *cipherSuite) keyBlockLen() int {
	mac, key, iv := s.keyLens()
	return 2 * (mac + key + iv)
}

// sealedLen is the length of the protected fragment of an n-byte
// plaintext as this engine and common peers seal it (CBC: minimal padding).
func (s *cipherSuite) sealedLen(n int) int {
	if s.aead == aeadCBC {
		return cbcSealedLen(n)
	}
	return s.overhead + n
}

// newCipher derives the record keys of a session (RFC 5246 §6.3) and builds
// the epoch-1 cipher for this side; etm is encrypt-then-MAC for CBC suites.
func (s *cipherSuite) newCipher(masterSecret, clientRandom, serverRandom []byte, isClient, etm bool) (recordCipher, []byte, error) {
	mac, key, iv := s.keyLens()
	keys, err := prf.GenerateEncryptionKeys(masterSecret, clientRandom, serverRandom, mac, key, iv, sha256.New)
	if err != nil {
		return nil, nil, err
	}
	block := make([]byte, 0, s.keyBlockLen())
	for _, part := range [][]byte{keys.ClientMACKey, keys.ServerMACKey, keys.ClientWriteKey, keys.ServerWriteKey, keys.ClientWriteIV, keys.ServerWriteIV} {
		block = append(block, part...)
	}
	rc, err := s.cipherFromKeys(block, isClient, etm)
	return rc, block, err
}

// cipherFromKeys builds the record cipher from a key block.
func (s *cipherSuite) cipherFromKeys(block []byte, isClient, etm bool) (recordCipher, error) {
	if len(block) != s.keyBlockLen() {
		return nil, errors.New("dtls: key block of the wrong length")
	}
	macLen, keyLen, ivLen := s.keyLens()
	next := func(n int) []byte { b := block[:n]; block = block[n:]; return b }
	localMAC, remoteMAC := next(macLen), next(macLen)
	localKey, remoteKey := next(keyLen), next(keyLen)
	localIV, remoteIV := next(ivLen), next(ivLen)
	if !isClient {
		localMAC, remoteMAC = remoteMAC, localMAC
		localKey, localIV, remoteKey, remoteIV = remoteKey, remoteIV, localKey, localIV
	}
	switch s.aead {
	case aeadCBC:
		return newCBC(localKey, localMAC, remoteKey, remoteMAC, etm)
	case aeadCCM8:
		return ciphersuite.NewCCM(ciphersuite.CCMTagLength8, localKey, localIV, remoteKey, remoteIV)
	case aeadCCM:
		return ciphersuite.NewCCM(ciphersuite.CCMTagLength, localKey, localIV, remoteKey, remoteIV)
	}
	return ciphersuite.NewGCM(localKey, localIV, remoteKey, remoteIV)
}
