package dtls

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net"

	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
	pionelliptic "github.com/pion/dtls/v3/pkg/crypto/elliptic"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
)

const (
	groupP256              uint16 = 23
	sigECDSAWithP256SHA256 uint16 = 0x0403
	// maxHelloVerifyRequests bounds how often a server may send us back for a
	// new cookie in one handshake.
	maxHelloVerifyRequests = 4
)

// clientHandshakeState is what the client learns in one handshake.
type clientHandshakeState struct {
	session      *ClientSession // the session offered for resumption
	offer        *negotiation.ClientOffer
	answer       *negotiation.ServerAnswer // nil: the server did not answer the offer
	clientState  *ticketfmt.State          // opened from the answer's ticket
	hello        *clientHelloMsg
	serverHello  *serverHelloMsg
	suite        *cipherSuite
	ems          bool
	masterSecret []byte
}

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
	for _, suite := range c.cfg.suites(true) {
		if uint16(suite.id) == s.state.CipherSuite {
			return s
		}
	}
	return nil
}

func (c *Conn) buildClientHello(session *ClientSession) (*clientHelloMsg, error) {
	random, err := newRandom()
	if err != nil {
		return nil, localAlert(alertInternalError, err)
	}
	hello := &clientHelloMsg{vers: versionDTLS12, random: random, compressionMethods: []uint8{0}}
	ecdhe := false
	for _, s := range c.cfg.suites(true) {
		hello.cipherSuites = append(hello.cipherSuites, uint16(s.id))
		ecdhe = ecdhe || s.kx == kxECDHE
	}
	if ecdhe {
		hello.extensions = append(hello.extensions,
			extension{extSupportedGroups, marshalSupportedGroups([]uint16{groupP256})},
			extension{extECPointFormats, marshalECPointFormats([]uint8{0})},
			extension{extSignatureAlgorithms, marshalSignatureAlgorithms([]uint16{sigECDSAWithP256SHA256})})
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
	if c.cfg.Resumption != nil {
		offer := &negotiation.ClientOffer{Offered: c.cfg.Resumption}
		if negotiation.Policy(c.cfg.Resumption).Allows(negotiation.ClientState) {
			key, err := c.cfg.clientStateKey()
			if err != nil {
				return nil, localAlert(alertInternalError, err)
			}
			h := ticketfmt.ClientHandle(key)
			offer.Handle = h[:]
			// The client keeps nothing, so it always asks for its ticket
			// back, unless it already holds another session to offer or is
			// retrying after a ticket that did not work (spec §6).
			offer.Resume = session == nil && !c.noClientStateResume
			if offer.Resume {
				r, err := newRandom()
				if err != nil {
					return nil, localAlert(alertInternalError, err)
				}
				hello.sessionID = r[:]
			}
		}
		v, err := offer.Marshal()
		if err != nil {
			return nil, localAlert(alertInternalError, err)
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
				return nil, localAlert(alertInternalError, err)
			}
			hello.sessionID = r[:]
		}
	}
	return hello, nil
}

// clientHandshake runs the client side. When the server accepted a
// client_state resumption but the returned ticket did not work out for us,
// it alerts the server and runs a full handshake once (spec §6).
func (c *Conn) clientHandshake(ctx context.Context) error {
	err := c.clientHandshakeOnce(ctx)
	if !errors.Is(err, errClientTicket) || ctx.Err() != nil {
		return err
	}
	c.cfg.logger().Info("dtls: client_state ticket not usable; retrying without resumption", "peer", c.raddr.String(), "err", err)
	var ae *AlertError
	if errors.As(err, &ae) {
		_ = c.sendAlert(alertLevelFatal, alertDescription(ae.Description))
	}
	c.resetHandshake()
	c.noClientStateResume = true
	return c.clientHandshakeOnce(ctx)
}

// resetHandshake forgets a failed handshake so that another can start on
// the same socket. Record sequence numbers go on, and datagrams still on
// their way from the old handshake are discarded.
func (c *Conn) resetHandshake() {
	c.writeMu.Lock()
	next := c.rl.write[0].nextSeq
	c.rl = newRecordLayer(c.cfg.replayWindow())
	c.rl.write[0].nextSeq = next
	c.writeMu.Unlock()
	c.reasm = reassembler{}
	c.sendSeq = 0
	c.transcript = nil
	c.lastFlight = nil
	c.peerRetransmit, c.peerCCS = false, false
	c.early, c.appData, c.readErr = nil, nil, nil
	c.badRecords, c.epoch1OK = 0, false
	c.state = ConnectionState{}
	for {
		select {
		case <-c.inbound:
		default:
			return
		}
	}
}

