package dtls

import (
	"errors"
	"fmt"

	"github.com/dtlsresume/dtlsresume/negotiation"
)

// clientHelloInfo is a ClientHello as the server reads it, parsed once when
// the listener screens it: every later step (the resumption lookup, the
// cookie decision, suite selection, the ServerHello) reads these fields.
type clientHelloInfo struct {
	hello *clientHelloMsg

	// offer is the session_resumption_type offer; nil when absent.
	offer *negotiation.ClientOffer
	// ticket is the SessionTicket extension's content; ticketExt says it
	// was sent (an empty one asks for a ticket).
	ticket     []byte
	ticketExt  bool
	offeredEMS bool
	renegInfo  bool // renegotiation_info or the SCSV was offered
	// pointFormats: the client sent ec_point_formats, which the server
	// then answers in an ECDHE ServerHello.
	pointFormats bool
	// ecdheP256 says the client can do ECDHE-ECDSA on P-256 with SHA-256
	// and uncompressed points, the only ECDHE this engine speaks.
	ecdheP256  bool
	serverName string
	// cid is the client's connection_id (RFC 9146); cidOffered says it
	// sent the extension (an empty cid: it needs none).
	cid        []byte
	cidOffered bool
	// attempted is what the hello tries to resume by.
	attempted negotiation.Type

	// err is why the hello must be refused, reported when a handshake
	// starts on it; suiteErr is a malformed ECDHE extension, which only a
	// full handshake reads.
	err, suiteErr error
}

// parseClientHelloInfo reads everything the server needs from hello.
func parseClientHelloInfo(cfg *Config, hello *clientHelloMsg) *clientHelloInfo {
	ch := &clientHelloInfo{hello: hello}
	ch.offer, ch.err = cfg.clientOffer(hello)
	ch.ticket, ch.ticketExt = findExtension(hello.extensions, extSessionTicket)
	_, ch.offeredEMS = findExtension(hello.extensions, extExtendedMasterSecret)
	if v, ok := findExtension(hello.extensions, extServerName); ok {
		ch.serverName, _ = parseServerName(v)
	}
	ch.attempted = attemptedResumption(hello, ch.offer)
	if v, ok := findExtension(hello.extensions, extConnectionID); ok {
		var err error
		if ch.cid, err = parseConnectionID(v); err != nil && ch.err == nil {
			ch.err = err
		}
		ch.cidOffered = err == nil
	}
	if ch.err == nil {
		ch.err = ch.checkVersionAndRenegotiation()
	}
	ch.suiteErr = ch.readECDHEExtensions()
	return ch
}

// check returns why the hello must be refused, if it must.
func (ch *clientHelloInfo) check() error { return ch.err }

func (ch *clientHelloInfo) checkVersionAndRenegotiation() error {
	h := ch.hello
	// DTLS versions count down: 0xfefd (1.2) is newer than 0xfeff (1.0).
	if h.vers > versionDTLS12 {
		return localAlert(alertProtocolVersion, fmt.Errorf("ClientHello: client_version %#04x is older than DTLS 1.2", h.vers))
	}
	hasNull := false
	for _, m := range h.compressionMethods {
		hasNull = hasNull || m == 0
	}
	if !hasNull {
		return localAlert(alertIllegalParameter, errors.New("ClientHello: compression_methods lacks null"))
	}
	if v, ok := findExtension(h.extensions, extRenegotiationInfo); ok {
		ri, err := parseRenegotiationInfo(v)
		if err != nil {
			return err
		}
		if len(ri) != 0 {
			return localAlert(alertHandshakeFailure, errors.New("ClientHello: renegotiation_info is not empty on a new connection"))
		}
		ch.renegInfo = true
	}
	for _, id := range h.cipherSuites {
		ch.renegInfo = ch.renegInfo || id == scsvRenegotiation
	}
	return nil
}

// readECDHEExtensions reads supported_groups, signature_algorithms and
// ec_point_formats into ecdheP256 and pointFormats.
func (ch *clientHelloInfo) readECDHEExtensions() error {
	h := ch.hello
	p256, sha256ECDSA := true, true
	if v, ok := findExtension(h.extensions, extSupportedGroups); ok {
		groups, err := parseSupportedGroups(v)
		if err != nil {
			return err
		}
		p256 = false
		for _, g := range groups {
			p256 = p256 || g == groupP256
		}
	}
	if v, ok := findExtension(h.extensions, extSignatureAlgorithms); ok {
		algs, err := parseSignatureAlgorithms(v)
		if err != nil {
			return err
		}
		sha256ECDSA = false
		for _, a := range algs {
			sha256ECDSA = sha256ECDSA || a == sigECDSAWithP256SHA256
		}
	}
	if v, ok := findExtension(h.extensions, extECPointFormats); ok {
		formats, err := parseECPointFormats(v)
		if err != nil {
			return err
		}
		ch.pointFormats = true
		uncompressed := false
		for _, f := range formats {
			uncompressed = uncompressed || f == 0
		}
		p256 = p256 && uncompressed
	}
	ch.ecdheP256 = p256 && sha256ECDSA
	return nil
}

// asksToResume reports a hello that offers a ticket, a session ID or a
// client_state resumption.
func (ch *clientHelloInfo) asksToResume() bool { return ch.attempted != negotiation.None }

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
