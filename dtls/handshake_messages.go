package dtls

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// This file holds the codecs for the bodies of DTLS 1.2 handshake messages,
// that is the bytes that follow the 12-byte DTLS handshake header
// (RFC 6347 §4.2.2). Each message type is described in TLS presentation
// language right above its struct.
//
// Parsers (unmarshal) consume the whole body, reject trailing bytes, vectors
// whose lengths fall outside the ranges of the presentation language, and
// never panic. Every parse error comes from decodeError, so it wraps errDecode
// and maps to the decode_error alert. Parsed variable-length fields are copies
// of the input, never aliases of it, and an empty opaque vector parses to nil.
//
// Marshalers return the body only and fail, with an error naming the message
// and field, when a field does not fit its vector range.

// HandshakeType values (RFC 5246 §7.4, RFC 6347 §4.3.2, RFC 5077 §3.3).
const (
	typeHelloRequest       uint8 = 0
	typeClientHello        uint8 = 1
	typeServerHello        uint8 = 2
	typeHelloVerifyRequest uint8 = 3
	typeNewSessionTicket   uint8 = 4
	typeCertificate        uint8 = 11
	typeServerKeyExchange  uint8 = 12
	typeCertificateRequest uint8 = 13
	typeServerHelloDone    uint8 = 14
	typeCertificateVerify  uint8 = 15
	typeClientKeyExchange  uint8 = 16
	typeFinished           uint8 = 20
)

// handshakeTypeName names a HandshakeType as the RFCs do.
func handshakeTypeName(t uint8) string {
	switch t {
	case typeHelloRequest:
		return "HelloRequest"
	case typeClientHello:
		return "ClientHello"
	case typeServerHello:
		return "ServerHello"
	case typeHelloVerifyRequest:
		return "HelloVerifyRequest"
	case typeNewSessionTicket:
		return "NewSessionTicket"
	case typeCertificate:
		return "Certificate"
	case typeServerKeyExchange:
		return "ServerKeyExchange"
	case typeCertificateRequest:
		return "CertificateRequest"
	case typeServerHelloDone:
		return "ServerHelloDone"
	case typeCertificateVerify:
		return "CertificateVerify"
	case typeClientKeyExchange:
		return "ClientKeyExchange"
	case typeFinished:
		return "Finished"
	}
	return fmt.Sprintf("handshake type %d", t)
}

// ExtensionType values (RFC 6066, RFC 8422, RFC 5246, RFC 7366, RFC 7627,
// RFC 5077, RFC 5746).
const (
	extServerName           uint16 = 0
	extSupportedGroups      uint16 = 10
	extECPointFormats       uint16 = 11
	extSignatureAlgorithms  uint16 = 13
	extEncryptThenMAC       uint16 = 22
	extExtendedMasterSecret uint16 = 23
	extSessionTicket        uint16 = 35
	extConnectionID         uint16 = 54 // RFC 9146
	extClientCertType       uint16 = 19 // RFC 7250
	extServerCertType       uint16 = 20 // RFC 7250
	extRenegotiationInfo    uint16 = 0xff01
)

// ProtocolVersion values of DTLS (RFC 6347 §4.1).
const versionDTLS12 uint16 = 0xfefd
const versionDTLS10 uint16 = 0xfeff

// Limits of the vectors used by the handshake messages.
const (
	hsMaxUint8Len  = 1<<8 - 1
	hsMaxUint16Len = 1<<16 - 1
	hsMaxUint24Len = 1<<24 - 1

	// hsMaxSessionIDLen is the upper bound of SessionID <0..32>.
	hsMaxSessionIDLen = 32
	// hsMaxUint16Items is the most two-byte items a <2..2^16-2> vector holds.
	hsMaxUint16Items = (1<<16 - 2) / 2

	// hsFinishedLen is verify_data_length for every DTLS 1.2 cipher suite
	// this engine knows (RFC 5246 §7.4.9).
	hsFinishedLen = 12

	// hsCurveTypeNamedCurve is ECCurveType named_curve (RFC 4492 §5.4).
	hsCurveTypeNamedCurve uint8 = 3

	// hsNameTypeHostName is NameType host_name (RFC 6066 §3).
	hsNameTypeHostName uint8 = 0
)

// handshakeMessage is the body of one handshake message.
type handshakeMessage interface {
	// typ is the HandshakeType of the message.
	typ() uint8
	// marshal encodes the body only, without the handshake header.
	marshal() ([]byte, error)
	// unmarshal decodes a whole body; every byte must be consumed. On error
	// the receiver is left unchanged.
	unmarshal([]byte) error
}

var (
	_ handshakeMessage = (*clientHelloMsg)(nil)
	_ handshakeMessage = (*serverHelloMsg)(nil)
	_ handshakeMessage = (*helloVerifyRequestMsg)(nil)
	_ handshakeMessage = (*certificateMsg)(nil)
	_ handshakeMessage = (*serverKeyExchangeECDHEMsg)(nil)
	_ handshakeMessage = (*serverKeyExchangePSKMsg)(nil)
	_ handshakeMessage = (*certificateRequestMsg)(nil)
	_ handshakeMessage = (*serverHelloDoneMsg)(nil)
	_ handshakeMessage = (*clientKeyExchangePSKMsg)(nil)
	_ handshakeMessage = (*clientKeyExchangeECDHEMsg)(nil)
	_ handshakeMessage = (*serverKeyExchangeECDHEPSKMsg)(nil)
	_ handshakeMessage = (*clientKeyExchangeECDHEPSKMsg)(nil)
	_ handshakeMessage = (*certificateVerifyMsg)(nil)
	_ handshakeMessage = (*finishedMsg)(nil)
	_ handshakeMessage = (*newSessionTicketMsg)(nil)
)

// hsLengthError reports a field that does not fit its vector range when
// marshaling.
func hsLengthError(msg, field string, n int) error {
	return fmt.Errorf("dtls: cannot marshal %s: %s length %d out of range", msg, field, n)
}

// hsBuild finishes a builder, naming msg in the unlikely case that the
// builder itself failed after the range checks.
func hsBuild(msg string, b *cryptobyte.Builder) ([]byte, error) {
	out, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("dtls: cannot marshal %s: %w", msg, err)
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

// hsCopy returns a copy of b that does not alias the input; an empty b
// gives nil.
func hsCopy(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// hsReadOpaque8 reads opaque x<0..2^8-1> into a fresh copy.
func hsReadOpaque8(s *cryptobyte.String, out *[]byte) bool {
	var v cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&v) {
		return false
	}
	*out = hsCopy(v)
	return true
}

// hsReadOpaque16 reads opaque x<0..2^16-1> into a fresh copy.
func hsReadOpaque16(s *cryptobyte.String, out *[]byte) bool {
	var v cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&v) {
		return false
	}
	*out = hsCopy(v)
	return true
}

