package dtls

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	pionelliptic "github.com/pion/dtls/v3/pkg/crypto/elliptic"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
)

// These tests put a hand-driven peer on a real UDP socket in front of our
// Listener (server side) and our client, feed them malformed records and
// handshake messages, and check what is observable: the fatal alert on the
// wire, the Go error, or a silent drop (RFC 6347 §4.1.2.7) after which the
// genuine handshake still completes. Every wait is bounded.

// rawTimeout bounds every wait of a raw peer.
const rawTimeout = 2 * time.Second

// robustHandshakeTimeout is the HandshakeTimeout of our side in these tests.
const robustHandshakeTimeout = 2 * time.Second

func loopbackUDP(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func mustMarshal(t testing.TB, m handshakeMessage) []byte {
	t.Helper()
	b, err := m.marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// plainRecord builds a plaintext record by hand, with any header values.
func plainRecord(contentType uint8, epoch uint16, seq uint64, payload []byte) []byte {
	return append(marshalRecordHeader(nil, contentType, versionDTLS12, epoch, seq, len(payload)), payload...)
}

// rawAlertError is an alert that ended a raw peer's read.
type rawAlertError struct {
	level alertLevel
	desc  alertDescription
	epoch uint16
}

func (e *rawAlertError) Error() string {
	return fmt.Sprintf("peer sent alert level %d %v in epoch %d", e.level, e.desc, e.epoch)
}

// rawEnd is one side of a DTLS association played by hand on a UDP socket:
// the test decides every byte it sends, and reads what our side answers.
type rawEnd struct {
	t    testing.TB
	conn *net.UDPConn
	peer *net.UDPAddr // nil until the first datagram (raw server)

	rl      *recordLayer
	reasm   reassembler
	early   [][]byte // epoch-1 records that came before our keys
	sendSeq uint16   // next message_seq we send

	transcript   []byte
	hello        *clientHelloMsg
	serverRandom [32]byte
	suite        *cipherSuite
	ems          bool
	ske          *serverKeyExchangeECDHEMsg
	ms           []byte
	isClient     bool
}

func newRawEnd(t testing.TB, peer *net.UDPAddr, isClient bool) *rawEnd {
	return &rawEnd{t: t, conn: loopbackUDP(t), peer: peer, rl: newRecordLayer(64), isClient: isClient, reasm: reassembler{budget: DefaultMaxHandshakeMemory}}
}

func (e *rawEnd) addr() *net.UDPAddr { return e.conn.LocalAddr().(*net.UDPAddr) }

func (e *rawEnd) send(datagrams ...[]byte) {
	e.t.Helper()
	for _, d := range datagrams {
		if _, err := e.conn.WriteToUDP(d, e.peer); err != nil {
			e.t.Fatalf("raw send: %v", err)
		}
	}
}

// record seals one record with our next sequence number of its epoch.
func (e *rawEnd) record(contentType uint8, epoch uint16, payload []byte) []byte {
	e.t.Helper()
	b, err := e.rl.seal(nil, contentType, epoch, payload)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// handshake returns a record carrying body as an unfragmented message of
// type typ with our next message_seq; the message enters the transcript.
func (e *rawEnd) handshake(typ uint8, epoch uint16, body []byte) []byte {
	e.t.Helper()
	msg := fullHandshakeMessage(typ, e.sendSeq, body)
	e.sendSeq++
	e.transcript = append(e.transcript, msg...)
	return e.record(recordHandshake, epoch, msg)
}

// handshakeOff is handshake for a message that must stay out of the
// transcript (HelloVerifyRequest, a first ClientHello, a bogus message).
func (e *rawEnd) handshakeOff(typ uint8, epoch uint16, body []byte) []byte {
	e.t.Helper()
	msg := fullHandshakeMessage(typ, e.sendSeq, body)
	e.sendSeq++
	return e.record(recordHandshake, epoch, msg)
}

func (e *rawEnd) ccs() []byte { return e.record(recordChangeCipherSpec, 0, []byte{1}) }

func (e *rawEnd) take(m handshakeMsg) {
	e.transcript = append(e.transcript, fullHandshakeMessage(m.typ, m.seq, m.body)...)
}

// read returns the records of the next datagram from the peer. Epoch-1
// records are decrypted, or kept for later when we have no keys yet; those
// that fail authentication are dropped.
func (e *rawEnd) read(deadline time.Time) ([]record, error) {
	buf := make([]byte, 64*1024)
	for {
		if err := e.conn.SetReadDeadline(deadline); err != nil {
			return nil, err
		}
		n, from, err := e.conn.ReadFromUDP(buf)
		if err != nil {
			return nil, err
		}
		if e.peer == nil {
			e.peer = from
		} else if from.String() != e.peer.String() {
			continue
		}
		return e.openRecords(append([]byte(nil), buf[:n]...)), nil
	}
}

func (e *rawEnd) openRecords(d []byte) []record {
	recs, _ := parseRecords(d)
	var out []record
	for _, r := range recs {
		if r.epoch == 1 {
			if !e.rl.readKeysSet {
				e.early = append(e.early, append([]byte(nil), r.raw...))
				continue
			}
			if err := e.rl.open(&r); err != nil {
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

// absorb feeds records to the reassembler; an alert is returned as a
// *rawAlertError.
func (e *rawEnd) absorb(recs []record) error {
	for _, r := range recs {
		switch r.contentType {
		case recordAlert:
			if len(r.fragment) == 2 {
				return &rawAlertError{alertLevel(r.fragment[0]), alertDescription(r.fragment[1]), r.epoch}
			}
		case recordHandshake:
			frags, _ := parseHandshakeFragments(r.fragment)
			for _, f := range frags {
				_ = e.reasm.add(f, r.epoch)
			}
		}
	}
	return nil
}

// readFlight collects the peer's handshake messages in order, skipping
// retransmissions, up to and including the first of type last.
func (e *rawEnd) readFlight(last uint8) ([]handshakeMsg, error) {
	return e.readFlightUntil(last)
}

// readFlightUntil is readFlight stopping at the first message of any of
// the given types.
func (e *rawEnd) readFlightUntil(last ...uint8) ([]handshakeMsg, error) {
	deadline := time.Now().Add(rawTimeout)
	var msgs []handshakeMsg
	for {
		for {
			m, ok := e.reasm.pop()
			if !ok {
				break
			}
			msgs = append(msgs, m)
			if bytes.IndexByte(last, m.typ) >= 0 {
				return msgs, nil
			}
		}
		recs, err := e.read(deadline)
		if err != nil {
			return msgs, fmt.Errorf("waiting for handshake type %v: %w", last, err)
		}
		if err := e.absorb(recs); err != nil {
			return msgs, err
		}
	}
}

// expectAlert reads until an alert arrives and checks its level and
// description; handshake retransmissions on the way are ignored.
func (e *rawEnd) expectAlert(level alertLevel, want alertDescription) {
	e.t.Helper()
	deadline := time.Now().Add(rawTimeout)
	for {
		recs, err := e.read(deadline)
		if err != nil {
			e.t.Fatalf("waiting for alert %v (level %d): %v", want, level, err)
		}
		for _, r := range recs {
			if r.contentType != recordAlert {
				continue
			}
			if len(r.fragment) != 2 {
				e.t.Fatalf("alert record of %d bytes", len(r.fragment))
			}
			if got := (rawAlertError{alertLevel(r.fragment[0]), alertDescription(r.fragment[1]), r.epoch}); got.level != level || got.desc != want {
				e.t.Fatalf("got %v, want level %d %v", &got, level, want)
			}
			return
		}
	}
}

// expectNothing checks that the peer sends nothing for d.
func (e *rawEnd) expectNothing(d time.Duration) {
	e.t.Helper()
	if err := e.conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		e.t.Fatal(err)
	}
	defer e.conn.SetReadDeadline(time.Time{}) // the socket may go to a Conn next
	buf := make([]byte, 64*1024)
	n, from, err := e.conn.ReadFromUDP(buf)
	if err == nil {
		e.t.Fatalf("got a %d-byte datagram from %v (% x), want silence", n, from, buf[:min(n, 32)])
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		e.t.Fatal(err)
	}
}

// deriveKeys computes the master secret over the transcript so far and
// installs the epoch-1 keys, then processes epoch-1 records that came early.
func (e *rawEnd) deriveKeys(preMaster []byte) {
	e.t.Helper()
	ms, err := masterSecret(preMaster, e.ems, e.transcript, e.hello.random, e.serverRandom)
	if err != nil {
		e.t.Fatal(err)
	}
	e.useMasterSecret(ms)
}

// useMasterSecret installs the epoch-1 keys of ms, then processes epoch-1
// records that came early.
func (e *rawEnd) useMasterSecret(ms []byte) {
	e.t.Helper()
	rc, _, err := e.suite.newCipher(ms, e.hello.random[:], e.serverRandom[:], e.isClient, false)
	if err != nil {
		e.t.Fatal(err)
	}
	e.ms = ms
	e.rl.setKeys(rc, e.suite.overhead)
	early := e.early
	e.early = nil
	for _, raw := range early {
		if err := e.absorb(e.openRecords(raw)); err != nil {
			e.t.Fatal(err)
		}
	}
}

// finished returns our Finished over the transcript, in epoch 1.
func (e *rawEnd) finished() []byte {
	e.t.Helper()
	vd, err := finishedData(e.ms, e.transcript, e.isClient)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.handshake(typeFinished, 1, vd)
}

// expectFinished reads the peer's Finished and checks that it came in
// epoch 1 with the right verify_data. Messages before it (a
// NewSessionTicket) enter the transcript and are returned.
func (e *rawEnd) expectFinished() []handshakeMsg {
	e.t.Helper()
	msgs, err := e.readFlight(typeFinished)
	if err != nil {
		e.t.Fatalf("peer Finished: %v", err)
	}
	for _, m := range msgs[:len(msgs)-1] {
		e.take(m)
	}
	want, err := finishedData(e.ms, e.transcript, !e.isClient)
	if err != nil {
		e.t.Fatal(err)
	}
	m := msgs[len(msgs)-1]
	if m.epoch != 1 || !bytes.Equal(m.body, want) {
		e.t.Fatalf("peer Finished epoch %d verify_data %x, want epoch 1 %x", m.epoch, m.body, want)
	}
	e.take(m)
	return msgs[:len(msgs)-1]
}

func (e *rawEnd) sendApp(p []byte) { e.send(e.record(recordApplicationData, 1, p)) }

// readApp returns the next application data record.
func (e *rawEnd) readApp() []byte {
	e.t.Helper()
	deadline := time.Now().Add(rawTimeout)
	for {
		recs, err := e.read(deadline)
		if err != nil {
			e.t.Fatalf("waiting for application data: %v", err)
		}
		for _, r := range recs {
			if r.contentType == recordApplicationData && r.epoch == 1 {
				return r.fragment
			}
		}
	}
}

// ---- the raw peer as a client of our Listener ----

// newClientHello builds the ClientHello our own client would send with cfg.
func newClientHello(t testing.TB, cfg *Config) *clientHelloMsg {
	t.Helper()
	hs := newConn(nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, cfg, true).newClientHandshakeState(false)
	if err := hs.buildHello(); err != nil {
		t.Fatal(err)
	}
	return hs.hello
}

// startRawClient returns a raw client aimed at l.
func startRawClient(t testing.TB, l *Listener) *rawEnd {
	return newRawEnd(t, l.Addr().(*net.UDPAddr), true)
}

// cookieExchange sends hello, answers the HelloVerifyRequest and sends the
// ClientHello with the cookie, which enters the transcript.
func (e *rawEnd) cookieExchange(hello *clientHelloMsg) {
	e.t.Helper()
	e.send(e.handshakeOff(typeClientHello, 0, mustMarshal(e.t, hello)))
	msgs, err := e.readFlight(typeHelloVerifyRequest)
	if err != nil {
		e.t.Fatalf("HelloVerifyRequest: %v", err)
	}
	var hvr helloVerifyRequestMsg
	if err := hvr.unmarshal(msgs[len(msgs)-1].body); err != nil {
		e.t.Fatal(err)
	}
	hello.cookie = hvr.cookie
	e.hello = hello
	e.send(e.handshake(typeClientHello, 0, mustMarshal(e.t, hello)))
}

// readServerFlight reads flight 4 into the transcript and the state.
func (e *rawEnd) readServerFlight() error {
	e.t.Helper()
	msgs, err := e.readFlight(typeServerHelloDone)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		e.take(m)
		switch m.typ {
		case typeServerHello:
			var sh serverHelloMsg
			if err := sh.unmarshal(m.body); err != nil {
				e.t.Fatal(err)
			}
			e.serverRandom = sh.random
			if e.suite = cipherSuiteByID(sh.cipherSuite); e.suite == nil {
				e.t.Fatalf("server chose suite %#04x", sh.cipherSuite)
			}
			_, e.ems = findExtension(sh.extensions, extExtendedMasterSecret)
		case typeServerKeyExchange:
			if e.suite.kx == kxECDHE {
				e.ske = &serverKeyExchangeECDHEMsg{}
				if err := e.ske.unmarshal(m.body); err != nil {
					e.t.Fatal(err)
				}
			}
		}
	}
	return nil
}

// pskKeyExchange returns a PSK ClientKeyExchange record and installs the
// keys it leads to.
func (e *rawEnd) pskKeyExchange(identity []byte) []byte {
	e.t.Helper()
	rec := e.handshake(typeClientKeyExchange, 0, mustMarshal(e.t, &clientKeyExchangePSKMsg{identity: identity}))
	e.deriveKeys(prf.PSKPreMasterSecret(testPSK))
	return rec
}

// rawPSKHandshake runs a whole correct PSK handshake against l.
func rawPSKHandshake(t testing.TB, l *Listener) *rawEnd {
	t.Helper()
	e := startRawClient(t, l)
	e.cookieExchange(newClientHello(t, pskClientConfig()))
	if err := e.readServerFlight(); err != nil {
		t.Fatal(err)
	}
	e.send(cat(e.pskKeyExchange([]byte("client1")), e.ccs(), e.finished()))
	e.expectFinished()
	return e
}

func robustPSKServer(t testing.TB) *Listener {
	cfg := pskServerConfig()
	cfg.HandshakeTimeout = robustHandshakeTimeout
	return startEchoServer(t, cfg)
}

func listenerConns(l *Listener) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// TestRawPSKHandshakeBaseline checks the raw client itself against our
// Listener, so that the failure cases below fail for their own reason.
func TestRawPSKHandshakeBaseline(t *testing.T) {
	l := robustPSKServer(t)
	e := rawPSKHandshake(t, l)
	e.sendApp([]byte("ping"))
	if got := e.readApp(); string(got) != "ping" {
		t.Fatalf("echo %q", got)
	}
}

// TestListenerDropsMalformedClientHello sends datagrams that are not a
// usable ClientHello to the Listener. The stateless listener must drop each
// silently, keep no state for it, and then complete a genuine handshake
// from the same address.
func TestListenerDropsMalformedClientHello(t *testing.T) {
	hello := mustMarshal(t, newClientHello(t, pskClientConfig()))
	chRecord := func(hs []byte) []byte { return plainRecord(recordHandshake, 0, 0, hs) }
	full := fullHandshakeMessage(typeClientHello, 0, hello)
	withBody := func(body []byte) []byte { return chRecord(fullHandshakeMessage(typeClientHello, 0, body)) }
	// Offsets in the hello body: version 0, random 2, session_id 34,
	// cookie 35, cipher_suites 36 (both vectors empty).
	patched := func(off int, v ...byte) []byte {
		b := append([]byte(nil), hello...)
		copy(b[off:], v)
		return withBody(b)
	}
	if hello[34] != 0 || hello[35] != 0 {
		t.Fatal("test assumes an empty session_id and cookie")
	}
	nSuites := int(hello[36])<<8 | int(hello[37])
	compAt := 38 + nSuites
	extAt := compAt + 1 + int(hello[compAt])
	bigRecord := plainRecord(recordHandshake, 0, 0, make([]byte, maxCiphertext+1))
	overLong := chRecord(full)
	overLong[11], overLong[12] = byte((len(full)+40)>>8), byte(len(full)+40)
	rng := mrand.New(mrand.NewPCG(1, 2))
	random := make([]byte, 300)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}

	cases := []struct {
		name     string
		datagram []byte
	}{
		{"empty datagram", []byte{}},
		{"truncated record header", chRecord(full)[:7]},
		{"record length past the end of the datagram", overLong},
		{"record length over 2^14+2048", bigRecord},
		{"handshake header truncated", chRecord(full[:8])},
		{"ClientHello cut short inside the record", append(marshalRecordHeader(nil, recordHandshake, versionDTLS12, 0, 0, len(full)-10), full[:len(full)-10]...)},
		{"ClientHello fragment only", chRecord(append(marshalHandshakeHeader(nil, typeClientHello, len(hello), 0, 0, len(hello)-10), hello[:len(hello)-10]...))},
		{"fragment_offset past the message", chRecord(append(marshalHandshakeHeader(nil, typeClientHello, len(hello), 0, 5, len(hello)), hello...))},
		{"fragment_length past the record", chRecord(append(marshalHandshakeHeader(nil, typeClientHello, len(hello)+10, 0, 0, len(hello)+10), hello...))},
		{"body truncated inside random", withBody(hello[:20])},
		{"session_id longer than 32", withBody(cat(hello[:34], []byte{33}, make([]byte, 33), hello[35:]))},
		{"session_id length past the end", patched(34, 0xff)},
		{"cipher_suites length odd", patched(36, byte((nSuites-1)>>8), byte(nSuites-1))},
		{"cipher_suites length past the end", patched(36, 0xff, 0xfe)},
		{"compression_methods empty", withBody(cat(hello[:compAt], []byte{0}, hello[compAt+2:]))},
		{"extensions length past the end", patched(extAt, 0xff, 0xff)},
		{"trailing byte after extensions", withBody(append(append([]byte(nil), hello...), 0))},
		{"ClientHello in an application_data record", plainRecord(recordApplicationData, 0, 0, full)},
		{"ClientHello in epoch 1", plainRecord(recordHandshake, 1, 0, full)},
		{"ServerHello instead of ClientHello", chRecord(fullHandshakeMessage(typeServerHello, 0, hello))},
		{"fatal alert", plainRecord(recordAlert, 0, 0, []byte{2, 40})},
		{"random bytes", random},
	}
	l := robustPSKServer(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := startRawClient(t, l)
			e.send(tc.datagram)
			e.expectNothing(100 * time.Millisecond)
			// The same address then gets a normal handshake.
			cfg := pskClientConfig()
			cfg.HandshakeTimeout = robustHandshakeTimeout
			c, err := Client(e.conn, l.Addr(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Handshake(); err != nil {
				t.Fatalf("handshake after a dropped datagram: %v", err)
			}
			echoOnce(t, c, tc.name)
		})
	}
	t.Run("no state kept", func(t *testing.T) {
		t.Parallel()
		e := startRawClient(t, l)
		for _, tc := range cases {
			e.send(tc.datagram)
		}
		e.expectNothing(100 * time.Millisecond)
		l.mu.Lock()
		_, ok := l.conns[e.addr().String()]
		l.mu.Unlock()
		if ok {
			t.Fatal("the listener made a connection for a peer that never returned a cookie")
		}
	})
}

// TestListenerHelloVerifyRequest checks the stateless answer to a valid
// ClientHello: one record reusing the ClientHello's record and message
// sequence numbers, carrying a well-formed HelloVerifyRequest.
func TestListenerHelloVerifyRequest(t *testing.T) {
	l := robustPSKServer(t)
	e := startRawClient(t, l)
	hello := mustMarshal(t, newClientHello(t, pskClientConfig()))
	e.send(plainRecord(recordHandshake, 0, 7, fullHandshakeMessage(typeClientHello, 0, hello)))
	d, err := e.read(time.Now().Add(rawTimeout))
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != 1 || d[0].contentType != recordHandshake || d[0].epoch != 0 || d[0].seq != 7 || d[0].version != versionDTLS10 {
		t.Fatalf("HelloVerifyRequest datagram: %+v", d)
	}
	frags, err := parseHandshakeFragments(d[0].fragment)
	if err != nil || len(frags) != 1 || frags[0].msgType != typeHelloVerifyRequest || frags[0].seq != 0 ||
		frags[0].offset != 0 || int(frags[0].length) != len(frags[0].data) {
		t.Fatalf("HelloVerifyRequest fragments %+v, %v", frags, err)
	}
	var hvr helloVerifyRequestMsg
	if err := hvr.unmarshal(frags[0].data); err != nil || hvr.vers != versionDTLS10 || len(hvr.cookie) != cookieSize {
		t.Fatalf("HelloVerifyRequest %+v, %v", hvr, err)
	}
	if n := listenerConns(l); n != 0 {
		t.Fatalf("%d connections after a ClientHello without cookie", n)
	}
}

// TestServerRejectsClientHello sends, after a proper cookie exchange,
// ClientHellos the server must refuse with a specific fatal alert.
func TestServerRejectsClientHello(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(h *clientHelloMsg)
		want   alertDescription
	}{
		{"no cipher suite in common", func(h *clientHelloMsg) { h.cipherSuites = []uint16{0x0035, 0x002f} }, alertHandshakeFailure},
		{"only ECDHE suites to a PSK server", func(h *clientHelloMsg) {
			h.cipherSuites = []uint16{uint16(TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8)}
		}, alertHandshakeFailure},
		{"client_version DTLS 1.0", func(h *clientHelloMsg) { h.vers = versionDTLS10 }, alertProtocolVersion},
		{"compression_methods without null", func(h *clientHelloMsg) { h.compressionMethods = []uint8{1} }, alertIllegalParameter},
		{"supported_groups of odd length", func(h *clientHelloMsg) {
			h.extensions = append(h.extensions, extension{extSupportedGroups, []byte{0, 3, 0, 23, 0}})
		}, alertDecodeError},
		{"signature_algorithms with trailing data", func(h *clientHelloMsg) {
			h.extensions = append(h.extensions, extension{extSignatureAlgorithms, []byte{0, 2, 4, 3, 9}})
		}, alertDecodeError},
		{"ec_point_formats empty", func(h *clientHelloMsg) {
			h.extensions = append(h.extensions, extension{extECPointFormats, []byte{0}})
		}, alertDecodeError},
		{"renegotiation_info not empty", func(h *clientHelloMsg) {
			for i := range h.extensions {
				if h.extensions[i].typ == extRenegotiationInfo {
					h.extensions[i].data = marshalRenegotiationInfo([]byte{1, 2, 3})
				}
			}
		}, alertHandshakeFailure},
		{"renegotiation_info malformed", func(h *clientHelloMsg) {
			for i := range h.extensions {
				if h.extensions[i].typ == extRenegotiationInfo {
					h.extensions[i].data = []byte{5, 1}
				}
			}
		}, alertDecodeError},
	}
	l := robustPSKServer(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := startRawClient(t, l)
			// Only the plain PSK suite: no ECDHE extensions to collide with
			// the ones the cases add.
			cfg := pskClientConfig()
			cfg.CipherSuites = []CipherSuiteID{TLS_PSK_WITH_AES_128_CCM_8}
			h := newClientHello(t, cfg)
			tc.mutate(h)
			e.cookieExchange(h)
			e.expectAlert(alertLevelFatal, tc.want)
		})
	}
	t.Run("newer client_version negotiates DTLS 1.2", func(t *testing.T) {
		t.Parallel()
		e := startRawClient(t, l)
		h := newClientHello(t, pskClientConfig())
		h.vers = 0xfefc
		e.cookieExchange(h)
		msgs, err := e.readFlight(typeServerHello)
		if err != nil {
			t.Fatal(err)
		}
		var sh serverHelloMsg
		if err := sh.unmarshal(msgs[len(msgs)-1].body); err != nil || sh.vers != versionDTLS12 {
			t.Fatalf("ServerHello %+v, %v", sh, err)
		}
	})
}

// TestServerRejectsClientFlight drives a PSK handshake to flight 5 and then
// sends messages out of order or malformed.
func TestServerRejectsClientFlight(t *testing.T) {
	cases := []struct {
		name  string
		build func(e *rawEnd) []byte
		want  alertDescription
	}{
		{"Finished instead of ClientKeyExchange", func(e *rawEnd) []byte {
			return e.handshake(typeFinished, 0, make([]byte, 12))
		}, alertUnexpectedMessage},
		{"CertificateVerify instead of ClientKeyExchange", func(e *rawEnd) []byte {
			return e.handshake(typeCertificateVerify, 0, mustMarshal(e.t, &certificateVerifyMsg{sigAlg: sigECDSAWithP256SHA256, signature: []byte{1}}))
		}, alertUnexpectedMessage},
		{"ClientHello instead of ClientKeyExchange", func(e *rawEnd) []byte {
			return e.handshake(typeClientHello, 0, mustMarshal(e.t, e.hello))
		}, alertUnexpectedMessage},
		{"ServerHelloDone instead of ClientKeyExchange", func(e *rawEnd) []byte {
			return e.handshake(typeServerHelloDone, 0, nil)
		}, alertUnexpectedMessage},
		{"Certificate instead of ClientKeyExchange", func(e *rawEnd) []byte {
			return e.handshake(typeCertificate, 0, mustMarshal(e.t, &certificateMsg{}))
		}, alertUnexpectedMessage},
		{"unknown handshake type instead of ClientKeyExchange", func(e *rawEnd) []byte {
			return e.handshake(99, 0, []byte{1, 2, 3})
		}, alertUnexpectedMessage},
		{"ClientKeyExchange identity length past the end", func(e *rawEnd) []byte {
			return e.handshake(typeClientKeyExchange, 0, []byte{0, 16, 'c', 'l', 'i'})
		}, alertDecodeError},
		{"ClientKeyExchange with a trailing byte", func(e *rawEnd) []byte {
			return e.handshake(typeClientKeyExchange, 0, append(mustMarshal(e.t, &clientKeyExchangePSKMsg{identity: []byte("client1")}), 0))
		}, alertDecodeError},
		{"ClientKeyExchange empty", func(e *rawEnd) []byte {
			return e.handshake(typeClientKeyExchange, 0, nil)
		}, alertDecodeError},
		{"unknown PSK identity", func(e *rawEnd) []byte {
			// Answered as a wrong key (RFC 4279 §2): the Finished, sealed
			// under keys the server cannot have, fails three times.
			cke := e.pskKeyExchange([]byte("mallory"))
			fin := e.finished()
			return cat(cke, e.ccs(), fin, fin, fin)
		}, alertDecryptError},
		{"Finished with wrong verify_data", func(e *rawEnd) []byte {
			cke := e.pskKeyExchange([]byte("client1"))
			return cat(cke, e.ccs(), e.handshake(typeFinished, 1, make([]byte, 12)))
		}, alertDecryptError},
		{"Finished too short", func(e *rawEnd) []byte {
			cke := e.pskKeyExchange([]byte("client1"))
			return cat(cke, e.ccs(), e.handshake(typeFinished, 1, make([]byte, 11)))
		}, alertDecodeError},
		{"Finished before ChangeCipherSpec", func(e *rawEnd) []byte {
			cke := e.pskKeyExchange([]byte("client1"))
			vd, _ := finishedData(e.ms, e.transcript, true)
			return cat(cke, e.handshake(typeFinished, 0, vd))
		}, alertUnexpectedMessage},
		{"second ClientKeyExchange instead of Finished", func(e *rawEnd) []byte {
			cke := e.pskKeyExchange([]byte("client1"))
			return cat(cke, e.ccs(), e.handshake(typeClientKeyExchange, 1, mustMarshal(e.t, &clientKeyExchangePSKMsg{identity: []byte("client1")})))
		}, alertUnexpectedMessage},
	}
	l := robustPSKServer(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := startRawClient(t, l)
			e.cookieExchange(newClientHello(t, pskClientConfig()))
			if err := e.readServerFlight(); err != nil {
				t.Fatal(err)
			}
			e.send(tc.build(e))
			e.expectAlert(alertLevelFatal, tc.want)
		})
	}
}

