package dtls

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/dtlsresume/dtlsresume/negotiation"
	pionelliptic "github.com/pion/dtls/v3/pkg/crypto/elliptic"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
)

// serverHandshakeState is what the server learns in one handshake.
type serverHandshakeState struct {
	hello        *clientHelloMsg
	random       [32]byte
	suite        *cipherSuite
	offer        *negotiation.ClientOffer // nil: no session_resumption_type
	ems          bool
	offeredEMS   bool
	renegInfo    bool
	pointFormats bool
	cert         *certificateChoice
	masterSecret []byte
}

type certificateChoice struct {
	chain  [][]byte
	signer crypto.Signer
}

// screenClientHello is the stateless first look at a datagram from an
// address without a connection (RFC 6347 §4.2.1). It returns the ClientHello
// it carries, whether its cookie is valid, and the record it came in; nil
// when the datagram is not a whole ClientHello, which is dropped. Nothing is
// allocated per peer here.
func screenClientHello(d []byte, addr string, jar *cookieJar) (*clientHelloMsg, handshakeMsg, bool) {
	recs, _ := parseRecords(d)
	if len(recs) == 0 || recs[0].contentType != recordHandshake || recs[0].epoch != 0 {
		return nil, handshakeMsg{}, false
	}
	frags, _ := parseHandshakeFragments(recs[0].fragment)
	if len(frags) == 0 {
		return nil, handshakeMsg{}, false
	}
	f := frags[0]
	if f.msgType != typeClientHello || f.offset != 0 || len(f.data) != int(f.length) {
		return nil, handshakeMsg{}, false
	}
	hello := &clientHelloMsg{}
	if err := hello.unmarshal(f.data); err != nil {
		return nil, handshakeMsg{}, false
	}
	// The body outlives d, which the listener reuses for its next read.
	body := append([]byte(nil), f.data...)
	return hello, handshakeMsg{typ: f.msgType, seq: f.seq, body: body, recordSeq: recs[0].seq}, jar.valid(addr, hello)
}

// helloVerifyRequest builds the datagram that asks for a cookie. It reuses
// the ClientHello's record and message sequence numbers, so the server keeps
// no counter per peer.
func helloVerifyRequest(addr string, hello *clientHelloMsg, msg handshakeMsg, jar *cookieJar) []byte {
	hvr := &helloVerifyRequestMsg{vers: versionDTLS10, cookie: jar.make(addr, hello)}
	body, _ := hvr.marshal()
	payload := marshalHandshakeHeader(nil, typeHelloVerifyRequest, len(body), msg.seq, 0, len(body))
	payload = append(payload, body...)
	out := marshalRecordHeader(nil, recordHandshake, versionDTLS10, 0, msg.recordSeq, len(payload))
	return append(out, payload...)
}

// firstHello is a ClientHello whose cookie the listener already checked.
type firstHello struct {
	hello *clientHelloMsg
	msg   handshakeMsg
	size  int // bytes of the datagram that carried it
	// res is the listener's resumption lookup when resChecked, so that the
	// connection does not repeat it.
	res        *resumption
	resChecked bool
}

func (c *Conn) serverHandshake(ctx context.Context) error {
	if c.first == nil {
		if err := c.awaitCookie(ctx); err != nil {
			return err
		}
	}
	hs := &serverHandshakeState{hello: c.first.hello}
	c.reasm.next = c.first.msg.seq + 1
	c.sendSeq = c.first.msg.seq
	// Our record numbers continue from the ClientHello's, so that they run
	// past the HelloVerifyRequest's, which reused an earlier ClientHello's.
	c.rl.write[0].nextSeq = c.first.msg.recordSeq
	c.addTranscript(typeClientHello, c.first.msg.seq, c.first.msg.body)
	res, checked := c.first.res, c.first.resChecked
	c.first = nil
	if err := c.checkClientHello(hs); err != nil {
		return err
	}
	var err error
	if hs.offer, err = c.cfg.clientOffer(hs.hello); err != nil {
		return err
	}
	c.state.ResumptionAttempted = attemptedResumption(hs.hello, hs.offer)
	if v, ok := findExtension(hs.hello.extensions, extServerName); ok {
		c.state.ServerName, _ = parseServerName(v)
	}
	if !checked {
		if res, err = findResumption(ctx, c.cfg, hs.hello); err != nil {
			return err
		}
	}
	if res != nil && res.state != nil {
		return c.serverResume(ctx, hs, res)
	}
	if err := c.selectSuite(hs); err != nil {
		return err
	}
	c.state.CipherSuite = hs.suite.id
	c.state.ExtendedMasterSecret = hs.ems
	return c.serverFullHandshake(ctx, hs)
}