// hsReadUint16Vector reads a vector of two-byte items with range
// <2..2^16-2>: the length must be even and non-zero.
func hsReadUint16Vector(s *cryptobyte.String, out *[]uint16) bool {
	var v cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&v) || len(v) == 0 || len(v)%2 != 0 {
		return false
	}
	list := make([]uint16, 0, len(v)/2)
	for !v.Empty() {
		var item uint16
		if !v.ReadUint16(&item) {
			return false
		}
		list = append(list, item)
	}
	*out = list
	return true
}

// hsAddUint16Vector writes a vector of two-byte items; the caller has checked
// that 1 <= len(list) <= hsMaxUint16Items.
func hsAddUint16Vector(b *cryptobyte.Builder, list []uint16) {
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, v := range list {
			b.AddUint16(v)
		}
	})
}

// hsUint16VectorOK reports whether list fits <2..2^16-2>.
func hsUint16VectorOK(list []uint16) bool {
	return len(list) >= 1 && len(list) <= hsMaxUint16Items
}

// extension is one hello extension, kept verbatim so that extensions this
// engine does not interpret survive parsing (later work adds its own).
//
//	struct {
//	    ExtensionType extension_type;
//	    opaque extension_data<0..2^16-1>;
//	} Extension;
//
//	enum {
//	    server_name(0), supported_groups(10), ec_point_formats(11),
//	    signature_algorithms(13), encrypt_then_mac(22),
//	    extended_master_secret(23), session_ticket(35),
//	    renegotiation_info(65281), (65535)
//	} ExtensionType;
type extension struct {
	typ  uint16
	data []byte
}

// findExtension returns the extension_data of the extension of type typ, and
// whether exts holds it. The data of an empty extension is nil.
func findExtension(exts []extension, typ uint16) ([]byte, bool) {
	for _, e := range exts {
		if e.typ == typ {
			return e.data, true
		}
	}
	return nil, false
}

// hsExtensionSet tracks which extension types a block has; RFC 5246
// §7.4.1.4 forbids more than one extension of the same type.
type hsExtensionSet [1 << 16 / 64]uint64

// add records typ and reports whether it was new.
func (s *hsExtensionSet) add(typ uint16) bool {
	word, bit := typ/64, uint64(1)<<(typ%64)
	if s[word]&bit != 0 {
		return false
	}
	s[word] |= bit
	return true
}

// hsAddExtensions writes the optional extensions block of a hello. A nil
// exts omits the block; a non-nil empty exts writes an empty block.
func hsAddExtensions(b *cryptobyte.Builder, msg string, exts []extension) error {
	if exts == nil {
		return nil
	}
	var seen hsExtensionSet
	total := 0
	for _, e := range exts {
		if len(e.data) > hsMaxUint16Len {
			return hsLengthError(msg, fmt.Sprintf("extension %d extension_data", e.typ), len(e.data))
		}
		if !seen.add(e.typ) {
			return fmt.Errorf("dtls: cannot marshal %s: duplicate extension %d", msg, e.typ)
		}
		total += 4 + len(e.data)
		if total > hsMaxUint16Len {
			return hsLengthError(msg, "extensions", total)
		}
	}
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, e := range exts {
			b.AddUint16(e.typ)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddBytes(e.data)
			})
		}
	})
	return nil
}

// hsReadExtensions reads the optional extensions block at the end of a
// hello. When s is empty the block is absent and the result is nil; an empty
// block gives a non-nil empty slice, so that marshaling reproduces the input.
// Order is preserved and duplicate types are rejected.
func hsReadExtensions(s *cryptobyte.String, msg string) ([]extension, error) {
	if s.Empty() {
		return nil, nil
	}
	var block cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&block) {
		return nil, decodeError(msg, "extensions")
	}
	exts := []extension{}
	var seen hsExtensionSet
	for !block.Empty() {
		var e extension
		if !block.ReadUint16(&e.typ) {
			return nil, decodeError(msg, "extension_type")
		}
		if !hsReadOpaque16(&block, &e.data) {
			return nil, decodeError(msg, "extension_data")
		}
		if !seen.add(e.typ) {
			return nil, decodeError(msg, "extension_type")
		}
		exts = append(exts, e)
	}
	return exts, nil
}

// clientHelloMsg is a DTLS ClientHello (RFC 6347 §4.2.1, RFC 5246 §7.4.1.2):
//
//	struct {
//	    ProtocolVersion client_version;
//	    Random random;
//	    SessionID session_id;
//	    opaque cookie<0..2^8-1>;
//	    CipherSuite cipher_suites<2..2^16-2>;
//	    CompressionMethod compression_methods<1..2^8-1>;
//	    select (extensions_present) {
//	        case false:
//	            struct {};
//	        case true:
//	            Extension extensions<0..2^16-1>;
//	    };
//	} ClientHello;
//
//	opaque SessionID<0..32>;
//	uint8 CipherSuite[2];
//	enum { null(0), (255) } CompressionMethod;
//
// A nil extensions means the block is absent; a non-nil empty extensions
// is an empty block.
type clientHelloMsg struct {
	vers               uint16
	random             [32]byte
	sessionID          []byte      // <0..32>
	cookie             []byte      // <0..2^8-1>
	cipherSuites       []uint16    // <2..2^16-2>
	compressionMethods []uint8     // <1..2^8-1>
	extensions         []extension // absent extensions block => nil; order preserved; no duplicate types
}

func (m *clientHelloMsg) typ() uint8 { return typeClientHello }

func (m *clientHelloMsg) marshal() ([]byte, error) {
	const msg = "ClientHello"
	switch {
	case len(m.sessionID) > hsMaxSessionIDLen:
		return nil, hsLengthError(msg, "session_id", len(m.sessionID))
	case len(m.cookie) > hsMaxUint8Len:
		return nil, hsLengthError(msg, "cookie", len(m.cookie))
	case !hsUint16VectorOK(m.cipherSuites):
		return nil, hsLengthError(msg, "cipher_suites", 2*len(m.cipherSuites))
	case len(m.compressionMethods) < 1 || len(m.compressionMethods) > hsMaxUint8Len:
		return nil, hsLengthError(msg, "compression_methods", len(m.compressionMethods))
	}
	var b cryptobyte.Builder
	b.AddUint16(m.vers)
	b.AddBytes(m.random[:])
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.sessionID) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.cookie) })
	hsAddUint16Vector(&b, m.cipherSuites)
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.compressionMethods) })
	if err := hsAddExtensions(&b, msg, m.extensions); err != nil {
		return nil, err
	}
	return hsBuild(msg, &b)
}