// TestServerRejectsECDHEClientFlight covers the certificate handshake:
// an invalid ECDH share and, with client authentication, messages out of
// order and a bad CertificateVerify.
func TestServerRejectsECDHEClientFlight(t *testing.T) {
	srvCert := newTestCert(t)
	cliCert := newTestCert(t)
	keyShare := func(t testing.TB) []byte {
		kp, err := pionelliptic.GenerateKeypair(pionelliptic.P256)
		if err != nil {
			t.Fatal(err)
		}
		return kp.PublicKey
	}
	cke := func(e *rawEnd, share []byte) []byte {
		return e.handshake(typeClientKeyExchange, 0, mustMarshal(e.t, &clientKeyExchangeECDHEMsg{publicKey: share}))
	}
	cert := func(e *rawEnd) []byte {
		return e.handshake(typeCertificate, 0, mustMarshal(e.t, &certificateMsg{certificates: cliCert.cert.Certificate}))
	}
	badPoint := append([]byte{4}, bytes.Repeat([]byte{0x55}, 64)...)
	cases := []struct {
		name       string
		clientAuth ClientAuthType
		build      func(e *rawEnd) []byte
		want       alertDescription
	}{
		{"ClientKeyExchange with a point not on the curve", NoClientCert, func(e *rawEnd) []byte {
			return cke(e, badPoint)
		}, alertIllegalParameter},
		{"ClientKeyExchange with a compressed point", NoClientCert, func(e *rawEnd) []byte {
			return cke(e, append([]byte{2}, bytes.Repeat([]byte{0x55}, 32)...))
		}, alertIllegalParameter},
		{"Finished instead of ClientKeyExchange", NoClientCert, func(e *rawEnd) []byte {
			return e.handshake(typeFinished, 0, make([]byte, 12))
		}, alertUnexpectedMessage},
		{"ClientKeyExchange instead of Certificate", RequireAnyClientCert, func(e *rawEnd) []byte {
			return cke(e, keyShare(e.t))
		}, alertUnexpectedMessage},
		{"no client certificate when one is required", RequireAnyClientCert, func(e *rawEnd) []byte {
			return e.handshake(typeCertificate, 0, mustMarshal(e.t, &certificateMsg{}))
		}, alertHandshakeFailure},
		{"client certificate that does not parse", RequireAnyClientCert, func(e *rawEnd) []byte {
			return e.handshake(typeCertificate, 0, mustMarshal(e.t, &certificateMsg{certificates: [][]byte{{0x30, 0x03, 1, 2, 3}}}))
		}, alertBadCertificate},
		{"Finished instead of CertificateVerify", RequireAnyClientCert, func(e *rawEnd) []byte {
			return cat(cert(e), cke(e, keyShare(e.t)), e.handshake(typeFinished, 0, make([]byte, 12)))
		}, alertUnexpectedMessage},
		{"CertificateVerify with a bad signature", RequireAnyClientCert, func(e *rawEnd) []byte {
			cv := &certificateVerifyMsg{sigAlg: sigECDSAWithP256SHA256, signature: []byte{0x30, 0x06, 2, 1, 1, 2, 1, 1}}
			return cat(cert(e), cke(e, keyShare(e.t)), e.handshake(typeCertificateVerify, 0, mustMarshal(e.t, cv)))
		}, alertDecryptError},
	}
	for _, auth := range []ClientAuthType{NoClientCert, RequireAnyClientCert} {
		cfg := &Config{Certificates: []tls.Certificate{srvCert.cert}, ClientAuth: auth, HandshakeTimeout: robustHandshakeTimeout, RetransmitInterval: 200 * time.Millisecond}
		l := startEchoServer(t, cfg)
		for _, tc := range cases {
			if tc.clientAuth != auth {
				continue
			}
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				e := startRawClient(t, l)
				e.cookieExchange(newClientHello(t, &Config{RootCAs: srvCert.pool, ServerName: "localhost"}))
				if err := e.readServerFlight(); err != nil {
					t.Fatal(err)
				}
				e.send(tc.build(e))
				e.expectAlert(alertLevelFatal, tc.want)
			})
		}
	}
}

