package dtls

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// hsHex decodes hex with any whitespace in it; it is for test vectors only.
func hsHex(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic(err)
	}
	return b
}

// hsSeq returns the bytes 0, 1, 2, ... n-1 offset by start.
func hsSeq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func hsRandom(start byte) [32]byte {
	var r [32]byte
	copy(r[:], hsSeq(start, 32))
	return r
}

// handshakeMessageSample is a valid message. Empty opaque fields are nil,
// as the parsers produce them.
type handshakeMessageSample struct {
	name string
	msg  handshakeMessage
}

func handshakeMessageSamples() []handshakeMessageSample {
	return []handshakeMessageSample{
		{"ClientHello/full", &clientHelloMsg{
			vers:               versionDTLS12,
			random:             hsRandom(1),
			sessionID:          hsSeq(0x40, 32),
			cookie:             hsSeq(0x80, 20),
			cipherSuites:       []uint16{0xc0ae, 0xc02b, 0xc0a8, 0x00ff},
			compressionMethods: []uint8{0},
			extensions: []extension{
				{typ: extServerName, data: marshalServerName("coap.example")},
				{typ: extSupportedGroups, data: marshalSupportedGroups([]uint16{29, 23})},
				{typ: 0xff42, data: []byte("opaque to this engine")},
				{typ: extECPointFormats, data: marshalECPointFormats([]uint8{0})},
				{typ: extSignatureAlgorithms, data: marshalSignatureAlgorithms([]uint16{0x0403, 0x0503})},
				{typ: extEncryptThenMAC},
				{typ: extExtendedMasterSecret},
				{typ: extSessionTicket, data: hsSeq(0xa0, 40)},
				{typ: extRenegotiationInfo, data: marshalRenegotiationInfo(nil)},
			},
		}},
		{"ClientHello/no-extensions", &clientHelloMsg{
			vers:               versionDTLS10,
			random:             hsRandom(2),
			cipherSuites:       []uint16{0x00ae},
			compressionMethods: []uint8{0},
		}},
		{"ClientHello/empty-extensions", &clientHelloMsg{
			vers:               versionDTLS12,
			random:             hsRandom(3),
			cookie:             []byte{1},
			cipherSuites:       []uint16{0xc0a8, 0xc0ae},
			compressionMethods: []uint8{1, 0},
			extensions:         []extension{},
		}},
		{"ServerHello/extensions", &serverHelloMsg{
			vers:              versionDTLS12,
			random:            hsRandom(4),
			sessionID:         hsSeq(9, 16),
			cipherSuite:       0xc0ae,
			compressionMethod: 0,
			extensions: []extension{
				{typ: extRenegotiationInfo, data: marshalRenegotiationInfo(nil)},
				{typ: extExtendedMasterSecret},
				{typ: 0xff42, data: []byte{1, 2, 3}},
				{typ: extSessionTicket},
				{typ: extECPointFormats, data: marshalECPointFormats([]uint8{0})},
			},
		}},
		{"ServerHello/no-extensions", &serverHelloMsg{
			vers:        versionDTLS12,
			random:      hsRandom(5),
			cipherSuite: 0x00ae,
		}},
		{"HelloVerifyRequest/cookie", &helloVerifyRequestMsg{vers: versionDTLS10, cookie: hsSeq(0x10, 32)}},
		{"HelloVerifyRequest/empty", &helloVerifyRequestMsg{vers: versionDTLS12}},
		{"Certificate/two", &certificateMsg{certificates: [][]byte{hsSeq(0x30, 300), {0x30}}}},
		{"Certificate/empty", &certificateMsg{}},
		{"ServerKeyExchangeECDHE/p256", &serverKeyExchangeECDHEMsg{
			namedCurve: 23,
			publicKey:  append([]byte{4}, hsSeq(0x11, 64)...),
			sigAlg:     0x0403,
			signature:  hsSeq(0x30, 71),
		}},
		{"ServerKeyExchangeECDHE/x25519-unsigned", &serverKeyExchangeECDHEMsg{
			namedCurve: 29,
			publicKey:  hsSeq(0x20, 32),
			sigAlg:     0x0807,
		}},
		{"ServerKeyExchangePSK/hint", &serverKeyExchangePSKMsg{identityHint: []byte("gateway-7")}},
		{"ServerKeyExchangePSK/empty", &serverKeyExchangePSKMsg{}},
		{"ServerKeyExchangeECDHEPSK/hint-x25519", &serverKeyExchangeECDHEPSKMsg{identityHint: []byte("gw"), namedCurve: 29, publicKey: hsSeq(0x20, 32)}},
		{"ServerKeyExchangeECDHEPSK/no-hint-p256", &serverKeyExchangeECDHEPSKMsg{namedCurve: 23, publicKey: append([]byte{4}, hsSeq(0x11, 64)...)}},
		{"CertificateRequest/authorities", &certificateRequestMsg{
			certificateTypes:    []uint8{64, 1},
			signatureAlgorithms: []uint16{0x0403, 0x0401},
			authorities:         [][]byte{hsSeq(0x30, 50), {0x30}},
		}},
		{"CertificateRequest/no-authorities", &certificateRequestMsg{
			certificateTypes:    []uint8{64},
			signatureAlgorithms: []uint16{0x0403},
		}},
		{"ServerHelloDone", &serverHelloDoneMsg{}},
		{"RawPublicKey/p256", &rawPublicKeyMsg{spki: hsSeq(0x30, 91)}},
		{"ClientKeyExchangePSK/identity", &clientKeyExchangePSKMsg{identity: []byte("device-0042")}},
		{"ClientKeyExchangePSK/empty", &clientKeyExchangePSKMsg{}},
		{"ClientKeyExchangeECDHE/p256", &clientKeyExchangeECDHEMsg{publicKey: append([]byte{4}, hsSeq(0x51, 64)...)}},
		{"ClientKeyExchangeECDHE/x25519", &clientKeyExchangeECDHEMsg{publicKey: hsSeq(0x61, 32)}},
		{"ClientKeyExchangeECDHEPSK/identity-x25519", &clientKeyExchangeECDHEPSKMsg{identity: []byte("device-0042"), publicKey: hsSeq(0x61, 32)}},
		{"ClientKeyExchangeECDHEPSK/empty-identity", &clientKeyExchangeECDHEPSKMsg{publicKey: append([]byte{4}, hsSeq(0x51, 64)...)}},
		{"CertificateVerify/ecdsa", &certificateVerifyMsg{sigAlg: 0x0403, signature: hsSeq(0x30, 70)}},
		{"CertificateVerify/empty", &certificateVerifyMsg{sigAlg: 0x0401}},
		{"Finished", &finishedMsg{verifyData: hsSeq(0xe0, 12)}},
		{"NewSessionTicket/ticket", &newSessionTicketMsg{lifetimeHint: 7200, ticket: hsSeq(0x70, 120)}},
		{"NewSessionTicket/empty", &newSessionTicketMsg{lifetimeHint: 0xffffffff}},
	}
}

