package dtls

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
)

// Fuzz targets for the record layer and the server's view of a datagram:
//
//	FuzzParseRecords             parseRecords
//	FuzzParseHandshakeFragments  parseHandshakeFragments and the reassembler
//	FuzzServerDatagram           the listener's stateless screening, the
//	                             HelloVerifyRequest and the cookie, and a
//	                             server *Conn's handleDatagram in three states
//	FuzzServerConnDatagrams      a sequence of datagrams through a server
//	                             *Conn that moves through its handshake
//
// The first three have seed corpora in testdata/fuzz, with datagrams
// captured from real handshakes (ours, pion's and OpenSSL's ClientHello):
//
//	go test ./dtls/ -run TestRecordFuzzSeedCorpus -update-record-fuzz-seeds

var updateRecordFuzzSeeds = flag.Bool("update-record-fuzz-seeds", false, "recapture the record-layer fuzz seed corpora in testdata/fuzz")

// FuzzParseRecords checks that parseRecords never panics, that every record
// it returns is the exact bytes it consumed, and that it stops only at a
// record that really is malformed.
// FuzzParseRecordsCID: records with connection IDs (RFC 9146) parse
// without panics, keep inside the datagram, and carry a CID of exactly the
// expected length.
func FuzzParseRecordsCID(f *testing.F) {
	cidRecord := append(marshalRecordHeader(nil, recordCID, versionDTLS12, 1, 7, 0)[:11], 1, 2, 3, 4, 0, 2, 0xaa, 0xbb)
	f.Add(cidRecord, uint8(4))
	f.Add(cat(cidRecord, plainRecord(recordAlert, 0, 1, []byte{2, 40})), uint8(4))
	f.Add(cidRecord, uint8(0))
	f.Fuzz(func(t *testing.T, d []byte, n uint8) {
		recs, err := parseRecordsCID(d, int(n))
		total := 0
		for _, r := range recs {
			if (r.contentType == recordCID) != (r.cid != nil) || (r.cid != nil && len(r.cid) != int(n)) {
				t.Fatalf("record type %d with CID %x, want %d bytes", r.contentType, r.cid, n)
			}
			total += len(r.raw)
		}
		if total > len(d) || (err == nil && total != len(d)) {
			t.Fatalf("records cover %d of %d bytes (err %v)", total, len(d), err)
		}
		if err != nil && !errors.Is(err, errDecode) {
			t.Fatalf("error %v does not wrap errDecode", err)
		}
	})
}

func FuzzParseRecords(f *testing.F) {
	f.Add([]byte{})
	f.Add(plainRecord(recordAlert, 0, 1, []byte{2, 40}))
	f.Add(cat(plainRecord(recordHandshake, 0, 0, []byte{1}), []byte{recordHandshake, 0xfe}))
	f.Fuzz(func(t *testing.T, d []byte) {
		in := append([]byte(nil), d...)
		recs, err := parseRecords(in)
		if !bytes.Equal(in, d) {
			t.Fatal("parseRecords changed its input")
		}
		var consumed []byte
		for i, r := range recs {
			if len(r.fragment) > maxCiphertext {
				t.Fatalf("record %d: fragment of %d bytes", i, len(r.fragment))
			}
			if r.seq > maxSequence {
				t.Fatalf("record %d: sequence number %d", i, r.seq)
			}
			one := append(marshalRecordHeader(nil, r.contentType, r.version, r.epoch, r.seq, len(r.fragment)), r.fragment...)
			if !bytes.Equal(one, r.raw) {
				t.Fatalf("record %d: header+fragment %x != raw %x", i, one, r.raw)
			}
			consumed = append(consumed, one...)
		}
		if !bytes.HasPrefix(d, consumed) {
			t.Fatalf("records %x are not a prefix of the datagram %x", consumed, d)
		}
		rest := d[len(consumed):]
		if err == nil {
			if len(rest) != 0 {
				t.Fatalf("no error but %d bytes left", len(rest))
			}
			return
		}
		if !errors.Is(err, errDecode) {
			t.Fatalf("error %v does not wrap errDecode", err)
		}
		if len(rest) == 0 {
			t.Fatalf("error %v with nothing left to parse", err)
		}
		if len(rest) >= recordHeaderLen {
			if n := int(rest[11])<<8 | int(rest[12]); n <= maxCiphertext && recordHeaderLen+n <= len(rest) {
				t.Fatalf("parse stopped (%v) at a well-formed record %x", err, rest[:recordHeaderLen+n])
			}
		}
	})
}