// TestServerUnknownPSKIdentity runs our own client with an identity the
// server does not know. By default the server answers it as a wrong key
// (decrypt_error after the client's Finished failed, RFC 4279 §2); with
// RevealUnknownPSKIdentity it sends unknown_psk_identity at once.
func TestServerUnknownPSKIdentity(t *testing.T) {
	for _, reveal := range []bool{false, true} {
		scfg := pskServerConfig()
		scfg.HandshakeTimeout = robustHandshakeTimeout
		scfg.RevealUnknownPSKIdentity = reveal
		l := startEchoServer(t, scfg)
		cfg := pskClientConfig()
		cfg.PSKIdentityHint = []byte("nobody")
		cfg.HandshakeTimeout = robustHandshakeTimeout
		start := time.Now()
		_, err := Dial("udp", l.Addr().(*net.UDPAddr), cfg)
		if reveal {
			wantAlertError(t, err, alertUnknownPSKIdentity, true)
		} else {
			wantAlertError(t, err, alertDecryptError, true)
		}
		if d := time.Since(start); d > robustHandshakeTimeout {
			t.Errorf("reveal %v: failure took %v", reveal, d)
		}
	}
}

// TestServerIgnoresUnusableSessionOffers offers sessions the server cannot
// resume: a ticket that is not one of its own, an unknown session ID. The
// server must fall back to a full handshake (RFC 5077 §3.4, RFC 5246
// §7.4.1.2).
func TestServerIgnoresUnusableSessionOffers(t *testing.T) {
	ticket := func(b []byte) func(h *clientHelloMsg) {
		return func(h *clientHelloMsg) { h.extensions = append(h.extensions, extension{extSessionTicket, b}) }
	}
	cases := []struct {
		name   string
		mutate func(h *clientHelloMsg)
	}{
		{"ticket of random bytes", ticket(bytes.Repeat([]byte{0x5a}, 150))},
		{"one-byte ticket", ticket([]byte{1})},
		{"long ticket", ticket(bytes.Repeat([]byte{0xa5}, 1000))},
		{"unknown session_id", func(h *clientHelloMsg) { h.sessionID = bytes.Repeat([]byte{7}, 32) }},
		{"one-byte session_id and a ticket", func(h *clientHelloMsg) {
			h.sessionID = []byte{9}
			ticket(bytes.Repeat([]byte{3}, 64))(h)
		}},
	}
	l := robustPSKServer(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := startRawClient(t, l)
			h := newClientHello(t, pskClientConfig())
			tc.mutate(h)
			e.cookieExchange(h)
			if err := e.readServerFlight(); err != nil {
				t.Fatal(err)
			}
			e.send(cat(e.pskKeyExchange([]byte("client1")), e.ccs(), e.finished()))
			e.expectFinished()
			e.sendApp([]byte("full handshake"))
			if got := e.readApp(); string(got) != "full handshake" {
				t.Fatalf("echo %q", got)
			}
		})
	}
}