func (m *clientHelloMsg) unmarshal(data []byte) error {
	const msg = "ClientHello"
	var p clientHelloMsg
	s := cryptobyte.String(data)
	if !s.ReadUint16(&p.vers) {
		return decodeError(msg, "client_version")
	}
	if !s.CopyBytes(p.random[:]) {
		return decodeError(msg, "random")
	}
	if !hsReadOpaque8(&s, &p.sessionID) || len(p.sessionID) > hsMaxSessionIDLen {
		return decodeError(msg, "session_id")
	}
	if !hsReadOpaque8(&s, &p.cookie) {
		return decodeError(msg, "cookie")
	}
	if !hsReadUint16Vector(&s, &p.cipherSuites) {
		return decodeError(msg, "cipher_suites")
	}
	if !hsReadOpaque8(&s, &p.compressionMethods) || len(p.compressionMethods) == 0 {
		return decodeError(msg, "compression_methods")
	}
	exts, err := hsReadExtensions(&s, msg)
	if err != nil {
		return err
	}
	p.extensions = exts
	if !s.Empty() {
		return decodeError(msg, "trailing_data")
	}
	*m = p
	return nil
}

// serverHelloMsg is a ServerHello (RFC 5246 §7.4.1.3); DTLS does not change
// it:
//
//	struct {
//	    ProtocolVersion server_version;
//	    Random random;
//	    SessionID session_id;
//	    CipherSuite cipher_suite;
//	    CompressionMethod compression_method;
//	    select (extensions_present) {
//	        case false:
//	            struct {};
//	        case true:
//	            Extension extensions<0..2^16-1>;
//	    };
//	} ServerHello;
//
// As in clientHelloMsg, a nil extensions means the block is absent.
type serverHelloMsg struct {
	vers              uint16
	random            [32]byte
	sessionID         []byte // <0..32>
	cipherSuite       uint16
	compressionMethod uint8
	extensions        []extension
}

func (m *serverHelloMsg) typ() uint8 { return typeServerHello }

func (m *serverHelloMsg) marshal() ([]byte, error) {
	const msg = "ServerHello"
	if len(m.sessionID) > hsMaxSessionIDLen {
		return nil, hsLengthError(msg, "session_id", len(m.sessionID))
	}
	var b cryptobyte.Builder
	b.AddUint16(m.vers)
	b.AddBytes(m.random[:])
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.sessionID) })
	b.AddUint16(m.cipherSuite)
	b.AddUint8(m.compressionMethod)
	if err := hsAddExtensions(&b, msg, m.extensions); err != nil {
		return nil, err
	}
	return hsBuild(msg, &b)
}

func (m *serverHelloMsg) unmarshal(data []byte) error {
	const msg = "ServerHello"
	var p serverHelloMsg
	s := cryptobyte.String(data)
	if !s.ReadUint16(&p.vers) {
		return decodeError(msg, "server_version")
	}
	if !s.CopyBytes(p.random[:]) {
		return decodeError(msg, "random")
	}
	if !hsReadOpaque8(&s, &p.sessionID) || len(p.sessionID) > hsMaxSessionIDLen {
		return decodeError(msg, "session_id")
	}
	if !s.ReadUint16(&p.cipherSuite) {
		return decodeError(msg, "cipher_suite")
	}
	if !s.ReadUint8(&p.compressionMethod) {
		return decodeError(msg, "compression_method")
	}
	exts, err := hsReadExtensions(&s, msg)
	if err != nil {
		return err
	}
	p.extensions = exts
	if !s.Empty() {
		return decodeError(msg, "trailing_data")
	}
	*m = p
	return nil
}

// helloVerifyRequestMsg is a HelloVerifyRequest (RFC 6347 §4.2.1):
//
//	struct {
//	    ProtocolVersion server_version;
//	    opaque cookie<0..2^8-1>;
//	} HelloVerifyRequest;
type helloVerifyRequestMsg struct {
	vers   uint16
	cookie []byte // <0..2^8-1>
}

func (m *helloVerifyRequestMsg) typ() uint8 { return typeHelloVerifyRequest }

func (m *helloVerifyRequestMsg) marshal() ([]byte, error) {
	const msg = "HelloVerifyRequest"
	if len(m.cookie) > hsMaxUint8Len {
		return nil, hsLengthError(msg, "cookie", len(m.cookie))
	}
	var b cryptobyte.Builder
	b.AddUint16(m.vers)
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.cookie) })
	return hsBuild(msg, &b)
}

func (m *helloVerifyRequestMsg) unmarshal(data []byte) error {
	const msg = "HelloVerifyRequest"
	var p helloVerifyRequestMsg
	s := cryptobyte.String(data)
	if !s.ReadUint16(&p.vers) {
		return decodeError(msg, "server_version")
	}
	if !hsReadOpaque8(&s, &p.cookie) {
		return decodeError(msg, "cookie")
	}
	if !s.Empty() {
		return decodeError(msg, "trailing_data")
	}
	*m = p
	return nil
}

// certificateMsg is a Certificate (RFC 5246 §7.4.2):
//
//	opaque ASN.1Cert<1..2^24-1>;
//
//	struct {
//	    ASN.1Cert certificate_list<0..2^24-1>;
//	} Certificate;
//
// An empty certificate_list (a client without a certificate) parses to nil.
type certificateMsg struct {
	certificates [][]byte // each <1..2^24-1>
}

func (m *certificateMsg) typ() uint8 { return typeCertificate }

func (m *certificateMsg) marshal() ([]byte, error) {
	const msg = "Certificate"
	total := 0
	for _, c := range m.certificates {
		if len(c) < 1 || len(c) > hsMaxUint24Len {
			return nil, hsLengthError(msg, "ASN.1Cert", len(c))
		}
		total += 3 + len(c)
		if total > hsMaxUint24Len {
			return nil, hsLengthError(msg, "certificate_list", total)
		}
	}
	var b cryptobyte.Builder
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, c := range m.certificates {
			b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(c) })
		}
	})
	return hsBuild(msg, &b)
}