// serverResume runs an abbreviated handshake (RFC 5246 §7.3): ServerHello,
// [NewSessionTicket], ChangeCipherSpec, Finished; then the client's
// ChangeCipherSpec and Finished.
func (c *Conn) serverResume(ctx context.Context, hs *serverHandshakeState, res *resumption) error {
	st := res.state
	hs.suite = cipherSuiteByID(st.CipherSuite)
	hs.ems = st.ExtendedMasterSecret
	fl := c.newFlight()
	sh := c.serverHelloMsg(hs, res.sessionID)
	if res.renew {
		sh.extensions = append(sh.extensions, extension{extSessionTicket, nil})
	}
	// In a resumed handshake the answer names the resumed session's type
	// and, for client_state, hands the client its ticket back.
	if err := c.addAnswer(hs, sh, res.mech, res.clientTicket); err != nil {
		return err
	}
	if err := fl.add(sh, 0); err != nil {
		return err
	}
	if res.renew {
		renewed := *st
		nst, err := c.issueTicket(&renewed)
		if err != nil {
			return err
		}
		if err := fl.add(nst, 0); err != nil {
			return err
		}
	}
	ms := st.MasterSecret[:]
	if err := c.setSessionKeys(hs.suite, ms, hs.hello.random, hs.random); err != nil {
		return err
	}
	if err := fl.finish(ms); err != nil {
		return err
	}
	// A client_state client may refresh its ticket before its Finished.
	refresh, err := c.readClientTicket(ctx, res.mech == negotiation.ClientState)
	if err != nil {
		return err
	}
	if err := c.readPeerFinished(ctx, ms); err != nil {
		return err
	}
	c.restorePeer(st)
	c.state.Resumed = true
	c.state.Resumption = res.mech
	c.state.Negotiated = hs.offer != nil
	c.state.ResumptionStateBytes = res.storedBytes
	switch res.mech {
	case negotiation.SessionID:
		c.state.SessionID = res.sessionID
	case negotiation.ClientState:
		if refresh != nil {
			c.storeClientState(ctx, hs.offer.Handle, refresh, st)
		}
	}
	return nil
}

// attemptedResumption names what a ClientHello tries to resume by, in the
// order findResumption looks.
func attemptedResumption(hello *clientHelloMsg, offer *negotiation.ClientOffer) negotiation.Type {
	ticket, _ := findExtension(hello.extensions, extSessionTicket)
	switch {
	case offer != nil && offer.Resume:
		return negotiation.ClientState
	case len(ticket) > 0:
		return negotiation.SessionTicket
	case len(hello.sessionID) > 0:
		return negotiation.SessionID
	}
	return negotiation.None
}

// addAnswer puts the session_resumption_type answer in a ServerHello when
// the client sent the extension.
func (c *Conn) addAnswer(hs *serverHandshakeState, sh *serverHelloMsg, selected negotiation.Type, ticket []byte) error {
	if hs.offer == nil {
		return nil
	}
	v, err := (&negotiation.ServerAnswer{Selected: selected, Ticket: ticket}).Marshal()
	if err != nil {
		return localAlert(alertInternalError, err)
	}
	sh.extensions = append(sh.extensions, extension{c.cfg.resumptionExtension(), v})
	return nil
}

// readClientTicket reads the NewSessionTicket a client_state client sends
// before its ChangeCipherSpec, if the next message is one. From a client
// that did not negotiate client_state it is unexpected_message.
func (c *Conn) readClientTicket(ctx context.Context, allowed bool) (*newSessionTicketMsg, error) {
	hm, err := c.readHandshake(ctx)
	if err != nil {
		return nil, err
	}
	if hm.typ != typeNewSessionTicket {
		c.reasm.unpop(hm)
		return nil, nil
	}
	if !allowed {
		return nil, localAlert(alertUnexpectedMessage, errors.New("NewSessionTicket from a client that did not negotiate client_state"))
	}
	if hm.epoch != 0 {
		return nil, localAlert(alertUnexpectedMessage, errors.New("NewSessionTicket after ChangeCipherSpec"))
	}
	nst := &newSessionTicketMsg{}
	if err := nst.unmarshal(hm.body); err != nil {
		return nil, err
	}
	if len(nst.ticket) == 0 {
		return nil, decodeError("NewSessionTicket", "ticket")
	}
	c.addTranscript(hm.typ, hm.seq, hm.body)
	return nst, nil
}