func (c *Conn) clientHandshakeOnce(ctx context.Context) error {
	hs := &clientHandshakeState{session: c.resumableSession()}
	hello, err := c.buildClientHello(hs.session)
	if err != nil {
		return err
	}
	hs.hello = hello
	if hs.offer, err = c.cfg.clientOffer(hello); err != nil {
		return err
	}
	c.state.ResumptionAttempted = attemptedResumption(hello, hs.offer)

	// Flight 1 and, after each HelloVerifyRequest, flight 3.
	var helloItem outItem
	for hvr := 0; ; hvr++ {
		if helloItem, err = c.handshakeItem(hello, 0); err != nil {
			return err
		}
		if err := c.sendFlight([]outItem{helloItem}); err != nil {
			return err
		}
		hm, err := c.readHandshake(ctx)
		if err != nil {
			return err
		}
		if hm.typ == typeServerHello {
			hs.serverHello = &serverHelloMsg{}
			if err := hs.serverHello.unmarshal(hm.body); err != nil {
				return err
			}
			c.addTranscript(typeClientHello, helloItem.seq, helloItem.body)
			c.addTranscript(hm.typ, hm.seq, hm.body)
			break
		}
		if hm.typ != typeHelloVerifyRequest {
			return localAlert(alertUnexpectedMessage, fmt.Errorf("expected ServerHello or HelloVerifyRequest, got handshake type %d", hm.typ))
		}
		if hvr == maxHelloVerifyRequests {
			return localAlert(alertHandshakeFailure, errors.New("server sent too many HelloVerifyRequests"))
		}
		var v helloVerifyRequestMsg
		if err := v.unmarshal(hm.body); err != nil {
			return err
		}
		hello.cookie = v.cookie
	}

	if err := c.processServerHello(hs); err != nil {
		return err
	}
	if hs.clientState != nil {
		return c.clientStateResume(ctx, hs)
	}
	if hs.resumed() {
		err := c.clientResume(ctx, hs)
		if err != nil {
			// The server accepted the session but it did not work out:
			// never offer it again (spec §6).
			c.cfg.ClientSessionCache.Put(c.sessionCacheKey(), nil)
		}
		return err
	}
	c.state.CipherSuite = hs.suite.id
	c.state.ExtendedMasterSecret = hs.ems
	c.state.ServerName = c.cfg.ServerName
	return c.clientFullHandshake(ctx, hs)
}

// resumed reports whether the server accepted the offered session: it
// echoed the session ID we sent (RFC 5246 §7.4.1.3, RFC 5077 §3.4).
func (hs *clientHandshakeState) resumed() bool {
	return hs.session != nil && len(hs.hello.sessionID) > 0 && bytes.Equal(hs.serverHello.sessionID, hs.hello.sessionID)
}

// clientResume finishes an abbreviated handshake: [NewSessionTicket] and
// the server's Finished, then our ChangeCipherSpec and Finished.
func (c *Conn) clientResume(ctx context.Context, hs *clientHandshakeState) error {
	st := hs.session.state
	if uint16(hs.suite.id) != st.CipherSuite {
		return localAlert(alertIllegalParameter, errors.New("ServerHello: resumes the session with another cipher suite"))
	}
	if hs.ems != st.ExtendedMasterSecret {
		return localAlert(alertHandshakeFailure, errors.New("ServerHello: extended_master_secret differs from the resumed session"))
	}
	ms := st.MasterSecret[:]
	if err := c.setSessionKeys(hs.suite, ms, hs.hello.random, hs.serverHello.random); err != nil {
		return err
	}
	nst, err := c.readNewSessionTicket(ctx, hs)
	if err != nil {
		return err
	}
	if err := c.readPeerFinished(ctx, ms); err != nil {
		return err
	}
	if err := c.newFlight().finish(ms); err != nil {
		return err
	}
	c.restorePeer(st)
	c.state.Resumed = true
	c.state.Resumption = hs.session.Resumption()
	c.state.Negotiated = hs.answer != nil
	if c.state.Resumption == negotiation.SessionID {
		c.state.SessionID = hs.serverHello.sessionID
	}
	if nst != nil && len(nst.ticket) > 0 {
		renewed := *st
		renewed.Timestamp = c.cfg.now()
		renewed.Lifetime = c.cfg.sessionLifetime()
		c.saveClientSession(nil, nst, &renewed)
	} else if b, err := hs.session.Marshal(); err == nil {
		c.state.ResumptionStateBytes = len(c.sessionCacheKey()) + len(b)
	}
	return nil
}