// FuzzParseHandshakeFragments checks that parseHandshakeFragments never
// panics and returns fragments that re-marshal to the bytes it consumed and
// lie inside their message, and that the reassembler fed with them never
// panics, stays bounded and agrees with a simple model of RFC 6347 §4.2.2
// reassembly.
func FuzzParseHandshakeFragments(f *testing.F) {
	f.Add([]byte{})
	f.Add(fullHandshakeMessage(typeServerHelloDone, 0, nil))
	f.Add(cat(append(marshalHandshakeHeader(nil, typeFinished, 4, 0, 2, 2), 3, 4), append(marshalHandshakeHeader(nil, typeFinished, 4, 0, 0, 3), 1, 2, 9)))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := append([]byte(nil), b...)
		frags, err := parseHandshakeFragments(in)
		if !bytes.Equal(in, b) {
			t.Fatal("parseHandshakeFragments changed its input")
		}
		var consumed []byte
		for i, fr := range frags {
			if fr.length > maxHandshakeMessage || uint64(fr.offset)+uint64(len(fr.data)) > uint64(fr.length) {
				t.Fatalf("fragment %d: offset %d + %d bytes outside a message of %d", i, fr.offset, len(fr.data), fr.length)
			}
			consumed = marshalHandshakeHeader(consumed, fr.msgType, int(fr.length), fr.seq, int(fr.offset), len(fr.data))
			consumed = append(consumed, fr.data...)
		}
		if !bytes.HasPrefix(b, consumed) {
			t.Fatalf("fragments %x are not a prefix of the input %x", consumed, b)
		}
		if err == nil && len(consumed) != len(b) {
			t.Fatalf("no error but %d bytes left", len(b)-len(consumed))
		}
		if err != nil && !errors.Is(err, errDecode) {
			t.Fatalf("error %v does not wrap errDecode", err)
		}
		checkReassembly(t, frags)

		// Alternate epochs too: a message's fragments must agree on theirs.
		r := reassembler{budget: DefaultMaxHandshakeMemory}
		for i, fr := range frags {
			_ = r.add(fr, uint16(i&1))
			for {
				m, ok := r.pop()
				if !ok {
					break
				}
				if len(m.body) > maxHandshakeMessage {
					t.Fatalf("message of %d bytes", len(m.body))
				}
			}
			if len(r.pending) > reassemblyWindow {
				t.Fatalf("%d messages pending", len(r.pending))
			}
		}
	})
}

// modelMessage is the reference reassembly of one message.
type modelMessage struct {
	typ  uint8
	body []byte
	have []bool
}

// checkReassembly feeds frags, all in epoch 0, to a reassembler and to a
// model, popping after every fragment, and compares them.
func checkReassembly(t *testing.T, frags []handshakeFragment) {
	t.Helper()
	r := reassembler{budget: DefaultMaxHandshakeMemory}
	next := uint16(0)
	pending := map[uint16]*modelMessage{}
	for i, fr := range frags {
		err := r.add(fr, 0)
		switch {
		case fr.seq < next:
			if !errors.Is(err, errOldMessage) {
				t.Fatalf("fragment %d of old message %d: %v", i, fr.seq, err)
			}
		case fr.seq-next >= reassemblyWindow:
			if err != nil {
				t.Fatalf("fragment %d far ahead: %v", i, err)
			}
		default:
			m := pending[fr.seq]
			if m == nil {
				m = &modelMessage{typ: fr.msgType, body: make([]byte, fr.length), have: make([]bool, fr.length)}
				pending[fr.seq] = m
			}
			if m.typ != fr.msgType || len(m.body) != int(fr.length) {
				if !errors.Is(err, errDecode) {
					t.Fatalf("fragment %d disagrees with its message, got %v", i, err)
				}
				break
			}
			if err != nil {
				t.Fatalf("fragment %d: %v", i, err)
			}
			for j, c := range fr.data {
				if p := int(fr.offset) + j; !m.have[p] {
					m.have[p], m.body[p] = true, c
				}
			}
		}
		for {
			got, ok := r.pop()
			m := pending[next]
			complete := m != nil
			for _, h := range m.haveOrNil() {
				complete = complete && h
			}
			if ok != complete {
				t.Fatalf("after fragment %d: pop %v, model says complete=%v for message %d", i, ok, complete, next)
			}
			if !ok {
				break
			}
			if got.seq != next || got.typ != m.typ || got.epoch != 0 || !bytes.Equal(got.body, m.body) {
				t.Fatalf("popped %d/%d %x, model %d/%d %x", got.seq, got.typ, got.body, next, m.typ, m.body)
			}
			delete(pending, next)
			next++
		}
		if r.next != next || len(r.pending) != len(pending) || len(r.pending) > reassemblyWindow {
			t.Fatalf("after fragment %d: reassembler next %d with %d pending, model next %d with %d", i, r.next, len(r.pending), next, len(pending))
		}
	}
}

func (m *modelMessage) haveOrNil() []bool {
	if m == nil {
		return nil
	}
	return m.have
}

// Fixed session keys for the server *Conn under fuzzing, so that seeds can
// carry records that really authenticate.
var (
	fuzzMasterSecret = bytes.Repeat([]byte{0x42}, 48)
	fuzzClientRandom = [32]byte{1, 2, 3}
	fuzzServerRandom = [32]byte{4, 5, 6}
	fuzzSuite        = cipherSuiteByID(uint16(TLS_PSK_WITH_AES_128_CCM_8))
)

