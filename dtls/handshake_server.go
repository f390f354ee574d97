package dtls

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/dtlsresume/dtlsresume/negotiation"
	pionelliptic "github.com/pion/dtls/v3/pkg/crypto/elliptic"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
)

// serverHandshakeState is everything the server holds during one
// handshake; it ends with the handshake.
type serverHandshakeState struct {
	handshakeTransport
	c *Conn

	ch     *clientHelloInfo
	hello  *clientHelloMsg
	random [32]byte
	suite  *cipherSuite
	ems    bool
	cert   *certificateChoice
	// res is the session the ClientHello resumes; nil for a full
	// handshake.
	res *resumption

	// cid is the server's connection ID (nil: none negotiated).
	cid []byte

	// A full handshake's choices and what flight 5 brought.
	mech      negotiation.Type // the resumption mechanism it sets up
	sessionID []byte
	curve     CurveID // the ECDHE group
	// The RFC 7250 certificate types chosen for each side.
	serverCertType, clientCertType uint8
	clientKey                      crypto.PublicKey // the client's raw public key or certificate key
	keyPair                        *pionelliptic.Keypair
	clientCerts                    []*x509.Certificate
	clientTicket                   *newSessionTicketMsg
	masterSecret                   []byte
}

type certificateChoice struct {
	chain  [][]byte
	signer crypto.Signer
}

// serverHandshake runs the server side from the ClientHello that passed
// the cookie check (or may skip it).
func (c *Conn) serverHandshake(ctx context.Context) error {
	if c.first == nil {
		if err := c.awaitCookie(ctx); err != nil {
			return err
		}
	}
	first := c.first
	c.first = nil
	limit := c.cfg.maxHandshakeMemory()
	if !first.verified {
		// A peer that skipped the cookie exchange needs to send us
		// little (an abbreviated handshake's last flight) and has not
		// shown it is reachable: it gets less memory, and less time
		// (handshakeTimeout; docs/decisions.md 35, 37).
		limit = min(limit, unverifiedHandshakeMemory)
	}
	hs := &serverHandshakeState{c: c, ch: first.info, hello: first.info.hello, handshakeTransport: newHandshakeTransport(limit)}
	c.hs = &hs.handshakeTransport
	return hs.handshake(ctx, first)
}

// handshake runs the server's flights: the ClientHello decides between an
// abbreviated handshake and a full one (flight 4, the client's flight 5,
// flight 6).
func (hs *serverHandshakeState) handshake(ctx context.Context, first *firstHello) error {
	if err := hs.processClientHello(ctx, first); err != nil {
		return err
	}
	if hs.res != nil {
		return hs.resume(ctx)
	}
	if err := hs.selectSuite(); err != nil {
		return err
	}
	if err := hs.sendServerFlight(); err != nil {
		return err
	}
	if err := hs.readClientFlight(ctx); err != nil {
		return err
	}
	return hs.sendFinishedFlight(ctx)
}

// processClientHello takes the ClientHello into the transcript, checks it
// and finds the session it resumes, unless the listener already did.
func (hs *serverHandshakeState) processClientHello(ctx context.Context, first *firstHello) error {
	c := hs.c
	hs.reasm.next = first.msg.seq + 1
	hs.sendSeq = first.msg.seq
	// Our record numbers continue from the ClientHello's, so that they run
	// past the HelloVerifyRequest's, which reused an earlier ClientHello's.
	c.rl.write[0].nextSeq = first.msg.recordSeq
	c.addTranscript(typeClientHello, first.msg.seq, first.msg.body)
	ch := hs.ch
	c.state.ResumptionAttempted = ch.attempted
	c.state.ServerName = ch.serverName
	if err := ch.check(); err != nil {
		return err
	}
	var err error
	if hs.random, err = newRandom(); err != nil {
		return localAlert(alertInternalError, err)
	}
	res := first.res
	if !first.resChecked {
		if res, err = findResumption(ctx, c.cfg, ch); err != nil {
			return err
		}
	}
	if res != nil {
		cid := c.serverCID(ch, res.cid)
		if res.serverHello == nil || !bytes.Equal(cid, res.cid) {
			// Not prepared yet, or its CID was taken meanwhile.
			if err := res.prepare(c.cfg, ch, first.msg.seq, cid); err != nil {
				return err
			}
		}
		hs.res = res
		hs.random = res.serverHello.random
		hs.cid = res.cid
	}
	return nil
}

