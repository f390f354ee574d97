package dtls

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// What both sides' handshakes share: the per-handshake transport (flights,
// retransmission, reassembly, transcript) and the steps every handshake
// kind ends with.

// handshakeTransport is what both sides need only while a handshake runs:
// the reassembler, the transcript, our last flight and its timer, records
// that came before their keys, and the counters of a handshake. Each side's
// handshake state embeds one; the Conn points at it for the handshake's
// duration.
type handshakeTransport struct {
	reasm          reassembler
	sendSeq        uint16
	flight         []outItem
	lastSend       time.Time
	peerRetransmit bool
	peerCCS        bool
	early          []earlyRecord // epoch-1 records that came before their keys
	// badRecords counts epoch-1 records that failed authentication before
	// any succeeded.
	badRecords     int
	epoch1OK       bool
	datagramHasCCS bool // the datagram being processed carries a ChangeCipherSpec
	transcript     []byte
	// peerFinished: the peer's Finished verified; sentLast: our Finished
	// went after it, so our flight is the handshake's last.
	peerFinished, sentLast bool
	// stage is what the handshake is doing, for the error if it fails.
	stage string
	// unknownIdentity: the server goes on with a random key for a PSK
	// identity it does not know, which the client's failing Finished will
	// show (RevealUnknownPSKIdentity off).
	unknownIdentity bool
}

// newHandshakeTransport starts the handshake transport of a connection
// whose reassembly memory is capped at limit bytes.
func newHandshakeTransport(limit int) handshakeTransport {
	// Most transcripts (a PSK handshake, any resumption) fit 512 bytes.
	return handshakeTransport{reasm: reassembler{budget: limit}, transcript: make([]byte, 0, 512)}
}

// sendFlight packs and sends a flight and keeps it for retransmission.
func (c *Conn) sendFlight(items []outItem) error {
	c.hs.flight = items
	c.traceFlight(items, false)
	return c.writeHandshakeFlight()
}

func (c *Conn) resendFlight() error {
	if c.hs.flight == nil {
		return nil
	}
	c.traceFlight(c.hs.flight, true)
	return c.writeHandshakeFlight()
}

func (c *Conn) writeHandshakeFlight() error {
	if err := c.writeFlight(c.hs.flight); err != nil && !errors.Is(err, errAmplification) {
		return err
	}
	c.hs.lastSend = time.Now()
	return nil
}

// traceFlight reports the messages of a flight we send to Config.Trace.
func (c *Conn) traceFlight(items []outItem, again bool) {
	if c.cfg.Trace == nil {
		return
	}
	for _, it := range items {
		ev := TraceEvent{Sent: true, Message: handshakeTypeName(it.msgType), Length: len(it.body), Epoch: it.epoch, Retransmission: again}
		if it.ccs {
			ev.Message, ev.Length = "ChangeCipherSpec", 1
		}
		c.cfg.Trace(ev)
	}
}

// writeFlight packs items into datagrams and sends them.
func (c *Conn) writeFlight(items []outItem) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	datagrams, err := packFlight(c.rl, items, c.cfg.mtu())
	if err != nil {
		return err
	}
	for _, d := range datagrams {
		if err := c.writeDatagram(d); err != nil {
			return err
		}
	}
	return nil
}

// handshakeItem queues a handshake message of ours: it gets the next
// message_seq.
func (c *Conn) handshakeItem(m handshakeMessage, epoch uint16) (outItem, error) {
	body, err := m.marshal()
	if err != nil {
		return outItem{}, localAlert(alertInternalError, err)
	}
	it := outItem{epoch: epoch, msgType: m.typ(), seq: c.hs.sendSeq, body: body}
	c.hs.sendSeq++
	return it, nil
}

func (c *Conn) addTranscript(msgType uint8, seq uint16, body []byte) {
	c.hs.transcript = append(c.hs.transcript, fullHandshakeMessage(msgType, seq, body)...)
}

// errHandshakeTimeout ends a handshake whose peer stopped answering.
var errHandshakeTimeout = errors.New("dtls: handshake timed out")

// errUnverifiedSilent ends a cookie-less handshake whose peer neither
// answered our flight nor repeated its own before the retransmission timer,
// when the amplification bound allows no retransmission.
var errUnverifiedSilent = errors.New("dtls: a peer without a cookie did not answer, and the amplification bound allows no retransmission")

