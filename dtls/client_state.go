package dtls

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
	"golang.org/x/crypto/cryptobyte"
)

// This file holds what resumption without client-side state needs
// (spec §4): the client's ticket key and handle, and the record a server
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