func wantAlertError(t testing.TB, err error, desc alertDescription, remote bool) {
	t.Helper()
	var ae *AlertError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T), want an *AlertError %v", err, err, desc)
	}
	if alertDescription(ae.Description) != desc || ae.Remote != remote {
		t.Fatalf("error %v: got alert %v remote=%v, want %v remote=%v", err, alertDescription(ae.Description), ae.Remote, desc, remote)
	}
}

// TestServerDropsBadRecordsDuringHandshake sends records that must be
// discarded between the server's flight 4 and a genuine flight 5: the
// handshake still completes.
func TestServerDropsBadRecordsDuringHandshake(t *testing.T) {
	cases := []struct {
		name   string
		before func(e *rawEnd) [][]byte // sent before flight 5; may run after keys
	}{
		{"epoch-1 garbage before keys", func(e *rawEnd) [][]byte {
			return [][]byte{
				plainRecord(recordHandshake, 1, 0, bytes.Repeat([]byte{0xaa}, 40)),
				plainRecord(recordApplicationData, 1, 9, bytes.Repeat([]byte{0xbb}, 40)),
				cat(plainRecord(recordHandshake, 1, 3, []byte{1, 2}), plainRecord(recordAlert, 1, 4, make([]byte, 26))),
			}
		}},
		{"epoch-2 and epoch-0xffff records", func(e *rawEnd) [][]byte {
			return [][]byte{
				plainRecord(recordHandshake, 2, 0, fullHandshakeMessage(typeClientKeyExchange, 2, []byte{0, 1, 'x'})),
				plainRecord(recordAlert, 0xffff, 0, []byte{2, 10}),
			}
		}},
		{"handshake fragments that do not parse", func(e *rawEnd) [][]byte {
			return [][]byte{
				plainRecord(recordHandshake, 0, 50, []byte{typeClientKeyExchange, 0, 0}),
				plainRecord(recordHandshake, 0, 51, marshalHandshakeHeader(nil, typeClientKeyExchange, 4, 2, 3, 9)),
				plainRecord(recordHandshake, 0, 52, append(marshalHandshakeHeader(nil, typeClientKeyExchange, 1<<17, 2, 0, 2), 1, 2)),
			}
		}},
		{"message far ahead of the window", func(e *rawEnd) [][]byte {
			return [][]byte{plainRecord(recordHandshake, 0, 60, fullHandshakeMessage(typeFinished, 40, make([]byte, 12)))}
		}},
		{"retransmitted ClientHello", func(e *rawEnd) [][]byte {
			return [][]byte{e.record(recordHandshake, 0, fullHandshakeMessage(typeClientHello, 1, mustMarshal(e.t, e.hello)))}
		}},
		{"malformed alerts and ChangeCipherSpec", func(e *rawEnd) [][]byte {
			return [][]byte{
				plainRecord(recordAlert, 0, 20, []byte{2}),
				plainRecord(recordAlert, 0, 21, []byte{2, 40, 0}),
				plainRecord(recordChangeCipherSpec, 0, 22, []byte{2}),
				plainRecord(recordChangeCipherSpec, 0, 23, []byte{1, 1}),
			}
		}},
		{"unknown content types", func(e *rawEnd) [][]byte {
			return [][]byte{
				plainRecord(0, 0, 24, []byte{1, 2, 3}),
				plainRecord(25, 0, 25, []byte{1, 2, 3}),
				plainRecord(255, 1, 82, bytes.Repeat([]byte{7}, 30)),
			}
		}},
		{"truncated record after a good one", func(e *rawEnd) [][]byte {
			return [][]byte{cat(plainRecord(recordApplicationData, 0, 26, []byte("x")), plainRecord(recordHandshake, 0, 27, []byte{1, 2, 3})[:9])}
		}},
	}
	l := robustPSKServer(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := startRawClient(t, l)
			e.cookieExchange(newClientHello(t, pskClientConfig()))
			if err := e.readServerFlight(); err != nil {
				t.Fatal(err)
			}
			e.send(tc.before(e)...)
			e.send(cat(e.pskKeyExchange([]byte("client1")), e.ccs(), e.finished()))
			e.expectFinished()
			e.sendApp([]byte(tc.name))
			if got := e.readApp(); string(got) != tc.name {
				t.Fatalf("echo %q", got)
			}
		})
	}
	t.Run("Finished with a bad record MAC, then the real one", func(t *testing.T) {
		t.Parallel()
		e := startRawClient(t, l)
		e.cookieExchange(newClientHello(t, pskClientConfig()))
		if err := e.readServerFlight(); err != nil {
			t.Fatal(err)
		}
		cke := e.pskKeyExchange([]byte("client1"))
		ccs := e.ccs()
		tr := len(e.transcript)
		seq := e.sendSeq
		bad := e.finished()
		bad[len(bad)-1] ^= 0x80
		e.transcript, e.sendSeq = e.transcript[:tr], seq
		e.send(cat(cke, ccs, bad))
		e.expectNothing(50 * time.Millisecond)
		e.send(cat(e.ccs(), e.finished()))
		e.expectFinished()
	})
}

// rawSession is what a raw client keeps of a session to resume it.
type rawSession struct {
	ticket []byte
	ms     []byte
	suite  *cipherSuite
	ems    bool
}

// rawTicketSession runs a raw PSK handshake that asks for a ticket.
func rawTicketSession(t testing.TB, l *Listener) rawSession {
	t.Helper()
	e := startRawClient(t, l)
	h := newClientHello(t, pskClientConfig())
	h.extensions = append(h.extensions, extension{extSessionTicket, nil})
	e.cookieExchange(h)
	if err := e.readServerFlight(); err != nil {
		t.Fatal(err)
	}
	e.send(cat(e.pskKeyExchange([]byte("client1")), e.ccs(), e.finished()))
	for _, m := range e.expectFinished() {
		var nst newSessionTicketMsg
		if m.typ == typeNewSessionTicket && nst.unmarshal(m.body) == nil && len(nst.ticket) > 0 {
			return rawSession{ticket: nst.ticket, ms: e.ms, suite: e.suite, ems: e.ems}
		}
	}
	t.Fatal("the server issued no ticket")
	return rawSession{}
}

// resume offers s in a ClientHello changed by mutate, answers a
// HelloVerifyRequest if one comes, and reads the server's ServerHello. It
// returns the server's alert instead, if it sends one.
func (e *rawEnd) resume(s rawSession, mutate func(*clientHelloMsg)) error {
	e.t.Helper()
	h := newClientHello(e.t, pskClientConfig())
	h.sessionID = make([]byte, 32)
	if _, err := rand.Read(h.sessionID); err != nil {
		e.t.Fatal(err)
	}
	h.extensions = append(h.extensions, extension{extSessionTicket, s.ticket})
	if mutate != nil {
		mutate(h)
	}
	e.hello = h
	body := mustMarshal(e.t, h)
	seq := e.sendSeq
	e.send(e.handshakeOff(typeClientHello, 0, body))
	msgs, err := e.readFlightUntil(typeHelloVerifyRequest, typeServerHello)
	if err != nil {
		return err
	}
	if m := msgs[len(msgs)-1]; m.typ == typeHelloVerifyRequest {
		var hvr helloVerifyRequestMsg
		if err := hvr.unmarshal(m.body); err != nil {
			e.t.Fatal(err)
		}
		h.cookie = hvr.cookie
		e.send(e.handshake(typeClientHello, 0, mustMarshal(e.t, h)))
		if msgs, err = e.readFlight(typeServerHello); err != nil {
			return err
		}
	} else {
		e.transcript = fullHandshakeMessage(typeClientHello, seq, body)
	}
	m := msgs[len(msgs)-1]
	e.take(m)
	var sh serverHelloMsg
	if err := sh.unmarshal(m.body); err != nil {
		e.t.Fatal(err)
	}
	e.serverRandom, e.suite, e.ems = sh.random, s.suite, s.ems
	if !bytes.Equal(sh.sessionID, h.sessionID) {
		e.t.Fatalf("the server did not resume the session (session_id %x, offered %x)", sh.sessionID, h.sessionID)
	}
	return nil
}