// readNewSessionTicket reads the NewSessionTicket that a server announced
// with an empty SessionTicket extension in its ServerHello.
func (c *Conn) readNewSessionTicket(ctx context.Context, hs *clientHandshakeState) (*newSessionTicketMsg, error) {
	if _, ok := findExtension(hs.serverHello.extensions, extSessionTicket); !ok {
		return nil, nil
	}
	nst := &newSessionTicketMsg{}
	hm, err := c.expect(ctx, nst, "NewSessionTicket")
	if err != nil {
		return nil, err
	}
	if hm.epoch != 0 {
		return nil, localAlert(alertUnexpectedMessage, errors.New("NewSessionTicket after ChangeCipherSpec"))
	}
	c.addTranscript(hm.typ, hm.seq, hm.body)
	return nst, nil
}

// processServerHello checks the ServerHello against what we offered.
func (c *Conn) processServerHello(hs *clientHandshakeState) error {
	sh := hs.serverHello
	if sh.vers != versionDTLS12 {
		return localAlert(alertProtocolVersion, fmt.Errorf("ServerHello: server_version %#04x is not DTLS 1.2", sh.vers))
	}
	offered := false
	for _, id := range hs.hello.cipherSuites {
		offered = offered || id == sh.cipherSuite
	}
	if hs.suite = cipherSuiteByID(sh.cipherSuite); !offered || hs.suite == nil {
		return localAlert(alertIllegalParameter, fmt.Errorf("ServerHello: cipher_suite %#04x was not offered", sh.cipherSuite))
	}
	if sh.compressionMethod != 0 {
		return localAlert(alertIllegalParameter, errors.New("ServerHello: compression_method is not null"))
	}
	for _, e := range sh.extensions {
		if _, ok := findExtension(hs.hello.extensions, e.typ); !ok {
			return localAlert(alertUnsupportedExtension, fmt.Errorf("ServerHello: extension %d was not offered", e.typ))
		}
		switch e.typ {
		case extExtendedMasterSecret:
			if len(e.data) != 0 {
				return decodeError("ServerHello", "extended_master_secret")
			}
			hs.ems = true
		case extSessionTicket:
			if len(e.data) != 0 {
				return decodeError("ServerHello", "session_ticket")
			}
		case extRenegotiationInfo:
			v, err := parseRenegotiationInfo(e.data)
			if err != nil {
				return err
			}
			if len(v) != 0 {
				return localAlert(alertHandshakeFailure, errors.New("ServerHello: renegotiation_info is not empty on a new connection"))
			}
		}
	}
	if !hs.ems && c.cfg.ExtendedMasterSecret == RequireExtendedMasterSecret {
		return localAlert(alertHandshakeFailure, errors.New("server does not support the extended master secret"))
	}
	return c.processAnswer(hs)
}

