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
// RFC 7251) for interoperability.
const (
	TLS_PSK_WITH_AES_128_CCM_8              CipherSuiteID = 0xC0A8 //nolint:revive
	TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8      CipherSuiteID = 0xC0AE //nolint:revive
	TLS_PSK_WITH_AES_128_GCM_SHA256         CipherSuiteID = 0x00A8 //nolint:revive
	TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 CipherSuiteID = 0xC02B //nolint:revive
	TLS_PSK_WITH_AES_128_CCM                CipherSuiteID = 0xC0A4 //nolint:revive
	TLS_ECDHE_ECDSA_WITH_AES_128_CCM        CipherSuiteID = 0xC0AC //nolint:revive
)

// scsvRenegotiation is TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746).
const scsvRenegotiation uint16 = 0x00FF

type keyExchange uint8

const (
	kxPSK keyExchange = iota
	kxECDHE
)

// recordAEAD is the record protection of a suite.
type recordAEAD uint8

const (
	aeadCCM8 recordAEAD = iota
	aeadGCM
	aeadCCM // 16-byte tag
)

type cipherSuite struct {
	id       CipherSuiteID
	name     string // IANA
	openssl  string
	kx       keyExchange
	aead     recordAEAD
	overhead int // explicit nonce + tag
}

var cipherSuites = []*cipherSuite{
	{TLS_PSK_WITH_AES_128_CCM_8, "TLS_PSK_WITH_AES_128_CCM_8", "PSK-AES128-CCM8", kxPSK, aeadCCM8, 8 + 8},
	{TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8", "ECDHE-ECDSA-AES128-CCM8", kxECDHE, aeadCCM8, 8 + 8},
	{TLS_PSK_WITH_AES_128_GCM_SHA256, "TLS_PSK_WITH_AES_128_GCM_SHA256", "PSK-AES128-GCM-SHA256", kxPSK, aeadGCM, 8 + 16},
	{TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256", kxECDHE, aeadGCM, 8 + 16},
	{TLS_PSK_WITH_AES_128_CCM, "TLS_PSK_WITH_AES_128_CCM", "PSK-AES128-CCM", kxPSK, aeadCCM, 8 + 16},
	{TLS_ECDHE_ECDSA_WITH_AES_128_CCM, "TLS_ECDHE_ECDSA_WITH_AES_128_CCM", "ECDHE-ECDSA-AES128-CCM", kxECDHE, aeadCCM, 8 + 16},
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

// keyBlock derives the record keys of a session (RFC 5246 §6.3) and builds
// the epoch-1 cipher for this side.
func (s *cipherSuite) newCipher(masterSecret, clientRandom, serverRandom []byte, isClient bool) (recordCipher, []byte, error) {
	keys, err := prf.GenerateEncryptionKeys(masterSecret, clientRandom, serverRandom, 0, 16, 4, sha256.New)
	if err != nil {
		return nil, nil, err
	}
	block := make([]byte, 0, keyBlockLen)
	block = append(append(append(append(block, keys.ClientWriteKey...), keys.ServerWriteKey...), keys.ClientWriteIV...), keys.ServerWriteIV...)
	rc, err := s.cipherFromKeys(block, isClient)
	return rc, block, err
}

// keyBlockLen is the key material of every suite here: client and server
// write keys (16 bytes each) and IVs (4 bytes each), in that order.
const keyBlockLen = 2*16 + 2*4

// cipherFromKeys builds the record cipher from a key block.
func (s *cipherSuite) cipherFromKeys(block []byte, isClient bool) (recordCipher, error) {
	if len(block) != keyBlockLen {
		return nil, errors.New("dtls: key block of the wrong length")
	}
	localKey, remoteKey, localIV, remoteIV := block[:16], block[16:32], block[32:36], block[36:40]
	if !isClient {
		localKey, localIV, remoteKey, remoteIV = remoteKey, remoteIV, localKey, localIV
	}
	switch s.aead {
	case aeadCCM8:
		return ciphersuite.NewCCM(ciphersuite.CCMTagLength8, localKey, localIV, remoteKey, remoteIV)
	case aeadCCM:
		return ciphersuite.NewCCM(ciphersuite.CCMTagLength, localKey, localIV, remoteKey, remoteIV)
	}
	return ciphersuite.NewGCM(localKey, localIV, remoteKey, remoteIV)
}
