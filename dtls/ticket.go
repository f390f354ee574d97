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
}

// errEMSDowngrade is RFC 7627 §5.3: a session made with the extended master
// secret must not be resumed by a hello without it.
var errEMSDowngrade = errors.New("ClientHello: resumes a session with the extended master secret but does not offer it")

// findResumption looks up the session a ClientHello asks for: the ticket in
// its SessionTicket extension, else its session ID in the SessionStore. It
// returns nil when there is nothing to resume, and an error only when the
// handshake must fail.
func findResumption(ctx context.Context, cfg *Config, hello *clientHelloMsg) (*resumption, error) {
	var res *resumption
	if ticket, ok := findExtension(hello.extensions, extSessionTicket); ok && len(ticket) > 0 && !cfg.SessionTicketsDisabled && cfg.TicketKeys != nil {
		st, err := cfg.TicketKeys.Open(ticket, ticketfmt.LabelServer)
		if err != nil {
			cfg.logger().Debug("dtls: ticket not accepted", "err", err)
		} else {
			res = &resumption{state: st, mech: negotiation.SessionTicket, sessionID: hello.sessionID}
			res.renew = cfg.now().Sub(st.Timestamp) > st.Lifetime/2
		}
	}
	if res == nil && len(hello.sessionID) > 0 && cfg.SessionStore != nil {
		v, err := cfg.SessionStore.Get(ctx, hello.sessionID)
		if err == nil {
			st, err := ticketfmt.ParseState(v)
			if err != nil {
				cfg.logger().Warn("dtls: undecodable session in the store", "err", err)
			} else {
				res = &resumption{state: st, mech: negotiation.SessionID, sessionID: hello.sessionID}
			}
		}
	}
	if res == nil {
		return nil, nil
	}
	return res, res.check(cfg, hello)
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
}
