package dtls

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"
	"github.com/pion/transport/v5/replaydetector"
	"golang.org/x/crypto/cryptobyte"
)

// Record content types (RFC 5246 §6.2.1).
const (
	recordChangeCipherSpec uint8 = 20
	recordAlert            uint8 = 21
	recordHandshake        uint8 = 22
	recordApplicationData  uint8 = 23
	// recordCID is tls12_cid (RFC 9146): a protected record carrying a
	// connection ID, whose real content type is inside.
	recordCID uint8 = 25
)

const (
	recordHeaderLen = 13
	maxSequence     = 1<<48 - 1
	// maxCiphertext is the largest record fragment RFC 6347 allows.
	maxCiphertext = 1<<14 + 2048
)

// record is one DTLS record.
//
//	struct {
//	    ContentType type;
//	    ProtocolVersion version;
//	    uint16 epoch;
//	    uint48 sequence_number;
//	    uint16 length;
//	    opaque fragment[DTLSPlaintext.length];
//	} DTLSPlaintext;
//
// DTLSCiphertext has the same header; with an AEAD suite its fragment is the
// 8-byte explicit nonce followed by the sealed content (RFC 5246 §6.2.3.3).
// A record with a connection ID (RFC 9146 §4) has type tls12_cid and the
// receiver's CID between sequence_number and length:
//
//	struct {
//	    ContentType outer_type = tls12_cid;
//	    ProtocolVersion version;
//	    uint16 epoch;
//	    uint48 sequence_number;
//	    opaque cid[cid_length];        /* the length the receiver chose */
//	    uint16 length;
//	    opaque enc_content[DTLSCiphertext.length];
//	} DTLSCiphertext;
//
// and its sealed content is a DTLSInnerPlaintext: the content, its real
// type, and zero padding.
type record struct {
	contentType uint8
	version     uint16
	epoch       uint16
	seq         uint64
	cid         []byte // tls12_cid records only
	fragment    []byte
	// raw is the whole record as received, header included.
	raw []byte
}

// parseRecords splits a datagram without connection IDs into records.
func parseRecords(datagram []byte) ([]record, error) { return parseRecordsCID(datagram, 0) }

// parseRecordsCID splits a datagram into records; tls12_cid records carry
// a CID of cidLen bytes. A record whose length runs past the end of the
// datagram ends the parse with an error; the records before it are still
// returned so that one bad record does not hide good ones (RFC 6347
// §4.1.2.7 lets a receiver discard invalid records silently).
func parseRecordsCID(datagram []byte, cidLen int) ([]record, error) {
	var out []record
	s := cryptobyte.String(datagram)
	for !s.Empty() {
		start := len(datagram) - len(s)
		var r record
		var seqHi uint16
		var seqLo uint32
		var frag cryptobyte.String
		if !s.ReadUint8(&r.contentType) || !s.ReadUint16(&r.version) || !s.ReadUint16(&r.epoch) ||
			!s.ReadUint16(&seqHi) || !s.ReadUint32(&seqLo) {
			return out, fmt.Errorf("dtls: record at offset %d: header: %w", start, errDecode)
		}
		if r.contentType == recordCID && (cidLen == 0 || !s.ReadBytes(&r.cid, cidLen)) {
			return out, fmt.Errorf("dtls: record at offset %d: connection ID: %w", start, errDecode)
		}
		if !s.ReadUint16LengthPrefixed(&frag) {
			return out, fmt.Errorf("dtls: record at offset %d: length: %w", start, errDecode)
		}
		if len(frag) > maxCiphertext {
			return out, fmt.Errorf("dtls: record at offset %d: length %d over the limit: %w", start, len(frag), errDecode)
		}
		r.seq = uint64(seqHi)<<32 | uint64(seqLo)
		r.fragment = frag
		r.raw = datagram[start : len(datagram)-len(s)]
		out = append(out, r)
	}
	return out, nil
}

// marshalRecordHeader appends a record header for a fragment of length n.
func marshalRecordHeader(b []byte, contentType uint8, version, epoch uint16, seq uint64, n int) []byte {
	return append(b, contentType, byte(version>>8), byte(version), byte(epoch>>8), byte(epoch),
		byte(seq>>40), byte(seq>>32), byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq),
		byte(n>>8), byte(n))
}

// recordCipher is the AEAD protection of one epoch; pion's CCM and GCM
// implement it.
type recordCipher interface {
	Encrypt(pkt *recordlayer.RecordLayer, raw []byte) ([]byte, error)
	Decrypt(h recordlayer.Header, in []byte) ([]byte, error)
}

// epochState is the read or write state of one epoch.
type epochState struct {
	cipher   recordCipher // nil in epoch 0
	overhead int          // bytes the cipher adds to a record
	nextSeq  uint64       // write side
	replay   replaydetector.ReplayDetector
}

// recordLayer holds the epochs of one connection. Epoch 0 is plaintext and
// epoch 1 carries the negotiated cipher; this engine does not renegotiate, so
// no epoch beyond 1 exists.
type recordLayer struct {
	version     uint16
	replayWin   uint
	read        [2]epochState
	write       [2]epochState
	readEpoch   uint16 // highest epoch whose keys are installed for reading
	writeEpoch  uint16
	readKeysSet bool

	// Connection IDs (RFC 9146), once negotiated: writeCID is the peer's,
	// carried in the protected records we send (none when empty); readCID
	// is ours, carried in those we receive. cidPadding zero bytes pad each
	// DTLSInnerPlaintext we send.
	writeCID, readCID []byte
	cidPadding        int
	// readFloor is the first epoch-1 sequence number a restored connection
	// accepts: records from before the restart are replays.
	readFloor uint64
	// cidLen is the length of the CID in the records we receive, known as
	// soon as we offer ours (a client's records may come before the
	// ServerHello that accepts it is processed).
	cidLen int
}