// skipCookie applies DESIGN.md decision 6: no cookie exchange for a
// resumption the server will accept whose reply stays within the
// amplification bound. It records the lookup in first either way.
func (cfg *Config) skipCookie(ctx context.Context, first *firstHello) bool {
	if cfg.ResumptionCookie == CookieAlways {
		return false
	}
	res, err := findResumption(ctx, cfg, first.hello)
	if err != nil || res == nil || res.state == nil {
		return false
	}
	first.res, first.resChecked = res, true
	if cfg.ResumptionCookie == CookieNeverOnResumption {
		return true
	}
	return float64(abbreviatedFlightSize(res)) <= cfg.amplificationFactor()*float64(first.size)
}

// awaitCookie runs the cookie exchange for a Conn made by Server, which has
// no listener to do it.
func (c *Conn) awaitCookie(ctx context.Context) error {
	jar, err := newCookieJar(c.cfg.CookieRotation+defaultCookieRotation, c.cfg.now)
	if err != nil {
		return localAlert(alertInternalError, err)
	}
	for {
		select {
		case d := <-c.inbound:
			c.stats.datagramsReceived.Add(1)
			c.stats.bytesReceived.Add(int64(len(d)))
			hello, msg, cookieOK := screenClientHello(d, c.raddr.String(), jar)
			if hello == nil {
				continue
			}
			first := &firstHello{hello: hello, msg: msg, size: len(d)}
			if cookieOK || c.cfg.skipCookie(ctx, first) {
				c.first = first
				return nil
			}
			if err := c.writeDatagram(helloVerifyRequest(c.raddr.String(), hello, msg, jar)); err != nil {
				return err
			}
		case <-ctx.Done():
			return errHandshakeTimeout
		case <-c.closed:
			return errors.New("dtls: closed before the handshake")
		}
	}
}

// checkClientHello checks version and compression and reads the extensions
// both kinds of handshake need.
func (c *Conn) checkClientHello(hs *serverHandshakeState) error {
	ch := hs.hello
	// DTLS versions count down: 0xfefd (1.2) is newer than 0xfeff (1.0).
	if ch.vers > versionDTLS12 {
		return localAlert(alertProtocolVersion, fmt.Errorf("ClientHello: client_version %#04x is older than DTLS 1.2", ch.vers))
	}
	hasNull := false
	for _, m := range ch.compressionMethods {
		hasNull = hasNull || m == 0
	}
	if !hasNull {
		return localAlert(alertIllegalParameter, errors.New("ClientHello: compression_methods lacks null"))
	}
	_, hs.offeredEMS = findExtension(ch.extensions, extExtendedMasterSecret)
	if v, ok := findExtension(ch.extensions, extRenegotiationInfo); ok {
		ri, err := parseRenegotiationInfo(v)
		if err != nil {
			return err
		}
		if len(ri) != 0 {
			return localAlert(alertHandshakeFailure, errors.New("ClientHello: renegotiation_info is not empty on a new connection"))
		}
		hs.renegInfo = true
	}
	for _, id := range ch.cipherSuites {
		hs.renegInfo = hs.renegInfo || id == scsvRenegotiation
	}
	var err error
	if hs.random, err = newRandom(); err != nil {
		return localAlert(alertInternalError, err)
	}
	return nil
}

// selectSuite picks the suite of a full handshake and the extensions that go
// with it.
func (c *Conn) selectSuite(hs *serverHandshakeState) error {
	ch := hs.hello
	p256, sha256ECDSA := true, true
	if v, ok := findExtension(ch.extensions, extSupportedGroups); ok {
		groups, err := parseSupportedGroups(v)
		if err != nil {
			return err
		}
		p256 = false
		for _, g := range groups {
			p256 = p256 || g == groupP256
		}
	}
	if v, ok := findExtension(ch.extensions, extSignatureAlgorithms); ok {
		algs, err := parseSignatureAlgorithms(v)
		if err != nil {
			return err
		}
		sha256ECDSA = false
		for _, a := range algs {
			sha256ECDSA = sha256ECDSA || a == sigECDSAWithP256SHA256
		}
	}
	if v, ok := findExtension(ch.extensions, extECPointFormats); ok {
		formats, err := parseECPointFormats(v)
		if err != nil {
			return err
		}
		hs.pointFormats = true
		uncompressed := false
		for _, f := range formats {
			uncompressed = uncompressed || f == 0
		}
		p256 = p256 && uncompressed
	}
	for _, s := range c.cfg.suites(false) {
		offered := false
		for _, id := range ch.cipherSuites {
			offered = offered || id == uint16(s.id)
		}
		if !offered || (s.kx == kxECDHE && !(p256 && sha256ECDSA)) {
			continue
		}
		hs.suite = s
		break
	}
	if hs.suite == nil {
		return localAlert(alertHandshakeFailure, errors.New("ClientHello: no cipher suite in common"))
	}
	if hs.suite.kx == kxECDHE {
		cert := c.cfg.Certificates[0]
		signer, ok := cert.PrivateKey.(crypto.Signer)
		if !ok {
			return localAlert(alertInternalError, errors.New("server certificate key is not a crypto.Signer"))
		}
		hs.cert = &certificateChoice{chain: cert.Certificate, signer: signer}
	}
	switch c.cfg.ExtendedMasterSecret {
	case RequireExtendedMasterSecret:
		if !hs.offeredEMS {
			return localAlert(alertHandshakeFailure, errors.New("ClientHello: no extended_master_secret and the server requires it"))
		}
		hs.ems = true
	case RequestExtendedMasterSecret:
		hs.ems = hs.offeredEMS
	}
	return nil
}

