package dtls

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
)

// The client's side of resumption: which session it offers and how, what
// the server's answer means, and what it keeps afterwards.

// wantsTickets reports whether the client asks for RFC 5077 tickets: it
// can keep them, they are not disabled, and, with the negotiation
// extension, it offers session_ticket.
func (c *Conn) wantsTickets() bool {
	if c.cfg.ClientSessionCache == nil || c.cfg.SessionTicketsDisabled {
		return false
	}
	return c.cfg.Resumption == nil || negotiation.Policy(c.cfg.Resumption).Allows(negotiation.SessionTicket)
}

// resumableSession returns the cached session for this server if it may
// still be offered with this Config.
func (c *Conn) resumableSession() *ClientSession {
	if c.cfg.ClientSessionCache == nil {
		return nil
	}
	s, ok := c.cfg.ClientSessionCache.Get(c.sessionCacheKey())
	if !ok || s == nil || s.state == nil {
		return nil
	}
	if s.state.Expired(c.cfg.now(), c.cfg.maxSessionAge()) || s.state.Version != versionDTLS12 ||
		(s.state.ExtendedMasterSecret && c.cfg.ExtendedMasterSecret == DisableExtendedMasterSecret) ||
		(!s.state.ExtendedMasterSecret && c.cfg.ExtendedMasterSecret == RequireExtendedMasterSecret) {
		c.cfg.ClientSessionCache.Put(c.sessionCacheKey(), nil)
		return nil
	}
	if len(s.ticket) > 0 && !c.wantsTickets() && len(s.sessionID) == 0 {
		return nil
	}
	if c.cfg.Resumption != nil && !negotiation.Policy(c.cfg.Resumption).Allows(s.Resumption()) {
		return nil
	}
	// The credential may have been withdrawn, or the pin changed, since.
	switch p := &s.state.Peer; {
	case p.Type == ticketfmt.PSK && c.cfg.PSK != nil:
		if key, err := c.cfg.PSK(p.PSKIdentity); err != nil || len(key) == 0 {
			return nil
		}
	case p.Type == ticketfmt.CertificateBased && c.cfg.VerifyPeerCertificate != nil:
		if c.cfg.VerifyPeerCertificate(p.Certificates, nil) != nil {
			return nil
		}
	case p.Type == ticketfmt.RawPublicKey && c.cfg.acceptsRawPublicKeys(true):
		if !c.cfg.pinnedKey(p.PublicKey) {
			return nil
		}
	}
	for _, suite := range c.cfg.suites(true) {
		if uint16(suite.id) == s.state.CipherSuite {
			return s
		}
	}
	return nil
}

