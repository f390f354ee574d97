package dtls

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
	pionelliptic "github.com/pion/dtls/v3/pkg/crypto/elliptic"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
)

const (
	// maxHelloVerifyRequests bounds how often a server may send us back for a
	// new cookie in one handshake.
	maxHelloVerifyRequests = 4
)

// clientHandshakeState is everything the client holds during one
// handshake; it ends with the handshake.
type clientHandshakeState struct {
	handshakeTransport
	c *Conn

	// retryFresh: this is the retry after a client_state ticket that did
	// not work, which asks for a fresh session (docs/decisions.md 24).
	retryFresh bool

	session      *ClientSession // the session offered for resumption
	localCID     []byte         // the connection ID we offered (nil: none)
	offer        *negotiation.ClientOffer
	answer       *negotiation.ServerAnswer // nil: the server did not answer the offer
	clientState  *ticketfmt.State          // opened from the answer's ticket
	hello        *clientHelloMsg
	serverHello  *serverHelloMsg
	suite        *cipherSuite
	ems          bool
	etm          bool // the server answered encrypt_then_mac (RFC 7366)
	masterSecret []byte

	// The certificate types of RFC 7250 the server chose (X.509 unless it
	// answered the extensions).
	serverCertType, clientCertType uint8

	// What the server's flight 4 of a full handshake carried.
	serverCerts []*x509.Certificate
	serverKey   crypto.PublicKey // the key that signs ServerKeyExchange
	ske         *serverKeyExchangeECDHEMsg
	skePSK      *serverKeyExchangeECDHEPSKMsg // ECDHE_PSK (RFC 5489)
	certReq     *certificateRequestMsg
	pskHint     []byte
}

// clientHandshake runs the client side. When the server accepted a
// client_state resumption but the returned ticket did not work out for us,
// it alerts the server and runs a full handshake once (docs/decisions.md 24).
func (c *Conn) clientHandshake(ctx context.Context) error {
	err := c.newClientHandshakeState(false).handshake(ctx)
	if !errors.Is(err, errClientTicket) || ctx.Err() != nil {
		return err
	}
	c.cfg.logger().Info("dtls: client_state ticket not usable; retrying without resumption", "peer", c.raddr.String(), "err", err)
	var ae *AlertError
	if errors.As(err, &ae) {
		_ = c.sendAlert(alertLevelFatal, alertDescription(ae.Description))
	}
	c.resetForRetry()
	return c.newClientHandshakeState(true).handshake(ctx)
}

func (c *Conn) newClientHandshakeState(retryFresh bool) *clientHandshakeState {
	hs := &clientHandshakeState{c: c, retryFresh: retryFresh, handshakeTransport: newHandshakeTransport(c.cfg.maxHandshakeMemory())}
	c.hs = &hs.handshakeTransport
	return hs
}

// resetForRetry forgets a failed handshake so that another can start on
// the same socket. Record sequence numbers go on, and datagrams still on
// their way from the old handshake are discarded.
func (c *Conn) resetForRetry() {
	c.writeMu.Lock()
	next := c.rl.write[0].nextSeq
	c.rl = newRecordLayer(c.cfg.replayWindow())
	c.rl.write[0].nextSeq = next
	c.writeMu.Unlock()
	c.appData, c.readErr = nil, nil
	c.state = ConnectionState{}
	c.in.drain()
}

// handshake runs the client's flights: ClientHello (again with a cookie
// when asked), then the server's answer decides between an abbreviated
// handshake and flights 5 and 6 of a full one.
func (hs *clientHandshakeState) handshake(ctx context.Context) error {
	c := hs.c
	if err := hs.buildHello(); err != nil {
		return err
	}
	if err := hs.sendHelloUntilServerHello(ctx); err != nil {
		return err
	}
	if err := hs.processServerHello(); err != nil {
		return err
	}
	switch {
	case hs.clientState != nil:
		return hs.resumeClientState(ctx)
	case hs.resumed():
		err := hs.resumeSession(ctx)
		if err != nil {
			// The server accepted the session but it did not work out:
			// never offer it again (docs/decisions.md 24).
			c.cfg.ClientSessionCache.Put(c.sessionCacheKey(), nil)
		}
		return err
	}
	c.state.CipherSuite = hs.suite.id
	c.state.ExtendedMasterSecret = hs.ems
	c.state.ServerName = c.cfg.ServerName
	if err := hs.readServerFlight(ctx); err != nil {
		return err
	}
	if err := hs.sendClientFlight(); err != nil {
		return err
	}
	return hs.readServerFinished(ctx)
}

