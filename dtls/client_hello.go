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
	offeredETM bool // encrypt_then_mac (RFC 7366)
	renegInfo  bool // renegotiation_info or the SCSV was offered
	// pointFormats: the client sent ec_point_formats, which the server
	// then answers in an ECDHE ServerHello.
	pointFormats bool
	// serverCertTypes and clientCertTypes are the RFC 7250 certificate
	// types the client lists (nil: it sent no such extension: X.509).
	serverCertTypes, clientCertTypes []uint8
	// groups and sigSchemes are the client's ECDHE groups (in its order;
	// none without uncompressed points) and signature schemes.
	groups     []CurveID
	sigSchemes []uint16
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
	if v, ok := findExtension(hello.extensions, extEncryptThenMAC); ok {
		if len(v) != 0 && ch.err == nil {
			ch.err = decodeError("ClientHello", "encrypt_then_mac")
		}
		ch.offeredETM = true
	}
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
	for ext, dst := range map[uint16]*[]uint8{extServerCertType: &ch.serverCertTypes, extClientCertType: &ch.clientCertTypes} {
		if v, ok := findExtension(hello.extensions, ext); ok {
			var err error
			if *dst, err = parseCertTypes(v); err != nil && ch.err == nil {
				ch.err = err
			}
		}
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
// ec_point_formats into groups, sigSchemes and pointFormats.
func (ch *clientHelloInfo) readECDHEExtensions() error {
	h := ch.hello
	// Without the extensions a client is taken to offer P-256 with
	// SHA-256 (RFC 8422 §4, RFC 5246 §7.4.1.4.1 as RFC 7925 profiles it).
	ch.groups, ch.sigSchemes = []CurveID{CurveP256}, []uint16{sigECDSAWithP256SHA256}
	if v, ok := findExtension(h.extensions, extSupportedGroups); ok {
		groups, err := parseSupportedGroups(v)
		if err != nil {
			return err
		}
		ch.groups = ch.groups[:0]
		for _, g := range groups {
			ch.groups = append(ch.groups, CurveID(g))
		}
	}
	if v, ok := findExtension(h.extensions, extSignatureAlgorithms); ok {
		algs, err := parseSignatureAlgorithms(v)
		if err != nil {
			return err
		}
		ch.sigSchemes = algs
	}
	if v, ok := findExtension(h.extensions, extECPointFormats); ok {
		formats, err := parseECPointFormats(v)
		if err != nil {
			return err
		}
		ch.pointFormats = true
		if !offered(formats, 0) {
			ch.groups = nil // uncompressed points only
		}
	}
	return nil
}

// curve is the ECDHE group for this client: the first of its groups that
// cfg accepts; 0 when none.
func (ch *clientHelloInfo) curve(cfg *Config) CurveID {
	for _, g := range ch.groups {
		if offered(cfg.curves(), g) {
			return g
		}
	}
	return 0
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

// etmWith reports whether a handshake on suite protects its records
// encrypt-then-MAC: the client asked and the suite is CBC (RFC 7366 §3: an
// AEAD suite never answers the extension). Decided afresh in every
// handshake, abbreviated ones too (docs/decisions.md, item 51).
func (ch *clientHelloInfo) etmWith(suite *cipherSuite) bool {
	return ch.offeredETM && suite.aead == aeadCBC
}