// buildHello picks the session to offer and builds the ClientHello that
// offers it, with the resumption offer of Config.Resumption.
func (hs *clientHandshakeState) buildHello() error {
	c := hs.c
	hs.session = c.resumableSession()
	session := hs.session
	random, err := newRandom()
	if err != nil {
		return localAlert(alertInternalError, err)
	}
	hello := &clientHelloMsg{vers: versionDTLS12, random: random, compressionMethods: []uint8{0}}
	ephemeral, certs, cbc := false, false, false
	for _, s := range c.cfg.suites(true) {
		hello.cipherSuites = append(hello.cipherSuites, uint16(s.id))
		ephemeral = ephemeral || s.ephemeral()
		certs = certs || s.kx == kxECDHE
		cbc = cbc || s.aead == aeadCBC
	}
	if ephemeral {
		hello.extensions = append(hello.extensions,
			extension{extSupportedGroups, marshalSupportedGroups(c.cfg.curveCodes())},
			extension{extECPointFormats, marshalECPointFormats([]uint8{0})})
	}
	if certs {
		hello.extensions = append(hello.extensions, extension{extSignatureAlgorithms, marshalSignatureAlgorithms(ecdsaSchemes)})
		// RFC 7250: the certificate types this side takes and presents.
		if c.cfg.acceptsRawPublicKeys(true) {
			types := []uint8{certTypeRawPublicKey}
			if c.cfg.RootCAs != nil || c.cfg.InsecureSkipVerify || c.cfg.VerifyPeerCertificate != nil {
				types = append(types, certTypeX509)
			}
			hello.extensions = append(hello.extensions, extension{extServerCertType, marshalCertTypes(types)})
		}
		if c.cfg.presentsRawPublicKey() {
			types := []uint8{certTypeRawPublicKey}
			if len(c.cfg.Certificates[0].Certificate) > 0 {
				types = append(types, certTypeX509)
			}
			hello.extensions = append(hello.extensions, extension{extClientCertType, marshalCertTypes(types)})
		}
	}
	if cbc {
		// RFC 7366: CBC records encrypt-then-MAC wherever the server can.
		hello.extensions = append(hello.extensions, extension{extEncryptThenMAC, nil})
	}
	if c.cfg.ExtendedMasterSecret != DisableExtendedMasterSecret {
		hello.extensions = append(hello.extensions, extension{extExtendedMasterSecret, nil})
	}
	hello.extensions = append(hello.extensions, extension{extRenegotiationInfo, marshalRenegotiationInfo(nil)})
	if name := c.cfg.ServerName; name != "" && net.ParseIP(name) == nil {
		hello.extensions = append(hello.extensions, extension{extServerName, marshalServerName(name)})
	}
	if c.wantsTickets() {
		var ticket []byte
		if session != nil {
			ticket = session.ticket
		}
		hello.extensions = append(hello.extensions, extension{extSessionTicket, ticket})
	}
	if gen := c.cfg.ConnectionIDGenerator; gen != nil {
		hs.localCID = gen()
		hello.extensions = append(hello.extensions, extension{extConnectionID, marshalConnectionID(hs.localCID)})
		c.rl.cidLen = len(hs.localCID) // the server's records may carry it before we read its ServerHello
	}
	if c.cfg.Resumption != nil {
		offer := &negotiation.ClientOffer{Offered: c.cfg.Resumption}
		if negotiation.Policy(c.cfg.Resumption).Allows(negotiation.ClientState) {
			h, err := c.cfg.clientStateHandle(c.sessionCacheKey())
			if err != nil {
				return localAlert(alertInternalError, err)
			}
			offer.Handle = h[:]
			// The client keeps nothing, so it always asks for its ticket
			// back, unless it already holds another session to offer or is
			// retrying after a ticket that did not work (docs/decisions.md 24).
			offer.Resume = session == nil && !hs.retryFresh
			if offer.Resume {
				r, err := newRandom()
				if err != nil {
					return localAlert(alertInternalError, err)
				}
				hello.sessionID = r[:]
			}
		}
		v, err := offer.Marshal()
		if err != nil {
			return localAlert(alertInternalError, err)
		}
		hello.extensions = append(hello.extensions, extension{c.cfg.resumptionExtension(), v})
	}
	if session != nil {
		hello.sessionID = session.sessionID
		if len(session.ticket) > 0 && c.wantsTickets() {
			// RFC 5077 §3.4: a fresh session ID next to the ticket shows
			// whether the server resumed, by coming back.
			r, err := newRandom()
			if err != nil {
				return localAlert(alertInternalError, err)
			}
			hello.sessionID = r[:]
		}
	}
	hs.hello = hello
	if hs.offer, err = c.cfg.clientOffer(hello); err != nil {
		return err
	}
	c.state.ResumptionAttempted = attemptedResumption(hello, hs.offer)
	return nil
}

// resumed reports whether the server accepted the offered session: it
// echoed the session ID we sent (RFC 5246 §7.4.1.3, RFC 5077 §3.4).
func (hs *clientHandshakeState) resumed() bool {
	return hs.session != nil && len(hs.hello.sessionID) > 0 && bytes.Equal(hs.serverHello.sessionID, hs.hello.sessionID)
}