func fuzzCipher(isClient bool) recordCipher {
	rc, _, err := fuzzSuite.newCipher(fuzzMasterSecret, fuzzClientRandom[:], fuzzServerRandom[:], isClient, false)
	if err != nil {
		panic(err)
	}
	return rc
}

// fuzzPeer is the client address the fuzzed datagrams come from.
const fuzzPeer = "192.0.2.1:5684"

// fuzzConnState is where a server *Conn under fuzzing stands.
type fuzzConnState int

const (
	// Flight 4 sent (ClientHello was message 1): waiting for flight 5.
	fuzzAwaitKeyExchange fuzzConnState = iota
	// ClientKeyExchange processed and keys installed: waiting for Finished.
	fuzzAwaitFinished
	// Handshake done: application data, alerts, retransmissions.
	fuzzEstablished
)

// fuzzConnEnv holds the sockets server *Conns under fuzzing write to: any
// alert or retransmission goes to a sink nobody reads.
type fuzzConnEnv struct {
	pconn net.PacketConn
	sink  net.Addr
}

func newFuzzConnEnv(f *testing.F) *fuzzConnEnv {
	pconn := loopbackUDP(f)
	sink := loopbackUDP(f)
	return &fuzzConnEnv{pconn: pconn, sink: sink.LocalAddr()}
}

var fuzzFlight6 = []outItem{{ccs: true, epoch: 0}, {epoch: 1, msgType: typeFinished, seq: 2, body: make([]byte, 12)}}

func (env *fuzzConnEnv) serverConn(st fuzzConnState) *Conn {
	cfg := pskServerConfig()
	c := newConn(env.pconn, env.sink, cfg, false)
	hs := newHandshakeTransport(cfg.maxHandshakeMemory())
	c.hs = &hs
	c.hs.reasm.next = 2
	c.hs.sendSeq = 3
	c.hs.flight = []outItem{{epoch: 0, msgType: typeServerHelloDone, seq: 2, body: []byte{}}}
	if st >= fuzzAwaitFinished {
		c.installKeys(fuzzCipher(false), fuzzSuite.overhead)
		c.hs.reasm.next = 3
	}
	if st == fuzzEstablished {
		c.establishForFuzz()
	}
	return c
}

// establishForFuzz ends a fuzzed server Conn's handshake as a real one
// ends after flight 6: the transport goes, the last flight stays.
func (c *Conn) establishForFuzz() {
	c.rl.startWriteEpoch1()
	c.hs = nil
	c.final = &finalFlight{items: fuzzFlight6, peerNext: 4}
	c.hsDone.Store(true)
}

// fuzzMessageParsers parse a reassembled message by its type.
var fuzzMessageParsers = map[uint8][]func() handshakeMessage{
	typeClientHello:        {func() handshakeMessage { return new(clientHelloMsg) }},
	typeServerHello:        {func() handshakeMessage { return new(serverHelloMsg) }},
	typeHelloVerifyRequest: {func() handshakeMessage { return new(helloVerifyRequestMsg) }},
	typeNewSessionTicket:   {func() handshakeMessage { return new(newSessionTicketMsg) }},
	typeCertificate:        {func() handshakeMessage { return new(certificateMsg) }},
	typeServerKeyExchange: {
		func() handshakeMessage { return new(serverKeyExchangeECDHEMsg) },
		func() handshakeMessage { return new(serverKeyExchangePSKMsg) },
	},
	typeCertificateRequest: {func() handshakeMessage { return new(certificateRequestMsg) }},
	typeServerHelloDone:    {func() handshakeMessage { return new(serverHelloDoneMsg) }},
	typeCertificateVerify:  {func() handshakeMessage { return new(certificateVerifyMsg) }},
	typeClientKeyExchange: {
		func() handshakeMessage { return new(clientKeyExchangePSKMsg) },
		func() handshakeMessage { return new(clientKeyExchangeECDHEMsg) },
	},
	typeFinished: {func() handshakeMessage { return new(finishedMsg) }},
}