// TestServerRejectsResumptionFlight resumes a session by ticket and then
// ends the abbreviated handshake wrongly.
func TestServerRejectsResumptionFlight(t *testing.T) {
	cases := []struct {
		name string
		send func(e *rawEnd) []byte
		want alertDescription // 0: the handshake completes
	}{
		{"genuine", func(e *rawEnd) []byte { return cat(e.ccs(), e.finished()) }, 0},
		{"bad record MAC, then the real Finished", func(e *rawEnd) []byte {
			tr, seq := len(e.transcript), e.sendSeq
			bad := e.finished()
			bad[len(bad)-3] ^= 2
			e.transcript, e.sendSeq = e.transcript[:tr], seq
			return cat(e.ccs(), bad, plainRecord(recordHandshake, 1, 40, make([]byte, 40)), e.finished())
		}, 0},
		{"Finished with wrong verify_data", func(e *rawEnd) []byte {
			return cat(e.ccs(), e.handshake(typeFinished, 1, make([]byte, 12)))
		}, alertDecryptError},
		{"Finished before ChangeCipherSpec", func(e *rawEnd) []byte {
			vd, _ := finishedData(e.ms, e.transcript, true)
			return e.handshake(typeFinished, 0, vd)
		}, alertUnexpectedMessage},
		{"ClientKeyExchange instead of Finished", func(e *rawEnd) []byte {
			return e.handshake(typeClientKeyExchange, 0, mustMarshal(e.t, &clientKeyExchangePSKMsg{identity: []byte("client1")}))
		}, alertUnexpectedMessage},
		{"Certificate instead of Finished", func(e *rawEnd) []byte {
			return cat(e.ccs(), e.handshake(typeCertificate, 1, mustMarshal(e.t, &certificateMsg{})))
		}, alertUnexpectedMessage},
		{"NewSessionTicket from a client without client_state", func(e *rawEnd) []byte {
			return e.handshake(typeNewSessionTicket, 0, mustMarshal(e.t, &newSessionTicketMsg{ticket: []byte{1}}))
		}, alertUnexpectedMessage},
	}
	l := robustPSKServer(t)
	s := rawTicketSession(t, l)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := startRawClient(t, l)
			if err := e.resume(s, nil); err != nil {
				t.Fatal(err)
			}
			e.useMasterSecret(s.ms)
			e.expectFinished()
			e.send(tc.send(e))
			if tc.want != 0 {
				e.expectAlert(alertLevelFatal, tc.want)
				return
			}
			e.sendApp([]byte(tc.name))
			if got := e.readApp(); string(got) != tc.name {
				t.Fatalf("echo %q", got)
			}
		})
	}
	t.Run("extended_master_secret dropped on resumption", func(t *testing.T) {
		t.Parallel()
		if !s.ems {
			t.Fatal("the session was made without the extended master secret")
		}
		e := startRawClient(t, l)
		err := e.resume(s, func(h *clientHelloMsg) {
			var exts []extension
			for _, x := range h.extensions {
				if x.typ != extExtendedMasterSecret {
					exts = append(exts, x)
				}
			}
			h.extensions = exts
		})
		var ra *rawAlertError
		if !errors.As(err, &ra) || ra.level != alertLevelFatal || ra.desc != alertHandshakeFailure {
			t.Fatalf("got %v, want a fatal handshake_failure (RFC 7627 §5.3)", err)
		}
	})
}

// TestServerDropsBadRecordsAfterHandshake checks the record layer of an
// established connection: forged, replayed, plaintext and wrong-epoch
// records are dropped and the connection keeps working.
func TestServerDropsBadRecordsAfterHandshake(t *testing.T) {
	cases := []struct {
		name string
		send func(e *rawEnd) // then "end" is sent
		want []string        // echoes expected, "end" last
	}{
		{"bad record MAC", func(e *rawEnd) {
			r := e.record(recordApplicationData, 1, []byte("forged"))
			r[len(r)-1] ^= 1
			e.send(r)
		}, []string{"end"}},
		{"bad MAC then genuine in one datagram", func(e *rawEnd) {
			r := e.record(recordApplicationData, 1, []byte("forged"))
			r[recordHeaderLen+9] ^= 1
			e.send(cat(r, e.record(recordApplicationData, 1, []byte("genuine"))))
		}, []string{"genuine", "end"}},
		{"replayed application data", func(e *rawEnd) {
			r := e.record(recordApplicationData, 1, []byte("once"))
			e.send(r, r, cat(r, r))
		}, []string{"once", "end"}},
		{"replay of an old record after newer ones", func(e *rawEnd) {
			r := e.record(recordApplicationData, 1, []byte("first"))
			e.send(r)
			for i := range 3 {
				e.sendApp(fmt.Appendf(nil, "n%d", i))
			}
			e.send(r)
		}, []string{"first", "n0", "n1", "n2", "end"}},
		{"record older than the replay window", func(e *rawEnd) {
			old := e.record(recordApplicationData, 1, []byte("too old"))
			for range 70 {
				e.record(recordApplicationData, 1, nil) // burn sequence numbers
			}
			e.sendApp([]byte("new"))
			e.send(old)
		}, []string{"new", "end"}},
		{"plaintext application data in epoch 0", func(e *rawEnd) {
			e.send(plainRecord(recordApplicationData, 0, 100, []byte("plaintext")))
		}, []string{"end"}},
		{"epoch-2 record", func(e *rawEnd) {
			r := e.record(recordApplicationData, 1, []byte("epoch two"))
			r[4] = 2
			e.send(r)
		}, []string{"end"}},
		{"epoch-1 record with a rewritten sequence number", func(e *rawEnd) {
			r := e.record(recordApplicationData, 1, []byte("moved"))
			r[10] ^= 0x40
			e.send(r)
		}, []string{"end"}},
		{"epoch-1 record with a foreign version", func(e *rawEnd) {
			r := e.record(recordApplicationData, 1, []byte("version"))
			r[1], r[2] = 3, 3
			e.send(r)
		}, []string{"end"}},
		{"epoch-1 record too short for nonce and tag", func(e *rawEnd) {
			e.send(plainRecord(recordApplicationData, 1, 500, []byte{1, 2, 3}))
		}, []string{"end"}},
		{"epoch-0 fatal alert is ignored", func(e *rawEnd) {
			e.send(plainRecord(recordAlert, 0, 101, []byte{2, 40}))
		}, []string{"end"}},
		{"epoch-0 close_notify is ignored", func(e *rawEnd) {
			e.send(plainRecord(recordAlert, 0, 102, []byte{1, 0}))
		}, []string{"end"}},
		{"ChangeCipherSpec in epoch 1 is ignored", func(e *rawEnd) {
			e.send(plainRecord(recordChangeCipherSpec, 1, 600, []byte{1}))
			e.send(e.record(recordChangeCipherSpec, 1, []byte{1}))
		}, []string{"end"}},
		{"garbage after a good record in the same datagram", func(e *rawEnd) {
			e.send(cat(e.record(recordApplicationData, 1, []byte("kept")), []byte{23, 0xfe, 0xfd, 0, 1, 0, 0}))
		}, []string{"kept", "end"}},
		{"record longer than the datagram after a good one", func(e *rawEnd) {
			tail := e.record(recordApplicationData, 1, []byte("cut"))
			e.send(cat(e.record(recordApplicationData, 1, []byte("kept")), tail[:len(tail)-3]))
		}, []string{"kept", "end"}},
	}
	l := robustPSKServer(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := rawPSKHandshake(t, l)
			tc.send(e)
			e.sendApp([]byte("end"))
			var got []string
			for len(got) == 0 || got[len(got)-1] != "end" {
				got = append(got, string(e.readApp()))
				if len(got) > len(tc.want)+3 {
					break
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("echoes %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("renegotiation refused with a warning", func(t *testing.T) {
		t.Parallel()
		e := rawPSKHandshake(t, l)
		e.send(e.record(recordHandshake, 1, fullHandshakeMessage(typeClientHello, e.sendSeq, mustMarshal(t, e.hello))))
		e.expectAlert(alertLevelWarning, alertNoRenegotiation)
		e.sendApp([]byte("still up"))
		if got := e.readApp(); string(got) != "still up" {
			t.Fatalf("echo %q", got)
		}
	})
	t.Run("authenticated fatal alert ends the connection", func(t *testing.T) {
		t.Parallel()
		cfg := pskServerConfig()
		cfg.HandshakeTimeout = robustHandshakeTimeout
		l, err := Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := l.Accept()
			if err == nil {
				accepted <- c
			}
		}()
		e := rawPSKHandshake(t, l)
		var c net.Conn
		select {
		case c = <-accepted:
		case <-time.After(rawTimeout):
			t.Fatal("no connection accepted")
		}
		defer c.Close()
		e.send(e.record(recordAlert, 1, []byte{2, byte(alertInternalError)}))
		_ = c.SetReadDeadline(time.Now().Add(rawTimeout))
		_, err = c.Read(make([]byte, 100))
		wantAlertError(t, err, alertInternalError, true)
	})
}

// TestListenerKeepsClientHelloWhileReading sends the ClientHello with the
// cookie and, right behind it, another datagram to the Listener. The server
// must base its transcript on the ClientHello it screened, whatever its
// socket reads next.
func TestListenerKeepsClientHelloWhileReading(t *testing.T) {
	l := robustPSKServer(t)
	for i := range 8 {
		e := startRawClient(t, l)
		hello := newClientHello(t, &Config{PSK: pskClientConfig().PSK, PSKIdentityHint: []byte("client1"), ExtendedMasterSecret: DisableExtendedMasterSecret})
		e.send(e.handshakeOff(typeClientHello, 0, mustMarshal(t, hello)))
		msgs, err := e.readFlight(typeHelloVerifyRequest)
		if err != nil {
			t.Fatal(err)
		}
		var hvr helloVerifyRequestMsg
		if err := hvr.unmarshal(msgs[len(msgs)-1].body); err != nil {
			t.Fatal(err)
		}
		hello.cookie = hvr.cookie
		e.hello = hello
		ch := e.handshake(typeClientHello, 0, mustMarshal(t, hello))
		// The second datagram is as long as the first and shares no byte
		// with it: any read of the old buffer would see it.
		junk := bytes.Repeat([]byte{0xee}, len(ch))
		e.send(ch, junk)
		if err := e.readServerFlight(); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		e.send(cat(e.pskKeyExchange([]byte("client1")), e.ccs(), e.finished()))
		if _, err := e.readFlight(typeFinished); err != nil {
			t.Fatalf("round %d: server refused our Finished (%v): its transcript does not hold the ClientHello we sent", i, err)
		}
	}
}

// ---- the raw peer as a server for our client ----

func robustPSKClientConfig() *Config {
	cfg := pskClientConfig()
	cfg.HandshakeTimeout = robustHandshakeTimeout
	cfg.RetransmitInterval = 200 * time.Millisecond
	return cfg
}

// startRawServer starts our client against a raw server and returns both
// ends; the client's handshake result arrives on the channel.
func startRawServer(t testing.TB, cfg *Config) (*rawEnd, <-chan error) {
	t.Helper()
	srv := newRawEnd(t, nil, false)
	sock := loopbackUDP(t)
	c, err := Client(sock, srv.addr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Handshake() }()
	t.Cleanup(func() { c.Close() })
	return srv, errc
}

func waitHandshake(t testing.TB, errc <-chan error, limit time.Duration) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(limit):
		t.Fatalf("client handshake still running after %v", limit)
		return nil
	}
}

