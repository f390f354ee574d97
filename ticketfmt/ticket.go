package ticketfmt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/pion/dtls/v3/pkg/crypto/ccm"
	"golang.org/x/crypto/cryptobyte"
)

// Labels bound into a ticket's additional data, so that a server ticket is
// never accepted as a client ticket or the other way round.
const (
	LabelServer = "srv-v1"  // RFC 5077 tickets a server issues
	LabelClient = "csso-v1" // client_state tickets a client seals
)

// Sizes of AEAD_AES_128_CCM (RFC 5116) and of the CcmTicket fields.
const (
	KeySize     = 16
	KeyNameSize = 16
	NonceSize   = 12
	TagSize     = 16

	// Overhead is what a CcmTicket adds to its StatePlaintext: key_name,
	// nonce, the sealed_state length and the tag (46 bytes).
	Overhead = KeyNameSize + NonceSize + 2 + TagSize
	// MaxStateSize is the largest StatePlaintext that fits sealed_state.
	MaxStateSize = 1<<16 - 1 - TagSize // 65519
)

// Errors from opening tickets. Returned errors wrap them; test with errors.Is.
// No error of this package carries key material.
var (
	// ErrUnknownKey: the ticket's key_name names no key that may open it.
	ErrUnknownKey = errors.New("ticketfmt: unknown ticket key")
	// ErrMalformed: the bytes do not parse as a CcmTicket or StatePlaintext.
	ErrMalformed = errors.New("ticketfmt: malformed")
	// ErrAuth: the AEAD rejected the ticket (tampered, forged, wrong label).
	ErrAuth = errors.New("ticketfmt: ticket authentication failed")
)

// Seal counters: a Key refuses to seal after maxSeals tickets, and a KeyRing
// rotates well before that. Random 96-bit nonces stay collision-safe (below
// 2^-32) up to 2^32 seals per key (NIST SP 800-38D §8.3). The counts are per
// process: they are neither exported nor imported.
const (
	maxSeals        = 1 << 32
	ringRotateAfter = 1 << 30
)

// parseError is a parse failure naming the struct and field.
type parseError struct {
	structName, field, problem string
}

func (e *parseError) Error() string {
	if e.field == "" {
		return "ticketfmt: " + e.structName + ": " + e.problem
	}
	return "ticketfmt: " + e.structName + ": " + e.field + ": " + e.problem
}

func (e *parseError) Unwrap() error { return ErrMalformed }

func malformed(structName, field, problem string) error {
	return &parseError{structName, field, problem}
}

func truncated(structName, field string) error {
	return &parseError{structName, field, "truncated"}
}

func trailing(structName string, n int) error {
	return &parseError{structName, "", fmt.Sprintf("%d trailing bytes", n)}
}

// Key is one ticket key: a 16-byte secret from which two subkeys are
// derived with HKDF-SHA256 (no salt), so that no key serves two
// algorithms: the AES-128-CCM key (info "ticketfmt aead key v1") and the
// key that names it (info "ticketfmt key name key v1"); the name is
// HMAC-SHA256(name key, "key name")[0:16], so nothing besides the secret
// needs storing. A Key is safe for concurrent use. Name must not be
// modified.
type Key struct {
	Name [KeyNameSize]byte

	secret [KeySize]byte
	aead   cipher.AEAD
	seals  atomic.Uint64
}

// NewKey returns the Key for a 16-byte secret. The secret is copied.
func NewKey(secret []byte) (*Key, error) {
	if len(secret) != KeySize {
		return nil, fmt.Errorf("ticketfmt: ticket key must be %d bytes, not %d", KeySize, len(secret))
	}
	aeadKey, err := hkdf.Key(sha256.New, secret, nil, "ticketfmt aead key v1", KeySize)
	if err != nil {
		return nil, fmt.Errorf("ticketfmt: %w", err)
	}
	nameKey, err := hkdf.Key(sha256.New, secret, nil, "ticketfmt key name key v1", sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("ticketfmt: %w", err)
	}
	block, err := aes.NewCipher(aeadKey)
	if err != nil {
		return nil, fmt.Errorf("ticketfmt: %w", err)
	}
	aead, err := ccm.NewCCM(block, TagSize, NonceSize)
	if err != nil {
		return nil, fmt.Errorf("ticketfmt: %w", err)
	}
	k := &Key{Name: hmac16(nameKey, "key name"), aead: aead}
	copy(k.secret[:], secret)
	return k, nil
}

// hmac16 returns HMAC-SHA256(key, label)[0:16].
func hmac16(key []byte, label string) [16]byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(label))
	var out [16]byte
	copy(out[:], mac.Sum(nil))
	return out
}

// String describes k by its name only, so that logging a Key never leaks it.
func (k *Key) String() string { return fmt.Sprintf("ticketfmt.Key{Name: %x}", k.Name) }