func (c *Conn) serverHelloMsg(hs *serverHandshakeState, sessionID []byte) *serverHelloMsg {
	sh := &serverHelloMsg{vers: versionDTLS12, random: hs.random, sessionID: sessionID, cipherSuite: uint16(hs.suite.id)}
	if hs.ems {
		sh.extensions = append(sh.extensions, extension{extExtendedMasterSecret, nil})
	}
	if hs.renegInfo {
		sh.extensions = append(sh.extensions, extension{extRenegotiationInfo, marshalRenegotiationInfo(nil)})
	}
	if hs.pointFormats && hs.suite.kx == kxECDHE {
		sh.extensions = append(sh.extensions, extension{extECPointFormats, marshalECPointFormats([]uint8{0})})
	}
	return sh
}

// serverFullHandshake sends flight 4 and runs the rest of a full handshake.
func (c *Conn) serverFullHandshake(ctx context.Context, hs *serverHandshakeState) error {
	fl := c.newFlight()
	// Which resumption this session gets: a ticket when the client asks for
	// one (RFC 5077; no session ID then), else a session ID when the server
	// keeps sessions.
	// Exactly the selected mechanism is set up: no session ID unless
	// session_id, no ticket unless session_ticket (spec §3.3).
	var sessionID []byte
	mech := c.cfg.chooseMechanism(hs.hello, hs.offer)
	if mech == negotiation.SessionID {
		r, err := newRandom()
		if err != nil {
			return localAlert(alertInternalError, err)
		}
		sessionID = r[:]
	}
	sh := c.serverHelloMsg(hs, sessionID)
	if mech == negotiation.SessionTicket {
		sh.extensions = append(sh.extensions, extension{extSessionTicket, nil})
	}
	if err := c.addAnswer(hs, sh, mech, nil); err != nil {
		return err
	}
	if err := fl.add(sh, 0); err != nil {
		return err
	}
	var kp *pionelliptic.Keypair
	switch hs.suite.kx {
	case kxECDHE:
		if err := fl.add(&certificateMsg{certificates: hs.cert.chain}, 0); err != nil {
			return err
		}
		var err error
		if kp, err = pionelliptic.GenerateKeypair(pionelliptic.P256); err != nil {
			return localAlert(alertInternalError, err)
		}
		ske := &serverKeyExchangeECDHEMsg{namedCurve: groupP256, publicKey: kp.PublicKey, sigAlg: sigECDSAWithP256SHA256}
		h := sha256.New()
		h.Write(hs.hello.random[:])
		h.Write(hs.random[:])
		h.Write(ske.params())
		if ske.signature, err = hs.cert.signer.Sign(rand.Reader, h.Sum(nil), crypto.SHA256); err != nil {
			return localAlert(alertInternalError, fmt.Errorf("ServerKeyExchange: signing: %w", err))
		}
		if err := fl.add(ske, 0); err != nil {
			return err
		}
		if c.cfg.ClientAuth != NoClientCert {
			req := &certificateRequestMsg{certificateTypes: []uint8{64}, signatureAlgorithms: []uint16{sigECDSAWithP256SHA256}}
			if err := fl.add(req, 0); err != nil {
				return err
			}
		}
	case kxPSK:
		if c.cfg.PSKIdentityHint != nil {
			if err := fl.add(&serverKeyExchangePSKMsg{identityHint: c.cfg.PSKIdentityHint}, 0); err != nil {
				return err
			}
		}
	}
	if err := fl.add(&serverHelloDoneMsg{}, 0); err != nil {
		return err
	}
	if err := fl.send(); err != nil {
		return err
	}

	// Flight 5.
	var clientCerts []*x509.Certificate
	if hs.suite.kx == kxECDHE && c.cfg.ClientAuth != NoClientCert {
		var cm certificateMsg
		hm, err := c.expect(ctx, &cm, "Certificate")
		if err != nil {
			return err
		}
		if clientCerts, err = c.verifyPeerCertificates(cm.certificates); err != nil {
			return err
		}
		c.addTranscript(hm.typ, hm.seq, hm.body)
	}
	var preMaster []byte
	switch hs.suite.kx {
	case kxPSK:
		var cke clientKeyExchangePSKMsg
		hm, err := c.expect(ctx, &cke, "ClientKeyExchange")
		if err != nil {
			return err
		}
		psk, err := c.cfg.PSK(cke.identity)
		if err != nil || len(psk) == 0 {
			return localAlert(alertUnknownPSKIdentity, errors.New("ClientKeyExchange: unknown PSK identity"))
		}
		preMaster = prf.PSKPreMasterSecret(psk)
		c.state.PSKIdentity = cke.identity
		c.state.PSKIdentityHint = c.cfg.PSKIdentityHint
		c.addTranscript(hm.typ, hm.seq, hm.body)
	case kxECDHE:
		var cke clientKeyExchangeECDHEMsg
		hm, err := c.expect(ctx, &cke, "ClientKeyExchange")
		if err != nil {
			return err
		}
		if preMaster, err = prf.PreMasterSecret(cke.publicKey, kp.PrivateKey, pionelliptic.P256); err != nil {
			return localAlert(alertIllegalParameter, fmt.Errorf("ClientKeyExchange: public key: %w", err))
		}
		c.addTranscript(hm.typ, hm.seq, hm.body)
	}
	ms, err := masterSecret(preMaster, hs.ems, c.transcript, hs.hello.random, hs.random)
	if err != nil {
		return localAlert(alertInternalError, err)
	}
	hs.masterSecret = ms
	if err := c.setSessionKeys(hs.suite, ms, hs.hello.random, hs.random); err != nil {
		return err
	}
	if len(clientCerts) > 0 {
		var cv certificateVerifyMsg
		hm, err := c.expect(ctx, &cv, "CertificateVerify")
		if err != nil {
			return err
		}
		digest := sha256.Sum256(c.transcript)
		pub, _ := clientCerts[0].PublicKey.(*ecdsa.PublicKey)
		if cv.sigAlg != sigECDSAWithP256SHA256 || pub == nil || !ecdsa.VerifyASN1(pub, digest[:], cv.signature) {
			return localAlert(alertDecryptError, errors.New("CertificateVerify: signature does not verify"))
		}
		c.addTranscript(hm.typ, hm.seq, hm.body)
		c.state.PeerCertificates = clientCerts
	}
	clientTicket, err := c.readClientTicket(ctx, mech == negotiation.ClientState)
	if err != nil {
		return err
	}
	if err := c.readPeerFinished(ctx, ms); err != nil {
		return err
	}

	// Flight 6: [NewSessionTicket], ChangeCipherSpec, Finished.
	fl = c.newFlight()
	st := c.sessionState(hs.suite, ms, hs.ems, c.cfg.now(), mech)
	switch mech {
	case negotiation.SessionTicket:
		nst, err := c.issueTicket(st)
		if err != nil {
			return err
		}
		if err := fl.add(nst, 0); err != nil {
			return err
		}
	case negotiation.SessionID:
		if v, err := st.Marshal(); err != nil {
			c.cfg.logger().Warn("dtls: encoding session", "err", err)
		} else if err := c.cfg.storePut(ctx, sessionIDKey(sessionID), v, c.cfg.sessionLifetime()); err != nil {
			c.cfg.logger().Warn("dtls: storing session; it will not resume", "err", err)
		} else {
			c.state.ResumptionStateBytes = len(sessionIDKey(sessionID)) + len(v)
		}
		c.state.SessionID = sessionID
	case negotiation.ClientState:
		// Stored only now that the client's Finished verified (spec §4.1).
		if clientTicket != nil {
			c.storeClientState(ctx, hs.offer.Handle, clientTicket, st)
		}
	}
	c.state.Resumption = mech
	c.state.Negotiated = hs.offer != nil
	return fl.finish(ms)
}