// acceptHello reads the client's ClientHello; the server's message_seq
// continues from it.
func (e *rawEnd) acceptHello() *clientHelloMsg {
	e.t.Helper()
	msgs, err := e.readFlight(typeClientHello)
	if err != nil {
		e.t.Fatalf("ClientHello: %v", err)
	}
	m := msgs[len(msgs)-1]
	var h clientHelloMsg
	if err := h.unmarshal(m.body); err != nil {
		e.t.Fatal(err)
	}
	e.hello = &h
	e.transcript = fullHandshakeMessage(m.typ, m.seq, m.body)
	e.sendSeq = m.seq
	return &h
}

// serverHello returns a ServerHello record for a PSK suite the client
// offered, changed by mutate.
func (e *rawEnd) serverHello(mutate func(*serverHelloMsg)) []byte {
	e.t.Helper()
	sh := &serverHelloMsg{vers: versionDTLS12, cipherSuite: uint16(TLS_PSK_WITH_AES_128_CCM_8)}
	if _, err := rand.Read(sh.random[:]); err != nil {
		e.t.Fatal(err)
	}
	if mutate != nil {
		mutate(sh)
	}
	e.serverRandom = sh.random
	e.suite = cipherSuiteByID(sh.cipherSuite)
	_, e.ems = findExtension(sh.extensions, extExtendedMasterSecret)
	return e.handshake(typeServerHello, 0, mustMarshal(e.t, sh))
}

// TestClientRejectsServerHello answers our client's ClientHello with a
// flight the client must refuse with a specific fatal alert.
func TestClientRejectsServerHello(t *testing.T) {
	shd := func(e *rawEnd) []byte { return e.handshake(typeServerHelloDone, 0, nil) }
	withSH := func(mutate func(*serverHelloMsg)) func(e *rawEnd) []byte {
		return func(e *rawEnd) []byte { return cat(e.serverHello(mutate), shd(e)) }
	}
	cases := []struct {
		name    string
		cfg     func(*Config)
		respond func(e *rawEnd) []byte
		want    alertDescription
	}{
		{"suite not offered", nil, withSH(func(sh *serverHelloMsg) {
			sh.cipherSuite = uint16(TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8)
		}), alertIllegalParameter},
		{"suite unknown", nil, withSH(func(sh *serverHelloMsg) { sh.cipherSuite = 0x0035 }), alertIllegalParameter},
		{"suite offered by another config", func(c *Config) {
			c.CipherSuites = []CipherSuiteID{TLS_PSK_WITH_AES_128_GCM_SHA256}
		}, withSH(nil), alertIllegalParameter},
		{"server_version DTLS 1.0", nil, withSH(func(sh *serverHelloMsg) { sh.vers = versionDTLS10 }), alertProtocolVersion},
		{"server_version newer than 1.2", nil, withSH(func(sh *serverHelloMsg) { sh.vers = 0xfefc }), alertProtocolVersion},
		{"server_version TLS 1.2", nil, withSH(func(sh *serverHelloMsg) { sh.vers = 0x0303 }), alertProtocolVersion},
		{"compression_method deflate", nil, withSH(func(sh *serverHelloMsg) { sh.compressionMethod = 1 }), alertIllegalParameter},
		{"ec_point_formats not offered", func(c *Config) {
			c.CipherSuites = []CipherSuiteID{TLS_PSK_WITH_AES_128_CCM_8} // no ECDHE_PSK: no ec_point_formats
		}, withSH(func(sh *serverHelloMsg) {
			sh.extensions = []extension{{extECPointFormats, marshalECPointFormats([]uint8{0})}}
		}), alertUnsupportedExtension},
		{"session_ticket not offered", nil, withSH(func(sh *serverHelloMsg) {
			sh.extensions = []extension{{extSessionTicket, nil}}
		}), alertUnsupportedExtension},
		{"unknown extension", nil, withSH(func(sh *serverHelloMsg) {
			sh.extensions = []extension{{0x7777, []byte{1}}}
		}), alertUnsupportedExtension},
		{"extended_master_secret when disabled", func(c *Config) {
			c.ExtendedMasterSecret = DisableExtendedMasterSecret
		}, withSH(func(sh *serverHelloMsg) { sh.extensions = []extension{{extExtendedMasterSecret, nil}} }), alertUnsupportedExtension},
		{"session_ticket with data", func(c *Config) {
			c.ClientSessionCache = NewLRUClientSessionCache(4)
		}, withSH(func(sh *serverHelloMsg) { sh.extensions = []extension{{extSessionTicket, []byte{1}}} }), alertDecodeError},
		{"extended_master_secret with data", nil, withSH(func(sh *serverHelloMsg) {
			sh.extensions = []extension{{extExtendedMasterSecret, []byte{0}}}
		}), alertDecodeError},
		{"renegotiation_info not empty", nil, withSH(func(sh *serverHelloMsg) {
			sh.extensions = []extension{{extRenegotiationInfo, marshalRenegotiationInfo([]byte{1, 2})}}
		}), alertHandshakeFailure},
		{"no extended_master_secret when required", func(c *Config) {
			c.ExtendedMasterSecret = RequireExtendedMasterSecret
		}, withSH(nil), alertHandshakeFailure},
		{"ServerHello truncated", nil, func(e *rawEnd) []byte {
			b := mustMarshal(e.t, &serverHelloMsg{vers: versionDTLS12, cipherSuite: uint16(TLS_PSK_WITH_AES_128_CCM_8)})
			return cat(e.handshake(typeServerHello, 0, b[:len(b)-1]), shd(e))
		}, alertDecodeError},
		{"ServerHello session_id length past the end", nil, func(e *rawEnd) []byte {
			b := mustMarshal(e.t, &serverHelloMsg{vers: versionDTLS12, cipherSuite: uint16(TLS_PSK_WITH_AES_128_CCM_8)})
			b[34] = 20
			return cat(e.handshake(typeServerHello, 0, b), shd(e))
		}, alertDecodeError},
		{"ServerHello duplicate extension", nil, func(e *rawEnd) []byte {
			b := mustMarshal(e.t, &serverHelloMsg{vers: versionDTLS12, cipherSuite: uint16(TLS_PSK_WITH_AES_128_CCM_8)})
			b = append(b, 0, 8, 0, 23, 0, 0, 0, 23, 0, 0)
			return cat(e.handshake(typeServerHello, 0, b), shd(e))
		}, alertDecodeError},
		{"ServerHelloDone first", nil, func(e *rawEnd) []byte { return shd(e) }, alertUnexpectedMessage},
		{"Finished first", nil, func(e *rawEnd) []byte {
			return e.handshake(typeFinished, 0, make([]byte, 12))
		}, alertUnexpectedMessage},
		{"Certificate in a PSK handshake", nil, func(e *rawEnd) []byte {
			return cat(e.serverHello(nil), e.handshake(typeCertificate, 0, mustMarshal(e.t, &certificateMsg{})), shd(e))
		}, alertUnexpectedMessage},
		{"CertificateRequest in a PSK handshake", nil, func(e *rawEnd) []byte {
			req := &certificateRequestMsg{certificateTypes: []uint8{64}, signatureAlgorithms: []uint16{sigECDSAWithP256SHA256}}
			return cat(e.serverHello(nil), e.handshake(typeCertificateRequest, 0, mustMarshal(e.t, req)), shd(e))
		}, alertUnexpectedMessage},
		{"ServerKeyExchange hint length past the end", nil, func(e *rawEnd) []byte {
			return cat(e.serverHello(nil), e.handshake(typeServerKeyExchange, 0, []byte{0, 9, 'h'}), shd(e))
		}, alertDecodeError},
		{"ServerHelloDone with a body", nil, func(e *rawEnd) []byte {
			return cat(e.serverHello(nil), e.handshake(typeServerHelloDone, 0, []byte{0}))
		}, alertDecodeError},
		{"second ServerHello", nil, func(e *rawEnd) []byte {
			return cat(e.serverHello(nil), e.serverHello(nil), shd(e))
		}, alertUnexpectedMessage},
		{"HelloVerifyRequest malformed", nil, func(e *rawEnd) []byte {
			return e.handshakeOff(typeHelloVerifyRequest, 0, []byte{0xfe, 0xff, 40, 1, 2})
		}, alertDecodeError},
		{"HelloVerifyRequest after ServerHello", nil, func(e *rawEnd) []byte {
			hvr := mustMarshal(e.t, &helloVerifyRequestMsg{vers: versionDTLS10, cookie: []byte{1}})
			return cat(e.serverHello(nil), e.handshakeOff(typeHelloVerifyRequest, 0, hvr))
		}, alertUnexpectedMessage},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := robustPSKClientConfig()
			if tc.cfg != nil {
				tc.cfg(cfg)
			}
			srv, errc := startRawServer(t, cfg)
			srv.acceptHello()
			srv.send(tc.respond(srv))
			srv.expectAlert(alertLevelFatal, tc.want)
			wantAlertError(t, waitHandshake(t, errc, rawTimeout), tc.want, false)
		})
	}
}