// readHandshake returns the next handshake message in order, retransmitting
// the last flight whenever its timer fires or the peer repeats its own
// flight.
//
// want names what is expected, for the error that says where a handshake
// stopped.
func (c *Conn) readHandshake(ctx context.Context, want string) (handshakeMsg, error) {
	interval := c.cfg.retransmitInterval()
	timer := time.NewTimer(interval)
	defer timer.Stop()
	hs := c.hs
	hs.stage = "waiting for " + want
	for {
		if m, ok := hs.reasm.pop(); ok {
			hs.stage = "processing " + handshakeTypeName(m.typ)
			if c.cfg.Trace != nil {
				c.cfg.Trace(TraceEvent{Message: handshakeTypeName(m.typ), Length: len(m.body), Epoch: m.epoch})
			}
			return m, nil
		}
		if c.readErr != nil {
			return handshakeMsg{}, c.readErr
		}
		if hs.peerRetransmit {
			hs.peerRetransmit = false
			if time.Since(hs.lastSend) >= c.cfg.retransmitInterval()/2 {
				if err := c.resendFlight(); err != nil {
					return handshakeMsg{}, err
				}
			}
		}
		select {
		case <-c.in.ready:
			if in, ok := c.in.pop(); ok {
				c.handleDatagram(in.d, in.from)
			} else if err := c.in.failure(); err != nil {
				return handshakeMsg{}, err
			}
		case <-timer.C:
			if c.unverified.Load() && !c.fitsAmplificationBound(hs.flight) {
				// The peer has not shown it is reachable and its bytes
				// allow no retransmission. A peer that lost our flight
				// repeats its hello, which lets us resend; one that stayed
				// silent for a whole interval since we last sent is given
				// up, so a replayed hello holds no state for long
				// (docs/decisions.md, "Amplification").
				c.cfg.noteLimit(LimitAmplification, c.remote())
				if time.Since(hs.lastSend) >= interval {
					return handshakeMsg{}, errUnverifiedSilent
				}
			} else if err := c.resendFlight(); err != nil {
				return handshakeMsg{}, err
			}
			interval = min(interval*2, c.cfg.retransmitMax())
			timer.Reset(interval)
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return handshakeMsg{}, errHandshakeTimeout
			}
			return handshakeMsg{}, ctx.Err()
		case <-c.closed:
			return handshakeMsg{}, net.ErrClosed
		}
	}
}

// expect reads the next handshake message and parses it into m; a message
// of another type is unexpected_message.
func (c *Conn) expect(ctx context.Context, m handshakeMessage, name string) (handshakeMsg, error) {
	hm, err := c.readHandshake(ctx, name)
	if err != nil {
		return hm, err
	}
	if hm.typ != m.typ() {
		return hm, localAlert(alertUnexpectedMessage, fmt.Errorf("expected %s, got handshake type %d", name, hm.typ))
	}
	if err := m.unmarshal(hm.body); err != nil {
		return hm, err
	}
	return hm, nil
}

// flight collects the handshake messages of one of our flights: each gets
// the next message_seq and enters the transcript as it is added.
type flight struct {
	c     *Conn
	items []outItem
}

func (c *Conn) newFlight() *flight { return &flight{c: c} }

func (f *flight) add(m handshakeMessage, epoch uint16) error {
	it, err := f.c.handshakeItem(m, epoch)
	if err != nil {
		return err
	}
	f.c.addTranscript(it.msgType, it.seq, it.body)
	f.items = append(f.items, it)
	return nil
}

// addPrepared adds a message encoded and numbered beforehand (the reply
// of a resumption, prepared before the cookie decision).
func (f *flight) addPrepared(it outItem) {
	f.c.hs.sendSeq = it.seq + 1
	f.c.addTranscript(it.msgType, it.seq, it.body)
	f.items = append(f.items, it)
}

// send sends the flight and keeps it for retransmission.
func (f *flight) send() error { return f.c.sendFlight(f.items) }

// finish ends the flight with ChangeCipherSpec and our Finished over the
// transcript so far, sends it, and switches our writing to epoch 1.
func (f *flight) finish(ms []byte) error {
	vd, err := finishedData(ms, f.c.hs.transcript, f.c.isClient)
	if err != nil {
		return localAlert(alertInternalError, err)
	}
	f.items = append(f.items, outItem{ccs: true, epoch: 0})
	if err := f.add(&finishedMsg{verifyData: vd}, 1); err != nil {
		return err
	}
	if err := f.send(); err != nil {
		return err
	}
	f.c.hs.sentLast = f.c.hs.peerFinished
	f.c.writeMu.Lock()
	f.c.rl.startWriteEpoch1()
	f.c.writeMu.Unlock()
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
	if err := verifyFinished(ms, c.hs.transcript, !c.isClient, fin.verifyData); err != nil {
		return err
	}
	c.addTranscript(hm.typ, hm.seq, hm.body)
	c.hs.peerFinished = true
	return nil
}

// setSessionKeys derives the record keys and installs them for epoch 1;
// etm is whether the hellos negotiated encrypt-then-MAC (RFC 7366) for a
// CBC suite.
func (c *Conn) setSessionKeys(s *cipherSuite, ms []byte, clientRandom, serverRandom [32]byte, etm bool) error {
	rc, block, err := s.newCipher(ms, clientRandom[:], serverRandom[:], c.isClient, etm)
	if err != nil {
		return localAlert(alertInternalError, err)
	}
	c.keyBlock, c.suite = block, s
	c.state.EncryptThenMAC = etm
	c.cfg.writeKeyLog(clientRandom, ms)
	c.installKeys(rc, s.overhead)
	return nil
}

// parseAs parses an already read message as m.
func parseAs(hm handshakeMsg, m handshakeMessage, name string) error {
	if hm.typ != m.typ() {
		return localAlert(alertUnexpectedMessage, fmt.Errorf("expected %s, got handshake type %d", name, hm.typ))
	}
	return m.unmarshal(hm.body)
}