// sendHelloUntilServerHello sends flight 1 and, after each
// HelloVerifyRequest, flight 3, until the ServerHello arrives.
func (hs *clientHandshakeState) sendHelloUntilServerHello(ctx context.Context) error {
	c := hs.c
	for hvr := 0; ; hvr++ {
		helloItem, err := c.handshakeItem(hs.hello, 0)
		if err != nil {
			return err
		}
		if err := c.sendFlight([]outItem{helloItem}); err != nil {
			return err
		}
		hm, err := c.readHandshake(ctx, "ServerHello")
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
			return nil
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
		hs.hello.cookie = v.cookie
	}
}

// resumeSession finishes an abbreviated handshake on a cached session:
// [NewSessionTicket] and the server's Finished, then our ChangeCipherSpec
// and Finished.
func (hs *clientHandshakeState) resumeSession(ctx context.Context) error {
	c := hs.c
	st := hs.session.state
	if uint16(hs.suite.id) != st.CipherSuite {
		return localAlert(alertIllegalParameter, errors.New("ServerHello: resumes the session with another cipher suite"))
	}
	if hs.ems != st.ExtendedMasterSecret {
		return localAlert(alertHandshakeFailure, errors.New("ServerHello: extended_master_secret differs from the resumed session"))
	}
	ms := st.MasterSecret[:]
	if err := c.setSessionKeys(hs.suite, ms, hs.hello.random, hs.serverHello.random, hs.etm); err != nil {
		return err
	}
	nst, err := hs.readNewSessionTicket(ctx)
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
	hs.keepResumedSession(nst)
	return nil
}