// hsNewLike returns a new zero message of the same type as m.
func hsNewLike(m handshakeMessage) handshakeMessage {
	return reflect.New(reflect.TypeOf(m).Elem()).Interface().(handshakeMessage)
}

// hsAssertDecodeError checks that err is a decode error raising decode_error.
func hsAssertDecodeError(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: parsed without error", what)
	}
	if !errors.Is(err, errDecode) {
		t.Fatalf("%s: error %v does not wrap errDecode", what, err)
	}
	var ae *AlertError
	if !errors.As(err, &ae) || alertDescription(ae.Description) != alertDecodeError || ae.Remote {
		t.Fatalf("%s: error %v is not a local decode_error alert", what, err)
	}
}

// hsParse runs unmarshal and turns a panic into a test failure.
func hsParse(t *testing.T, m handshakeMessage, data []byte) (err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("unmarshal of %x panicked: %v", data, r)
		}
	}()
	return m.unmarshal(data)
}

func TestHandshakeMessageRoundTrip(t *testing.T) {
	wantTyp := map[string]uint8{
		"ClientHello": typeClientHello, "ServerHello": typeServerHello,
		"HelloVerifyRequest": typeHelloVerifyRequest, "Certificate": typeCertificate,
		"ServerKeyExchangeECDHE": typeServerKeyExchange, "ServerKeyExchangePSK": typeServerKeyExchange,
		"CertificateRequest": typeCertificateRequest, "ServerHelloDone": typeServerHelloDone,
		"ClientKeyExchangePSK": typeClientKeyExchange, "ClientKeyExchangeECDHE": typeClientKeyExchange,
		"CertificateVerify": typeCertificateVerify, "Finished": typeFinished,
		"NewSessionTicket":          typeNewSessionTicket,
		"ServerKeyExchangeECDHEPSK": typeServerKeyExchange, "ClientKeyExchangeECDHEPSK": typeClientKeyExchange,
		"RawPublicKey": typeCertificate,
	}
	for _, s := range handshakeMessageSamples() {
		t.Run(s.name, func(t *testing.T) {
			kind, _, _ := strings.Cut(s.name, "/")
			if got, want := s.msg.typ(), wantTyp[kind]; got != want {
				t.Errorf("typ() = %d, want %d", got, want)
			}
			data, err := s.msg.marshal()
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			if data == nil {
				t.Fatalf("marshal returned nil bytes")
			}
			got := hsNewLike(s.msg)
			if err := hsParse(t, got, data); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			if !reflect.DeepEqual(got, s.msg) {
				t.Fatalf("round trip mismatch:\n got %#v\nwant %#v", got, s.msg)
			}
			again, err := got.marshal()
			if err != nil {
				t.Fatalf("re-marshal: %v", err)
			}
			if !bytes.Equal(again, data) {
				t.Fatalf("re-marshal differs:\n got %x\nwant %x", again, data)
			}
		})
	}
}

// TestHandshakeMessageNoAliasing checks that parsed fields are copies: the
// record layer may reuse its buffers.
func TestHandshakeMessageNoAliasing(t *testing.T) {
	for _, s := range handshakeMessageSamples() {
		data, err := s.msg.marshal()
		if err != nil {
			t.Fatalf("%s: marshal: %v", s.name, err)
		}
		buf := append([]byte(nil), data...)
		m := hsNewLike(s.msg)
		if err := hsParse(t, m, buf); err != nil {
			t.Fatalf("%s: unmarshal: %v", s.name, err)
		}
		for i := range buf {
			buf[i] ^= 0xff
		}
		if !reflect.DeepEqual(m, s.msg) {
			t.Errorf("%s: parsed message changed with its input buffer", s.name)
		}
	}
}

// hsWithoutExtensions returns the marshaled length of a hello without its
// extensions block, the one prefix of it that is itself a valid hello; -1 for
// other messages or hellos without a block.
func hsWithoutExtensions(t *testing.T, m handshakeMessage) int {
	var short handshakeMessage
	switch m := m.(type) {
	case *clientHelloMsg:
		if m.extensions == nil {
			return -1
		}
		c := *m
		c.extensions = nil
		short = &c
	case *serverHelloMsg:
		if m.extensions == nil {
			return -1
		}
		c := *m
		c.extensions = nil
		short = &c
	default:
		return -1
	}
	b, err := short.marshal()
	if err != nil {
		t.Fatal(err)
	}
	return len(b)
}

func TestHandshakeMessageTruncated(t *testing.T) {
	for _, s := range handshakeMessageSamples() {
		data, err := s.msg.marshal()
		if err != nil {
			t.Fatalf("%s: marshal: %v", s.name, err)
		}
		validPrefix := hsWithoutExtensions(t, s.msg)
		for n := 0; n < len(data); n++ {
			m := hsNewLike(s.msg)
			err := hsParse(t, m, data[:n])
			if n == validPrefix {
				if err != nil {
					t.Errorf("%s: hello cut before its extensions block: %v", s.name, err)
				}
				continue
			}
			hsAssertDecodeError(t, err, s.name+" truncated")
		}
	}
}