// processAnswer checks the server's session_resumption_type answer, if the
// client offered the extension and the server speaks it (spec §3.3, §4.2).
func (c *Conn) processAnswer(hs *clientHandshakeState) error {
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

// clientStateResume finishes an abbreviated handshake on the session the
// server handed back in its ServerHello (spec §4.2): the server's Finished,
// then [NewSessionTicket], ChangeCipherSpec and Finished from us.
func (c *Conn) clientStateResume(ctx context.Context, hs *clientHandshakeState) error {
	st := hs.clientState
	ms := st.MasterSecret[:]
	if err := c.setSessionKeys(hs.suite, ms, hs.hello.random, hs.serverHello.random); err != nil {
		return err
	}
	if err := c.readPeerFinished(ctx, ms); err != nil {
		var ae *AlertError
		if errors.As(err, &ae) && !ae.Remote && errors.Is(err, errBadFinished) {
			return localAlert(alertDecryptError, fmt.Errorf("%w: %w", errClientTicket, err))
		}
		return err
	}
	fl := c.newFlight()
	if c.cfg.now().Sub(st.Timestamp) > st.Lifetime/2 {
		// Refresh: the same session, sealed again with a new expiry.
		renewed := *st
		renewed.Timestamp = c.cfg.now()
		renewed.Lifetime = c.cfg.sessionLifetime()
		nst, err := c.sealClientTicket(&renewed)
		if err != nil {
			return err
		}
		if err := fl.add(nst, 0); err != nil {
			return err
		}
	}
	if err := fl.finish(ms); err != nil {
		return err
	}
	c.restorePeer(st)
	c.state.ServerName = c.cfg.ServerName
	c.state.Resumed = true
	c.state.Resumption = negotiation.ClientState
	c.state.Negotiated = true
	return nil
}

// clientFullHandshake runs flights 4 to 6 of a full handshake.
func (c *Conn) clientFullHandshake(ctx context.Context, hs *clientHandshakeState) error {
	var (
		serverCerts []*x509.Certificate
		ske         *serverKeyExchangeECDHEMsg
		certReq     *certificateRequestMsg
		pskHint     []byte
	)
	hm, err := c.readHandshake(ctx)
	if err != nil {
		return err
	}
	if hs.suite.kx == kxECDHE {
		var cm certificateMsg
		if err := c.parseAs(hm, &cm, "Certificate"); err != nil {
			return err
		}
		if serverCerts, err = c.verifyPeerCertificates(cm.certificates); err != nil {
			return err
		}
		c.addTranscript(hm.typ, hm.seq, hm.body)
		ske = &serverKeyExchangeECDHEMsg{}
		if hm, err = c.expect(ctx, ske, "ServerKeyExchange"); err != nil {
			return err
		}
		if err := verifyServerKeyExchange(serverCerts[0], hs, ske); err != nil {
			return err
		}
		c.addTranscript(hm.typ, hm.seq, hm.body)
		if hm, err = c.readHandshake(ctx); err != nil {
			return err
		}
	} else if hm.typ == typeServerKeyExchange {
		var pske serverKeyExchangePSKMsg
		if err := pske.unmarshal(hm.body); err != nil {
			return err
		}
		pskHint = pske.identityHint
		c.addTranscript(hm.typ, hm.seq, hm.body)
		if hm, err = c.readHandshake(ctx); err != nil {
			return err
		}
	}
	if hm.typ == typeCertificateRequest && hs.suite.kx == kxECDHE {
		certReq = &certificateRequestMsg{}
		if err := certReq.unmarshal(hm.body); err != nil {
			return err
		}
		c.addTranscript(hm.typ, hm.seq, hm.body)
		if hm, err = c.readHandshake(ctx); err != nil {
			return err
		}
	}
	if err := c.parseAs(hm, &serverHelloDoneMsg{}, "ServerHelloDone"); err != nil {
		return err
	}
	c.addTranscript(hm.typ, hm.seq, hm.body)

	// Flight 5.
	fl := c.newFlight()
	var signer crypto.Signer
	if certReq != nil {
		cm := &certificateMsg{}
		if len(c.cfg.Certificates) > 0 {
			cert := c.cfg.Certificates[0]
			cm.certificates = cert.Certificate
			signer, _ = cert.PrivateKey.(crypto.Signer)
		}
		if err := fl.add(cm, 0); err != nil {
			return err
		}
	}
	var preMaster []byte
	switch hs.suite.kx {
	case kxPSK:
		psk, err := c.cfg.PSK(pskHint)
		if err != nil {
			return localAlert(alertInternalError, fmt.Errorf("PSK callback: %w", err))
		}
		preMaster = prf.PSKPreMasterSecret(psk)
		c.state.PSKIdentity = c.cfg.PSKIdentityHint
		c.state.PSKIdentityHint = pskHint
		if err := fl.add(&clientKeyExchangePSKMsg{identity: c.cfg.PSKIdentityHint}, 0); err != nil {
			return err
		}
	case kxECDHE:
		kp, err := pionelliptic.GenerateKeypair(pionelliptic.P256)
		if err != nil {
			return localAlert(alertInternalError, err)
		}
		if preMaster, err = prf.PreMasterSecret(ske.publicKey, kp.PrivateKey, pionelliptic.P256); err != nil {
			return localAlert(alertIllegalParameter, fmt.Errorf("ServerKeyExchange: public key: %w", err))
		}
		c.state.PeerCertificates = serverCerts
		if err := fl.add(&clientKeyExchangeECDHEMsg{publicKey: kp.PublicKey}, 0); err != nil {
			return err
		}
	}
	ms, err := masterSecret(preMaster, hs.ems, c.transcript, hs.hello.random, hs.serverHello.random)
	if err != nil {
		return localAlert(alertInternalError, err)
	}
	hs.masterSecret = ms
	if signer != nil {
		digest := sha256.Sum256(c.transcript)
		sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			return localAlert(alertInternalError, fmt.Errorf("CertificateVerify: %w", err))
		}
		if err := fl.add(&certificateVerifyMsg{sigAlg: sigECDSAWithP256SHA256, signature: sig}, 0); err != nil {
			return err
		}
	}
	if hs.answer != nil && hs.answer.Selected == negotiation.ClientState {
		// client_state: our own state, sealed under our key, goes to the
		// server to hold; we keep nothing (spec §4.1).
		st := c.sessionState(hs.suite, ms, hs.ems, c.cfg.now(), negotiation.ClientState)
		st.ServerName = c.sessionCacheKey()
		if len(c.state.PeerCertificates) > 0 {
			// The ticket crosses the wire in every resumption: name the
			// server by its public key (raw_public_key, ~91 bytes for
			// P-256), not by its certificate, so that the reply stays
			// within the amplification bound and needs no cookie. The
			// chain was verified now; its expiry stays in cert_not_after.
			st.Peer = ticketfmt.PeerIdentity{Type: ticketfmt.RawPublicKey, PublicKey: c.state.PeerCertificates[0].RawSubjectPublicKeyInfo}
		}
		nst, err := c.sealClientTicket(st)
		if err != nil {
			return err
		}
		if err := fl.add(nst, 0); err != nil {
			return err
		}
	}
	if err := c.setSessionKeys(hs.suite, ms, hs.hello.random, hs.serverHello.random); err != nil {
		return err
	}
	if err := fl.finish(ms); err != nil {
		return err
	}

	// Flight 6: [NewSessionTicket], ChangeCipherSpec, Finished.
	nst, err := c.readNewSessionTicket(ctx, hs)
	if err != nil {
		return err
	}
	if err := c.readPeerFinished(ctx, ms); err != nil {
		return err
	}
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
		// none or client_state: nothing to keep on this side.
		sessionID, nst = nil, nil
	}
	c.saveClientSession(sessionID, nst, c.sessionState(hs.suite, ms, hs.ems, c.cfg.now(), mech))
	return nil
}