// resumeClientState finishes an abbreviated handshake on the session the
// server handed back in its ServerHello (docs/decisions.md 26-28): the server's Finished,
// then [NewSessionTicket], ChangeCipherSpec and Finished from us.
func (hs *clientHandshakeState) resumeClientState(ctx context.Context) error {
	c := hs.c
	st := hs.clientState
	ms := st.MasterSecret[:]
	if err := c.setSessionKeys(hs.suite, ms, hs.hello.random, hs.serverHello.random, hs.etm); err != nil {
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
	if nst, err := hs.refreshedClientTicket(); err != nil {
		return err
	} else if nst != nil {
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

// readServerFlight reads the rest of flight 4 of a full handshake:
// Certificate and ServerKeyExchange (ECDHE), the unsigned ServerKeyExchange
// (ECDHE_PSK), or an optional ServerKeyExchange with a PSK hint; an optional CertificateRequest; and
// ServerHelloDone.
func (hs *clientHandshakeState) readServerFlight(ctx context.Context) error {
	c := hs.c
	first := "ServerHelloDone"
	switch hs.suite.kx {
	case kxECDHE:
		first = "Certificate"
	case kxECDHEPSK:
		first = "ServerKeyExchange"
	}
	hm, err := c.readHandshake(ctx, first)
	if err != nil {
		return err
	}
	if hs.suite.kx == kxECDHE {
		if hs.serverCertType == certTypeRawPublicKey {
			var rpk rawPublicKeyMsg
			if err := parseAs(hm, &rpk, "Certificate"); err != nil {
				return err
			}
			if hs.serverKey, err = c.verifyPeerPublicKey(rpk.spki); err != nil {
				return err
			}
			c.state.PeerPublicKey = rpk.spki
		} else {
			var cm certificateMsg
			if err := parseAs(hm, &cm, "Certificate"); err != nil {
				return err
			}
			if hs.serverCerts, err = c.verifyPeerCertificates(cm.certificates); err != nil {
				return err
			}
			hs.serverKey = hs.serverCerts[0].PublicKey
		}
		c.addTranscript(hm.typ, hm.seq, hm.body)
		hs.ske = &serverKeyExchangeECDHEMsg{}
		if hm, err = c.expect(ctx, hs.ske, "ServerKeyExchange"); err != nil {
			return err
		}
		if err := verifyServerKeyExchange(hs.serverKey, hs, hs.ske); err != nil {
			return err
		}
		c.addTranscript(hm.typ, hm.seq, hm.body)
		if hm, err = c.readHandshake(ctx, "ServerHelloDone"); err != nil {
			return err
		}
	} else if hs.suite.kx == kxECDHEPSK {
		// RFC 5489 §2: the ServerKeyExchange is always there, unsigned;
		// the PSK authenticates the exchange through the Finished.
		hs.skePSK = &serverKeyExchangeECDHEPSKMsg{}
		if err := parseAs(hm, hs.skePSK, "ServerKeyExchange"); err != nil {
			return err
		}
		if !offered(c.cfg.curves(), CurveID(hs.skePSK.namedCurve)) {
			return localAlert(alertIllegalParameter, fmt.Errorf("ServerKeyExchange: named_curve %d was not offered", hs.skePSK.namedCurve))
		}
		hs.pskHint = hs.skePSK.identityHint
		c.addTranscript(hm.typ, hm.seq, hm.body)
		if hm, err = c.readHandshake(ctx, "ServerHelloDone"); err != nil {
			return err
		}
	} else if hm.typ == typeServerKeyExchange {
		var pske serverKeyExchangePSKMsg
		if err := pske.unmarshal(hm.body); err != nil {
			return err
		}
		hs.pskHint = pske.identityHint
		c.addTranscript(hm.typ, hm.seq, hm.body)
		if hm, err = c.readHandshake(ctx, "ServerHelloDone"); err != nil {
			return err
		}
	}
	if hm.typ == typeCertificateRequest && hs.suite.kx == kxECDHE {
		hs.certReq = &certificateRequestMsg{}
		if err := hs.certReq.unmarshal(hm.body); err != nil {
			return err
		}
		c.addTranscript(hm.typ, hm.seq, hm.body)
		if hm, err = c.readHandshake(ctx, "ServerHelloDone"); err != nil {
			return err
		}
	}
	if err := parseAs(hm, &serverHelloDoneMsg{}, "ServerHelloDone"); err != nil {
		return err
	}
	c.addTranscript(hm.typ, hm.seq, hm.body)
	return nil
}

// sendClientFlight sends flight 5: [Certificate], ClientKeyExchange,
// [CertificateVerify], [NewSessionTicket of client_state],
// ChangeCipherSpec, Finished.
func (hs *clientHandshakeState) sendClientFlight() error {
	c := hs.c
	fl := c.newFlight()
	var signer crypto.Signer
	if hs.certReq != nil {
		var cm handshakeMessage = &certificateMsg{}
		if len(c.cfg.Certificates) > 0 {
			cert := c.cfg.Certificates[0]
			signer, _ = cert.PrivateKey.(crypto.Signer)
			if hs.clientCertType == certTypeRawPublicKey {
				spki, err := c.cfg.ownSPKI()
				if err != nil {
					return localAlert(alertInternalError, err)
				}
				cm = &rawPublicKeyMsg{spki: spki}
			} else {
				cm = &certificateMsg{certificates: cert.Certificate}
			}
		}
		if err := fl.add(cm, 0); err != nil {
			return err
		}
	}
	var preMaster []byte
	switch hs.suite.kx {
	case kxPSK:
		psk, err := c.cfg.PSK(hs.pskHint)
		if err != nil {
			return localAlert(alertInternalError, fmt.Errorf("PSK callback: %w", err))
		}
		preMaster = prf.PSKPreMasterSecret(psk)
		c.state.PSKIdentity = c.cfg.PSKIdentityHint
		c.state.PSKIdentityHint = hs.pskHint
		if err := fl.add(&clientKeyExchangePSKMsg{identity: c.cfg.PSKIdentityHint}, 0); err != nil {
			return err
		}
	case kxECDHEPSK:
		psk, err := c.cfg.PSK(hs.pskHint)
		if err != nil {
			return localAlert(alertInternalError, fmt.Errorf("PSK callback: %w", err))
		}
		curve, _ := pionCurve(CurveID(hs.skePSK.namedCurve)) // checked in readServerFlight
		c.state.Curve = CurveID(hs.skePSK.namedCurve)
		kp, err := pionelliptic.GenerateKeypair(curve)
		if err != nil {
			return localAlert(alertInternalError, err)
		}
		if preMaster, err = prf.EcdhePSKPreMasterSecret(psk, hs.skePSK.publicKey, kp.PrivateKey, curve); err != nil {
			return localAlert(alertIllegalParameter, fmt.Errorf("ServerKeyExchange: public key: %w", err))
		}
		c.state.PSKIdentity = c.cfg.PSKIdentityHint
		c.state.PSKIdentityHint = hs.pskHint
		if err := fl.add(&clientKeyExchangeECDHEPSKMsg{identity: c.cfg.PSKIdentityHint, publicKey: kp.PublicKey}, 0); err != nil {
			return err
		}
	case kxECDHE:
		curve, _ := pionCurve(CurveID(hs.ske.namedCurve)) // checked in verifyServerKeyExchange
		c.state.Curve = CurveID(hs.ske.namedCurve)
		kp, err := pionelliptic.GenerateKeypair(curve)
		if err != nil {
			return localAlert(alertInternalError, err)
		}
		if preMaster, err = prf.PreMasterSecret(hs.ske.publicKey, kp.PrivateKey, curve); err != nil {
			return localAlert(alertIllegalParameter, fmt.Errorf("ServerKeyExchange: public key: %w", err))
		}
		c.state.PeerCertificates = hs.serverCerts
		if err := fl.add(&clientKeyExchangeECDHEMsg{publicKey: kp.PublicKey}, 0); err != nil {
			return err
		}
	}
	ms, err := masterSecret(preMaster, hs.ems, hs.transcript, hs.hello.random, hs.serverHello.random)
	if err != nil {
		return localAlert(alertInternalError, err)
	}
	hs.masterSecret = ms
	if signer != nil {
		scheme, sig, err := ecdsaSign(signer, hs.certReq.signatureAlgorithms, hs.transcript)
		if err != nil {
			return localAlert(alertInternalError, fmt.Errorf("CertificateVerify: %w", err))
		}
		if err := fl.add(&certificateVerifyMsg{sigAlg: scheme, signature: sig}, 0); err != nil {
			return err
		}
	}
	if hs.answer != nil && hs.answer.Selected == negotiation.ClientState {
		nst, err := hs.clientTicket()
		if err != nil {
			return err
		}
		if err := fl.add(nst, 0); err != nil {
			return err
		}
	}
	if err := c.setSessionKeys(hs.suite, ms, hs.hello.random, hs.serverHello.random, hs.etm); err != nil {
		return err
	}
	return fl.finish(ms)
}

// readServerFinished reads flight 6: [NewSessionTicket], ChangeCipherSpec,
// Finished; then keeps what the negotiated mechanism needs.
func (hs *clientHandshakeState) readServerFinished(ctx context.Context) error {
	c := hs.c
	nst, err := hs.readNewSessionTicket(ctx)
	if err != nil {
		return err
	}
	if err := c.readPeerFinished(ctx, hs.masterSecret); err != nil {
		return err
	}
	hs.keepNewSession(nst)
	return nil
}

// readNewSessionTicket reads the NewSessionTicket that a server announced
// with an empty SessionTicket extension in its ServerHello.
func (hs *clientHandshakeState) readNewSessionTicket(ctx context.Context) (*newSessionTicketMsg, error) {
	if _, ok := findExtension(hs.serverHello.extensions, extSessionTicket); !ok {
		return nil, nil
	}
	nst := &newSessionTicketMsg{}
	hm, err := hs.c.expect(ctx, nst, "NewSessionTicket")
	if err != nil {
		return nil, err
	}
	if hm.epoch != 0 {
		return nil, localAlert(alertUnexpectedMessage, errors.New("NewSessionTicket after ChangeCipherSpec"))
	}
	hs.c.addTranscript(hm.typ, hm.seq, hm.body)
	return nst, nil
}

// processServerHello checks the ServerHello against what we offered.
func (hs *clientHandshakeState) processServerHello() error {
	c := hs.c
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
		case extEncryptThenMAC:
			if len(e.data) != 0 {
				return decodeError("ServerHello", "encrypt_then_mac")
			}
			if hs.suite.aead != aeadCBC {
				// RFC 7366 §3: never with an AEAD suite.
				return localAlert(alertIllegalParameter, fmt.Errorf("ServerHello: encrypt_then_mac with %v", hs.suite.id))
			}
			hs.etm = true
		case extConnectionID:
			peer, err := parseConnectionID(e.data)
			if err != nil {
				return err
			}
			c.useCIDs(hs.localCID, peer)
		case extServerCertType, extClientCertType:
			t, err := parseCertType(e.data)
			if err != nil {
				return err
			}
			// Only a type we listed in that extension (RFC 7250 §4.2).
			sent, _ := findExtension(hs.hello.extensions, e.typ)
			if listed, _ := parseCertTypes(sent); !slices.Contains(listed, t) {
				return localAlert(alertIllegalParameter, fmt.Errorf("ServerHello: certificate type %d was not offered", t))
			}
			if e.typ == extServerCertType {
				hs.serverCertType = t
			} else {
				hs.clientCertType = t
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
	return hs.processAnswer()
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
func verifyServerKeyExchange(pub crypto.PublicKey, hs *clientHandshakeState, ske *serverKeyExchangeECDHEMsg) error {
	if !offered(hs.c.cfg.curves(), CurveID(ske.namedCurve)) {
		return localAlert(alertIllegalParameter, fmt.Errorf("ServerKeyExchange: named_curve %d was not offered", ske.namedCurve))
	}
	if !offered(ecdsaSchemes, ske.sigAlg) {
		return localAlert(alertIllegalParameter, fmt.Errorf("ServerKeyExchange: signature algorithm %#04x was not offered", ske.sigAlg))
	}
	if !ecdsaVerify(pub, ske.sigAlg, ske.signature, hs.hello.random[:], hs.serverHello.random[:], ske.params()) {
		return localAlert(alertDecryptError, errors.New("ServerKeyExchange: signature does not verify"))
	}
	return nil
}