// checkServerConn checks a Conn's bounds and error after input, and pops
// and parses every complete message; it returns them.
func checkServerConn(t *testing.T, c *Conn) []handshakeMsg {
	t.Helper()
	if len(c.appData) > maxQueuedRecords {
		t.Fatalf("%d application data records queued", len(c.appData))
	}
	if hs := c.hs; hs != nil {
		if len(hs.early) > maxEarlyRecords {
			t.Fatalf("%d early records kept", len(hs.early))
		}
		if len(hs.reasm.pending) > reassemblyWindow {
			t.Fatalf("%d handshake messages pending", len(hs.reasm.pending))
		}
		if hs.reasm.budget < 0 {
			t.Fatalf("reassembly budget overdrawn: %d", hs.reasm.budget)
		}
	}
	if c.readErr != nil {
		var ae *AlertError
		if !errors.Is(c.readErr, io.EOF) && !(errors.As(c.readErr, &ae) && ae.Remote) {
			t.Fatalf("read error %v: only a peer's alert may end the connection here", c.readErr)
		}
	}
	for _, d := range c.appData {
		if len(d) > maxCiphertext {
			t.Fatalf("application data of %d bytes", len(d))
		}
	}
	var msgs []handshakeMsg
	if c.hs == nil {
		return nil
	}
	for {
		m, ok := c.hs.reasm.pop()
		if !ok {
			return msgs
		}
		if m.epoch > 1 {
			t.Fatalf("message in epoch %d", m.epoch)
		}
		for _, newMsg := range fuzzMessageParsers[m.typ] {
			if err := newMsg().unmarshal(m.body); err != nil && !errors.Is(err, errDecode) {
				t.Fatalf("handshake type %d: error %v does not wrap errDecode", m.typ, err)
			}
		}
		msgs = append(msgs, m)
	}
}

// FuzzServerDatagram is the server's view of one datagram from a new peer
// and from a peer mid-handshake. The listener's screening must never panic
// nor keep a reference to the datagram; a HelloVerifyRequest it leads to
// must parse, and the ClientHello sent again with that cookie must pass.
// The same datagram then goes to server *Conns awaiting flight 5, awaiting
// Finished, and established, which must stay within their bounds.
func FuzzServerDatagram(f *testing.F) {
	jar, err := newCookieJar(time.Hour, time.Now)
	if err != nil {
		f.Fatal(err)
	}
	env := newFuzzConnEnv(f)
	for _, s := range serverDatagramCodeSeeds() {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, d []byte) {
		in := append([]byte(nil), d...)
		hello, msg, cookieOK := screenClientHello(in, fuzzPeer, jar)
		if !bytes.Equal(in, d) {
			t.Fatal("screenClientHello changed its input")
		}
		if hello != nil {
			checkScreenedHello(t, jar, in, hello, msg, cookieOK)
		} else if cookieOK {
			t.Fatal("cookie valid without a ClientHello")
		}

		for st := fuzzAwaitKeyExchange; st <= fuzzEstablished; st++ {
			c := env.serverConn(st)
			c.handleDatagram(append([]byte(nil), d...), nil)
			checkServerConn(t, c)
			if st == fuzzAwaitKeyExchange {
				// The handshake would install keys next; early records
				// are then processed.
				c.installKeys(fuzzCipher(false), fuzzSuite.overhead)
				checkServerConn(t, c)
			}
			c.closeTransport()
		}
	})
}

// checkScreenedHello checks what screenClientHello returned for a
// ClientHello: the message matches and does not alias the datagram, the
// HelloVerifyRequest is well-formed, and its cookie is accepted from the
// same address only.
func checkScreenedHello(t *testing.T, jar *cookieJar, in []byte, hello *clientHelloMsg, msg handshakeMsg, cookieOK bool) {
	t.Helper()
	if msg.typ != typeClientHello {
		t.Fatalf("message type %d", msg.typ)
	}
	var again clientHelloMsg
	if err := again.unmarshal(msg.body); err != nil {
		t.Fatalf("returned body does not parse: %v", err)
	}
	body := append([]byte(nil), msg.body...)
	for i := range in {
		in[i] ^= 0xff
	}
	if !bytes.Equal(body, msg.body) {
		t.Fatal("the returned ClientHello body aliases the datagram, which the listener reuses")
	}
	for i := range in {
		in[i] ^= 0xff
	}
	recs, _ := parseRecords(in)
	if msg.recordSeq != recs[0].seq {
		t.Fatalf("recordSeq %d, the record says %d", msg.recordSeq, recs[0].seq)
	}
	if cookieOK {
		return // a fuzzed cookie that verifies: nothing more to learn
	}

	hvr := helloVerifyRequest(fuzzPeer, hello, msg, jar)
	hrecs, err := parseRecords(hvr)
	if err != nil || len(hrecs) != 1 {
		t.Fatalf("HelloVerifyRequest datagram: %d records, %v", len(hrecs), err)
	}
	hr := hrecs[0]
	if hr.contentType != recordHandshake || hr.epoch != 0 || hr.version != versionDTLS10 || hr.seq != msg.recordSeq {
		t.Fatalf("HelloVerifyRequest record %+v", hr)
	}
	frags, err := parseHandshakeFragments(hr.fragment)
	if err != nil || len(frags) != 1 {
		t.Fatalf("HelloVerifyRequest: %d fragments, %v", len(frags), err)
	}
	fr := frags[0]
	if fr.msgType != typeHelloVerifyRequest || fr.seq != msg.seq || fr.offset != 0 || int(fr.length) != len(fr.data) {
		t.Fatalf("HelloVerifyRequest fragment %+v", fr)
	}
	var v helloVerifyRequestMsg
	if err := v.unmarshal(fr.data); err != nil {
		t.Fatalf("HelloVerifyRequest: %v", err)
	}
	if v.vers != versionDTLS10 || len(v.cookie) != cookieSize {
		t.Fatalf("HelloVerifyRequest %+v", v)
	}

	// The client sends its hello again with the cookie.
	second := again
	second.cookie = v.cookie
	sb, err := second.marshal()
	if err != nil {
		t.Fatalf("a parsed ClientHello does not marshal: %v", err)
	}
	d2 := plainRecord(recordHandshake, 0, (msg.recordSeq+1)&maxSequence, fullHandshakeMessage(typeClientHello, msg.seq+1, sb))
	h2, m2, ok := screenClientHello(d2, fuzzPeer, jar)
	if h2 == nil || !ok {
		t.Fatal("the ClientHello with the cookie we issued was refused")
	}
	if m2.seq != msg.seq+1 || !bytes.Equal(m2.body, sb) {
		t.Fatalf("second ClientHello message %d %x", m2.seq, m2.body)
	}
	if _, _, ok := screenClientHello(d2, "198.51.100.7:5684", jar); ok {
		t.Fatal("the cookie was accepted from another address")
	}
}