func TestHandshakeMessageTrailingData(t *testing.T) {
	for _, s := range handshakeMessageSamples() {
		data, err := s.msg.marshal()
		if err != nil {
			t.Fatalf("%s: marshal: %v", s.name, err)
		}
		for _, extra := range [][]byte{{0}, {0xff}, {0, 0, 0}, {0, 0, 0, 0, 0}} {
			m := hsNewLike(s.msg)
			err := hsParse(t, m, append(append([]byte(nil), data...), extra...))
			hsAssertDecodeError(t, err, s.name+" with trailing bytes")
		}
	}
}

// TestHandshakeMessageUnchangedOnError checks that a failed unmarshal leaves
// the receiver alone.
func TestHandshakeMessageUnchangedOnError(t *testing.T) {
	for _, s := range handshakeMessageSamples() {
		data, err := s.msg.marshal()
		if err != nil {
			t.Fatalf("%s: marshal: %v", s.name, err)
		}
		m := hsNewLike(s.msg)
		if err := hsParse(t, m, data); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if err := hsParse(t, m, append(data, 0xff)); err == nil {
			t.Fatalf("%s: trailing byte accepted", s.name)
		}
		if !reflect.DeepEqual(m, s.msg) {
			t.Errorf("%s: failed unmarshal modified the receiver", s.name)
		}
	}
}

// 32 bytes of random for hand-written hellos.
const hsR = "000102030405060708090a0b0c0d0e0f 101112131415161718191a1b1c1d1e1f"

