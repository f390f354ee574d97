package dtls

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

const handshakeHeaderLen = 12

// maxHandshakeMessage bounds the size of one reassembled handshake message;
// certificate chains are the largest thing we expect.
const maxHandshakeMessage = 1 << 16

// handshakeFragment is one handshake record's content (RFC 6347 §4.2.2).
//
//	struct {
//	    HandshakeType msg_type;
//	    uint24 length;
//	    uint16 message_seq;
//	    uint24 fragment_offset;
//	    uint24 fragment_length;
//	    select (HandshakeType) { ... } body;  /* this fragment's bytes */
//	} Handshake;
type handshakeFragment struct {
	msgType uint8
	length  uint32
	seq     uint16
	offset  uint32
	data    []byte
}

// parseHandshakeFragments reads every handshake fragment in a record.
func parseHandshakeFragments(b []byte) ([]handshakeFragment, error) {
	var out []handshakeFragment
	s := cryptobyte.String(b)
	for !s.Empty() {
		var f handshakeFragment
		var fragLen uint32
		if !s.ReadUint8(&f.msgType) || !s.ReadUint24(&f.length) || !s.ReadUint16(&f.seq) ||
			!s.ReadUint24(&f.offset) || !s.ReadUint24(&fragLen) {
			return out, decodeError("Handshake", "header")
		}
		if !s.ReadBytes(&f.data, int(fragLen)) {
			return out, decodeError("Handshake", "fragment_length")
		}
		if f.length > maxHandshakeMessage {
			return out, decodeError("Handshake", "length")
		}
		if uint64(f.offset)+uint64(fragLen) > uint64(f.length) {
			return out, decodeError("Handshake", "fragment_offset")
		}
		out = append(out, f)
	}
	return out, nil
}

// marshalHandshakeHeader appends the 12-byte DTLS handshake header.
func marshalHandshakeHeader(b []byte, msgType uint8, length int, seq uint16, offset, fragLen int) []byte {
	return append(b, msgType, byte(length>>16), byte(length>>8), byte(length),
		byte(seq>>8), byte(seq),
		byte(offset>>16), byte(offset>>8), byte(offset),
		byte(fragLen>>16), byte(fragLen>>8), byte(fragLen))
}

// fullHandshakeMessage is a message as the transcript sees it: as if it had
// been sent in a single fragment (RFC 6347 §4.2.6).
func fullHandshakeMessage(msgType uint8, seq uint16, body []byte) []byte {
	b := marshalHandshakeHeader(make([]byte, 0, handshakeHeaderLen+len(body)), msgType, len(body), seq, 0, len(body))
	return append(b, body...)
}

// assembly collects the fragments of one handshake message.
type assembly struct {
	msgType uint8
	epoch   uint16
	body    []byte
	have    []bool // per byte; messages are small enough for this to be cheap
	missing int
}

// handshakeMsg is a reassembled handshake message.
type handshakeMsg struct {
	typ   uint8
	seq   uint16
	epoch uint16
	body  []byte
	// recordSeq is the record sequence number a ClientHello came in; the
	// server's first flight starts from it.
	recordSeq uint64
}

// reassembler orders incoming handshake messages by message_seq and glues
// their fragments together. Messages before next are duplicates; messages
// far ahead are refused so that a peer cannot make us buffer much.
type reassembler struct {
	next    uint16
	pending map[uint16]*assembly
}

const reassemblyWindow = 16

// errOldMessage reports a handshake fragment of a message already
// processed: the peer is retransmitting, which means our last flight may have
// been lost.
var errOldMessage = fmt.Errorf("retransmitted handshake message")