// FuzzServerConnDatagrams feeds a sequence of datagrams (each prefixed by a
// two-byte length) to a server *Conn that waits for flight 5. Like the
// handshake, it installs the keys once ClientKeyExchange is complete and
// counts the handshake done at an epoch-1 Finished; the keys are fixed, so
// that seeds can authenticate. Nothing may panic and every bound must hold.
func FuzzServerConnDatagrams(f *testing.F) {
	env := newFuzzConnEnv(f)
	for _, s := range serverConnCodeSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := env.serverConn(fuzzAwaitKeyExchange)
		defer c.closeTransport()
		st := fuzzAwaitKeyExchange
		for _, d := range splitDatagrams(data) {
			c.handleDatagram(append([]byte(nil), d...), nil)
			// Installing keys replays early records, which may complete
			// more messages: pop until none is left.
			for msgs := checkServerConn(t, c); len(msgs) > 0; msgs = checkServerConn(t, c) {
				for _, m := range msgs {
					switch {
					case st == fuzzAwaitKeyExchange && m.typ == typeClientKeyExchange:
						c.installKeys(fuzzCipher(false), fuzzSuite.overhead)
						st = fuzzAwaitFinished
					case st == fuzzAwaitFinished && m.typ == typeFinished && m.epoch == 1:
						c.establishForFuzz()
						st = fuzzEstablished
					}
				}
			}
		}
	})
}

