package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// KeySize is the size of the operator key that encrypts a store's records at
// rest ([NewFile], and [RedisConfig].Key).
const KeySize = 32

// Record sealing, shared by the file store and the encrypted Redis store.
//
// From the operator's key K (32 bytes) HKDF-SHA256 (no salt) derives two
// keys: enc = HKDF(K, "dtlsresume store v1 enc") and id = HKDF(K,
// "dtlsresume store v1 id"). A record key (a session ID, a client_state
// handle) is never written: it is replaced by its key ID,
// HMAC-SHA256(id, key)[0:16]. A value is sealed as
//
//	nonce(24) ‖ AES-256-GCM(k_r, nonce[12:24], plaintext, aad) ‖ tag(16)
//
// with a fresh random 24-byte nonce and a per-record key
// k_r = HMAC-SHA256(enc, nonce[0:12]): random 96-bit GCM nonces alone would
// limit a key to 2^32 records, the derived key lifts that limit (the
// construction of "derive-key" AEADs such as XChaCha20's) at the cost of one
// HMAC and one AES key schedule per record. The additional data binds the
// record to its place (file header or Redis prefix) and its key ID, so a
// record moved under another key or into another store fails to open.

const (
	sealNonceSize = 24
	sealTagSize   = 16
	sealOverhead  = sealNonceSize + sealTagSize
	keyIDSize     = 16
)

// errOpen is a record that failed authentication.
var errOpen = errors.New("store: record failed authentication")

// sealer seals and opens records under keys derived from an operator key.
type sealer struct {
	enc [32]byte
	id  [32]byte
}

func newSealer(key []byte) (*sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("store: the store key must be %d bytes, not %d", KeySize, len(key))
	}
	s := new(sealer)
	for _, d := range []struct {
		out  *[32]byte
		info string
	}{{&s.enc, "dtlsresume store v1 enc"}, {&s.id, "dtlsresume store v1 id"}} {
		k, err := hkdf.Key(sha256.New, key, nil, d.info, 32)
		if err != nil {
			return nil, fmt.Errorf("store: deriving keys: %w", err)
		}
		copy(d.out[:], k)
	}
	return s, nil
}

// keyID is the 16-byte ID a record key is stored under, in domain dom.
func (s *sealer) keyID(dom byte, key []byte) [keyIDSize]byte {
	m := hmac.New(sha256.New, s.id[:])
	m.Write([]byte{dom})
	m.Write(key)
	var id [keyIDSize]byte
	copy(id[:], m.Sum(nil))
	return id
}

// mac is HMAC-SHA256 under the ID key, for header checks.
func (s *sealer) mac(data ...[]byte) []byte {
	m := hmac.New(sha256.New, s.id[:])
	m.Write([]byte("header"))
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

func (s *sealer) aead(nonce []byte) (cipher.AEAD, error) {
	m := hmac.New(sha256.New, s.enc[:])
	m.Write(nonce[:12])
	k := m.Sum(nil)
	block, err := aes.NewCipher(k)
	clear(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal appends the sealing of plaintext to dst.
func (s *sealer) seal(dst, plaintext, aad []byte) ([]byte, error) {
	var nonce [sealNonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("store: nonce: %w", err)
	}
	g, err := s.aead(nonce[:])
	if err != nil {
		return nil, err
	}
	dst = append(dst, nonce[:]...)
	return g.Seal(dst, nonce[12:], plaintext, aad), nil
}

// open opens what seal made; it fails with errOpen.
func (s *sealer) open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < sealOverhead {
		return nil, errOpen
	}
	g, err := s.aead(sealed[:sealNonceSize])
	if err != nil {
		return nil, err
	}
	p, err := g.Open(nil, sealed[12:sealNonceSize], sealed[sealNonceSize:], aad)
	if err != nil {
		return nil, errOpen
	}
	return p, nil
}