// serverCID picks the server's connection ID when the client offered the
// extension and the server takes part, claiming it for the Listener's
// routing; preferred, if not nil, is tried first. It returns nil when no
// CID is negotiated, and installs the CIDs otherwise.
func (c *Conn) serverCID(ch *clientHelloInfo, preferred []byte) []byte {
	gen := c.cfg.ConnectionIDGenerator
	if !ch.cidOffered || gen == nil {
		return nil
	}
	cid := preferred
	for try := 0; ; try++ {
		if cid == nil {
			cid = gen()
		}
		if c.reserveCID == nil || c.reserveCID(cid) || try == 3 {
			break
		}
		cid = nil
	}
	c.useCIDs(cid, ch.cid)
	return cid
}

// resume runs an abbreviated handshake (RFC 5246 §7.3): ServerHello,
// [NewSessionTicket], ChangeCipherSpec, Finished; then the client's
// [NewSessionTicket of client_state], ChangeCipherSpec and Finished.
func (hs *serverHandshakeState) resume(ctx context.Context) error {
	c := hs.c
	res := hs.res
	st := res.state
	hs.suite = cipherSuiteByID(st.CipherSuite)
	hs.ems = st.ExtendedMasterSecret
	fl := c.newFlight()
	for _, it := range res.reply {
		fl.addPrepared(it)
	}
	ms := st.MasterSecret[:]
	if err := c.setSessionKeys(hs.suite, ms, hs.hello.random, hs.random, hs.ch.etmWith(hs.suite)); err != nil {
		return err
	}
	if err := fl.finish(ms); err != nil {
		return err
	}
	// A client_state client may refresh its ticket before its Finished.
	refresh, err := hs.readClientTicket(ctx, res.mech == negotiation.ClientState)
	if err != nil {
		return err
	}
	if err := c.readPeerFinished(ctx, ms); err != nil {
		return err
	}
	c.restorePeer(st)
	c.state.Resumed = true
	c.state.Resumption = res.mech
	c.state.Negotiated = hs.ch.offer != nil
	c.state.ResumptionStateBytes = res.storedBytes
	switch res.mech {
	case negotiation.SessionID:
		c.state.SessionID = res.sessionID
	case negotiation.ClientState:
		if refresh != nil {
			// The refreshed record lives from now, as the client's new
			// ticket does; its session_created still caps its age.
			renewed := *st
			renewed.Timestamp = c.cfg.now()
			c.storeClientState(ctx, hs.ch.offer.Handle, refresh, &renewed)
		}
	}
	return nil
}

// selectSuite picks the suite of a full handshake, the extensions that go
// with it, and the resumption mechanism it sets up.
func (hs *serverHandshakeState) selectSuite() error {
	c := hs.c
	ch := hs.ch
	if ch.suiteErr != nil {
		return ch.suiteErr
	}
	// ECDHE needs a group both sides have and a signature scheme of our
	// certificate the client accepts.
	hs.curve = ch.curve(c.cfg)
	certScheme := uint16(0)
	if len(c.cfg.Certificates) > 0 {
		if signer, ok := c.cfg.Certificates[0].PrivateKey.(crypto.Signer); ok {
			certScheme, _, _ = ecdsaScheme(signer.Public())
		}
	}
	// RFC 8422 §5.1: supported_groups also names the curves the client
	// verifies ECDSA signatures on, so the key's must be there.
	var typeOK bool
	hs.serverCertType, typeOK = chooseCertType(ch.serverCertTypes, c.cfg.presentsRawPublicKey(),
		len(c.cfg.Certificates) > 0 && len(c.cfg.Certificates[0].Certificate) > 0)
	ecdhe := hs.curve != 0 && certScheme != 0 && typeOK &&
		(offered(ch.sigSchemes, sigECDSAWithP256SHA256) || offered(ch.sigSchemes, sigECDSAWithP384SHA384)) &&
		offered(ch.groups, schemeCurve(certScheme))
	if c.cfg.ClientAuth != NoClientCert {
		// The client's type: a raw key when it offers one and we take
		// them; X.509 otherwise (an empty certificate_list is still an
		// answer).
		hs.clientCertType, _ = chooseCertType(ch.clientCertTypes, c.cfg.acceptsRawPublicKeys(false), true)
	}
	for _, s := range c.cfg.suites(false) {
		if !offered(hs.hello.cipherSuites, uint16(s.id)) || (s.kx == kxECDHE && !ecdhe) || (s.kx == kxECDHEPSK && hs.curve == 0) {
			continue
		}
		hs.suite = s
		break
	}
	if hs.suite == nil {
		return localAlert(alertHandshakeFailure, errNoCommonSuite)
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
		if !ch.offeredEMS {
			return localAlert(alertHandshakeFailure, errors.New("ClientHello: no extended_master_secret and the server requires it"))
		}
		hs.ems = true
	case RequestExtendedMasterSecret:
		hs.ems = ch.offeredEMS
	}
	c.state.CipherSuite = hs.suite.id
	c.state.ExtendedMasterSecret = hs.ems
	hs.cid = c.serverCID(hs.ch, nil)
	// Exactly the selected mechanism is set up: no session ID unless
	// session_id, no ticket unless session_ticket (docs/decisions.md 21-22).
	hs.mech = c.cfg.chooseMechanism(ch)
	if hs.mech == negotiation.SessionID {
		r, err := newRandom()
		if err != nil {
			return localAlert(alertInternalError, err)
		}
		hs.sessionID = r[:]
	}
	return nil
}