func TestHandshakeMessageMalformed(t *testing.T) {
	ch := func() handshakeMessage { return new(clientHelloMsg) }
	sh := func() handshakeMessage { return new(serverHelloMsg) }
	hvr := func() handshakeMessage { return new(helloVerifyRequestMsg) }
	cert := func() handshakeMessage { return new(certificateMsg) }
	skeEC := func() handshakeMessage { return new(serverKeyExchangeECDHEMsg) }
	skePSK := func() handshakeMessage { return new(serverKeyExchangePSKMsg) }
	cr := func() handshakeMessage { return new(certificateRequestMsg) }
	shd := func() handshakeMessage { return new(serverHelloDoneMsg) }
	ckePSK := func() handshakeMessage { return new(clientKeyExchangePSKMsg) }
	ckeEC := func() handshakeMessage { return new(clientKeyExchangeECDHEMsg) }
	skeECPSK := func() handshakeMessage { return new(serverKeyExchangeECDHEPSKMsg) }
	ckeECPSK := func() handshakeMessage { return new(clientKeyExchangeECDHEPSKMsg) }
	cv := func() handshakeMessage { return new(certificateVerifyMsg) }
	fin := func() handshakeMessage { return new(finishedMsg) }
	nst := func() handshakeMessage { return new(newSessionTicketMsg) }

	sid33 := "21" + hex.EncodeToString(hsSeq(0, 33))
	tests := []struct {
		name   string
		newMsg func() handshakeMessage
		body   string
	}{
		{"ClientHello/empty", ch, ""},
		{"ClientHello/version-only", ch, "fefd"},
		{"ClientHello/short-random", ch, "fefd 0001020304"},
		{"ClientHello/session_id-33", ch, "fefd" + hsR + sid33 + "00 0002c02b 0100"},
		{"ClientHello/session_id-overrun", ch, "fefd" + hsR + "05 0102"},
		{"ClientHello/cookie-overrun", ch, "fefd" + hsR + "00 20 0102"},
		{"ClientHello/cookie-missing", ch, "fefd" + hsR + "00"},
		{"ClientHello/cipher_suites-empty", ch, "fefd" + hsR + "00 00 0000 0100"},
		{"ClientHello/cipher_suites-odd", ch, "fefd" + hsR + "00 00 0003 c02b00 0100"},
		{"ClientHello/cipher_suites-one-byte", ch, "fefd" + hsR + "00 00 0001 c0 0100"},
		{"ClientHello/cipher_suites-overrun", ch, "fefd" + hsR + "00 00 0004 c02b 0100"},
		{"ClientHello/compression-empty", ch, "fefd" + hsR + "00 00 0002 c02b 00"},
		{"ClientHello/compression-missing", ch, "fefd" + hsR + "00 00 0002 c02b"},
		{"ClientHello/compression-overrun", ch, "fefd" + hsR + "00 00 0002 c02b 02 00"},
		{"ClientHello/extensions-length-one-byte", ch, "fefd" + hsR + "00 00 0002 c02b 0100 00"},
		{"ClientHello/extensions-overrun", ch, "fefd" + hsR + "00 00 0002 c02b 0100 0005 0017 0000"},
		{"ClientHello/extensions-short", ch, "fefd" + hsR + "00 00 0002 c02b 0100 0003 0017 0000"},
		{"ClientHello/extension_type-cut", ch, "fefd" + hsR + "00 00 0002 c02b 0100 0001 00"},
		{"ClientHello/extension_data-length-cut", ch, "fefd" + hsR + "00 00 0002 c02b 0100 0003 0017 00"},
		{"ClientHello/extension_data-overrun", ch, "fefd" + hsR + "00 00 0002 c02b 0100 0004 0017 0001"},
		{"ClientHello/extension_data-overrun-block", ch, "fefd" + hsR + "00 00 0002 c02b 0100 0005 0017 0002 00 00"},
		{"ClientHello/duplicate-extension", ch, "fefd" + hsR + "00 00 0002 c02b 0100 0008 0017 0000 0017 0000"},
		{"ClientHello/duplicate-unknown-extension", ch, "fefd" + hsR + "00 00 0002 c02b 0100 000e ff42 0001 aa 0016 0000 ff42 0001 aa"},
		{"ClientHello/trailing-after-extensions", ch, "fefd" + hsR + "00 00 0002 c02b 0100 0004 0017 0000 00"},
		{"ClientHello/trailing-after-empty-extensions", ch, "fefd" + hsR + "00 00 0002 c02b 0100 0000 ff"},

		{"ServerHello/empty", sh, ""},
		{"ServerHello/session_id-33", sh, "fefd" + hsR + sid33 + "c02b 00"},
		{"ServerHello/session_id-overrun", sh, "fefd" + hsR + "08 0102"},
		{"ServerHello/cipher_suite-cut", sh, "fefd" + hsR + "00 c0"},
		{"ServerHello/compression-missing", sh, "fefd" + hsR + "00 c02b"},
		{"ServerHello/extensions-length-one-byte", sh, "fefd" + hsR + "00 c02b 00 00"},
		{"ServerHello/extensions-overrun", sh, "fefd" + hsR + "00 c02b 00 0010 ff01 0001 00"},
		{"ServerHello/extension_data-overrun", sh, "fefd" + hsR + "00 c02b 00 0005 ff01 0002 00"},
		{"ServerHello/duplicate-extension", sh, "fefd" + hsR + "00 c02b 00 000a ff01 0001 00 ff01 0001 00"},
		{"ServerHello/trailing", sh, "fefd" + hsR + "00 c02b 00 0004 0017 0000 0000"},

		{"HelloVerifyRequest/empty", hvr, ""},
		{"HelloVerifyRequest/version-cut", hvr, "fe"},
		{"HelloVerifyRequest/cookie-missing", hvr, "feff"},
		{"HelloVerifyRequest/cookie-overrun", hvr, "feff 04 010203"},
		{"HelloVerifyRequest/trailing", hvr, "feff 02 0102 03"},

		{"Certificate/empty", cert, ""},
		{"Certificate/list-length-cut", cert, "0000"},
		{"Certificate/list-overrun", cert, "000010 000001 aa"},
		{"Certificate/empty-cert", cert, "000003 000000"},
		{"Certificate/cert-overrun", cert, "000004 000005 aa"},
		{"Certificate/cert-length-cut", cert, "000005 000001 aa 00"},
		{"Certificate/trailing", cert, "000004 000001 aa ff"},

		{"ServerKeyExchangeECDHE/empty", skeEC, ""},
		{"ServerKeyExchangeECDHE/explicit_prime", skeEC, "01 0017 01 04 0403 0000"},
		{"ServerKeyExchangeECDHE/curve_type-0", skeEC, "00 0017 01 04 0403 0000"},
		{"ServerKeyExchangeECDHE/curve-cut", skeEC, "03 00"},
		{"ServerKeyExchangeECDHE/empty-point", skeEC, "03 0017 00 0403 0000"},
		{"ServerKeyExchangeECDHE/point-overrun", skeEC, "03 0017 41 04 0403 0000"},
		{"ServerKeyExchangeECDHE/algorithm-missing", skeEC, "03 001d 01 04"},
		{"ServerKeyExchangeECDHE/algorithm-cut", skeEC, "03 001d 01 04 04"},
		{"ServerKeyExchangeECDHE/signature-missing", skeEC, "03 001d 01 04 0403"},
		{"ServerKeyExchangeECDHE/signature-overrun", skeEC, "03 001d 01 04 0403 0003 aabb"},
		{"ServerKeyExchangeECDHE/trailing", skeEC, "03 001d 01 04 0403 0001 aa bb"},

		{"ServerKeyExchangePSK/empty", skePSK, ""},
		{"ServerKeyExchangePSK/length-cut", skePSK, "00"},
		{"ServerKeyExchangePSK/overrun", skePSK, "0003 6869"},
		{"ServerKeyExchangePSK/trailing", skePSK, "0000 00"},

		{"CertificateRequest/empty", cr, ""},
		{"CertificateRequest/types-empty", cr, "00 0002 0403 0000"},
		{"CertificateRequest/types-overrun", cr, "05 40"},
		{"CertificateRequest/sigalgs-missing", cr, "01 40"},
		{"CertificateRequest/sigalgs-empty", cr, "01 40 0000 0000"},
		{"CertificateRequest/sigalgs-odd", cr, "01 40 0003 040305 0000"},
		{"CertificateRequest/sigalgs-overrun", cr, "01 40 0004 0403 0000"},
		{"CertificateRequest/authorities-missing", cr, "01 40 0002 0403"},
		{"CertificateRequest/authorities-cut", cr, "01 40 0002 0403 00"},
		{"CertificateRequest/empty-dn", cr, "01 40 0002 0403 0002 0000"},
		{"CertificateRequest/dn-overrun", cr, "01 40 0002 0403 0004 0005 3031"},
		{"CertificateRequest/dn-length-cut", cr, "01 40 0002 0403 0004 0001 30 00"},
		{"CertificateRequest/authorities-overrun", cr, "01 40 0002 0403 0009 0001 30"},
		{"CertificateRequest/trailing", cr, "01 40 0002 0403 0000 00"},

		{"ServerHelloDone/non-empty", shd, "00"},
		{"ServerHelloDone/garbage", shd, "0e000000"},

		{"ClientKeyExchangePSK/empty", ckePSK, ""},
		{"ClientKeyExchangePSK/length-cut", ckePSK, "00"},
		{"ClientKeyExchangePSK/overrun", ckePSK, "0004 616263"},
		{"ClientKeyExchangePSK/trailing", ckePSK, "0001 61 62"},

		{"ClientKeyExchangeECDHE/empty", ckeEC, ""},
		{"ClientKeyExchangeECDHE/empty-point", ckeEC, "00"},
		{"ClientKeyExchangeECDHE/overrun", ckeEC, "05 aabb"},
		{"ClientKeyExchangeECDHE/trailing", ckeEC, "01 04 00"},
		{"ServerKeyExchangeECDHEPSK/empty", skeECPSK, ""},
		{"ServerKeyExchangeECDHEPSK/hint-overrun", skeECPSK, "0005 6162"},
		{"ServerKeyExchangeECDHEPSK/curve_type", skeECPSK, "0000 01 0017 01 04"},
		{"ServerKeyExchangeECDHEPSK/empty-point", skeECPSK, "0000 03 001d 00"},
		{"ServerKeyExchangeECDHEPSK/trailing", skeECPSK, "0000 03 001d 01 04 00"},
		{"ClientKeyExchangeECDHEPSK/empty", ckeECPSK, ""},
		{"ClientKeyExchangeECDHEPSK/no-point", ckeECPSK, "0001 61"},
		{"ClientKeyExchangeECDHEPSK/empty-point", ckeECPSK, "0001 61 00"},
		{"ClientKeyExchangeECDHEPSK/trailing", ckeECPSK, "0001 61 01 04 00"},

		{"CertificateVerify/empty", cv, ""},
		{"CertificateVerify/algorithm-cut", cv, "04"},
		{"CertificateVerify/signature-missing", cv, "0403"},
		{"CertificateVerify/signature-overrun", cv, "0403 0002 aa"},
		{"CertificateVerify/trailing", cv, "0403 0001 aa bb"},

		{"Finished/empty", fin, ""},
		{"Finished/11", fin, hex.EncodeToString(hsSeq(0, 11))},
		{"Finished/13", fin, hex.EncodeToString(hsSeq(0, 13))},
		{"Finished/32", fin, hex.EncodeToString(hsSeq(0, 32))},

		{"NewSessionTicket/empty", nst, ""},
		{"NewSessionTicket/hint-cut", nst, "000000"},
		{"NewSessionTicket/ticket-missing", nst, "00001c20"},
		{"NewSessionTicket/ticket-length-cut", nst, "00001c20 00"},
		{"NewSessionTicket/ticket-overrun", nst, "00001c20 0003 aabb"},
		{"NewSessionTicket/trailing", nst, "00001c20 0001 aa bb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.newMsg()
			hsAssertDecodeError(t, hsParse(t, m, hsHex(tt.body)), tt.name)
		})
	}
}