// splitDatagrams cuts uint16-length-prefixed datagrams; a length past the
// end takes the rest.
func splitDatagrams(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 && len(out) < 32 {
		if len(b) < 2 {
			return append(out, b)
		}
		n := int(b[0])<<8 | int(b[1])
		b = b[2:]
		n = min(n, len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func joinDatagrams(ds ...[]byte) []byte {
	var out []byte
	for _, d := range ds {
		out = append(out, byte(len(d)>>8), byte(len(d)))
		out = append(out, d...)
	}
	return out
}

// fuzzClientRecords seals records as the peer of the fuzzed server Conn.
type fuzzClientRecords struct{ rl *recordLayer }

func newFuzzClientRecords() *fuzzClientRecords {
	rl := newRecordLayer(64)
	rl.write[0].nextSeq = 2
	rl.setKeys(fuzzCipher(true), fuzzSuite.overhead)
	return &fuzzClientRecords{rl: rl}
}

func (c *fuzzClientRecords) rec(contentType uint8, epoch uint16, payload []byte) []byte {
	b, err := c.rl.seal(nil, contentType, epoch, payload)
	if err != nil {
		panic(err)
	}
	return b
}

func (c *fuzzClientRecords) msg(typ uint8, epoch uint16, seq uint16, body []byte) []byte {
	return c.rec(recordHandshake, epoch, fullHandshakeMessage(typ, seq, body))
}

func fuzzFlight5(c *fuzzClientRecords) []byte {
	cke, _ := (&clientKeyExchangePSKMsg{identity: []byte("client1")}).marshal()
	return cat(c.msg(typeClientKeyExchange, 0, 2, cke), c.rec(recordChangeCipherSpec, 0, []byte{1}), c.msg(typeFinished, 1, 3, bytes.Repeat([]byte{7}, 12)))
}

// serverConnCodeSeeds are datagram sequences that take the fuzzed Conn
// through its handshake and beyond.
func serverConnCodeSeeds() [][]byte {
	var seeds [][]byte
	c := newFuzzClientRecords()
	seeds = append(seeds, joinDatagrams(fuzzFlight5(c),
		c.rec(recordApplicationData, 1, []byte("hello")),
		c.rec(recordAlert, 1, []byte{1, 0})))

	// Fragmented ClientKeyExchange over two datagrams, the Finished first.
	c = newFuzzClientRecords()
	cke, _ := (&clientKeyExchangePSKMsg{identity: []byte("a-longer-identity")}).marshal()
	fin := c.msg(typeFinished, 1, 3, bytes.Repeat([]byte{7}, 12))
	part1 := c.rec(recordHandshake, 0, append(marshalHandshakeHeader(nil, typeClientKeyExchange, len(cke), 2, 6, len(cke)-6), cke[6:]...))
	part2 := c.rec(recordHandshake, 0, append(marshalHandshakeHeader(nil, typeClientKeyExchange, len(cke), 2, 0, 8), cke[:8]...))
	app := c.rec(recordApplicationData, 1, []byte("data"))
	reneg := c.msg(typeClientHello, 1, 4, mustMarshalSeed(&clientHelloMsg{vers: versionDTLS12, cipherSuites: []uint16{0xc0a8}, compressionMethods: []uint8{0}}))
	seeds = append(seeds, joinDatagrams(fin, part1, cat(c.rec(recordChangeCipherSpec, 0, []byte{1}), part2), app, app, reneg))

	// Retransmissions and an authenticated fatal alert after the handshake.
	c = newFuzzClientRecords()
	f5 := fuzzFlight5(c)
	seeds = append(seeds, joinDatagrams(
		c.msg(typeClientHello, 0, 1, mustMarshalSeed(&clientHelloMsg{vers: versionDTLS12, cipherSuites: []uint16{0xc0a8}, compressionMethods: []uint8{0}})),
		f5, fuzzFlight5(c),
		c.rec(recordAlert, 1, []byte{2, 20})))

	// Garbage around a flight: bad epochs, truncation, a forged record.
	c = newFuzzClientRecords()
	forged := c.rec(recordApplicationData, 1, []byte("forged"))
	forged[len(forged)-1] ^= 1
	seeds = append(seeds, joinDatagrams(
		plainRecord(recordHandshake, 1, 99, bytes.Repeat([]byte{0xaa}, 30)),
		plainRecord(recordHandshake, 2, 0, []byte{1}),
		[]byte{22, 0xfe, 0xfd, 0},
		fuzzFlight5(c), forged,
		plainRecord(recordAlert, 0, 40, []byte{2, 10})))
	return seeds
}

func mustMarshalSeed(m handshakeMessage) []byte {
	b, err := m.marshal()
	if err != nil {
		panic(err)
	}
	return b
}

// recordFuzzSeed is one named seed corpus entry.
type recordFuzzSeed struct {
	name string
	data []byte
}

// serverDatagramCodeSeeds are FuzzServerDatagram seeds that need no capture.
func serverDatagramCodeSeeds() []recordFuzzSeed {
	hello := mustMarshalSeed(&clientHelloMsg{vers: versionDTLS12, cipherSuites: []uint16{0xc0a8}, compressionMethods: []uint8{0}, extensions: []extension{}})
	c := newFuzzClientRecords()
	return []recordFuzzSeed{
		{"seed-minimal-clienthello", plainRecord(recordHandshake, 0, 0, fullHandshakeMessage(typeClientHello, 0, hello))},
		{"seed-clienthello-fragment", plainRecord(recordHandshake, 0, 0, append(marshalHandshakeHeader(nil, typeClientHello, len(hello), 0, 0, 10), hello[:10]...))},
		{"seed-sealed-flight5", fuzzFlight5(c)},
		{"seed-sealed-application-data", c.rec(recordApplicationData, 1, []byte("data"))},
		{"seed-garbage", []byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1}},
	}
}

// ---- seed corpora ----

// recordFuzzTargets are the targets with a seed corpus in testdata/fuzz.
var recordFuzzTargets = []string{"FuzzParseRecords", "FuzzParseHandshakeFragments", "FuzzServerDatagram"}

func recordFuzzEncode(data []byte) []byte {
	return fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data)
}

func recordFuzzDecode(b []byte) ([]byte, error) {
	text, ok := strings.CutPrefix(string(b), "go test fuzz v1\n")
	if !ok {
		return nil, errors.New("missing go test fuzz v1 header")
	}
	lit, ok := strings.CutPrefix(strings.TrimSpace(text), "[]byte(")
	if !ok || !strings.HasSuffix(lit, ")") {
		return nil, fmt.Errorf("not a single []byte value")
	}
	s, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
	return []byte(s), err
}

// TestRecordFuzzSeedCorpus checks the seed corpora of the record-layer
// targets: at least three well-formed files each, and among the
// FuzzServerDatagram seeds real ClientHellos that the listener answers with a
// HelloVerifyRequest. With -update-record-fuzz-seeds it recaptures them.
func TestRecordFuzzSeedCorpus(t *testing.T) {
	if *updateRecordFuzzSeeds {
		writeRecordFuzzSeeds(t)
	}
	jar, err := newCookieJar(time.Hour, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range recordFuzzTargets {
		dir := filepath.Join("testdata", "fuzz", target)
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Errorf("%s: %v (run with -update-record-fuzz-seeds)", target, err)
			continue
		}
		if len(entries) < 3 {
			t.Errorf("%s: %d seed files, want at least 3", target, len(entries))
		}
		hellos := 0
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			d, err := recordFuzzDecode(b)
			if err != nil {
				t.Errorf("%s/%s: %v", target, e.Name(), err)
				continue
			}
			if target != "FuzzParseHandshakeFragments" && strings.Contains(e.Name(), "captured") && strings.HasSuffix(e.Name(), "clienthello") {
				if h, _, _ := screenClientHello(d, fuzzPeer, jar); h != nil {
					hellos++
				} else {
					t.Errorf("%s/%s: not a ClientHello datagram", target, e.Name())
				}
			}
		}
		if target == "FuzzServerDatagram" && hellos == 0 {
			t.Errorf("%s: no captured ClientHello datagram", target)
		}
	}
}

