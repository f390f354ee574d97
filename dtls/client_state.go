package dtls

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
	"golang.org/x/crypto/cryptobyte"
)

// This file holds what resumption without client-side state needs
// (docs/decisions.md 23-28): the client's ticket key and handle, and the record a server
// keeps for each client.

// clientStateKey is the client's key for sealing its own tickets: the
// configured ClientStateKey, else one derived from the long-term credential
// (docs/decisions.md 25), so a device needs nothing it does not already hold.
func (c *Config) clientStateKey() ([ticketfmt.KeySize]byte, error) {
	var key [ticketfmt.KeySize]byte
	if c.ClientStateKey != nil {
		if len(c.ClientStateKey) != ticketfmt.KeySize {
			return key, fmt.Errorf("dtls: ClientStateKey must be %d bytes", ticketfmt.KeySize)
		}
		copy(key[:], c.ClientStateKey)
		return key, nil
	}
	if c.PSK != nil {
		psk, err := c.PSK(nil)
		if err != nil || len(psk) == 0 {
			return key, errors.New("dtls: client_state needs a ClientStateKey or a PSK to derive one from")
		}
		if len(psk) < minClientStatePSK && !c.AllowShortClientStatePSK {
			return key, fmt.Errorf("dtls: client_state with a %d-byte PSK: its handle lets an eavesdropper test guesses of the PSK offline; use a PSK of at least %d random bytes, a ClientStateKey, or set AllowShortClientStatePSK", len(psk), minClientStatePSK)
		}
		return ticketfmt.DeriveClientKey(psk)
	}
	if len(c.Certificates) > 0 {
		der, err := x509.MarshalPKCS8PrivateKey(c.Certificates[0].PrivateKey)
		if err != nil {
			return key, fmt.Errorf("dtls: client_state key from the certificate key: %w", err)
		}
		return ticketfmt.DeriveClientKey(der)
	}
	return key, errors.New("dtls: client_state needs a ClientStateKey, a PSK or a client certificate")
}

func (c *Config) resumptionExtension() uint16 {
	if c.ResumptionExtensionType == 0 {
		return negotiation.DefaultCodepoint
	}
	return c.ResumptionExtensionType
}

// clientStateRecord is what a server keeps per client_state handle.
//
//	struct {
//	    uint8  version;                         /* 1 */
//	    opaque client_ticket<1..2^16-1>;        /* the client's sealed state, opaque here */
//	    opaque server_state<1..2^16-1>;         /* ticketfmt StatePlaintext, the server's view,
//	                                               naming the authenticated client */
//	} ClientStateRecord;
type clientStateRecord struct {
	ticket []byte
	state  *ticketfmt.State
}

const clientStateRecordVersion = 1

func (r *clientStateRecord) marshal() ([]byte, error) {
	st, err := r.state.Marshal()
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddUint8(clientStateRecordVersion)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(r.ticket) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(st) })
	return b.Bytes()
}

func parseClientStateRecord(data []byte) (*clientStateRecord, error) {
	s := cryptobyte.String(data)
	var version uint8
	var ticket, st cryptobyte.String
	if !s.ReadUint8(&version) || version != clientStateRecordVersion ||
		!s.ReadUint16LengthPrefixed(&ticket) || len(ticket) == 0 || !s.ReadUint16LengthPrefixed(&st) || !s.Empty() {
		return nil, errors.New("dtls: ClientStateRecord: malformed")
	}
	state, err := ticketfmt.ParseState(st)
	if err != nil {
		return nil, fmt.Errorf("dtls: ClientStateRecord: %w", err)
	}
	return &clientStateRecord{ticket: bytes.Clone(ticket), state: state}, nil
}

// Store keys: one SessionStore holds session IDs and client_state records.
func sessionIDKey(id []byte) []byte           { return append([]byte("sid/"), id...) }
func clientStateKeyName(handle []byte) []byte { return append([]byte("csh/"), handle...) }

// minClientStatePSK is the shortest PSK a client_state key is derived from
// by default: 128 bits.
const minClientStatePSK = 16

// A client_state handle (docs/decisions.md 44) is
//
//	opaque owner[8];    /* SHA-256("dtlsresume client_state owner v1" || owner)[0..7] */
//	opaque binding[8];  /* HMAC-SHA256(handle_key, "dtlsresume client_state handle v1" || server)[0..7] */
//
// owner names the identity the server authenticates the client by ("psk:"
// and the PSK identity, "spki:" and its certificate's SubjectPublicKeyInfo,
// or "anon"), so a server stores a record under a handle only for the
// client the handle names: no other identity can take a client's handle
// over, whatever the store says. server is the client's session binding,
// so the handle differs per server; handle_key is a subkey of the client's
// ticket key (HKDF-SHA256, info "dtlsresume client_state handle key v1").
const (
	handleOwnerLabel   = "dtlsresume client_state owner v1"
	handleBindingLabel = "dtlsresume client_state handle v1"
	handleKeyInfo      = "dtlsresume client_state handle key v1"
)

// handleOwner is the owner half of a handle.
func handleOwner(owner string) [8]byte {
	h := sha256.New()
	h.Write([]byte(handleOwnerLabel))
	h.Write([]byte(owner))
	var out [8]byte
	copy(out[:], h.Sum(nil))
	return out
}

// clientOwner is the identity a client expects the server to authenticate
// it by.
func (c *Config) clientOwner() string {
	switch {
	case c.pskOnlyClient():
		return "psk:" + string(c.PSKIdentityHint)
	case c.presentsRawPublicKey():
		if spki, err := c.ownSPKI(); err == nil {
			return "spki:" + string(spki)
		}
	case len(c.Certificates) > 0 && len(c.Certificates[0].Certificate) > 0:
		if leaf, err := x509.ParseCertificate(c.Certificates[0].Certificate[0]); err == nil {
			return "spki:" + string(leaf.RawSubjectPublicKeyInfo)
		}
	}
	return "anon"
}

// peerOwner is the identity a server authenticated a client by, in the
// form clientOwner gives.
func peerOwner(p *ticketfmt.PeerIdentity) string {
	switch p.Type {
	case ticketfmt.PSK:
		return "psk:" + string(p.PSKIdentity)
	case ticketfmt.CertificateBased:
		if len(p.Certificates) > 0 {
			if leaf, err := x509.ParseCertificate(p.Certificates[0]); err == nil {
				return "spki:" + string(leaf.RawSubjectPublicKeyInfo)
			}
		}
	case ticketfmt.RawPublicKey:
		return "spki:" + string(p.PublicKey)
	}
	return "anon"
}

// clientStateHandle is the handle a client_state client sends to the
// server it binds its sessions to.
func (c *Config) clientStateHandle(binding string) ([16]byte, error) {
	var handle [16]byte
	key, err := c.clientStateKey()
	if err != nil {
		return handle, err
	}
	hk, err := hkdf.Key(sha256.New, key[:], nil, handleKeyInfo, sha256.Size)
	if err != nil {
		return handle, err
	}
	owner := handleOwner(c.clientOwner())
	mac := hmac.New(sha256.New, hk)
	mac.Write([]byte(handleBindingLabel))
	mac.Write([]byte(binding))
	copy(handle[:8], owner[:])
	copy(handle[8:], mac.Sum(nil))
	return handle, nil
}

// ownsHandle reports whether the handle names the authenticated client.
func ownsHandle(handle []byte, peer *ticketfmt.PeerIdentity) bool {
	owner := handleOwner(peerOwner(peer))
	return len(handle) == 16 && hmac.Equal(handle[:8], owner[:])
}