func (r *reassembler) add(f handshakeFragment, epoch uint16) error {
	if f.seq < r.next {
		return errOldMessage
	}
	if f.seq-r.next >= reassemblyWindow {
		return nil // too far ahead: drop, the peer retransmits
	}
	if r.pending == nil {
		r.pending = make(map[uint16]*assembly)
	}
	a := r.pending[f.seq]
	if a == nil {
		a = &assembly{msgType: f.msgType, epoch: epoch, body: make([]byte, f.length), have: make([]bool, f.length), missing: int(f.length)}
		r.pending[f.seq] = a
	}
	if a.msgType != f.msgType || len(a.body) != int(f.length) || a.epoch != epoch {
		return decodeError("Handshake", "fragment does not match earlier fragments of its message")
	}
	for i, c := range f.data {
		p := int(f.offset) + i
		if !a.have[p] {
			a.have[p] = true
			a.body[p] = c
			a.missing--
		}
	}
	return nil
}

// pop returns the next complete message in order, if there is one.
func (r *reassembler) pop() (handshakeMsg, bool) {
	a := r.pending[r.next]
	if a == nil || a.missing > 0 {
		return handshakeMsg{}, false
	}
	delete(r.pending, r.next)
	m := handshakeMsg{typ: a.msgType, seq: r.next, epoch: a.epoch, body: a.body}
	r.next++
	return m, true
}

// unpop puts back a message that pop returned, for a reader that looked
// ahead one message.
func (r *reassembler) unpop(m handshakeMsg) {
	if r.pending == nil {
		r.pending = make(map[uint16]*assembly)
	}
	r.next = m.seq
	r.pending[m.seq] = &assembly{msgType: m.typ, epoch: m.epoch, body: m.body}
}

// outItem is one element of a flight: a handshake message or a
// ChangeCipherSpec.
type outItem struct {
	ccs     bool
	epoch   uint16
	msgType uint8
	seq     uint16
	body    []byte
}

// packFlight turns a flight into datagrams of at most mtu bytes. Handshake
// messages of one epoch share a record while they fit, records share a
// datagram, and a message that does not fit is fragmented. It is called again
// for every retransmission so that each record gets a fresh sequence number.
func packFlight(rl *recordLayer, items []outItem, mtu int) ([][]byte, error) {
	var (
		datagrams [][]byte
		cur       []byte // datagram being filled
		rec       []byte // handshake record content being filled
		recEpoch  uint16
	)
	sealRec := func() error {
		if len(rec) == 0 {
			return nil
		}
		var err error
		cur, err = rl.seal(cur, recordHandshake, recEpoch, rec)
		rec = nil
		return err
	}
	flush := func() error {
		if err := sealRec(); err != nil {
			return err
		}
		if len(cur) > 0 {
			datagrams = append(datagrams, cur)
			cur = nil
		}
		return nil
	}
	// room is what a handshake fragment may still carry in the datagram.
	room := func(epoch uint16) int {
		// The open record's header (or the next record's) is not in cur yet.
		used := len(cur) + recordHeaderLen + rl.write[epoch].overhead + len(rec)
		return mtu - used - handshakeHeaderLen
	}
	for _, it := range items {
		if it.ccs || (len(rec) > 0 && it.epoch != recEpoch) {
			if err := sealRec(); err != nil {
				return nil, err
			}
		}
		if it.ccs {
			if len(cur)+recordHeaderLen+rl.write[it.epoch].overhead+1 > mtu {
				if err := flush(); err != nil {
					return nil, err
				}
			}
			var err error
			if cur, err = rl.seal(cur, recordChangeCipherSpec, it.epoch, []byte{1}); err != nil {
				return nil, err
			}
			continue
		}
		offset := 0
		for first := true; first || offset < len(it.body); first = false {
			r := room(it.epoch)
			// Start a new datagram rather than send a sliver of a message.
			if r < min(64, len(it.body)-offset) && (len(cur) > 0 || len(rec) > 0) {
				if err := flush(); err != nil {
					return nil, err
				}
				r = room(it.epoch)
			}
			if r <= 0 {
				return nil, fmt.Errorf("dtls: MTU %d too small for a handshake record", mtu)
			}
			n := min(len(it.body)-offset, r)
			recEpoch = it.epoch
			rec = marshalHandshakeHeader(rec, it.msgType, len(it.body), it.seq, offset, n)
			rec = append(rec, it.body[offset:offset+n]...)
			offset += n
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return datagrams, nil
}