func TestHelloNoExtensionsBlock(t *testing.T) {
	// RFC 5246 §7.4.1.2: a hello may end right after compression_methods.
	body := hsHex("fefd" + hsR + "00 00 0004 c0ae c0a8 0100")
	var ch clientHelloMsg
	if err := hsParse(t, &ch, body); err != nil {
		t.Fatal(err)
	}
	if ch.extensions != nil {
		t.Fatalf("extensions = %#v, want nil for an absent block", ch.extensions)
	}
	if !reflect.DeepEqual(ch.cipherSuites, []uint16{0xc0ae, 0xc0a8}) {
		t.Fatalf("cipherSuites = %x", ch.cipherSuites)
	}
	out, err := ch.marshal()
	if err != nil || !bytes.Equal(out, body) {
		t.Fatalf("re-marshal = %x, %v; want %x", out, err, body)
	}

	// An empty block is kept distinct from an absent one.
	body = hsHex("fefd" + hsR + "00 00 0004 c0ae c0a8 0100 0000")
	ch = clientHelloMsg{}
	if err := hsParse(t, &ch, body); err != nil {
		t.Fatal(err)
	}
	if ch.extensions == nil || len(ch.extensions) != 0 {
		t.Fatalf("extensions = %#v, want empty non-nil", ch.extensions)
	}
	out, err = ch.marshal()
	if err != nil || !bytes.Equal(out, body) {
		t.Fatalf("re-marshal = %x, %v; want %x", out, err, body)
	}

	body = hsHex("fefd" + hsR + "00 c0ae 00")
	var sh serverHelloMsg
	if err := hsParse(t, &sh, body); err != nil {
		t.Fatal(err)
	}
	if sh.extensions != nil || sh.cipherSuite != 0xc0ae {
		t.Fatalf("ServerHello = %#v", sh)
	}
	out, err = sh.marshal()
	if err != nil || !bytes.Equal(out, body) {
		t.Fatalf("re-marshal = %x, %v; want %x", out, err, body)
	}
}

func TestHelloUnknownExtensionsKept(t *testing.T) {
	body := hsHex("fefd" + hsR + "00 00 0002 c0ae 0100" +
		"0017" + // extensions length 23
		"ff42 0003 010203" + // unknown, before known ones
		"0017 0000" + // extended_master_secret
		"1234 0000" + // unknown, empty
		"0023 0004 deadbeef") // session_ticket with a ticket
	var ch clientHelloMsg
	if err := hsParse(t, &ch, body); err != nil {
		t.Fatal(err)
	}
	want := []extension{
		{typ: 0xff42, data: []byte{1, 2, 3}},
		{typ: extExtendedMasterSecret},
		{typ: 0x1234},
		{typ: extSessionTicket, data: hsHex("deadbeef")},
	}
	if !reflect.DeepEqual(ch.extensions, want) {
		t.Fatalf("extensions = %#v\nwant %#v", ch.extensions, want)
	}
	out, err := ch.marshal()
	if err != nil || !bytes.Equal(out, body) {
		t.Fatalf("re-marshal = %x, %v; want %x", out, err, body)
	}
	if d, ok := findExtension(ch.extensions, 0xff42); !ok || !bytes.Equal(d, []byte{1, 2, 3}) {
		t.Fatalf("findExtension(0xff42) = %x, %v", d, ok)
	}
}