func (m *certificateMsg) unmarshal(data []byte) error {
	const msg = "Certificate"
	var p certificateMsg
	s := cryptobyte.String(data)
	var list cryptobyte.String
	if !s.ReadUint24LengthPrefixed(&list) {
		return decodeError(msg, "certificate_list")
	}
	for !list.Empty() {
		var c cryptobyte.String
		if !list.ReadUint24LengthPrefixed(&c) || len(c) == 0 {
			return decodeError(msg, "ASN.1Cert")
		}
		p.certificates = append(p.certificates, hsCopy(c))
	}
	if !s.Empty() {
		return decodeError(msg, "trailing_data")
	}
	*m = p
	return nil
}

// serverKeyExchangeECDHEMsg is the ServerKeyExchange of ECDHE_ECDSA
// (RFC 4492 §5.4) with the TLS 1.2 digitally-signed form (RFC 5246 §4.7,
// §7.4.1.4.1). Only named curves are accepted.
//
//	enum { explicit_prime(1), explicit_char2(2), named_curve(3), (255) } ECCurveType;
//
//	struct {
//	    ECCurveType curve_type;
//	    select (curve_type) {
//	        case named_curve:
//	            NamedCurve namedcurve;
//	    };
//	} ECParameters;
//
//	struct {
//	    opaque point<1..2^8-1>;
//	} ECPoint;
//
//	struct {
//	    ECParameters curve_params;
//	    ECPoint public;
//	} ServerECDHParams;
//
//	struct {
//	    HashAlgorithm hash;
//	    SignatureAlgorithm signature;
//	} SignatureAndHashAlgorithm;
//
//	struct {
//	    SignatureAndHashAlgorithm algorithm;
//	    opaque signature<0..2^16-1>;
//	} DigitallySigned;
//
//	struct {
//	    select (KeyExchangeAlgorithm) {
//	        case ec_diffie_hellman:
//	            ServerECDHParams params;
//	            digitally-signed struct {
//	                opaque client_random[32];
//	                opaque server_random[32];
//	                ServerECDHParams params;
//	            } signed_params;
//	    };
//	} ServerKeyExchange;
type serverKeyExchangeECDHEMsg struct {
	namedCurve uint16 // curve_type must be named_curve(3)
	publicKey  []byte // ECPoint <1..2^8-1>
	sigAlg     uint16 // hash<<8 | signature
	signature  []byte // <0..2^16-1>
}

func (m *serverKeyExchangeECDHEMsg) typ() uint8 { return typeServerKeyExchange }

// params returns the encoded ServerECDHParams (curve_type || namedcurve ||
// point), the bytes that are signed after client_random || server_random.
// It returns nil when publicKey does not fit ECPoint <1..2^8-1>.
func (m *serverKeyExchangeECDHEMsg) params() []byte {
	if len(m.publicKey) < 1 || len(m.publicKey) > hsMaxUint8Len {
		return nil
	}
	out := make([]byte, 0, 4+len(m.publicKey))
	out = append(out, hsCurveTypeNamedCurve, byte(m.namedCurve>>8), byte(m.namedCurve), byte(len(m.publicKey)))
	return append(out, m.publicKey...)
}

func (m *serverKeyExchangeECDHEMsg) marshal() ([]byte, error) {
	const msg = "ServerKeyExchange"
	params := m.params()
	if params == nil {
		return nil, hsLengthError(msg, "public", len(m.publicKey))
	}
	if len(m.signature) > hsMaxUint16Len {
		return nil, hsLengthError(msg, "signature", len(m.signature))
	}
	var b cryptobyte.Builder
	b.AddBytes(params)
	b.AddUint16(m.sigAlg)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.signature) })
	return hsBuild(msg, &b)
}

func (m *serverKeyExchangeECDHEMsg) unmarshal(data []byte) error {
	const msg = "ServerKeyExchange"
	var p serverKeyExchangeECDHEMsg
	s := cryptobyte.String(data)
	var curveType uint8
	if !s.ReadUint8(&curveType) || curveType != hsCurveTypeNamedCurve {
		return decodeError(msg, "curve_type")
	}
	if !s.ReadUint16(&p.namedCurve) {
		return decodeError(msg, "namedcurve")
	}
	if !hsReadOpaque8(&s, &p.publicKey) || len(p.publicKey) == 0 {
		return decodeError(msg, "public")
	}
	if !s.ReadUint16(&p.sigAlg) {
		return decodeError(msg, "algorithm")
	}
	if !hsReadOpaque16(&s, &p.signature) {
		return decodeError(msg, "signature")
	}
	if !s.Empty() {
		return decodeError(msg, "trailing_data")
	}
	*m = p
	return nil
}

// serverKeyExchangePSKMsg is the ServerKeyExchange of plain PSK
// (RFC 4279 §2):
//
//	struct {
//	    select (KeyExchangeAlgorithm) {
//	        case psk:  /* NEW */
//	            opaque psk_identity_hint<0..2^16-1>;
//	    };
//	} ServerKeyExchange;
type serverKeyExchangePSKMsg struct {
	identityHint []byte // <0..2^16-1>
}

func (m *serverKeyExchangePSKMsg) typ() uint8 { return typeServerKeyExchange }

func (m *serverKeyExchangePSKMsg) marshal() ([]byte, error) {
	return hsMarshalOpaque16("ServerKeyExchange", "psk_identity_hint", m.identityHint)
}

func (m *serverKeyExchangePSKMsg) unmarshal(data []byte) error {
	return hsUnmarshalOpaque16("ServerKeyExchange", "psk_identity_hint", data, &m.identityHint)
}

// serverKeyExchangeECDHEPSKMsg is the ServerKeyExchange of ECDHE_PSK
// (RFC 5489 §2): the hint, then the unsigned ECDH parameters (ECParameters
// and ECPoint as in serverKeyExchangeECDHEMsg). It is always sent.
//
//	struct {
//	    select (KeyExchangeAlgorithm) {
//	        case ec_diffie_hellman_psk:  /* NEW */
//	            opaque psk_identity_hint<0..2^16-1>;
//	            ServerECDHParams params;
//	    };
//	} ServerKeyExchange;
type serverKeyExchangeECDHEPSKMsg struct {
	identityHint []byte // <0..2^16-1>
	namedCurve   uint16 // curve_type must be named_curve(3)
	publicKey    []byte // ECPoint <1..2^8-1>
}

func (m *serverKeyExchangeECDHEPSKMsg) typ() uint8 { return typeServerKeyExchange }