// sendServerFlight sends flight 4: ServerHello, then Certificate,
// ServerKeyExchange and [CertificateRequest] (ECDHE), the unsigned
// ServerKeyExchange with the hint and the ECDH parameters (ECDHE_PSK), or an
// optional ServerKeyExchange with the PSK hint, then ServerHelloDone.
func (hs *serverHandshakeState) sendServerFlight() error {
	c := hs.c
	fl := c.newFlight()
	sh := serverHelloFor(hs.ch, hs.random, hs.suite, hs.ems, hs.sessionID, hs.cid)
	if hs.mech == negotiation.SessionTicket {
		sh.extensions = append(sh.extensions, extension{extSessionTicket, nil})
	}
	if hs.suite.kx == kxECDHE && hs.ch.serverCertTypes != nil {
		sh.extensions = append(sh.extensions, extension{extServerCertType, []byte{hs.serverCertType}})
	}
	if hs.suite.kx == kxECDHE && c.cfg.ClientAuth != NoClientCert && hs.ch.clientCertTypes != nil {
		sh.extensions = append(sh.extensions, extension{extClientCertType, []byte{hs.clientCertType}})
	}
	if err := addAnswer(c.cfg, hs.ch, sh, hs.mech, nil); err != nil {
		return err
	}
	if err := fl.add(sh, 0); err != nil {
		return err
	}
	switch hs.suite.kx {
	case kxECDHE:
		var cm handshakeMessage = &certificateMsg{certificates: hs.cert.chain}
		if hs.serverCertType == certTypeRawPublicKey {
			spki, err := c.cfg.ownSPKI()
			if err != nil {
				return localAlert(alertInternalError, err)
			}
			cm = &rawPublicKeyMsg{spki: spki}
		}
		if err := fl.add(cm, 0); err != nil {
			return err
		}
		curve, _ := pionCurve(hs.curve)
		var err error
		if hs.keyPair, err = pionelliptic.GenerateKeypair(curve); err != nil {
			return localAlert(alertInternalError, err)
		}
		ske := &serverKeyExchangeECDHEMsg{namedCurve: uint16(hs.curve), publicKey: hs.keyPair.PublicKey}
		c.state.Curve = hs.curve
		if ske.sigAlg, ske.signature, err = ecdsaSign(hs.cert.signer, hs.ch.sigSchemes, hs.hello.random[:], hs.random[:], ske.params()); err != nil {
			return localAlert(alertInternalError, fmt.Errorf("ServerKeyExchange: signing: %w", err))
		}
		if err := fl.add(ske, 0); err != nil {
			return err
		}
		if c.cfg.ClientAuth != NoClientCert {
			req := &certificateRequestMsg{certificateTypes: []uint8{64}, signatureAlgorithms: ecdsaSchemes}
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
	case kxECDHEPSK:
		// RFC 5489 §2: always sent, unsigned, the hint possibly empty.
		curve, _ := pionCurve(hs.curve)
		var err error
		if hs.keyPair, err = pionelliptic.GenerateKeypair(curve); err != nil {
			return localAlert(alertInternalError, err)
		}
		c.state.Curve = hs.curve
		ske := &serverKeyExchangeECDHEPSKMsg{identityHint: c.cfg.PSKIdentityHint, namedCurve: uint16(hs.curve), publicKey: hs.keyPair.PublicKey}
		if err := fl.add(ske, 0); err != nil {
			return err
		}
	}
	if err := fl.add(&serverHelloDoneMsg{}, 0); err != nil {
		return err
	}
	return fl.send()
}

// readClientFlight reads flight 5: [Certificate], ClientKeyExchange,
// [CertificateVerify], [NewSessionTicket of client_state], and the
// client's Finished.
func (hs *serverHandshakeState) readClientFlight(ctx context.Context) error {
	c := hs.c
	if hs.suite.kx == kxECDHE && c.cfg.ClientAuth != NoClientCert {
		if err := hs.readClientCertificate(ctx); err != nil {
			return err
		}
	}
	var preMaster []byte
	switch hs.suite.kx {
	case kxPSK:
		var cke clientKeyExchangePSKMsg
		hm, err := c.expect(ctx, &cke, "ClientKeyExchange")
		if err != nil {
			return err
		}
		psk, err := hs.lookupPSK(cke.identity)
		if err != nil {
			return err
		}
		preMaster = prf.PSKPreMasterSecret(psk)
		c.addTranscript(hm.typ, hm.seq, hm.body)
	case kxECDHEPSK:
		var cke clientKeyExchangeECDHEPSKMsg
		hm, err := c.expect(ctx, &cke, "ClientKeyExchange")
		if err != nil {
			return err
		}
		psk, err := hs.lookupPSK(cke.identity)
		if err != nil {
			return err
		}
		curve, _ := pionCurve(hs.curve)
		if preMaster, err = prf.EcdhePSKPreMasterSecret(psk, cke.publicKey, hs.keyPair.PrivateKey, curve); err != nil {
			return localAlert(alertIllegalParameter, fmt.Errorf("ClientKeyExchange: public key: %w", err))
		}
		c.addTranscript(hm.typ, hm.seq, hm.body)
	case kxECDHE:
		var cke clientKeyExchangeECDHEMsg
		hm, err := c.expect(ctx, &cke, "ClientKeyExchange")
		if err != nil {
			return err
		}
		curve, _ := pionCurve(hs.curve)
		if preMaster, err = prf.PreMasterSecret(cke.publicKey, hs.keyPair.PrivateKey, curve); err != nil {
			return localAlert(alertIllegalParameter, fmt.Errorf("ClientKeyExchange: public key: %w", err))
		}
		c.addTranscript(hm.typ, hm.seq, hm.body)
	}
	ms, err := masterSecret(preMaster, hs.ems, hs.transcript, hs.hello.random, hs.random)
	if err != nil {
		return localAlert(alertInternalError, err)
	}
	hs.masterSecret = ms
	if err := c.setSessionKeys(hs.suite, ms, hs.hello.random, hs.random, hs.ch.etmWith(hs.suite)); err != nil {
		return err
	}
	if hs.clientKey != nil {
		var cv certificateVerifyMsg
		hm, err := c.expect(ctx, &cv, "CertificateVerify")
		if err != nil {
			return err
		}
		if !offered(ecdsaSchemes, cv.sigAlg) || !ecdsaVerify(hs.clientKey, cv.sigAlg, cv.signature, hs.transcript) {
			return localAlert(alertDecryptError, errors.New("CertificateVerify: signature does not verify"))
		}
		c.addTranscript(hm.typ, hm.seq, hm.body)
		if hs.clientCertType == certTypeX509 {
			c.state.PeerCertificates = hs.clientCerts
		}
	}
	if hs.clientTicket, err = hs.readClientTicket(ctx, hs.mech == negotiation.ClientState); err != nil {
		return err
	}
	return c.readPeerFinished(ctx, ms)
}

// sendFinishedFlight keeps what the negotiated mechanism needs on this side
// and sends flight 6: [NewSessionTicket], ChangeCipherSpec, Finished.
func (hs *serverHandshakeState) sendFinishedFlight(ctx context.Context) error {
	c := hs.c
	fl := c.newFlight()
	st := c.sessionState(hs.suite, hs.masterSecret, hs.ems, c.cfg.now(), hs.mech)
	switch hs.mech {
	case negotiation.SessionTicket:
		nst, err := c.cfg.issueTicket(st)
		if err != nil {
			return err
		}
		if err := fl.add(nst, 0); err != nil {
			return err
		}
	case negotiation.SessionID:
		c.storeSession(ctx, hs.sessionID, st)
	case negotiation.ClientState:
		// Stored only now that the client's Finished verified (docs/decisions.md 27).
		if hs.clientTicket != nil {
			c.storeClientState(ctx, hs.ch.offer.Handle, hs.clientTicket, st)
		}
	}
	c.state.Resumption = hs.mech
	c.state.Negotiated = hs.ch.offer != nil
	return fl.finish(hs.masterSecret)
}

// readClientTicket reads the NewSessionTicket a client_state client sends
// before its ChangeCipherSpec, if the next message is one. From a client
// that did not negotiate client_state it is unexpected_message.
func (hs *serverHandshakeState) readClientTicket(ctx context.Context, allowed bool) (*newSessionTicketMsg, error) {
	c := hs.c
	hm, err := c.readHandshake(ctx, "Finished")
	if err != nil {
		return nil, err
	}
	if hm.typ != typeNewSessionTicket {
		hs.reasm.unpop(hm)
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

// lookupPSK finds the key of the identity a ClientKeyExchange names. An
// unknown identity gets a random key, so that the client's Finished fails
// as under a wrong key (RFC 4279 §2), unless RevealUnknownPSKIdentity.
func (hs *serverHandshakeState) lookupPSK(identity []byte) ([]byte, error) {
	c := hs.c
	// Recorded before it is checked, so that a failure's report can name
	// the identity the client claimed.
	c.state.PSKIdentity = identity
	c.state.PSKIdentityHint = c.cfg.PSKIdentityHint
	psk, err := c.cfg.PSK(identity)
	if err == nil && len(psk) > 0 {
		return psk, nil
	}
	if c.cfg.RevealUnknownPSKIdentity {
		return nil, localAlert(alertUnknownPSKIdentity, errors.New("ClientKeyExchange: unknown PSK identity"))
	}
	hs.unknownIdentity = true
	psk = make([]byte, 32)
	if _, err := rand.Read(psk); err != nil {
		return nil, localAlert(alertInternalError, err)
	}
	return psk, nil
}

// serverHelloFor builds the ServerHello that answers ch.
//
// cid is the server's connection ID when the client offered the extension
// and the server takes part (nil: no connection_id extension).
func serverHelloFor(ch *clientHelloInfo, random [32]byte, suite *cipherSuite, ems bool, sessionID, cid []byte) *serverHelloMsg {
	sh := &serverHelloMsg{vers: versionDTLS12, random: random, sessionID: sessionID, cipherSuite: uint16(suite.id)}
	if cid != nil {
		sh.extensions = append(sh.extensions, extension{extConnectionID, marshalConnectionID(cid)})
	}
	if ems {
		sh.extensions = append(sh.extensions, extension{extExtendedMasterSecret, nil})
	}
	if ch.etmWith(suite) {
		sh.extensions = append(sh.extensions, extension{extEncryptThenMAC, nil})
	}
	if ch.renegInfo {
		sh.extensions = append(sh.extensions, extension{extRenegotiationInfo, marshalRenegotiationInfo(nil)})
	}
	if ch.pointFormats && suite.ephemeral() {
		sh.extensions = append(sh.extensions, extension{extECPointFormats, marshalECPointFormats([]uint8{0})})
	}
	return sh
}

// addAnswer puts the session_resumption_type answer in a ServerHello when
// the client sent the extension.
func addAnswer(cfg *Config, ch *clientHelloInfo, sh *serverHelloMsg, selected negotiation.Type, ticket []byte) error {
	if ch.offer == nil {
		return nil
	}
	v, err := (&negotiation.ServerAnswer{Selected: selected, Ticket: ticket}).Marshal()
	if err != nil {
		return localAlert(alertInternalError, err)
	}
	sh.extensions = append(sh.extensions, extension{cfg.resumptionExtension(), v})
	return nil
}

// readClientCertificate reads the client's Certificate: a raw public key or
// a certificate chain, by the type chosen; it keeps the key that must sign
// CertificateVerify (none for an empty chain).
func (hs *serverHandshakeState) readClientCertificate(ctx context.Context) error {
	c := hs.c
	if hs.clientCertType == certTypeRawPublicKey {
		var rpk rawPublicKeyMsg
		hm, err := c.expect(ctx, &rpk, "Certificate")
		if err != nil {
			return err
		}
		if hs.clientKey, err = c.verifyPeerPublicKey(rpk.spki); err != nil {
			return err
		}
		c.state.PeerPublicKey = rpk.spki
		c.addTranscript(hm.typ, hm.seq, hm.body)
		return nil
	}
	var cm certificateMsg
	hm, err := c.expect(ctx, &cm, "Certificate")
	if err != nil {
		return err
	}
	if hs.clientCerts, err = c.verifyPeerCertificates(cm.certificates); err != nil {
		return err
	}
	if len(hs.clientCerts) > 0 {
		hs.clientKey = hs.clientCerts[0].PublicKey
	}
	c.addTranscript(hm.typ, hm.seq, hm.body)
	return nil
}

// chooseCertType picks a certificate type (RFC 7250) from the client's list,
// in its order: a raw public key when rpk allows it, X.509 when x509 does.
// Without the extension the type is X.509. ok is false when nothing fits.
func chooseCertType(listed []uint8, rpk, x509 bool) (uint8, bool) {
	if listed == nil {
		return certTypeX509, x509
	}
	for _, t := range listed {
		if (t == certTypeRawPublicKey && rpk) || (t == certTypeX509 && x509) {
			return t, true
		}
	}
	return certTypeX509, false
}