// TestClientHelloOpenSSLStyle parses a ClientHello body laid out the way
// OpenSSL sends its second, cookie-bearing DTLS 1.2 ClientHello.
func TestClientHelloOpenSSLStyle(t *testing.T) {
	body := hsHex(`
		fefd
		5f3c1a2b00112233445566778899aabbccddeeff0123456789abcdef01234567
		00
		14 a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4
		000c c02b c0ae c0a8 c0a4 00ae 00ff
		01 00
		0049
		0000 000e 000c 00 0009 6c6f63616c686f7374
		000b 0004 03 000102
		000a 000c 000a 001d 0017 001e 0019 0018
		0023 0000
		0016 0000
		0017 0000
		000d 000a 0008 0403 0503 0603 0807
		ff01 0001 00
	`)
	var ch clientHelloMsg
	if err := hsParse(t, &ch, body); err != nil {
		t.Fatal(err)
	}
	if ch.vers != versionDTLS12 {
		t.Errorf("vers = %#x", ch.vers)
	}
	if ch.random[0] != 0x5f || ch.random[31] != 0x67 {
		t.Errorf("random = %x", ch.random)
	}
	if ch.sessionID != nil {
		t.Errorf("sessionID = %x, want nil", ch.sessionID)
	}
	if want := hsHex("a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4"); !bytes.Equal(ch.cookie, want) {
		t.Errorf("cookie = %x", ch.cookie)
	}
	if want := []uint16{0xc02b, 0xc0ae, 0xc0a8, 0xc0a4, 0x00ae, 0x00ff}; !reflect.DeepEqual(ch.cipherSuites, want) {
		t.Errorf("cipherSuites = %x", ch.cipherSuites)
	}
	if !bytes.Equal(ch.compressionMethods, []byte{0}) {
		t.Errorf("compressionMethods = %x", ch.compressionMethods)
	}
	var types []uint16
	for _, e := range ch.extensions {
		types = append(types, e.typ)
	}
	wantTypes := []uint16{extServerName, extECPointFormats, extSupportedGroups, extSessionTicket,
		extEncryptThenMAC, extExtendedMasterSecret, extSignatureAlgorithms, extRenegotiationInfo}
	if !reflect.DeepEqual(types, wantTypes) {
		t.Fatalf("extension order = %x, want %x", types, wantTypes)
	}

	data, _ := findExtension(ch.extensions, extServerName)
	if host, err := parseServerName(data); err != nil || host != "localhost" {
		t.Errorf("server_name = %q, %v", host, err)
	}
	data, _ = findExtension(ch.extensions, extECPointFormats)
	if f, err := parseECPointFormats(data); err != nil || !bytes.Equal(f, []byte{0, 1, 2}) {
		t.Errorf("ec_point_formats = %x, %v", f, err)
	}
	data, _ = findExtension(ch.extensions, extSupportedGroups)
	if g, err := parseSupportedGroups(data); err != nil || !reflect.DeepEqual(g, []uint16{29, 23, 30, 25, 24}) {
		t.Errorf("supported_groups = %v, %v", g, err)
	}
	for _, typ := range []uint16{extSessionTicket, extEncryptThenMAC, extExtendedMasterSecret} {
		if data, ok := findExtension(ch.extensions, typ); !ok || len(data) != 0 {
			t.Errorf("extension %d = %x, %v; want present and empty", typ, data, ok)
		}
	}
	data, _ = findExtension(ch.extensions, extSignatureAlgorithms)
	if a, err := parseSignatureAlgorithms(data); err != nil || !reflect.DeepEqual(a, []uint16{0x0403, 0x0503, 0x0603, 0x0807}) {
		t.Errorf("signature_algorithms = %x, %v", a, err)
	}
	data, _ = findExtension(ch.extensions, extRenegotiationInfo)
	if r, err := parseRenegotiationInfo(data); err != nil || len(r) != 0 {
		t.Errorf("renegotiation_info = %x, %v", r, err)
	}
	if _, ok := findExtension(ch.extensions, 0xff42); ok {
		t.Errorf("findExtension found an absent extension")
	}

	out, err := ch.marshal()
	if err != nil || !bytes.Equal(out, body) {
		t.Fatalf("re-marshal = %x, %v\nwant %x", out, err, body)
	}
}

