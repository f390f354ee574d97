package dtls

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"

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

// assembly collects the fragments of one handshake message. It holds the
// bytes that arrived, never what the header declares: a declared length
// reserves nothing (docs/decisions.md, "Resource model").
type assembly struct {
	msgType uint8
	epoch   uint16
	length  uint32
	frags   []storedFragment
	spans   []span // covered byte ranges, sorted and merged
	charged int    // bytes charged to the reassembler's budget
}

type storedFragment struct {
	offset uint32
	data   []byte
}

// span is a half-open byte range [from, to).
type span struct{ from, to uint32 }

// fragmentOverhead is what one stored fragment costs beyond its bytes,
// charged to the budget so that many tiny fragments cost what they use.
const fragmentOverhead = 48

func (a *assembly) complete() bool {
	return a.length == 0 || (len(a.spans) == 1 && a.spans[0] == span{0, a.length})
}

// covered reports whether [from, to) is already received.
func (a *assembly) covered(from, to uint32) bool {
	for _, s := range a.spans {
		if s.from <= from && to <= s.to {
			return true
		}
	}
	return false
}

// cover merges [from, to) into the covered spans.
func (a *assembly) cover(from, to uint32) {
	out := a.spans[:0:0]
	placed := false
	for _, s := range a.spans {
		switch {
		case s.to < from:
			out = append(out, s)
		case to < s.from:
			if !placed {
				out = append(out, span{from, to})
				placed = true
			}
			out = append(out, s)
		default:
			from, to = min(from, s.from), max(to, s.to)
		}
	}
	if !placed {
		out = append(out, span{from, to})
	}
	a.spans = out
}

// body glues the fragments of a complete message together. Where
// fragments overlap, the byte that arrived first wins.
func (a *assembly) body() []byte {
	b := make([]byte, a.length)
	for i := len(a.frags) - 1; i >= 0; i-- {
		copy(b[a.frags[i].offset:], a.frags[i].data)
	}
	return b
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
// far ahead are refused, and the bytes held for messages not yet complete
// are bounded by budget, so that a peer cannot make us buffer much.
type reassembler struct {
	next    uint16
	pending map[uint16]*assembly
	// budget is what the pending fragments may still take, in bytes.
	budget int
}

const reassemblyWindow = 16

var (
	// errOldMessage reports a handshake fragment of a message already
	// processed: the peer is retransmitting, which means our last flight
	// may have been lost.
	errOldMessage = errors.New("retransmitted handshake message")
	// errHandshakeMemory reports a fragment dropped because the
	// handshake's reassembly budget is spent.
	errHandshakeMemory = errors.New("handshake reassembly memory limit reached")
)

func (r *reassembler) add(f handshakeFragment, epoch uint16) error {
	if f.seq < r.next {
		return errOldMessage
	}
	if f.seq-r.next >= reassemblyWindow {
		return nil // too far ahead: drop, the peer retransmits
	}
	a := r.pending[f.seq]
	if a == nil {
		a = &assembly{msgType: f.msgType, epoch: epoch, length: f.length}
		if r.pending == nil {
			r.pending = make(map[uint16]*assembly)
		}
		r.pending[f.seq] = a
	}
	if a.msgType != f.msgType || a.length != f.length || a.epoch != epoch {
		return decodeError("Handshake", "fragment does not match earlier fragments of its message")
	}
	from, to := f.offset, f.offset+uint32(len(f.data))
	if a.complete() || (from < to && a.covered(from, to)) {
		return nil // a duplicate
	}
	if from == to {
		return nil // an empty fragment of a non-empty message adds nothing
	}
	cost := len(f.data) + fragmentOverhead
	if cost > r.budget {
		return errHandshakeMemory
	}
	r.budget -= cost
	a.charged += cost
	a.frags = append(a.frags, storedFragment{offset: from, data: bytes.Clone(f.data)})
	a.cover(from, to)
	return nil
}

// pop returns the next complete message in order, if there is one.
func (r *reassembler) pop() (handshakeMsg, bool) {
	a := r.pending[r.next]
	if a == nil || !a.complete() {
		return handshakeMsg{}, false
	}
	delete(r.pending, r.next)
	r.budget += a.charged
	m := handshakeMsg{typ: a.msgType, seq: r.next, epoch: a.epoch, body: a.body()}
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
	n := uint32(len(m.body))
	a := &assembly{msgType: m.typ, epoch: m.epoch, length: n, frags: []storedFragment{{0, m.body}}}
	if n > 0 {
		a.spans = []span{{0, n}}
	}
	r.pending[m.seq] = a
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

// packFlight turns a flight into datagrams of at most mtu bytes. Each
// handshake message goes in a record of its own, records share a datagram
// while they fit, and a message that does not fit is fragmented. It is called again
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
		// One handshake message (or fragment) per record: some deployed
		// peers read only a record's first message (docs/decisions.md 7).
		if err := sealRec(); err != nil {
			return nil, err
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return datagrams, nil
}

// flightSize is the bytes items take on the wire as packFlight packs them,
// epoch-1 records carrying the given cipher overhead.
func flightSize(items []outItem, overhead, mtu int) (int, error) {
	rl := newRecordLayer(0)
	rl.write[1] = epochState{cipher: sizingCipher(overhead), overhead: overhead}
	datagrams, err := packFlight(rl, items, mtu)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, d := range datagrams {
		n += len(d)
	}
	return n, nil
}

// sizingCipher stands in for an epoch's cipher when a flight is packed only
// to be measured: it adds the real cipher's overhead.
type sizingCipher int

func (n sizingCipher) Encrypt(_ *recordlayer.RecordLayer, raw []byte) ([]byte, error) {
	return append(raw, make([]byte, n)...), nil
}

func (n sizingCipher) Decrypt(recordlayer.Header, []byte) ([]byte, error) {
	return nil, errors.New("dtls: a sizing cipher does not decrypt")
}