// TestClientRejectsECDHEServerFlight answers with certificate flights the
// client must refuse.
func TestClientRejectsECDHEServerFlight(t *testing.T) {
	tc := newTestCert(t)
	other := newTestCert(t)
	type skeMut func(*serverKeyExchangeECDHEMsg)
	flight := func(chain [][]byte, mutate skeMut, corruptSig bool) func(e *rawEnd) []byte {
		return func(e *rawEnd) []byte {
			sh := e.serverHello(func(sh *serverHelloMsg) { sh.cipherSuite = uint16(TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8) })
			cert := e.handshake(typeCertificate, 0, mustMarshal(e.t, &certificateMsg{certificates: chain}))
			kp, err := pionelliptic.GenerateKeypair(pionelliptic.P256)
			if err != nil {
				e.t.Fatal(err)
			}
			ske := &serverKeyExchangeECDHEMsg{namedCurve: uint16(CurveP256), publicKey: kp.PublicKey, sigAlg: sigECDSAWithP256SHA256}
			if mutate != nil {
				mutate(ske)
			}
			h := sha256.New()
			h.Write(e.hello.random[:])
			h.Write(e.serverRandom[:])
			h.Write(ske.params())
			if ske.signature, err = tc.cert.PrivateKey.(crypto.Signer).Sign(rand.Reader, h.Sum(nil), crypto.SHA256); err != nil {
				e.t.Fatal(err)
			}
			if corruptSig {
				ske.signature[len(ske.signature)-1] ^= 1
			}
			return cat(sh, cert, e.handshake(typeServerKeyExchange, 0, mustMarshal(e.t, ske)), e.handshake(typeServerHelloDone, 0, nil))
		}
	}
	cases := []struct {
		name    string
		respond func(e *rawEnd) []byte
		want    alertDescription
	}{
		{"ServerKeyExchange public key not a P-256 point", flight(tc.cert.Certificate, func(s *serverKeyExchangeECDHEMsg) { s.publicKey = s.publicKey[:10] }, false), alertIllegalParameter},
		{"certificate that does not parse", flight([][]byte{{0x30, 0x03, 1, 2, 3}}, nil, false), alertBadCertificate},
		{"no certificate", flight(nil, nil, false), alertBadCertificate},
		{"certificate from an unknown CA", flight(other.cert.Certificate, nil, false), alertBadCertificate},
		{"ServerKeyExchange signature does not verify", flight(tc.cert.Certificate, nil, true), alertDecryptError},
		{"ServerKeyExchange curve not offered", flight(tc.cert.Certificate, func(s *serverKeyExchangeECDHEMsg) { s.namedCurve = 29 }, false), alertIllegalParameter},
		{"ServerKeyExchange signature algorithm not offered", flight(tc.cert.Certificate, func(s *serverKeyExchangeECDHEMsg) { s.sigAlg = 0x0804 }, false), alertIllegalParameter},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg := &Config{RootCAs: tc.pool, ServerName: "localhost", CipherSuites: []CipherSuiteID{TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8},
				HandshakeTimeout: robustHandshakeTimeout, RetransmitInterval: 200 * time.Millisecond}
			srv, errc := startRawServer(t, cfg)
			srv.acceptHello()
			srv.send(c.respond(srv))
			srv.expectAlert(alertLevelFatal, c.want)
			wantAlertError(t, waitHandshake(t, errc, rawTimeout), c.want, false)
		})
	}
}

// rawServerPSK runs a raw PSK server through flight 5: it sends ServerHello
// and ServerHelloDone, reads ClientKeyExchange and installs the keys.
func rawServerPSK(t testing.TB, srv *rawEnd) { rawServerPSKWith(t, srv, nil) }

func rawServerPSKWith(t testing.TB, srv *rawEnd, mutate func(*serverHelloMsg)) {
	t.Helper()
	srv.acceptHello()
	srv.send(cat(srv.serverHello(mutate), srv.handshake(typeServerHelloDone, 0, nil)))
	msgs, err := srv.readFlight(typeClientKeyExchange)
	if err != nil {
		t.Fatal(err)
	}
	cke := msgs[len(msgs)-1]
	srv.take(cke)
	srv.deriveKeys(prf.PSKPreMasterSecret(testPSK))
	srv.expectFinished()
}