// readPeerFinished reads and checks the peer's Finished, which must come
// under the new keys.
func (c *Conn) readPeerFinished(ctx context.Context, ms []byte) error {
	var fin finishedMsg
	hm, err := c.expect(ctx, &fin, "Finished")
	if err != nil {
		return err
	}
	if hm.epoch != 1 {
		return localAlert(alertUnexpectedMessage, errors.New("Finished arrived before ChangeCipherSpec"))
	}
	if err := verifyFinished(ms, c.transcript, !c.isClient, fin.verifyData); err != nil {
		return err
	}
	c.addTranscript(hm.typ, hm.seq, hm.body)
	return nil
}

// setSessionKeys derives the record keys and installs them for epoch 1.
func (c *Conn) setSessionKeys(s *cipherSuite, ms []byte, clientRandom, serverRandom [32]byte) error {
	rc, err := s.newCipher(ms, clientRandom[:], serverRandom[:], c.isClient)
	if err != nil {
		return localAlert(alertInternalError, err)
	}
	c.installKeys(rc, s.overhead)
	return nil
}

// parseAs parses an already read message as m.
func (c *Conn) parseAs(hm handshakeMsg, m handshakeMessage, name string) error {
	if hm.typ != m.typ() {
		return localAlert(alertUnexpectedMessage, fmt.Errorf("expected %s, got handshake type %d", name, hm.typ))
	}
	return m.unmarshal(hm.body)
}

// expectedServerName is ServerName, or the peer's IP address when none is
// configured, so that a certificate must name what we dialled.
func (c *Conn) expectedServerName() string {
	if c.cfg.ServerName != "" {
		return c.cfg.ServerName
	}
	if ua, ok := c.raddr.(*net.UDPAddr); ok {
		return ua.IP.String()
	}
	return ""
}

// verifyServerKeyExchange checks the ECDHE parameters' signature:
// digitally-signed struct { client_random, server_random, ServerECDHParams }.
func verifyServerKeyExchange(leaf *x509.Certificate, hs *clientHandshakeState, ske *serverKeyExchangeECDHEMsg) error {
	if ske.namedCurve != groupP256 {
		return localAlert(alertIllegalParameter, fmt.Errorf("ServerKeyExchange: named_curve %d was not offered", ske.namedCurve))
	}
	if ske.sigAlg != sigECDSAWithP256SHA256 {
		return localAlert(alertIllegalParameter, fmt.Errorf("ServerKeyExchange: signature algorithm %#04x was not offered", ske.sigAlg))
	}
	h := sha256.New()
	h.Write(hs.hello.random[:])
	h.Write(hs.serverHello.random[:])
	h.Write(ske.params())
	pub := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ecdsa.VerifyASN1(pub, h.Sum(nil), ske.signature) {
		return localAlert(alertDecryptError, errors.New("ServerKeyExchange: signature does not verify"))
	}
	return nil
}