func (m *serverKeyExchangeECDHEPSKMsg) marshal() ([]byte, error) {
	const msg = "ServerKeyExchange"
	if len(m.identityHint) > hsMaxUint16Len {
		return nil, hsLengthError(msg, "psk_identity_hint", len(m.identityHint))
	}
	params := (&serverKeyExchangeECDHEMsg{namedCurve: m.namedCurve, publicKey: m.publicKey}).params()
	if params == nil {
		return nil, hsLengthError(msg, "public", len(m.publicKey))
	}
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.identityHint) })
	b.AddBytes(params)
	return hsBuild(msg, &b)
}

func (m *serverKeyExchangeECDHEPSKMsg) unmarshal(data []byte) error {
	const msg = "ServerKeyExchange"
	var p serverKeyExchangeECDHEPSKMsg
	s := cryptobyte.String(data)
	if !hsReadOpaque16(&s, &p.identityHint) {
		return decodeError(msg, "psk_identity_hint")
	}
	var curveType uint8
	if !s.ReadUint8(&curveType) || curveType != hsCurveTypeNamedCurve {
		return decodeError(msg, "curve_type")
	}
	if !s.ReadUint16(&p.namedCurve) {
		return decodeError(msg, "namedcurve")
	}
	if !hsReadOpaque8(&s, &p.publicKey) || len(p.publicKey) == 0 {
		return decodeError(msg, "public")
	}
	if !s.Empty() {
		return decodeError(msg, "trailing_data")
	}
	*m = p
	return nil
}

// clientKeyExchangeECDHEPSKMsg is the ClientKeyExchange of ECDHE_PSK
// (RFC 5489 §2): the identity, then the client's ephemeral point.
//
//	struct {
//	    select (KeyExchangeAlgorithm) {
//	        case ec_diffie_hellman_psk:  /* NEW */
//	            opaque psk_identity<0..2^16-1>;
//	            ClientECDiffieHellmanPublic public;
//	    } exchange_keys;
//	} ClientKeyExchange;
//
//	struct {
//	    opaque ecdh_Yc<1..2^8-1>;  /* explicit ECDH, as ECPoint */
//	} ClientECDiffieHellmanPublic;
type clientKeyExchangeECDHEPSKMsg struct {
	identity  []byte // <0..2^16-1>
	publicKey []byte // <1..2^8-1>
}

func (m *clientKeyExchangeECDHEPSKMsg) typ() uint8 { return typeClientKeyExchange }

func (m *clientKeyExchangeECDHEPSKMsg) marshal() ([]byte, error) {
	const msg = "ClientKeyExchange"
	if len(m.identity) > hsMaxUint16Len {
		return nil, hsLengthError(msg, "psk_identity", len(m.identity))
	}
	if len(m.publicKey) < 1 || len(m.publicKey) > hsMaxUint8Len {
		return nil, hsLengthError(msg, "ecdh_Yc", len(m.publicKey))
	}
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.identity) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.publicKey) })
	return hsBuild(msg, &b)
}

func (m *clientKeyExchangeECDHEPSKMsg) unmarshal(data []byte) error {
	const msg = "ClientKeyExchange"
	var p clientKeyExchangeECDHEPSKMsg
	s := cryptobyte.String(data)
	if !hsReadOpaque16(&s, &p.identity) {
		return decodeError(msg, "psk_identity")
	}
	if !hsReadOpaque8(&s, &p.publicKey) || len(p.publicKey) == 0 {
		return decodeError(msg, "ecdh_Yc")
	}
	if !s.Empty() {
		return decodeError(msg, "trailing_data")
	}
	*m = p
	return nil
}

// hsMarshalOpaque16 encodes a message whose body is one opaque<0..2^16-1>
// (the PSK ServerKeyExchange and ClientKeyExchange, RFC 4279 §2).
func hsMarshalOpaque16(msg, field string, v []byte) ([]byte, error) {
	if len(v) > hsMaxUint16Len {
		return nil, hsLengthError(msg, field, len(v))
	}
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(v) })
	return hsBuild(msg, &b)
}

// hsUnmarshalOpaque16 parses such a body into dst, which it leaves alone on
// error.
func hsUnmarshalOpaque16(msg, field string, data []byte, dst *[]byte) error {
	var v []byte
	s := cryptobyte.String(data)
	if !hsReadOpaque16(&s, &v) {
		return decodeError(msg, field)
	}
	if !s.Empty() {
		return decodeError(msg, "trailing_data")
	}
	*dst = v
	return nil
}

// certificateRequestMsg is a TLS 1.2 CertificateRequest (RFC 5246 §7.4.4):
//
//	enum {
//	    rsa_sign(1), dss_sign(2), rsa_fixed_dh(3), dss_fixed_dh(4),
//	    rsa_ephemeral_dh_RESERVED(5), dss_ephemeral_dh_RESERVED(6),
//	    fortezza_dms_RESERVED(20), ecdsa_sign(64), (255)
//	} ClientCertificateType;
//
//	opaque DistinguishedName<1..2^16-1>;
//
//	struct {
//	    ClientCertificateType certificate_types<1..2^8-1>;
//	    SignatureAndHashAlgorithm
//	      supported_signature_algorithms<2..2^16-2>;
//	    DistinguishedName certificate_authorities<0..2^16-1>;
//	} CertificateRequest;
//
// An empty certificate_authorities parses to nil.
type certificateRequestMsg struct {
	certificateTypes    []uint8  // <1..2^8-1>
	signatureAlgorithms []uint16 // <2..2^16-2>
	authorities         [][]byte // certificate_authorities<0..2^16-1>, each <1..2^16-1>
}

func (m *certificateRequestMsg) typ() uint8 { return typeCertificateRequest }

func (m *certificateRequestMsg) marshal() ([]byte, error) {
	const msg = "CertificateRequest"
	if len(m.certificateTypes) < 1 || len(m.certificateTypes) > hsMaxUint8Len {
		return nil, hsLengthError(msg, "certificate_types", len(m.certificateTypes))
	}
	if !hsUint16VectorOK(m.signatureAlgorithms) {
		return nil, hsLengthError(msg, "supported_signature_algorithms", 2*len(m.signatureAlgorithms))
	}
	total := 0
	for _, dn := range m.authorities {
		if len(dn) < 1 || len(dn) > hsMaxUint16Len {
			return nil, hsLengthError(msg, "DistinguishedName", len(dn))
		}
		total += 2 + len(dn)
		if total > hsMaxUint16Len {
			return nil, hsLengthError(msg, "certificate_authorities", total)
		}
	}
	var b cryptobyte.Builder
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.certificateTypes) })
	hsAddUint16Vector(&b, m.signatureAlgorithms)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, dn := range m.authorities {
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(dn) })
		}
	})
	return hsBuild(msg, &b)
}

