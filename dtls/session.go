package dtls

import (
	"bytes"
	"container/list"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
	"golang.org/x/crypto/cryptobyte"
)

// SessionStore keeps a server's resumable sessions under their session ID.
// Values are opaque bytes (the encoding of ticketfmt.State); the store only
// keeps them until ttl passes. Package store has implementations.
type SessionStore interface {
	// Get returns the value stored under key, or an error (any error,
	// including "not found", means: no such session).
	Get(ctx context.Context, key []byte) ([]byte, error)
	Put(ctx context.Context, key, value []byte, ttl time.Duration) error
	Delete(ctx context.Context, key []byte) error
}

// ClientSession is what a client keeps to resume a session with one server:
// the session ID and/or ticket the server gave it and the session state. It
// holds the master secret: keep it like a key.
type ClientSession struct {
	sessionID []byte
	ticket    []byte
	state     *ticketfmt.State
}

// Resumption says by which mechanism the session can be resumed.
func (s *ClientSession) Resumption() negotiation.Type {
	switch {
	case len(s.ticket) > 0:
		return negotiation.SessionTicket
	case len(s.sessionID) > 0:
		return negotiation.SessionID
	}
	return negotiation.None
}

// Expires is when the session may no longer be resumed.
func (s *ClientSession) Expires() time.Time { return s.state.Timestamp.Add(s.state.Lifetime) }

const clientSessionVersion = 1

// Marshal encodes the session for storage (for example `dtlsresume dial
// --session FILE`).
//
//	struct {
//	    uint8  version;                   /* 1 */
//	    opaque session_id<0..32>;
//	    opaque ticket<0..2^16-1>;
//	    opaque state<1..2^16-1>;          /* ticketfmt StatePlaintext */
//	} ClientSession;
func (s *ClientSession) Marshal() ([]byte, error) {
	st, err := s.state.Marshal()
	if err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddUint8(clientSessionVersion)
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.sessionID) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(s.ticket) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(st) })
	return b.Bytes()
}

// ParseClientSession decodes what Marshal produced.
func ParseClientSession(data []byte) (*ClientSession, error) {
	s := cryptobyte.String(data)
	var version uint8
	var id, ticket, st cryptobyte.String
	if !s.ReadUint8(&version) {
		return nil, errors.New("dtls: ClientSession: version: truncated")
	}
	if version != clientSessionVersion {
		return nil, fmt.Errorf("dtls: ClientSession: version %d unknown", version)
	}
	if !s.ReadUint8LengthPrefixed(&id) || len(id) > 32 || !s.ReadUint16LengthPrefixed(&ticket) ||
		!s.ReadUint16LengthPrefixed(&st) || !s.Empty() {
		return nil, errors.New("dtls: ClientSession: malformed")
	}
	state, err := ticketfmt.ParseState(st)
	if err != nil {
		return nil, fmt.Errorf("dtls: ClientSession: %w", err)
	}
	return &ClientSession{sessionID: bytes.Clone(id), ticket: bytes.Clone(ticket), state: state}, nil
}

// ClientSessionCache keeps a client's sessions per server. Implementations
// must be safe for concurrent use.
type ClientSessionCache interface {
	// Get returns the session for key, if any.
	Get(key string) (*ClientSession, bool)
	// Put stores a session; a nil session removes the key.
	Put(key string, s *ClientSession)
}

type lruClientCache struct {
	mu       sync.Mutex
	capacity int
	order    *list.List
	entries  map[string]*list.Element
}

type lruEntry struct {
	key string
	s   *ClientSession
}

// NewLRUClientSessionCache returns an in-memory ClientSessionCache that keeps
// at most capacity sessions (64 when capacity < 1).
func NewLRUClientSessionCache(capacity int) ClientSessionCache {
	if capacity < 1 {
		capacity = 64
	}
	return &lruClientCache{capacity: capacity, order: list.New(), entries: make(map[string]*list.Element)}
}

func (c *lruClientCache) Get(key string) (*ClientSession, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok {
		c.order.MoveToFront(e)
		return e.Value.(*lruEntry).s, true
	}
	return nil, false
}

func (c *lruClientCache) Put(key string, s *ClientSession) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok {
		if s == nil {
			c.order.Remove(e)
			delete(c.entries, key)
			return
		}
		e.Value.(*lruEntry).s = s
		c.order.MoveToFront(e)
		return
	}
	if s == nil {
		return
	}
	c.entries[key] = c.order.PushFront(&lruEntry{key, s})
	if c.order.Len() > c.capacity {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.entries, last.Value.(*lruEntry).key)
	}
}

