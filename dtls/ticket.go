package dtls

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
)

// resumption is a session that a ClientHello asks to resume and that the
// server accepts.
type resumption struct {
	state     *ticketfmt.State
	mech      negotiation.Type // SessionID or SessionTicket
	sessionID []byte           // echoed in the ServerHello
	renew     bool             // send a fresh ticket
	// clientTicket is the client's own sealed state (client_state), which
	// goes back in the ServerHello.
	clientTicket []byte
	// storedBytes is what the server keeps for this session (key and
	// value in its SessionStore; 0 for tickets).
	storedBytes int
}

// errEMSDowngrade is RFC 7627 §5.3: a session made with the extended master
// secret must not be resumed by a hello without it.
var errEMSDowngrade = errors.New("ClientHello: resumes a session with the extended master secret but does not offer it")

// clientOffer parses the client's session_resumption_type extension; nil
// when it sent none.
func (cfg *Config) clientOffer(hello *clientHelloMsg) (*negotiation.ClientOffer, error) {
	v, ok := findExtension(hello.extensions, cfg.resumptionExtension())
	if !ok {
		return nil, nil
	}
	o, err := negotiation.ParseClientOffer(v)
	if err != nil {
		return nil, localAlert(alertDecodeError, fmt.Errorf("ClientHello: session_resumption_type: %w", err))
	}
	return o, nil
}

// storeTimeout bounds each SessionStore call of a handshake: a store that
// hangs (a network store that is down) costs a full handshake, not a hung
// one.
const storeTimeout = 500 * time.Millisecond

// storeGet and storePut call the SessionStore under storeTimeout.
func (cfg *Config) storeGet(ctx context.Context, key []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	v, err := cfg.SessionStore.Get(ctx, key)
	if err != nil && ctx.Err() != nil {
		cfg.logger().Warn("dtls: session store lookup timed out; full handshake", "err", err)
	}
	return v, err
}

func (cfg *Config) storePut(ctx context.Context, key, value []byte, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	return cfg.SessionStore.Put(ctx, key, value, ttl)
}

// serverAllows reports whether a server may use mechanism t: its policy
// allows it and its configuration supports it.
func (cfg *Config) serverAllows(t negotiation.Type) bool {
	if cfg.Resumption != nil && !negotiation.Policy(cfg.Resumption).Allows(t) {
		return false
	}
	switch t {
	case negotiation.None:
		return true
	case negotiation.SessionTicket:
		return !cfg.SessionTicketsDisabled && cfg.TicketKeys != nil
	case negotiation.SessionID, negotiation.ClientState:
		return cfg.SessionStore != nil
	}
	return false
}

// findResumption looks up the session a ClientHello asks for: a
// client_state record by handle when the client asks for one back, else the
// ticket in its SessionTicket extension, else its session ID. It returns nil
// when there is nothing to resume, and an error only when the handshake
// must fail.
func findResumption(ctx context.Context, cfg *Config, hello *clientHelloMsg) (*resumption, error) {
	offer, err := cfg.clientOffer(hello)
	if err != nil {
		return nil, err
	}
	var res *resumption
	ticket, _ := findExtension(hello.extensions, extSessionTicket)
	switch {
	case offer != nil && offer.Resume:
		// The session ID is a fresh random value here: never look it up.
		if !cfg.serverAllows(negotiation.ClientState) {
			return nil, nil
		}
		v, err := cfg.storeGet(ctx, clientStateKeyName(offer.Handle))
		if err != nil {
			return nil, nil
		}
		rec, err := parseClientStateRecord(v)
		if err != nil {
			cfg.logger().Warn("dtls: undecodable client_state record in the store", "err", err)
			return nil, nil
		}
		res = &resumption{state: rec.state, mech: negotiation.ClientState, sessionID: hello.sessionID, clientTicket: rec.ticket,
			storedBytes: len(clientStateKeyName(offer.Handle)) + len(v)}
	case len(ticket) > 0 && cfg.serverAllows(negotiation.SessionTicket):
		st, err := cfg.TicketKeys.Open(ticket, ticketfmt.LabelServer)
		if err != nil {
			cfg.logger().Debug("dtls: ticket not accepted", "err", err)
			return nil, nil
		}
		res = &resumption{state: st, mech: negotiation.SessionTicket, sessionID: hello.sessionID}
		res.renew = cfg.now().Sub(st.Timestamp) > st.Lifetime/2
	case len(hello.sessionID) > 0 && cfg.serverAllows(negotiation.SessionID):
		v, err := cfg.storeGet(ctx, sessionIDKey(hello.sessionID))
		if err != nil {
			return nil, nil
		}
		st, err := ticketfmt.ParseState(v)
		if err != nil {
			cfg.logger().Warn("dtls: undecodable session in the store", "err", err)
			return nil, nil
		}
		res = &resumption{state: st, mech: negotiation.SessionID, sessionID: hello.sessionID,
			storedBytes: len(sessionIDKey(hello.sessionID)) + len(v)}
	default:
		return nil, nil
	}
	return res, res.check(cfg, hello)
}