func (m *certificateRequestMsg) unmarshal(data []byte) error {
	const msg = "CertificateRequest"
	var p certificateRequestMsg
	s := cryptobyte.String(data)
	if !hsReadOpaque8(&s, &p.certificateTypes) || len(p.certificateTypes) == 0 {
		return decodeError(msg, "certificate_types")
	}
	if !hsReadUint16Vector(&s, &p.signatureAlgorithms) {
		return decodeError(msg, "supported_signature_algorithms")
	}
	var cas cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&cas) {
		return decodeError(msg, "certificate_authorities")
	}
	for !cas.Empty() {
		var dn cryptobyte.String
		if !cas.ReadUint16LengthPrefixed(&dn) || len(dn) == 0 {
			return decodeError(msg, "DistinguishedName")
		}
		p.authorities = append(p.authorities, hsCopy(dn))
	}
	if !s.Empty() {
		return decodeError(msg, "trailing_data")
	}
	*m = p
	return nil
}

// serverHelloDoneMsg is a ServerHelloDone (RFC 5246 §7.4.5), whose body is
// empty:
//
//	struct { } ServerHelloDone;
type serverHelloDoneMsg struct{}

func (m *serverHelloDoneMsg) typ() uint8 { return typeServerHelloDone }

func (m *serverHelloDoneMsg) marshal() ([]byte, error) { return []byte{}, nil }

func (m *serverHelloDoneMsg) unmarshal(data []byte) error {
	if len(data) != 0 {
		return decodeError("ServerHelloDone", "trailing_data")
	}
	return nil
}

// clientKeyExchangePSKMsg is the ClientKeyExchange of plain PSK
// (RFC 4279 §2):
//
//	struct {
//	    select (KeyExchangeAlgorithm) {
//	        case psk:  /* NEW */
//	            opaque psk_identity<0..2^16-1>;
//	    } exchange_keys;
//	} ClientKeyExchange;
type clientKeyExchangePSKMsg struct {
	identity []byte // <0..2^16-1>
}

func (m *clientKeyExchangePSKMsg) typ() uint8 { return typeClientKeyExchange }

func (m *clientKeyExchangePSKMsg) marshal() ([]byte, error) {
	return hsMarshalOpaque16("ClientKeyExchange", "psk_identity", m.identity)
}

func (m *clientKeyExchangePSKMsg) unmarshal(data []byte) error {
	return hsUnmarshalOpaque16("ClientKeyExchange", "psk_identity", data, &m.identity)
}

// clientKeyExchangeECDHEMsg is the ClientKeyExchange of ECDHE (RFC 4492
// §5.7) with an explicit public value; the implicit encoding (fixed ECDH
// client certificates) is not supported.
//
//	struct {
//	    select (PublicValueEncoding) {
//	        case implicit: struct { };
//	        case explicit: ECPoint ecdh_Yc;
//	    } ecdh_public;
//	} ClientECDiffieHellmanPublic;
//
//	struct {
//	    opaque point<1..2^8-1>;
//	} ECPoint;
type clientKeyExchangeECDHEMsg struct {
	publicKey []byte // ECPoint <1..2^8-1>
}

func (m *clientKeyExchangeECDHEMsg) typ() uint8 { return typeClientKeyExchange }

func (m *clientKeyExchangeECDHEMsg) marshal() ([]byte, error) {
	const msg = "ClientKeyExchange"
	if len(m.publicKey) < 1 || len(m.publicKey) > hsMaxUint8Len {
		return nil, hsLengthError(msg, "ecdh_Yc", len(m.publicKey))
	}
	var b cryptobyte.Builder
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.publicKey) })
	return hsBuild(msg, &b)
}

func (m *clientKeyExchangeECDHEMsg) unmarshal(data []byte) error {
	const msg = "ClientKeyExchange"
	var p clientKeyExchangeECDHEMsg
	s := cryptobyte.String(data)
	if !hsReadOpaque8(&s, &p.publicKey) || len(p.publicKey) == 0 {
		return decodeError(msg, "ecdh_Yc")
	}
	if !s.Empty() {
		return decodeError(msg, "trailing_data")
	}
	*m = p
	return nil
}

// certificateVerifyMsg is a TLS 1.2 CertificateVerify (RFC 5246 §7.4.8),
// whose digitally-signed struct is encoded as a DigitallySigned (§4.7):
//
//	struct {
//	    digitally-signed struct {
//	        opaque handshake_messages[handshake_messages_length];
//	    }
//	} CertificateVerify;
//
//	struct {
//	    SignatureAndHashAlgorithm algorithm;
//	    opaque signature<0..2^16-1>;
//	} DigitallySigned;
type certificateVerifyMsg struct {
	sigAlg    uint16 // hash<<8 | signature
	signature []byte // <0..2^16-1>
}

func (m *certificateVerifyMsg) typ() uint8 { return typeCertificateVerify }

func (m *certificateVerifyMsg) marshal() ([]byte, error) {
	const msg = "CertificateVerify"
	if len(m.signature) > hsMaxUint16Len {
		return nil, hsLengthError(msg, "signature", len(m.signature))
	}
	var b cryptobyte.Builder
	b.AddUint16(m.sigAlg)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.signature) })
	return hsBuild(msg, &b)
}

func (m *certificateVerifyMsg) unmarshal(data []byte) error {
	const msg = "CertificateVerify"
	var p certificateVerifyMsg
	s := cryptobyte.String(data)
	if !s.ReadUint16(&p.sigAlg) {
		return decodeError(msg, "algorithm")
	}
	if !hsReadOpaque16(&s, &p.signature) {
		return decodeError(msg, "signature")
	}
	if !s.Empty() {
		return decodeError(msg, "trailing_data")
	}
	*m = p
	return nil
}

// finishedMsg is a Finished (RFC 5246 §7.4.9). verify_data is the whole
// body; its length is 12 for every cipher suite this engine supports, and
// both marshal and unmarshal insist on it.
//
//	struct {
//	    opaque verify_data[verify_data_length];
//	} Finished;
type finishedMsg struct {
	verifyData []byte // [12]
}

func (m *finishedMsg) typ() uint8 { return typeFinished }

func (m *finishedMsg) marshal() ([]byte, error) {
	if len(m.verifyData) != hsFinishedLen {
		return nil, hsLengthError("Finished", "verify_data", len(m.verifyData))
	}
	return append([]byte(nil), m.verifyData...), nil
}