// processAnswer checks the server's session_resumption_type answer, if the
// client offered the extension and the server speaks it (docs/decisions.md 21-22, 26).
func (hs *clientHandshakeState) processAnswer() error {
	c := hs.c
	if hs.offer == nil {
		return nil
	}
	v, ok := findExtension(hs.serverHello.extensions, c.cfg.resumptionExtension())
	if !ok {
		return nil // a server without the extension: RFC 5246/5077 rules apply
	}
	a, err := negotiation.ParseServerAnswer(v)
	if err != nil {
		return localAlert(alertDecodeError, fmt.Errorf("ServerHello: session_resumption_type: %w", err))
	}
	if err := negotiation.CheckSelection(hs.offer.Offered, a.Selected); err != nil {
		return localAlert(alertIllegalParameter, fmt.Errorf("ServerHello: %w", err))
	}
	hs.answer = a
	echoed := len(hs.hello.sessionID) > 0 && bytes.Equal(hs.serverHello.sessionID, hs.hello.sessionID)
	_, ticketExt := findExtension(hs.serverHello.extensions, extSessionTicket)
	switch {
	case hs.offer.Resume && echoed != (len(a.Ticket) > 0):
		// Acceptance is the echo and the ticket together; one without
		// the other is a broken server.
		return localAlert(alertIllegalParameter, errors.New("ServerHello: session_id echo and client_state ticket disagree"))
	case len(a.Ticket) > 0 && !hs.offer.Resume:
		return localAlert(alertIllegalParameter, errors.New("ServerHello: client_state ticket that was not asked for"))
	case ticketExt && a.Selected != negotiation.SessionTicket:
		return localAlert(alertIllegalParameter, fmt.Errorf("ServerHello: SessionTicket extension with %v selected", a.Selected))
	case !echoed && a.Selected == negotiation.SessionTicket && !ticketExt:
		return localAlert(alertIllegalParameter, errors.New("ServerHello: session_ticket selected without the SessionTicket extension"))
	case !echoed && a.Selected == negotiation.SessionID && len(hs.serverHello.sessionID) == 0:
		return localAlert(alertIllegalParameter, errors.New("ServerHello: session_id selected with an empty session_id"))
	}
	if len(a.Ticket) > 0 {
		st, err := c.openClientTicket(a.Ticket)
		if err != nil {
			return err
		}
		if st.CipherSuite != uint16(hs.suite.id) || st.ExtendedMasterSecret != hs.ems {
			return localAlert(alertHandshakeFailure, fmt.Errorf("%w: suite or extended master secret differ from the ServerHello", errClientTicket))
		}
		hs.clientState = st
	}
	return nil
}

// clientTicket seals the client's own state, under its own key, for the
// server to hold: the NewSessionTicket of flight 5 when client_state was
// negotiated. The client keeps nothing (docs/decisions.md 27).
func (hs *clientHandshakeState) clientTicket() (*newSessionTicketMsg, error) {
	c := hs.c
	st := c.sessionState(hs.suite, hs.masterSecret, hs.ems, c.cfg.now(), negotiation.ClientState)
	st.ServerName = c.sessionCacheKey()
	if len(c.state.PeerPublicKey) > 0 {
		st.Peer = ticketfmt.PeerIdentity{Type: ticketfmt.RawPublicKey, PublicKey: c.state.PeerPublicKey}
	} else if len(c.state.PeerCertificates) > 0 {
		// The ticket crosses the wire in every resumption: name the
		// server by its public key (raw_public_key, ~91 bytes for
		// P-256), not by its certificate, so that the reply stays
		// within the amplification bound and needs no cookie. The
		// chain was verified now; its expiry stays in cert_not_after.
		st.Peer = ticketfmt.PeerIdentity{Type: ticketfmt.RawPublicKey, PublicKey: c.state.PeerCertificates[0].RawSubjectPublicKeyInfo}
	}
	return c.sealClientTicket(st)
}

// refreshedClientTicket is the client_state ticket a resuming client sends
// once its session is past half its lifetime: the same session, sealed
// again with a new expiry; nil before that.
func (hs *clientHandshakeState) refreshedClientTicket() (*newSessionTicketMsg, error) {
	c := hs.c
	st := hs.clientState
	if c.cfg.now().Sub(st.Timestamp) <= st.Lifetime/2 {
		return nil, nil
	}
	renewed := *st
	renewed.Timestamp = c.cfg.now()
	renewed.Lifetime = c.cfg.sessionLifetime()
	return c.sealClientTicket(&renewed)
}