// chooseMechanism is the server's pick for a full handshake: the first
// type in the client's order that the server allows (DESIGN.md decision 3).
// A client without the extension implicitly offers a ticket if it sent the
// SessionTicket extension, then a session ID (RFC 5077 §3.4, RFC 5246).
func (cfg *Config) chooseMechanism(hello *clientHelloMsg, offer *negotiation.ClientOffer) negotiation.Type {
	_, ticketExt := findExtension(hello.extensions, extSessionTicket)
	var offered []negotiation.Type
	if offer != nil {
		offered = offer.Offered
	} else {
		if ticketExt {
			offered = append(offered, negotiation.SessionTicket)
		}
		offered = append(offered, negotiation.SessionID)
	}
	var allowed negotiation.Policy
	for _, t := range offered {
		ok := cfg.serverAllows(t)
		switch t {
		case negotiation.SessionTicket:
			ok = ok && ticketExt // the ticket travels in RFC 5077's messages
		case negotiation.ClientState:
			ok = ok && len(offer.Handle) == negotiation.HandleSize
		}
		if ok {
			allowed = append(allowed, t)
		}
	}
	return negotiation.Select(offered, allowed)
}

// check applies the rules under which a found session may be resumed; it
// clears res.state (full handshake) or returns an error (abort).
func (res *resumption) check(cfg *Config, hello *clientHelloMsg) error {
	st := res.state
	_, offeredEMS := findExtension(hello.extensions, extExtendedMasterSecret)
	ok := st.Version == versionDTLS12 && st.CompressionMethod == 0 && !st.Expired(cfg.now(), cfg.maxSessionAge())
	if ok {
		ok = false
		for _, s := range cfg.suites(false) {
			if uint16(s.id) == st.CipherSuite {
				for _, id := range hello.cipherSuites {
					ok = ok || id == st.CipherSuite
				}
			}
		}
	}
	if ok && st.ServerName != "" {
		name := ""
		if v, found := findExtension(hello.extensions, extServerName); found {
			name, _ = parseServerName(v)
		}
		ok = name == st.ServerName
	}
	switch {
	case !ok:
	case st.ExtendedMasterSecret && !offeredEMS:
		return localAlert(alertHandshakeFailure, errEMSDowngrade)
	case !st.ExtendedMasterSecret && (offeredEMS || cfg.ExtendedMasterSecret == RequireExtendedMasterSecret):
		// RFC 7627 §5.3: a full handshake upgrades the session.
		ok = false
	}
	if !ok {
		res.state = nil
	}
	return nil
}

// abbreviatedFlightSize bounds the bytes of the server's flight for an
// abbreviated handshake, for the amplification check before any cookie.
func abbreviatedFlightSize(res *resumption) int {
	s := cipherSuiteByID(res.state.CipherSuite)
	n := recordHeaderLen + handshakeHeaderLen + 2 + 32 + 1 + len(res.sessionID) + 2 + 1 + 2 + // ServerHello
		4 + 5 // extended_master_secret, renegotiation_info
	if res.renew {
		n += 4 + handshakeHeaderLen + 4 + 2 + len(res.state.ServerName) + 160 // SessionTicket ext + NewSessionTicket
	}
	n += 4 + 1 + 2 + len(res.clientTicket)                      // session_resumption_type answer
	n += recordHeaderLen + 1                                    // ChangeCipherSpec
	n += recordHeaderLen + s.overhead + handshakeHeaderLen + 12 // Finished
	return n
}

// issueTicket seals a session into a NewSessionTicket.
func (c *Conn) issueTicket(st *ticketfmt.State) (*newSessionTicketMsg, error) {
	ticket, err := c.cfg.TicketKeys.Seal(st, ticketfmt.LabelServer)
	if err != nil {
		return nil, localAlert(alertInternalError, fmt.Errorf("sealing a ticket: %w", err))
	}
	return &newSessionTicketMsg{lifetimeHint: uint32(st.Lifetime / time.Second), ticket: ticket}, nil
}

// saveClientSession keeps what the client needs to resume, or forgets the
// server when it offered no way to.
func (c *Conn) saveClientSession(sessionID []byte, nst *newSessionTicketMsg, st *ticketfmt.State) {
	cache := c.cfg.ClientSessionCache
	if cache == nil {
		return
	}
	s := &ClientSession{sessionID: bytes.Clone(sessionID), state: st}
	if nst != nil && len(nst.ticket) > 0 {
		s.ticket = nst.ticket
		if hint := time.Duration(nst.lifetimeHint) * time.Second; hint > 0 && hint < st.Lifetime {
			st.Lifetime = hint
		}
	}
	if len(s.sessionID) == 0 && len(s.ticket) == 0 {
		cache.Put(c.sessionCacheKey(), nil)
		return
	}
	cache.Put(c.sessionCacheKey(), s)
	if b, err := s.Marshal(); err == nil {
		c.state.ResumptionStateBytes = len(c.sessionCacheKey()) + len(b)
	}
}