func (m *finishedMsg) unmarshal(data []byte) error {
	if len(data) != hsFinishedLen {
		return decodeError("Finished", "verify_data")
	}
	m.verifyData = append([]byte(nil), data...)
	return nil
}

// newSessionTicketMsg is a NewSessionTicket (RFC 5077 §3.3):
//
//	struct {
//	    uint32 ticket_lifetime_hint;
//	    opaque ticket<0..2^16-1>;
//	} NewSessionTicket;
//
// An empty ticket (the server declines to issue one) parses to nil.
type newSessionTicketMsg struct {
	lifetimeHint uint32
	ticket       []byte // <0..2^16-1>
}

func (m *newSessionTicketMsg) typ() uint8 { return typeNewSessionTicket }

func (m *newSessionTicketMsg) marshal() ([]byte, error) {
	const msg = "NewSessionTicket"
	if len(m.ticket) > hsMaxUint16Len {
		return nil, hsLengthError(msg, "ticket", len(m.ticket))
	}
	var b cryptobyte.Builder
	b.AddUint32(m.lifetimeHint)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.ticket) })
	return hsBuild(msg, &b)
}

func (m *newSessionTicketMsg) unmarshal(data []byte) error {
	const msg = "NewSessionTicket"
	var p newSessionTicketMsg
	s := cryptobyte.String(data)
	if !s.ReadUint32(&p.lifetimeHint) {
		return decodeError(msg, "ticket_lifetime_hint")
	}
	if !hsReadOpaque16(&s, &p.ticket) {
		return decodeError(msg, "ticket")
	}
	if !s.Empty() {
		return decodeError(msg, "trailing_data")
	}
	*m = p
	return nil
}

// Typed extension_data codecs. The marshal helpers have no error result:
// their inputs come from configuration and code, so a value that does not
// fit its vector range is a programming error and they panic. The parse
// helpers never panic and return decodeError errors.

// hsMustBuild returns the bytes of b, panicking if the builder failed.
func hsMustBuild(b *cryptobyte.Builder) []byte {
	out := b.BytesOrPanic()
	if out == nil {
		out = []byte{}
	}
	return out
}

// marshalSupportedGroups encodes the supported_groups (formerly
// elliptic_curves) extension_data (RFC 8422 §5.1.1, RFC 4492 §5.1.1):
//
//	enum { secp256r1(23), secp384r1(24), x25519(29), (0xFFFF) } NamedCurve;
//
//	struct {
//	    NamedCurve named_curve_list<2..2^16-2>;
//	} NamedCurveList;
//
// groups must hold 1 to 32767 entries.
func marshalSupportedGroups(groups []uint16) []byte {
	if !hsUint16VectorOK(groups) {
		panic(hsLengthError("supported_groups", "named_curve_list", 2*len(groups)))
	}
	var b cryptobyte.Builder
	hsAddUint16Vector(&b, groups)
	return hsMustBuild(&b)
}

// parseSupportedGroups decodes the supported_groups extension_data.
func parseSupportedGroups(data []byte) ([]uint16, error) {
	const msg = "supported_groups"
	s := cryptobyte.String(data)
	var groups []uint16
	if !hsReadUint16Vector(&s, &groups) {
		return nil, decodeError(msg, "named_curve_list")
	}
	if !s.Empty() {
		return nil, decodeError(msg, "trailing_data")
	}
	return groups, nil
}

// marshalECPointFormats encodes the ec_point_formats extension_data
// (RFC 4492 §5.1.2):
//
//	enum {
//	    uncompressed(0), ansiX962_compressed_prime(1),
//	    ansiX962_compressed_char2(2), reserved(248..255)
//	} ECPointFormat;
//
//	struct {
//	    ECPointFormat ec_point_format_list<1..2^8-1>
//	} ECPointFormatList;
//
// f must hold 1 to 255 entries.
func marshalECPointFormats(f []uint8) []byte {
	if len(f) < 1 || len(f) > hsMaxUint8Len {
		panic(hsLengthError("ec_point_formats", "ec_point_format_list", len(f)))
	}
	var b cryptobyte.Builder
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(f) })
	return hsMustBuild(&b)
}

// parseECPointFormats decodes the ec_point_formats extension_data.
func parseECPointFormats(data []byte) ([]uint8, error) {
	const msg = "ec_point_formats"
	s := cryptobyte.String(data)
	var f []uint8
	if !hsReadOpaque8(&s, &f) || len(f) == 0 {
		return nil, decodeError(msg, "ec_point_format_list")
	}
	if !s.Empty() {
		return nil, decodeError(msg, "trailing_data")
	}
	return f, nil
}

// marshalSignatureAlgorithms encodes the signature_algorithms
// extension_data (RFC 5246 §7.4.1.4.1):
//
//	enum {
//	    none(0), md5(1), sha1(2), sha224(3), sha256(4), sha384(5),
//	    sha512(6), (255)
//	} HashAlgorithm;
//
//	enum { anonymous(0), rsa(1), dsa(2), ecdsa(3), (255) }
//	  SignatureAlgorithm;
//
//	struct {
//	    HashAlgorithm hash;
//	    SignatureAlgorithm signature;
//	} SignatureAndHashAlgorithm;
//
//	SignatureAndHashAlgorithm
//	  supported_signature_algorithms<2..2^16-2>;
//
// Each entry of a is hash<<8 | signature; a must hold 1 to 32767 entries.
func marshalSignatureAlgorithms(a []uint16) []byte {
	if !hsUint16VectorOK(a) {
		panic(hsLengthError("signature_algorithms", "supported_signature_algorithms", 2*len(a)))
	}
	var b cryptobyte.Builder
	hsAddUint16Vector(&b, a)
	return hsMustBuild(&b)
}

// parseSignatureAlgorithms decodes the signature_algorithms extension_data.
func parseSignatureAlgorithms(data []byte) ([]uint16, error) {
	const msg = "signature_algorithms"
	s := cryptobyte.String(data)
	var a []uint16
	if !hsReadUint16Vector(&s, &a) {
		return nil, decodeError(msg, "supported_signature_algorithms")
	}
	if !s.Empty() {
		return nil, decodeError(msg, "trailing_data")
	}
	return a, nil
}