// GoString is String, for %#v.
func (k *Key) GoString() string { return k.String() }

// Seal seals a StatePlaintext (normally from State.Marshal) under k with a
// random nonce from crypto/rand and returns a CcmTicket, Overhead bytes longer
// than state:
//
//	struct {
//	    opaque key_name[16];
//	    opaque nonce[12];                /* random per ticket */
//	    opaque sealed_state<0..2^16-1>;  /* AES-128-CCM ciphertext || 16-byte tag */
//	} CcmTicket;
//
// The AEAD is AEAD_AES_128_CCM (RFC 5116: 16-byte key, 12-byte nonce, 16-byte
// tag) with additional data key_name || label; label is LabelServer or
// LabelClient.
func (k *Key) Seal(state []byte, label string) ([]byte, error) {
	var nonce [NonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("ticketfmt: nonce: %w", err)
	}
	return k.sealWithNonce(state, label, nonce)
}

// sealWithNonce is Seal with a given nonce; only tests fix the nonce.
func (k *Key) sealWithNonce(state []byte, label string, nonce [NonceSize]byte) ([]byte, error) {
	if label == "" {
		return nil, errors.New("ticketfmt: empty label")
	}
	if len(state) > MaxStateSize {
		return nil, fmt.Errorf("ticketfmt: StatePlaintext of %d bytes does not fit a CcmTicket (max %d)", len(state), MaxStateSize)
	}
	if k.seals.Add(1) > maxSeals {
		return nil, errors.New("ticketfmt: ticket key has sealed its maximum number of tickets; rotate it")
	}
	sealed := k.aead.Seal(make([]byte, 0, len(state)+TagSize), nonce[:], state, k.aad(label))
	b := cryptobyte.NewFixedBuilder(make([]byte, 0, Overhead+len(state)))
	b.AddBytes(k.Name[:])
	b.AddBytes(nonce[:])
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(sealed) })
	return b.Bytes()
}

// Open authenticates and decrypts a CcmTicket sealed under k with label and
// returns the StatePlaintext. Errors wrap ErrMalformed, ErrUnknownKey (the
// key_name is not k's) or ErrAuth.
func (k *Key) Open(ticket []byte, label string) ([]byte, error) {
	name, nonce, sealed, err := parseTicket(ticket)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare(name[:], k.Name[:]) != 1 {
		return nil, unknownKey(name)
	}
	return k.open(nonce, sealed, label)
}

// open authenticates and decrypts sealed; sealed is at least TagSize bytes.
func (k *Key) open(nonce [NonceSize]byte, sealed []byte, label string) ([]byte, error) {
	if label == "" {
		return nil, errors.New("ticketfmt: empty label")
	}
	state, err := k.aead.Open(nil, nonce[:], sealed, k.aad(label))
	if err != nil {
		return nil, ErrAuth
	}
	return state, nil
}

// aad returns key_name || label.
func (k *Key) aad(label string) []byte {
	aad := make([]byte, 0, KeyNameSize+len(label))
	aad = append(aad, k.Name[:]...)
	return append(aad, label...)
}

func unknownKey(name [KeyNameSize]byte) error {
	return fmt.Errorf("%w (key_name %x)", ErrUnknownKey, name)
}

// ParseTicket splits a CcmTicket into its fields without opening it, e.g. to
// find the key by name. It rejects a sealed_state shorter than the tag and
// trailing bytes; errors wrap ErrMalformed. sealed is a copy.
func ParseTicket(b []byte) (keyName [KeyNameSize]byte, nonce [NonceSize]byte, sealed []byte, err error) {
	keyName, nonce, sealed, err = parseTicket(b)
	if err != nil {
		return keyName, nonce, nil, err
	}
	return keyName, nonce, append([]byte(nil), sealed...), nil
}

// parseTicket is ParseTicket with sealed aliasing b.
func parseTicket(b []byte) (keyName [KeyNameSize]byte, nonce [NonceSize]byte, sealed []byte, err error) {
	const name = "CcmTicket"
	s := cryptobyte.String(b)
	var st cryptobyte.String
	switch {
	case !s.CopyBytes(keyName[:]):
		err = truncated(name, "key_name")
	case !s.CopyBytes(nonce[:]):
		err = truncated(name, "nonce")
	case !s.ReadUint16LengthPrefixed(&st):
		err = truncated(name, "sealed_state")
	case len(st) < TagSize:
		err = malformed(name, "sealed_state", fmt.Sprintf("%d bytes, shorter than the %d-byte tag", len(st), TagSize))
	case !s.Empty():
		err = trailing(name, len(s))
	}
	if err != nil {
		return keyName, nonce, nil, err
	}
	return keyName, nonce, st, nil
}