func TestHandshakeMessageMarshalErrors(t *testing.T) {
	okHello := func() *clientHelloMsg {
		return &clientHelloMsg{vers: versionDTLS12, cipherSuites: []uint16{0xc0ae}, compressionMethods: []uint8{0}}
	}
	tests := []struct {
		name string
		msg  handshakeMessage
		want string // substring of the error
	}{
		{"ClientHello/session_id", func() handshakeMessage { m := okHello(); m.sessionID = make([]byte, 33); return m }(), "ClientHello: session_id"},
		{"ClientHello/cookie", func() handshakeMessage { m := okHello(); m.cookie = make([]byte, 256); return m }(), "ClientHello: cookie"},
		{"ClientHello/no-cipher-suites", func() handshakeMessage { m := okHello(); m.cipherSuites = nil; return m }(), "ClientHello: cipher_suites"},
		{"ClientHello/too-many-cipher-suites", func() handshakeMessage { m := okHello(); m.cipherSuites = make([]uint16, 32768); return m }(), "ClientHello: cipher_suites"},
		{"ClientHello/no-compression", func() handshakeMessage { m := okHello(); m.compressionMethods = nil; return m }(), "ClientHello: compression_methods"},
		{"ClientHello/too-many-compression", func() handshakeMessage { m := okHello(); m.compressionMethods = make([]uint8, 256); return m }(), "ClientHello: compression_methods"},
		{"ClientHello/extension_data", func() handshakeMessage {
			m := okHello()
			m.extensions = []extension{{typ: 0xff42, data: make([]byte, 65536)}}
			return m
		}(), "ClientHello: extension 65346 extension_data"},
		{"ClientHello/extensions-total", func() handshakeMessage {
			m := okHello()
			m.extensions = []extension{{typ: 1, data: make([]byte, 40000)}, {typ: 2, data: make([]byte, 40000)}}
			return m
		}(), "ClientHello: extensions"},
		{"ClientHello/duplicate-extension", func() handshakeMessage {
			m := okHello()
			m.extensions = []extension{{typ: extExtendedMasterSecret}, {typ: extExtendedMasterSecret}}
			return m
		}(), "ClientHello: duplicate extension 23"},
		{"ServerHello/session_id", &serverHelloMsg{sessionID: make([]byte, 33)}, "ServerHello: session_id"},
		{"ServerHello/duplicate-extension", &serverHelloMsg{extensions: []extension{{typ: 0xff01}, {typ: 0xff01}}}, "ServerHello: duplicate extension"},
		{"HelloVerifyRequest/cookie", &helloVerifyRequestMsg{cookie: make([]byte, 256)}, "HelloVerifyRequest: cookie"},
		{"Certificate/empty-cert", &certificateMsg{certificates: [][]byte{{1}, {}}}, "Certificate: ASN.1Cert"},
		{"Certificate/list", &certificateMsg{certificates: [][]byte{make([]byte, 1<<23), make([]byte, 1<<23)}}, "Certificate: certificate_list"},
		{"ServerKeyExchangeECDHE/empty-point", &serverKeyExchangeECDHEMsg{namedCurve: 23}, "ServerKeyExchange: public"},
		{"ServerKeyExchangeECDHE/long-point", &serverKeyExchangeECDHEMsg{publicKey: make([]byte, 256)}, "ServerKeyExchange: public"},
		{"ServerKeyExchangeECDHE/signature", &serverKeyExchangeECDHEMsg{publicKey: []byte{4}, signature: make([]byte, 65536)}, "ServerKeyExchange: signature"},
		{"ServerKeyExchangePSK/hint", &serverKeyExchangePSKMsg{identityHint: make([]byte, 65536)}, "ServerKeyExchange: psk_identity_hint"},
		{"CertificateRequest/no-types", &certificateRequestMsg{signatureAlgorithms: []uint16{0x0403}}, "CertificateRequest: certificate_types"},
		{"CertificateRequest/no-sigalgs", &certificateRequestMsg{certificateTypes: []uint8{64}}, "CertificateRequest: supported_signature_algorithms"},
		{"CertificateRequest/empty-dn", &certificateRequestMsg{certificateTypes: []uint8{64}, signatureAlgorithms: []uint16{0x0403}, authorities: [][]byte{{}}}, "CertificateRequest: DistinguishedName"},
		{"CertificateRequest/authorities", &certificateRequestMsg{certificateTypes: []uint8{64}, signatureAlgorithms: []uint16{0x0403}, authorities: [][]byte{make([]byte, 40000), make([]byte, 40000)}}, "CertificateRequest: certificate_authorities"},
		{"ClientKeyExchangePSK/identity", &clientKeyExchangePSKMsg{identity: make([]byte, 65536)}, "ClientKeyExchange: psk_identity"},
		{"ClientKeyExchangeECDHE/empty-point", &clientKeyExchangeECDHEMsg{}, "ClientKeyExchange: ecdh_Yc"},
		{"ClientKeyExchangeECDHE/long-point", &clientKeyExchangeECDHEMsg{publicKey: make([]byte, 256)}, "ClientKeyExchange: ecdh_Yc"},
		{"ServerKeyExchangeECDHEPSK/hint", &serverKeyExchangeECDHEPSKMsg{identityHint: make([]byte, 65536), publicKey: []byte{4}}, "ServerKeyExchange: psk_identity_hint"},
		{"ServerKeyExchangeECDHEPSK/empty-point", &serverKeyExchangeECDHEPSKMsg{}, "ServerKeyExchange: public"},
		{"ClientKeyExchangeECDHEPSK/identity", &clientKeyExchangeECDHEPSKMsg{identity: make([]byte, 65536), publicKey: []byte{4}}, "ClientKeyExchange: psk_identity"},
		{"ClientKeyExchangeECDHEPSK/empty-point", &clientKeyExchangeECDHEPSKMsg{}, "ClientKeyExchange: ecdh_Yc"},
		{"CertificateVerify/signature", &certificateVerifyMsg{signature: make([]byte, 65536)}, "CertificateVerify: signature"},
		{"Finished/short", &finishedMsg{verifyData: make([]byte, 11)}, "Finished: verify_data"},
		{"Finished/nil", &finishedMsg{}, "Finished: verify_data"},
		{"NewSessionTicket/ticket", &newSessionTicketMsg{ticket: make([]byte, 65536)}, "NewSessionTicket: ticket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tt.msg.marshal()
			if err == nil {
				t.Fatalf("marshal succeeded with %d bytes", len(out))
			}
			if out != nil {
				t.Errorf("marshal returned bytes with its error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestHandshakeMessageLargeVectors(t *testing.T) {
	// The largest values of each range still marshal and parse.
	msgs := []handshakeMessage{
		&clientHelloMsg{
			sessionID:          hsSeq(0, 32),
			cookie:             bytes.Repeat([]byte{7}, 255),
			cipherSuites:       make([]uint16, 32767),
			compressionMethods: make([]uint8, 255),
			extensions:         []extension{{typ: 0xff42, data: make([]byte, 65531)}},
		},
		&certificateMsg{certificates: [][]byte{make([]byte, 1<<24-4)}},
		&certificateRequestMsg{
			certificateTypes:    make([]uint8, 255),
			signatureAlgorithms: make([]uint16, 32767),
			authorities:         [][]byte{make([]byte, 65533)},
		},
		&serverKeyExchangeECDHEMsg{publicKey: make([]byte, 255), signature: make([]byte, 65535)},
		&newSessionTicketMsg{ticket: make([]byte, 65535)},
	}
	for _, m := range msgs {
		data, err := m.marshal()
		if err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		if err := hsNewLike(m).unmarshal(data); err != nil {
			t.Fatalf("%T: %v", m, err)
		}
	}
}

func TestHandshakeMessageServerKeyExchangeParams(t *testing.T) {
	m := &serverKeyExchangeECDHEMsg{namedCurve: 29, publicKey: hsSeq(1, 32), sigAlg: 0x0403, signature: []byte{9, 9}}
	want := append(hsHex("03 001d 20"), hsSeq(1, 32)...)
	if got := m.params(); !bytes.Equal(got, want) {
		t.Fatalf("params() = %x, want %x", got, want)
	}
	body, err := m.marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(body, want) || !bytes.Equal(body[len(want):], hsHex("0403 0002 0909")) {
		t.Fatalf("body = %x", body)
	}
	if (&serverKeyExchangeECDHEMsg{}).params() != nil {
		t.Fatalf("params() of an empty point is not nil")
	}
}

func TestHelloExtensionPayloadRoundTrip(t *testing.T) {
	groups := []uint16{29, 23, 24}
	if b := marshalSupportedGroups(groups); !bytes.Equal(b, hsHex("0006 001d 0017 0018")) {
		t.Errorf("marshalSupportedGroups = %x", b)
	} else if got, err := parseSupportedGroups(b); err != nil || !reflect.DeepEqual(got, groups) {
		t.Errorf("parseSupportedGroups = %v, %v", got, err)
	}

	formats := []uint8{0}
	if b := marshalECPointFormats(formats); !bytes.Equal(b, hsHex("01 00")) {
		t.Errorf("marshalECPointFormats = %x", b)
	} else if got, err := parseECPointFormats(b); err != nil || !bytes.Equal(got, formats) {
		t.Errorf("parseECPointFormats = %v, %v", got, err)
	}

	algs := []uint16{0x0403, 0x0804}
	if b := marshalSignatureAlgorithms(algs); !bytes.Equal(b, hsHex("0004 0403 0804")) {
		t.Errorf("marshalSignatureAlgorithms = %x", b)
	} else if got, err := parseSignatureAlgorithms(b); err != nil || !reflect.DeepEqual(got, algs) {
		t.Errorf("parseSignatureAlgorithms = %v, %v", got, err)
	}

	if b := marshalServerName("a.example"); !bytes.Equal(b, hsHex("000c 00 0009 612e6578616d706c65")) {
		t.Errorf("marshalServerName = %x", b)
	} else if got, err := parseServerName(b); err != nil || got != "a.example" {
		t.Errorf("parseServerName = %q, %v", got, err)
	}

	for _, v := range [][]byte{nil, hsSeq(1, 12), hsSeq(1, 24), hsSeq(0, 255)} {
		b := marshalRenegotiationInfo(v)
		if len(b) != 1+len(v) || int(b[0]) != len(v) {
			t.Errorf("marshalRenegotiationInfo(%x) = %x", v, b)
		}
		if got, err := parseRenegotiationInfo(b); err != nil || !bytes.Equal(got, v) || (len(v) == 0) != (got == nil) {
			t.Errorf("parseRenegotiationInfo = %x, %v", got, err)
		}
	}

	// Name types other than host_name are skipped.
	b := hsHex("0011 07 0003 616263 00 0001 78 fe 0004 64656667")
	if got, err := parseServerName(b); err != nil || got != "x" {
		t.Errorf("parseServerName with other name types = %q, %v", got, err)
	}
	b = hsHex("0006 07 0003 616263")
	if got, err := parseServerName(b); err != nil || got != "" {
		t.Errorf("parseServerName without host_name = %q, %v", got, err)
	}
}

func TestHelloExtensionPayloadMalformed(t *testing.T) {
	type parser func([]byte) error
	groups := func(b []byte) error { _, err := parseSupportedGroups(b); return err }
	formats := func(b []byte) error { _, err := parseECPointFormats(b); return err }
	algs := func(b []byte) error { _, err := parseSignatureAlgorithms(b); return err }
	sni := func(b []byte) error { _, err := parseServerName(b); return err }
	reneg := func(b []byte) error { _, err := parseRenegotiationInfo(b); return err }
	tests := []struct {
		name  string
		parse parser
		body  string
	}{
		{"supported_groups/empty", groups, ""},
		{"supported_groups/length-cut", groups, "00"},
		{"supported_groups/empty-list", groups, "0000"},
		{"supported_groups/odd", groups, "0003 001d00"},
		{"supported_groups/overrun", groups, "0004 001d"},
		{"supported_groups/trailing", groups, "0002 001d 00"},
		{"ec_point_formats/empty", formats, ""},
		{"ec_point_formats/empty-list", formats, "00"},
		{"ec_point_formats/overrun", formats, "02 00"},
		{"ec_point_formats/trailing", formats, "01 00 00"},
		{"signature_algorithms/empty", algs, ""},
		{"signature_algorithms/empty-list", algs, "0000"},
		{"signature_algorithms/odd", algs, "0001 04"},
		{"signature_algorithms/overrun", algs, "0006 0403 0503"},
		{"signature_algorithms/trailing", algs, "0002 0403 05"},
		{"server_name/empty", sni, ""},
		{"server_name/empty-list", sni, "0000"},
		{"server_name/list-overrun", sni, "0010 00 0001 61"},
		{"server_name/name-length-missing", sni, "0001 00"},
		{"server_name/empty-host", sni, "0003 00 0000"},
		{"server_name/empty-other-name", sni, "0003 07 0000"},
		{"server_name/host-overrun", sni, "0005 00 0003 61"},
		{"server_name/two-hosts", sni, "0008 00 0001 61 00 0001 62"},
		{"server_name/trailing-dot", sni, "0005 00 0002 612e"},
		{"server_name/trailing", sni, "0004 00 0001 61 00"},
		{"renegotiation_info/empty", reneg, ""},
		{"renegotiation_info/overrun", reneg, "01"},
		{"renegotiation_info/trailing", reneg, "00 00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("parser panicked: %v", r)
					}
				}()
				err = tt.parse(hsHex(tt.body))
			}()
			hsAssertDecodeError(t, err, tt.name)
		})
	}
}