// marshalServerName encodes the server_name extension_data of a ClientHello
// (RFC 6066 §3) with one host_name entry:
//
//	struct {
//	    NameType name_type;
//	    select (name_type) {
//	        case host_name: HostName;
//	    } name;
//	} ServerName;
//
//	enum {
//	    host_name(0), (255)
//	} NameType;
//
//	opaque HostName<1..2^16-1>;
//
//	struct {
//	    ServerName server_name_list<1..2^16-1>
//	} ServerNameList;
//
// host must be non-empty and at most 65532 bytes long. (A server's
// acknowledging server_name extension has empty extension_data and needs no
// helper.)
func marshalServerName(host string) []byte {
	if len(host) < 1 || len(host) > hsMaxUint16Len-3 {
		panic(hsLengthError("server_name", "HostName", len(host)))
	}
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint8(hsNameTypeHostName)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(host)) })
	})
	return hsMustBuild(&b)
}

// parseServerName decodes the server_name extension_data of a ClientHello
// and returns its host_name, or "" when the list holds no host_name entry.
// Entries of other name types are skipped; like every name type defined so
// far they are taken to carry a <1..2^16-1> opaque name. More than one
// host_name, an empty name and a host_name with a trailing dot are
// rejected.
func parseServerName(data []byte) (string, error) {
	const msg = "server_name"
	s := cryptobyte.String(data)
	var list cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&list) || list.Empty() {
		return "", decodeError(msg, "server_name_list")
	}
	if !s.Empty() {
		return "", decodeError(msg, "trailing_data")
	}
	host, found := "", false
	for !list.Empty() {
		var nameType uint8
		var name cryptobyte.String
		if !list.ReadUint8(&nameType) {
			return "", decodeError(msg, "name_type")
		}
		if !list.ReadUint16LengthPrefixed(&name) || name.Empty() {
			return "", decodeError(msg, "HostName")
		}
		if nameType != hsNameTypeHostName {
			continue
		}
		if found || name[len(name)-1] == '.' {
			return "", decodeError(msg, "HostName")
		}
		host, found = string(name), true
	}
	return host, nil
}

// marshalRenegotiationInfo encodes the renegotiation_info extension_data
// (RFC 5746 §3.2):
//
//	struct {
//	    opaque renegotiated_connection<0..255>;
//	} RenegotiationInfo;
//
// v must be at most 255 bytes long; it is empty on an initial handshake.
func marshalRenegotiationInfo(v []byte) []byte {
	if len(v) > hsMaxUint8Len {
		panic(hsLengthError("renegotiation_info", "renegotiated_connection", len(v)))
	}
	var b cryptobyte.Builder
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(v) })
	return hsMustBuild(&b)
}

// CertificateType values (RFC 7250 §3).
const (
	certTypeX509         uint8 = 0
	certTypeRawPublicKey uint8 = 2
)

// client_certificate_type and server_certificate_type extension_data
// (RFC 7250 §3): a ClientHello lists the types it supports, in preference
// order; a ServerHello names the one chosen.
//
//	struct {
//	    select (ClientOrServerExtension) {
//	        case client: CertificateType types<1..2^8-1>;
//	        case server: CertificateType type;
//	    };
//	} ClientCertTypeExtension, ServerCertTypeExtension;
func marshalCertTypes(types []uint8) []byte {
	if len(types) < 1 || len(types) > hsMaxUint8Len {
		panic(hsLengthError("certificate_type", "types", len(types)))
	}
	var b cryptobyte.Builder
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(types) })
	return hsMustBuild(&b)
}

// parseCertTypes decodes a ClientHello's certificate type list.
func parseCertTypes(data []byte) ([]uint8, error) {
	const msg = "certificate_type"
	s := cryptobyte.String(data)
	var v []byte
	if !hsReadOpaque8(&s, &v) || len(v) == 0 {
		return nil, decodeError(msg, "types")
	}
	if !s.Empty() {
		return nil, decodeError(msg, "trailing_data")
	}
	return v, nil
}

// parseCertType decodes a ServerHello's chosen certificate type.
func parseCertType(data []byte) (uint8, error) {
	if len(data) != 1 {
		return 0, decodeError("certificate_type", "type")
	}
	return data[0], nil
}

// rawPublicKeyMsg is a Certificate message that carries a raw public key
// (RFC 7250 §3) instead of a certificate_list.
//
//	struct {
//	    opaque ASN.1_subjectPublicKeyInfo<1..2^24-1>;
//	} Certificate;
type rawPublicKeyMsg struct {
	spki []byte
}

func (m *rawPublicKeyMsg) typ() uint8 { return typeCertificate }

func (m *rawPublicKeyMsg) marshal() ([]byte, error) {
	const msg = "Certificate"
	if len(m.spki) < 1 || len(m.spki) > hsMaxUint24Len {
		return nil, hsLengthError(msg, "ASN.1_subjectPublicKeyInfo", len(m.spki))
	}
	var b cryptobyte.Builder
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(m.spki) })
	return hsBuild(msg, &b)
}

func (m *rawPublicKeyMsg) unmarshal(data []byte) error {
	const msg = "Certificate"
	s := cryptobyte.String(data)
	var v cryptobyte.String
	if !s.ReadUint24LengthPrefixed(&v) || len(v) == 0 {
		return decodeError(msg, "ASN.1_subjectPublicKeyInfo")
	}
	if !s.Empty() {
		return decodeError(msg, "trailing_data")
	}
	m.spki = hsCopy(v)
	return nil
}

// connection_id extension_data (RFC 9146 §3): the CID the sender wants to
// receive in the records sent to it; empty means it needs none.
//
//	struct {
//	    opaque cid<0..2^8-1>;
//	} ConnectionId;
func marshalConnectionID(cid []byte) []byte {
	if len(cid) > hsMaxUint8Len {
		panic(hsLengthError("connection_id", "cid", len(cid)))
	}
	var b cryptobyte.Builder
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(cid) })
	return hsMustBuild(&b)
}

// parseConnectionID decodes the connection_id extension_data.
func parseConnectionID(data []byte) ([]byte, error) {
	const msg = "connection_id"
	s := cryptobyte.String(data)
	var v []byte
	if !hsReadOpaque8(&s, &v) {
		return nil, decodeError(msg, "cid")
	}
	if !s.Empty() {
		return nil, decodeError(msg, "trailing_data")
	}
	return v, nil
}

// parseRenegotiationInfo decodes the renegotiation_info extension_data and
// returns renegotiated_connection (nil when empty).
func parseRenegotiationInfo(data []byte) ([]byte, error) {
	const msg = "renegotiation_info"
	s := cryptobyte.String(data)
	var v []byte
	if !hsReadOpaque8(&s, &v) {
		return nil, decodeError(msg, "renegotiated_connection")
	}
	if !s.Empty() {
		return nil, decodeError(msg, "trailing_data")
	}
	return v, nil
}