// TestClientAgainstRawServer covers the end of the client's handshake and
// its retry and timeout limits.
func TestClientAgainstRawServer(t *testing.T) {
	t.Run("baseline", func(t *testing.T) {
		t.Parallel()
		srv, errc := startRawServer(t, robustPSKClientConfig())
		rawServerPSK(t, srv)
		srv.send(cat(srv.ccs(), srv.finished()))
		if err := waitHandshake(t, errc, rawTimeout); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("garbage around every server flight", func(t *testing.T) {
		t.Parallel()
		srv, errc := startRawServer(t, robustPSKClientConfig())
		srv.acceptHello()
		rng := mrand.New(mrand.NewPCG(7, 8))
		srv.send(garbage(rng)...)
		srv.send(cat(srv.serverHello(nil), srv.handshake(typeServerHelloDone, 0, nil)))
		srv.send(garbage(rng)...)
		msgs, err := srv.readFlight(typeClientKeyExchange)
		if err != nil {
			t.Fatal(err)
		}
		srv.take(msgs[len(msgs)-1])
		srv.deriveKeys(prf.PSKPreMasterSecret(testPSK))
		srv.expectFinished()
		srv.send(garbage(rng)...)
		srv.send(cat(srv.ccs(), srv.finished()))
		if err := waitHandshake(t, errc, rawTimeout); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("Finished with wrong verify_data", func(t *testing.T) {
		t.Parallel()
		srv, errc := startRawServer(t, robustPSKClientConfig())
		rawServerPSK(t, srv)
		srv.send(cat(srv.ccs(), srv.handshake(typeFinished, 1, make([]byte, 12))))
		srv.expectAlert(alertLevelFatal, alertDecryptError)
		wantAlertError(t, waitHandshake(t, errc, rawTimeout), alertDecryptError, false)
	})
	t.Run("Finished before ChangeCipherSpec", func(t *testing.T) {
		t.Parallel()
		srv, errc := startRawServer(t, robustPSKClientConfig())
		rawServerPSK(t, srv)
		vd, err := finishedData(srv.ms, srv.transcript, false)
		if err != nil {
			t.Fatal(err)
		}
		srv.send(srv.handshake(typeFinished, 0, vd))
		srv.expectAlert(alertLevelFatal, alertUnexpectedMessage)
		wantAlertError(t, waitHandshake(t, errc, rawTimeout), alertUnexpectedMessage, false)
	})
	t.Run("Finished with a bad record MAC, then the real one", func(t *testing.T) {
		t.Parallel()
		srv, errc := startRawServer(t, robustPSKClientConfig())
		rawServerPSK(t, srv)
		tr, seq := len(srv.transcript), srv.sendSeq
		bad := srv.finished()
		bad[len(bad)-2] ^= 4
		srv.transcript, srv.sendSeq = srv.transcript[:tr], seq
		srv.send(cat(srv.ccs(), bad))
		srv.send(plainRecord(recordHandshake, 1, 77, bytes.Repeat([]byte{9}, 60)))
		srv.send(cat(srv.ccs(), srv.finished()))
		if err := waitHandshake(t, errc, rawTimeout); err != nil {
			t.Fatal(err)
		}
	})
	ticketCases := []struct {
		name string
		send func(srv *rawEnd) []byte
		want alertDescription // 0: the handshake succeeds
	}{
		{"NewSessionTicket then Finished", func(srv *rawEnd) []byte {
			nst := mustMarshal(t, &newSessionTicketMsg{lifetimeHint: 60, ticket: []byte("opaque ticket")})
			return cat(srv.handshake(typeNewSessionTicket, 0, nst), srv.ccs(), srv.finished())
		}, 0},
		{"announced NewSessionTicket missing", func(srv *rawEnd) []byte {
			return cat(srv.ccs(), srv.finished())
		}, alertUnexpectedMessage},
		{"NewSessionTicket truncated", func(srv *rawEnd) []byte {
			return srv.handshake(typeNewSessionTicket, 0, []byte{0, 0, 0, 60, 0})
		}, alertDecodeError},
		{"NewSessionTicket after ChangeCipherSpec", func(srv *rawEnd) []byte {
			nst := mustMarshal(t, &newSessionTicketMsg{lifetimeHint: 60, ticket: []byte("opaque ticket")})
			return cat(srv.ccs(), srv.handshake(typeNewSessionTicket, 1, nst))
		}, alertUnexpectedMessage},
	}
	for _, tc := range ticketCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := robustPSKClientConfig()
			cfg.ClientSessionCache = NewLRUClientSessionCache(4)
			srv, errc := startRawServer(t, cfg)
			rawServerPSKWith(t, srv, func(sh *serverHelloMsg) { sh.extensions = []extension{{extSessionTicket, nil}} })
			srv.send(tc.send(srv))
			err := waitHandshake(t, errc, rawTimeout)
			if tc.want == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			srv.expectAlert(alertLevelFatal, tc.want)
			wantAlertError(t, err, tc.want, false)
		})
	}
	t.Run("server sends a fatal alert", func(t *testing.T) {
		t.Parallel()
		srv, errc := startRawServer(t, robustPSKClientConfig())
		srv.acceptHello()
		srv.send(srv.record(recordAlert, 0, []byte{2, byte(alertHandshakeFailure)}))
		wantAlertError(t, waitHandshake(t, errc, rawTimeout), alertHandshakeFailure, true)
	})
	t.Run("HelloVerifyRequest forever", func(t *testing.T) {
		t.Parallel()
		srv, errc := startRawServer(t, robustPSKClientConfig())
		seen := map[uint16]bool{}
		deadline := time.Now().Add(rawTimeout)
		for {
			recs, err := srv.read(deadline)
			if err != nil {
				t.Fatalf("after %d ClientHellos: %v", len(seen), err)
			}
			if err := srv.absorb(recs); err != nil {
				var ra *rawAlertError
				if !errors.As(err, &ra) || ra.level != alertLevelFatal || ra.desc != alertHandshakeFailure {
					t.Fatalf("after %d ClientHellos: %v, want a fatal handshake_failure", len(seen), err)
				}
				break
			}
			for {
				m, ok := srv.reasm.pop()
				if !ok {
					break
				}
				if m.typ != typeClientHello {
					t.Fatalf("handshake type %d", m.typ)
				}
				seen[m.seq] = true
				cookie := make([]byte, 16)
				cookie[0] = byte(m.seq)
				hvr := mustMarshal(t, &helloVerifyRequestMsg{vers: versionDTLS10, cookie: cookie})
				srv.send(srv.record(recordHandshake, 0, fullHandshakeMessage(typeHelloVerifyRequest, m.seq, hvr)))
			}
		}
		if len(seen) != maxHelloVerifyRequests+1 {
			t.Errorf("client sent %d ClientHellos, want %d", len(seen), maxHelloVerifyRequests+1)
		}
		wantAlertError(t, waitHandshake(t, errc, rawTimeout), alertHandshakeFailure, false)
	})
	t.Run("server never answers", func(t *testing.T) {
		t.Parallel()
		cfg := robustPSKClientConfig()
		cfg.HandshakeTimeout = 600 * time.Millisecond
		cfg.RetransmitInterval = 100 * time.Millisecond
		start := time.Now()
		_, errc := startRawServer(t, cfg)
		err := waitHandshake(t, errc, 2*time.Second)
		if !errors.Is(err, errHandshakeTimeout) {
			t.Fatalf("error %v, want the handshake timeout", err)
		}
		if d := time.Since(start); d < cfg.HandshakeTimeout || d > cfg.HandshakeTimeout+500*time.Millisecond {
			t.Errorf("gave up after %v, HandshakeTimeout is %v", d, cfg.HandshakeTimeout)
		}
	})
	t.Run("server stops after ServerHelloDone", func(t *testing.T) {
		t.Parallel()
		cfg := robustPSKClientConfig()
		cfg.HandshakeTimeout = 600 * time.Millisecond
		srv, errc := startRawServer(t, cfg)
		srv.acceptHello()
		srv.send(cat(srv.serverHello(nil), srv.handshake(typeServerHelloDone, 0, nil)))
		if err := waitHandshake(t, errc, 2*time.Second); !errors.Is(err, errHandshakeTimeout) {
			t.Fatalf("error %v, want the handshake timeout", err)
		}
	})
	t.Run("context deadline", func(t *testing.T) {
		t.Parallel()
		srv := newRawEnd(t, nil, false)
		c, err := Client(loopbackUDP(t), srv.addr(), robustPSKClientConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := c.HandshakeContext(ctx); !errors.Is(err, errHandshakeTimeout) {
			t.Fatalf("error %v, want the handshake timeout", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("gave up after %v", d)
		}
	})
}

// TestServerFunctionDropsGarbage covers Server, which runs its own cookie
// exchange on a socket it reads alone: datagrams that are not a usable
// ClientHello are dropped and a genuine client from the same address then
// completes the handshake.
func TestServerFunctionDropsGarbage(t *testing.T) {
	e := newRawEnd(t, nil, true)
	spc := loopbackUDP(t)
	e.peer = spc.LocalAddr().(*net.UDPAddr)
	cfg := pskServerConfig()
	cfg.HandshakeTimeout = robustHandshakeTimeout
	s, err := Server(spc, e.addr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	serr := make(chan error, 1)
	go func() { serr <- s.Handshake() }()
	hello := mustMarshal(t, newClientHello(t, pskClientConfig()))
	full := fullHandshakeMessage(typeClientHello, 0, hello)
	e.send(garbage(mrand.New(mrand.NewPCG(9, 10)))...)
	e.send(
		plainRecord(recordHandshake, 0, 0, full[:30]),
		plainRecord(recordHandshake, 0, 0, append(marshalHandshakeHeader(nil, typeClientHello, len(hello), 0, 0, 20), hello[:20]...)),
		plainRecord(recordHandshake, 1, 0, full),
		plainRecord(recordApplicationData, 0, 0, full),
	)
	e.expectNothing(100 * time.Millisecond)
	c, err := Client(e.conn, spc.LocalAddr(), robustPSKClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Handshake(); err != nil {
		t.Fatalf("client: %v", err)
	}
	if err := waitHandshake(t, serr, rawTimeout); err != nil {
		t.Fatalf("server: %v", err)
	}
}

// TestClientOnSocketWithExpiredDeadline hands Client a socket whose read
// deadline has passed, as a caller that probed the socket before may leave
// it. The Conn reads the socket alone from then on and has deadlines of its
// own, so the handshake must still complete rather than spin on timeouts.
func TestClientOnSocketWithExpiredDeadline(t *testing.T) {
	l := robustPSKServer(t)
	sock := loopbackUDP(t)
	if err := sock.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	c, err := Client(sock, l.Addr(), robustPSKClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Handshake(); err != nil {
		t.Fatalf("handshake on a socket with an expired read deadline: %v", err)
	}
	echoOnce(t, c, "deadline")
}

// ---- a relay between a real client and the Listener ----

// relay forwards datagrams between one client and a server through hooks
// that may drop, change, duplicate or add datagrams.
type relay struct {
	conn     *net.UDPConn
	server   *net.UDPAddr
	toServer func(d []byte) [][]byte
	toClient func(d []byte) [][]byte
	done     chan struct{}
}

func startRelay(t testing.TB, server *net.UDPAddr, toServer, toClient func([]byte) [][]byte) *relay {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{conn: conn, server: server, toServer: toServer, toClient: toClient, done: make(chan struct{})}
	go r.run()
	t.Cleanup(func() {
		conn.Close()
		<-r.done
	})
	return r
}

func (r *relay) addr() *net.UDPAddr { return r.conn.LocalAddr().(*net.UDPAddr) }

func (r *relay) run() {
	defer close(r.done)
	var client *net.UDPAddr
	buf := make([]byte, 64*1024)
	for {
		n, from, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		d := append([]byte(nil), buf[:n]...)
		if from.String() == r.server.String() {
			if client == nil {
				continue
			}
			for _, out := range r.toClient(d) {
				_, _ = r.conn.WriteToUDP(out, client)
			}
			continue
		}
		client = from
		for _, out := range r.toServer(d) {
			_, _ = r.conn.WriteToUDP(out, r.server)
		}
	}
}

// hasRecordType reports whether a datagram holds a record of type ct.
func hasRecordType(d []byte, ct uint8) bool {
	recs, _ := parseRecords(d)
	for _, r := range recs {
		if r.contentType == ct {
			return true
		}
	}
	return false
}

// garbage returns datagrams that every receiver must drop: malformed
// records, records of epochs without keys, forged epoch-1 records, and
// handshake fragments that cannot belong to the handshake in progress.
func garbage(rng *mrand.Rand) [][]byte {
	rnd := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	// Epoch-0 records carry no MAC, so a well-formed one moves the replay
	// window like a genuine one: keep their numbers low enough that the
	// genuine records stay inside the window.
	seq := 30 + uint64(rng.IntN(30))
	seq1 := rng.Uint64() & maxSequence
	return [][]byte{
		rnd(1 + rng.IntN(60)),
		{recordHandshake, 0xfe, 0xfd, 0, 0, 0},
		append(marshalRecordHeader(nil, recordHandshake, versionDTLS12, 0, seq, 500), rnd(30)...),
		plainRecord(recordHandshake, 1, seq1, rnd(48)),
		plainRecord(recordApplicationData, 1, seq1, rnd(40)),
		plainRecord(recordHandshake, 3, seq1, rnd(20)),
		plainRecord(recordHandshake, 0, seq, marshalHandshakeHeader(nil, typeFinished, 12, 1000, 0, 0)),
		plainRecord(recordHandshake, 0, seq, append(marshalHandshakeHeader(nil, typeFinished, 4, 2, 2, 9), rnd(9)...)),
		plainRecord(recordAlert, 0, seq, []byte{2, 40, 1}),
		plainRecord(recordChangeCipherSpec, 0, seq, []byte{7}),
		cat(plainRecord(99, 0, seq, rnd(5)), rnd(5)),
	}
}

// TestRelayGarbageBothWays runs our client against our Listener through a
// relay that surrounds every genuine datagram with garbage, duplicates it,
// and appends a truncated record to it. The handshake and the echoes must
// go through unharmed.
func TestRelayGarbageBothWays(t *testing.T) {
	l := robustPSKServer(t)
	var mu sync.Mutex
	rng := mrand.New(mrand.NewPCG(3, 4))
	mangle := func(d []byte) [][]byte {
		mu.Lock()
		defer mu.Unlock()
		g := garbage(rng)
		i := rng.IntN(len(g))
		out := [][]byte{g[i], cat(d, []byte{recordHandshake, 0xfe, 0xfd, 0})}
		out = append(out, g[(i+1)%len(g)], d, g[(i+2)%len(g)])
		return out
	}
	r := startRelay(t, l.Addr().(*net.UDPAddr), mangle, mangle)
	cfg := robustPSKClientConfig()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := DialContext(ctx, "udp", r.addr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 3 {
		echoOnce(t, c, fmt.Sprintf("through the noise %d", i))
	}
}

// TestRelayTamperedApplicationData makes the relay send, ahead of every
// application data datagram, a copy with one ciphertext bit flipped, a
// replay of the previous one, a plaintext epoch-0 record and an epoch-0
// fatal alert: none may reach the application or end the connection.
func TestRelayTamperedApplicationData(t *testing.T) {
	l := robustPSKServer(t)
	tamperer := func() func(d []byte) [][]byte {
		var prev []byte // only the relay goroutine calls the hook
		return func(d []byte) [][]byte {
			if !hasRecordType(d, recordApplicationData) {
				return [][]byte{d}
			}
			flipped := append([]byte(nil), d...)
			flipped[len(flipped)-5] ^= 0x10
			out := [][]byte{flipped}
			if prev != nil {
				out = append(out, prev)
			}
			out = append(out,
				plainRecord(recordApplicationData, 0, 1000, []byte("injected")),
				plainRecord(recordAlert, 0, 1001, []byte{2, byte(alertBadRecordMAC)}),
				d, d)
			prev = d
			return out
		}
	}
	r := startRelay(t, l.Addr().(*net.UDPAddr), tamperer(), tamperer())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := DialContext(ctx, "udp", r.addr(), robustPSKClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 4 {
		echoOnce(t, c, fmt.Sprintf("message %d", i))
	}
	// Nothing else may be waiting: every extra copy was dropped.
	_ = c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	if n, err := c.Read(make([]byte, 100)); !errors.Is(err, ErrDeadlineExceeded) {
		t.Fatalf("extra read: %d bytes, %v", n, err)
	}
}

// TestRelayFloodsEpoch1BeforeKeys fills the server's buffer of early epoch-1
// records with forgeries right before the client's flight 5. The handshake
// may need a retransmission but must complete.
func TestRelayFloodsEpoch1BeforeKeys(t *testing.T) {
	l := robustPSKServer(t)
	var mu sync.Mutex
	rng := mrand.New(mrand.NewPCG(5, 6))
	flood := func(d []byte) [][]byte {
		if !hasRecordType(d, recordChangeCipherSpec) {
			return [][]byte{d}
		}
		mu.Lock()
		defer mu.Unlock()
		var out [][]byte
		for range 2 * maxEarlyRecords {
			b := make([]byte, 40)
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			out = append(out, plainRecord(recordHandshake, 1, rng.Uint64()&maxSequence, b))
		}
		return append(out, d)
	}
	r := startRelay(t, l.Addr().(*net.UDPAddr), flood, func(d []byte) [][]byte { return [][]byte{d} })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := DialContext(ctx, "udp", r.addr(), robustPSKClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoOnce(t, c, "after the flood")
}

// TestMinimalClientWithoutExtensions plays the minimal clients of
// INTEROP-NOTES: record version 0xFEFF on its ClientHellos and no
// extensions at all (no extended master secret, no renegotiation_info).
// The server accepts it, without the extended master secret.
func TestMinimalClientWithoutExtensions(t *testing.T) {
	l := robustPSKServer(t)
	e := startRawClient(t, l)
	hello := newClientHello(t, pskClientConfig())
	hello.extensions = nil
	e.rl.version = versionDTLS10
	e.cookieExchange(hello)
	e.rl.version = versionDTLS12
	if err := e.readServerFlight(); err != nil {
		t.Fatal(err)
	}
	if e.ems {
		t.Fatal("server used the extended master secret that the client did not offer")
	}
	e.send(cat(e.pskKeyExchange([]byte("client1")), e.ccs(), e.finished()))
	e.expectFinished()
	e.sendApp([]byte("minimal client"))
	if got := e.readApp(); string(got) != "minimal client" {
		t.Fatalf("echo %q", got)
	}
}