// keepResumedSession keeps a resumed session: renewed when the server sent
// a new ticket, else as it was.
func (hs *clientHandshakeState) keepResumedSession(nst *newSessionTicketMsg) {
	c := hs.c
	if nst != nil && len(nst.ticket) > 0 {
		renewed := *hs.session.state
		renewed.Timestamp = c.cfg.now()
		renewed.Lifetime = c.cfg.sessionLifetime()
		c.saveClientSession(nil, nst, &renewed)
	} else if b, err := hs.session.Marshal(); err == nil {
		c.state.ResumptionStateBytes = len(c.sessionCacheKey()) + len(b)
	}
}

// keepNewSession records the mechanism a full handshake set up and keeps
// what it needs on this side: the session ID or the ticket, nothing for
// client_state or none.
func (hs *clientHandshakeState) keepNewSession(nst *newSessionTicketMsg) {
	c := hs.c
	mech := negotiation.None
	switch {
	case hs.answer != nil:
		mech = hs.answer.Selected
		c.state.Negotiated = true
	case nst != nil && len(nst.ticket) > 0:
		mech = negotiation.SessionTicket
	case len(hs.serverHello.sessionID) > 0:
		mech = negotiation.SessionID
	}
	c.state.Resumption = mech
	sessionID := hs.serverHello.sessionID
	switch mech {
	case negotiation.SessionID:
		c.state.SessionID = sessionID
	case negotiation.SessionTicket:
		sessionID = nil
	default:
		sessionID, nst = nil, nil
	}
	c.saveClientSession(sessionID, nst, c.sessionState(hs.suite, hs.masterSecret, hs.ems, c.cfg.now(), mech))
}

// clientTicketKey is the key a client_state client seals its own tickets
// with.
func (c *Config) clientTicketKey() (*ticketfmt.Key, error) {
	key, err := c.clientStateKey()
	if err != nil {
		return nil, localAlert(alertInternalError, err)
	}
	k, err := ticketfmt.NewKey(key[:])
	if err != nil {
		return nil, localAlert(alertInternalError, err)
	}
	return k, nil
}

// sealClientTicket seals the client's own state under its key: the
// NewSessionTicket a client_state client sends (docs/decisions.md 27).
func (c *Conn) sealClientTicket(st *ticketfmt.State) (*newSessionTicketMsg, error) {
	k, err := c.cfg.clientTicketKey()
	if err != nil {
		return nil, err
	}
	plain, err := st.Marshal()
	if err != nil {
		return nil, localAlert(alertInternalError, err)
	}
	t, err := k.Seal(plain, ticketfmt.LabelClient)
	if err != nil {
		return nil, localAlert(alertInternalError, err)
	}
	return &newSessionTicketMsg{lifetimeHint: uint32(st.Lifetime / time.Second), ticket: t}, nil
}

// errClientTicket marks a client_state resumption that failed on the
// client's side after the server accepted it; the client retries once
// without resumption (docs/decisions.md 24).
var errClientTicket = errors.New("client_state ticket unusable")

// openClientTicket opens the ticket the server returned and checks that it
// may resume a session with this server.
func (c *Conn) openClientTicket(ticket []byte) (*ticketfmt.State, error) {
	k, err := c.cfg.clientTicketKey()
	if err != nil {
		return nil, err
	}
	plain, err := k.Open(ticket, ticketfmt.LabelClient)
	if err != nil {
		return nil, localAlert(alertDecryptError, fmt.Errorf("%w: %w", errClientTicket, err))
	}
	st, err := ticketfmt.ParseState(plain)
	if err != nil {
		return nil, localAlert(alertDecryptError, fmt.Errorf("%w: %w", errClientTicket, err))
	}
	switch {
	case st.Expired(c.cfg.now(), c.cfg.maxSessionAge()):
		return nil, localAlert(alertHandshakeFailure, fmt.Errorf("%w: expired", errClientTicket))
	case st.ServerName != c.sessionCacheKey():
		return nil, localAlert(alertHandshakeFailure, fmt.Errorf("%w: sealed for another server", errClientTicket))
	case st.Version != versionDTLS12:
		return nil, localAlert(alertHandshakeFailure, fmt.Errorf("%w: protocol version", errClientTicket))
	}
	return st, nil
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