func writeRecordFuzzSeeds(t *testing.T) {
	captured := captureSeedDatagrams(t)
	first := func(recs []byte) []byte {
		r, err := parseRecords(recs)
		if err != nil || len(r) == 0 {
			t.Fatalf("captured datagram does not parse: %v", err)
		}
		return r[0].fragment
	}
	hello := captured["captured-ours-psk-clienthello"]
	withCookie := captured["captured-ours-psk-clienthello-cookie"]
	fragmented := func() []byte {
		body := first(hello)[handshakeHeaderLen:]
		n := len(body)
		return cat(
			append(marshalHandshakeHeader(nil, typeClientHello, n, 0, n/2, n-n/2), body[n/2:]...),
			append(marshalHandshakeHeader(nil, typeClientHello, n, 0, 0, n/2+4), body[:n/2+4]...),
			append(marshalHandshakeHeader(nil, typeClientHello, n+1, 0, 0, 1), body[:1]...))
	}()
	seeds := map[string][]recordFuzzSeed{}
	for _, name := range sortedKeys(captured) {
		seeds["FuzzParseRecords"] = append(seeds["FuzzParseRecords"], recordFuzzSeed{"seed-" + name, captured[name]})
	}
	seeds["FuzzParseRecords"] = append(seeds["FuzzParseRecords"],
		recordFuzzSeed{"seed-truncated-header", hello[:9]},
		recordFuzzSeed{"seed-length-past-end", hello[:len(hello)-1]},
		recordFuzzSeed{"seed-good-then-garbage", cat(captured["captured-client-alert-close-notify"], []byte{21, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 3, 0, 40})},
	)
	for _, name := range []string{"captured-ours-psk-clienthello", "captured-hello-verify-request", "captured-psk-server-flight4", "captured-ecdhe-server-flight4", "captured-psk-client-flight5"} {
		recs, _ := parseRecords(captured[name])
		for i, r := range recs {
			if r.contentType == recordHandshake && r.epoch == 0 {
				seeds["FuzzParseHandshakeFragments"] = append(seeds["FuzzParseHandshakeFragments"], recordFuzzSeed{fmt.Sprintf("seed-%s-record%d", name, i), r.fragment})
			}
		}
	}
	seeds["FuzzParseHandshakeFragments"] = append(seeds["FuzzParseHandshakeFragments"],
		recordFuzzSeed{"seed-clienthello-overlapping-fragments", fragmented},
		recordFuzzSeed{"seed-fragment-past-message", marshalHandshakeHeader(nil, typeFinished, 4, 2, 2, 9)},
	)
	for _, name := range sortedKeys(captured) {
		if strings.Contains(name, "clienthello") {
			seeds["FuzzServerDatagram"] = append(seeds["FuzzServerDatagram"], recordFuzzSeed{"seed-" + name, captured[name]})
		}
	}
	seeds["FuzzServerDatagram"] = append(seeds["FuzzServerDatagram"],
		recordFuzzSeed{"seed-captured-psk-client-flight5", captured["captured-psk-client-flight5"]},
		recordFuzzSeed{"seed-clienthello-truncated", cat(withCookie[:11], []byte{0, 40}, withCookie[13:13+40])},
	)
	seeds["FuzzServerDatagram"] = append(seeds["FuzzServerDatagram"], serverDatagramCodeSeeds()...)

	for target, list := range seeds {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		old, _ := filepath.Glob(filepath.Join(dir, "seed-*"))
		for _, p := range old {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range list {
			if err := os.WriteFile(filepath.Join(dir, s.name), recordFuzzEncode(s.data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func sortedKeys(m map[string][]byte) []string { return slices.Sorted(maps.Keys(m)) }

// captureSeedDatagrams records real datagrams on loopback: whole PSK and
// ECDHE handshakes between our client and Listener, and the first
// ClientHello of our client, pion's and, when installed, OpenSSL's.
func captureSeedDatagrams(t *testing.T) map[string][]byte {
	out := map[string][]byte{}
	jar, err := newCookieJar(time.Hour, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	// Whole handshakes through a recording relay.
	type seen struct {
		toServer bool
		d        []byte
	}
	record := func(cfgS, cfgC *Config) []seen {
		l := startEchoServer(t, cfgS)
		var mu sync.Mutex
		var log []seen
		rec := func(toServer bool) func([]byte) [][]byte {
			return func(d []byte) [][]byte {
				mu.Lock()
				log = append(log, seen{toServer, append([]byte(nil), d...)})
				mu.Unlock()
				return [][]byte{d}
			}
		}
		r := startRelay(t, l.Addr().(*net.UDPAddr), rec(true), rec(false))
		c, err := Dial("udp", r.addr(), cfgC)
		if err != nil {
			t.Fatal(err)
		}
		echoOnce(t, c, "seed")
		c.Close()
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		return append([]seen(nil), log...)
	}
	// classify names a captured datagram by direction and first records.
	classify := func(kx string, s seen) string {
		recs, _ := parseRecords(s.d)
		if len(recs) == 0 {
			return ""
		}
		var first uint8 = 255
		if r := recs[0]; r.contentType == recordHandshake && r.epoch == 0 {
			if frags, _ := parseHandshakeFragments(r.fragment); len(frags) > 0 {
				first = frags[0].msgType
			}
		}
		switch {
		case s.toServer && first == typeClientHello:
			if h, _, _ := screenClientHello(s.d, "", jar); h != nil && len(h.cookie) > 0 {
				return "captured-ours-" + kx + "-clienthello-cookie"
			}
			return "captured-ours-" + kx + "-clienthello"
		case !s.toServer && first == typeHelloVerifyRequest:
			return "captured-hello-verify-request"
		case !s.toServer && first == typeServerHello:
			return "captured-" + kx + "-server-flight4"
		case s.toServer && first == typeClientKeyExchange:
			return "captured-" + kx + "-client-flight5"
		case !s.toServer && hasRecordType(s.d, recordChangeCipherSpec):
			return "captured-" + kx + "-server-flight6"
		case recs[0].contentType == recordApplicationData && s.toServer:
			return "captured-client-application-data"
		case recs[0].contentType == recordApplicationData:
			return "captured-server-application-data"
		case recs[0].contentType == recordAlert && s.toServer:
			return "captured-client-alert-close-notify"
		}
		return ""
	}
	tc := newTestCert(t)
	for _, run := range []struct {
		kx         string
		cfgS, cfgC *Config
	}{
		{"psk", pskServerConfig(), pskClientConfig()},
		{"ecdhe", &Config{Certificates: []tls.Certificate{tc.cert}}, &Config{RootCAs: tc.pool, ServerName: "localhost"}},
	} {
		for _, s := range record(run.cfgS, run.cfgC) {
			if name := classify(run.kx, s); name != "" && out[name] == nil {
				out[name] = s.d
			}
		}
	}
	for _, name := range []string{"captured-ours-psk-clienthello", "captured-ours-psk-clienthello-cookie", "captured-hello-verify-request",
		"captured-psk-server-flight4", "captured-psk-client-flight5", "captured-psk-server-flight6", "captured-ecdhe-server-flight4",
		"captured-client-application-data", "captured-client-alert-close-notify"} {
		if out[name] == nil {
			t.Fatalf("no %s in the captured handshakes", name)
		}
	}

	// pion's first ClientHello.
	srv := loopbackUDP(t)
	pc := loopbackUDP(t)
	pcl, err := piondtls.Client(pc, srv.LocalAddr(), &piondtls.Config{
		PSK:             func([]byte) ([]byte, error) { return testPSK, nil },
		PSKIdentityHint: []byte("client1"),
		CipherSuites:    []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	go func() { _ = pcl.HandshakeContext(ctx) }()
	out["captured-pion-psk-clienthello"] = readOne(t, srv)
	cancel()
	pcl.Close()

	// OpenSSL's, when it is installed.
	if path, err := exec.LookPath("openssl"); err == nil {
		srv := loopbackUDP(t)
		cmd := exec.Command(path, "s_client", "-dtls1_2", "-connect", srv.LocalAddr().String(),
			"-psk", fmt.Sprintf("%x", testPSK), "-psk_identity", "client1", "-cipher", "PSK-AES128-CCM8", "-quiet")
		cmd.Stdin = strings.NewReader("")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		out["captured-openssl-psk-clienthello"] = readOne(t, srv)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	return out
}

func readOne(t *testing.T, c *net.UDPConn) []byte {
	t.Helper()
	buf := make([]byte, 64*1024)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, _, err := c.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf[:n]...)
}