func newRecordLayer(replayWindow int) *recordLayer {
	rl := &recordLayer{version: versionDTLS12, replayWin: uint(replayWindow)}
	for i := range rl.read {
		rl.read[i].replay = replaydetector.New(rl.replayWin, maxSequence)
	}
	return rl
}

// setKeys installs the epoch-1 cipher for both directions. Reading in
// epoch 1 is possible from then on; writing starts after our
// ChangeCipherSpec (startWriteEpoch1).
func (rl *recordLayer) setKeys(c recordCipher, overhead int) {
	rl.read[1].cipher, rl.read[1].overhead = c, overhead
	rl.write[1].cipher, rl.write[1].overhead = c, overhead
	rl.readKeysSet = true
	rl.readEpoch = 1
}

func (rl *recordLayer) startWriteEpoch1() { rl.writeEpoch = 1 }

var (
	errReplay    = errors.New("replayed or too old record")
	errBadEpoch  = errors.New("record from an epoch without keys")
	errRecordMAC = errors.New("record failed authentication")
	errBadCID    = errors.New("record's connection ID is not ours")
)

// open checks and decrypts a record in place of its fragment. Errors are
// reasons to discard the record silently (RFC 6347 §4.1.2.7), never fatal.
func (rl *recordLayer) open(r *record) error {
	if r.epoch > 1 || (r.epoch == 1 && !rl.readKeysSet) {
		return errBadEpoch
	}
	ep := &rl.read[r.epoch]
	if r.epoch == 0 {
		// Epoch 0 is unauthenticated: a forged record with a high sequence
		// number would move the window past the peer's genuine flight and
		// stall the handshake. Handshake messages are deduplicated by
		// message_seq instead, and epoch 0 carries no application data.
		return nil
	}
	if r.seq < rl.readFloor {
		return errReplay
	}
	accept, ok := ep.replay.Check(r.seq)
	if !ok {
		return errReplay
	}
	if ep.cipher != nil {
		if r.contentType == recordChangeCipherSpec {
			return errBadEpoch
		}
		if (r.contentType == recordCID) != (len(rl.readCID) > 0) || (r.contentType == recordCID && !bytes.Equal(r.cid, rl.readCID)) {
			// With a CID of ours, the peer's protected records carry it;
			// without one, they never do (RFC 9146 §4).
			return errBadCID
		}
		h := recordlayer.Header{}
		if r.contentType == recordCID {
			h.ConnectionID = make([]byte, len(rl.readCID))
		}
		out, err := ep.cipher.Decrypt(h, r.raw)
		if err != nil {
			return errRecordMAC
		}
		r.fragment = out[recordHeaderLen+len(h.ConnectionID):]
		if r.contentType == recordCID {
			// DTLSInnerPlaintext: content || real type || zeros.
			end := len(r.fragment) - 1
			for end >= 0 && r.fragment[end] == 0 {
				end--
			}
			if end < 0 {
				return errRecordMAC // no content type: treat as forged
			}
			r.contentType, r.fragment = r.fragment[end], r.fragment[:end]
		}
	}
	accept()
	return nil
}

// seal appends one protected record carrying payload in the given epoch.
func (rl *recordLayer) seal(b []byte, contentType uint8, epoch uint16, payload []byte) ([]byte, error) {
	ep := &rl.write[epoch]
	if ep.nextSeq > maxSequence {
		return b, errors.New("dtls: record sequence number exhausted")
	}
	seq := ep.nextSeq
	ep.nextSeq++
	if ep.cipher == nil {
		b = marshalRecordHeader(b, contentType, rl.version, epoch, seq, len(payload))
		return append(b, payload...), nil
	}
	hdr := recordlayer.Header{
		ContentType:    protocol.ContentType(contentType),
		Version:        protocol.Version{Major: byte(rl.version >> 8), Minor: byte(rl.version)},
		Epoch:          epoch,
		SequenceNumber: seq,
	}
	if len(rl.writeCID) > 0 {
		// RFC 9146 §4: the peer's CID in the header, the real type
		// inside, after the content, then zero padding.
		inner := make([]byte, 0, len(payload)+1+rl.cidPadding)
		inner = append(append(inner, payload...), contentType)
		payload = append(inner, make([]byte, rl.cidPadding)...)
		hdr.ContentType, hdr.ConnectionID = protocol.ContentTypeConnectionID, rl.writeCID
	}
	hdr.ContentLen = uint16(len(payload))
	raw, err := hdr.Marshal()
	if err != nil {
		return b, fmt.Errorf("dtls: sealing record: %w", err)
	}
	raw = append(raw, payload...)
	pkt := &recordlayer.RecordLayer{Header: hdr}
	out, err := ep.cipher.Encrypt(pkt, raw)
	if err != nil {
		return b, fmt.Errorf("dtls: sealing record: %w", err)
	}
	return append(b, out...), nil
}