func TestHelloExtensionPayloadMarshalPanics(t *testing.T) {
	tests := []struct {
		name string
		f    func()
	}{
		{"supported_groups/empty", func() { marshalSupportedGroups(nil) }},
		{"supported_groups/too-many", func() { marshalSupportedGroups(make([]uint16, 32768)) }},
		{"ec_point_formats/empty", func() { marshalECPointFormats(nil) }},
		{"ec_point_formats/too-many", func() { marshalECPointFormats(make([]uint8, 256)) }},
		{"signature_algorithms/empty", func() { marshalSignatureAlgorithms(nil) }},
		{"server_name/empty", func() { marshalServerName("") }},
		{"server_name/too-long", func() { marshalServerName(strings.Repeat("a", 65533)) }},
		{"renegotiation_info/too-long", func() { marshalRenegotiationInfo(make([]byte, 256)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatalf("no panic")
				}
			}()
			tt.f()
		})
	}
}

func TestFindExtension(t *testing.T) {
	exts := []extension{{typ: extServerName, data: []byte{1}}, {typ: extExtendedMasterSecret}}
	if d, ok := findExtension(exts, extServerName); !ok || !bytes.Equal(d, []byte{1}) {
		t.Errorf("server_name = %x, %v", d, ok)
	}
	if d, ok := findExtension(exts, extExtendedMasterSecret); !ok || d != nil {
		t.Errorf("extended_master_secret = %x, %v", d, ok)
	}
	if _, ok := findExtension(exts, extSessionTicket); ok {
		t.Errorf("found absent session_ticket")
	}
	if _, ok := findExtension(nil, extSessionTicket); ok {
		t.Errorf("found extension in nil list")
	}
}