// peerIdentity describes the authenticated peer for a sealed state: the
// client on a server (RFC 5077's ClientIdentity), the server on a client.
func peerIdentity(certs []*x509.Certificate, pskIdentity []byte) (ticketfmt.PeerIdentity, time.Time) {
	switch {
	case len(certs) > 0:
		// The leaf is what identifies the peer; the chain was verified
		// when the session was made.
		return ticketfmt.PeerIdentity{Type: ticketfmt.CertificateBased, Certificates: [][]byte{certs[0].Raw}}, certs[0].NotAfter
	case pskIdentity != nil:
		return ticketfmt.PeerIdentity{Type: ticketfmt.PSK, PSKIdentity: pskIdentity}, time.Time{}
	}
	return ticketfmt.PeerIdentity{Type: ticketfmt.Anonymous}, time.Time{}
}

// sessionState captures the connection's session for resumption.
func (c *Conn) sessionState(suite *cipherSuite, ms []byte, ems bool, created time.Time, typ negotiation.Type) *ticketfmt.State {
	pskID := c.state.PSKIdentity
	if c.isClient {
		// A client names the server: the hint it sent, if any.
		pskID = c.state.PSKIdentityHint
		if pskID == nil && suite.usesPSK() {
			pskID = []byte{}
		}
	}
	if !suite.usesPSK() {
		pskID = nil
	}
	peer, notAfter := peerIdentity(c.state.PeerCertificates, pskID)
	if len(c.state.PeerPublicKey) > 0 {
		peer, notAfter = ticketfmt.PeerIdentity{Type: ticketfmt.RawPublicKey, PublicKey: c.state.PeerPublicKey}, time.Time{}
	}
	st := &ticketfmt.State{
		Version:              versionDTLS12,
		CipherSuite:          uint16(suite.id),
		Peer:                 peer,
		Timestamp:            c.cfg.now(),
		ExtendedMasterSecret: ems,
		SessionCreated:       created,
		Lifetime:             c.cfg.sessionLifetime(),
		CertNotAfter:         notAfter,
		ServerName:           c.state.ServerName,
		ResumptionType:       uint8(typ),
	}
	copy(st.MasterSecret[:], ms)
	return st
}

// restorePeer fills ConnectionState from a resumed session's identity.
func (c *Conn) restorePeer(st *ticketfmt.State) {
	switch st.Peer.Type {
	case ticketfmt.CertificateBased:
		for _, der := range st.Peer.Certificates {
			if cert, err := x509.ParseCertificate(der); err == nil {
				c.state.PeerCertificates = append(c.state.PeerCertificates, cert)
			}
		}
	case ticketfmt.RawPublicKey:
		c.state.PeerPublicKey = st.Peer.PublicKey
	case ticketfmt.PSK:
		if c.isClient {
			c.state.PSKIdentity = c.cfg.PSKIdentityHint
			c.state.PSKIdentityHint = st.Peer.PSKIdentity
		} else {
			c.state.PSKIdentity = st.Peer.PSKIdentity
		}
	}
	c.state.ServerName = st.ServerName
	c.state.ExtendedMasterSecret = st.ExtendedMasterSecret
	c.state.CipherSuite = CipherSuiteID(st.CipherSuite)
}

// sessionCacheKey is where a client keeps the session for this server.
func (c *Conn) sessionCacheKey() string { return c.cfg.sessionBinding(c.raddr) }

// sessionBinding names the server a client's session belongs to by the
// server's identity, not its transport address, so that a client resumes on
// any server of a cluster that shares keys and store (docs/decisions.md
// 43): the configured ServerName; else, for a client that offers only PSK
// suites, the PSK identity it authenticates with (every server holding that
// key is the same server to it); else the dialled address, which is what a
// certificate is then verified against.
func (c *Config) sessionBinding(raddr net.Addr) string {
	switch {
	case c.ServerName != "":
		return c.ServerName
	case c.pskOnlyClient():
		return "psk:" + string(c.PSKIdentityHint)
	case raddr != nil:
		return raddr.String()
	}
	return ""
}

// pskOnlyClient reports a client whose every suite authenticates by PSK.
func (c *Config) pskOnlyClient() bool {
	suites := c.suites(true)
	for _, s := range suites {
		if !s.usesPSK() {
			return false
		}
	}
	return len(suites) > 0
}
