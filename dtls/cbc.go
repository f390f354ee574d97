package dtls

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/pion/dtls/v3/pkg/protocol"
	"github.com/pion/dtls/v3/pkg/protocol/recordlayer"
)

// AES-128-CBC with HMAC-SHA256 record protection, for
// TLS_PSK_WITH_AES_128_CBC_SHA256 and TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256.
//
// A protected fragment is, with MAC-then-encrypt (RFC 5246 §6.2.3.2, the
// default),
//
//	IV || ENC(content || MAC || padding || padding_length)
//
// and with encrypt-then-MAC (RFC 7366 §3)
//
//	IV || ENC(content || padding || padding_length) || MAC
//
// where the IV is a fresh random block per record and each of the
// padding_length+1 padding bytes holds padding_length. The MAC input is
// described at cbcMACHeader. With a connection ID (RFC 9146) the content
// is the DTLSInnerPlaintext; the record layer builds and strips it.
//
// Receiving MAC-then-encrypt records is the delicate part: the receiver has
// to decrypt before it can authenticate, and how long it takes to find the
// padding bad, or to hash the content the padding leaves, must not tell an
// attacker anything about the plaintext (Vaudenay's padding oracle and
// Lucky Thirteen, AlFardan and Paterson 2013). openMtE therefore does the
// same work, touching the same memory, for every record of a given length;
// see there. Encrypt-then-MAC needs none of this: the MAC covers the
// ciphertext and is checked before anything is decrypted.

const (
	cbcBlockSize  = aes.BlockSize // also the length of the explicit IV
	cbcKeySize    = 16            // AES-128
	cbcMACSize    = sha256.Size
	cbcMACKeySize = sha256.Size // RFC 5246 §6.3: mac_key_length for HMAC-SHA256
	// cbcMaxPadding is the most padding a record can carry: padding_length
	// is one byte, and the padding is that many bytes plus itself.
	cbcMaxPadding = 256
	// cbcMaxFragment is the largest protected fragment a record may carry
	// (RFC 5246 §6.2.3, RFC 6347 §4.1: 2^14 + 2048).
	cbcMaxFragment = 1<<14 + 2048
	// cbcMaxMACHeader is the longest MAC input header, a tls12_cid record's
	// with a 255-byte CID.
	cbcMaxMACHeader = 8 + 1 + 1 + 1 + 2 + 2 + 6 + 255 + 2
)

// errCBCRecord is the one error Decrypt returns, whatever was wrong with the
// record: a receiver that told a bad length, bad padding and a bad MAC
// apart would be a padding oracle.
var errCBCRecord = errors.New("dtls: CBC record failed authentication")

// cbcTypeCID is tls12_cid (RFC 9146 §4), the outer type of records with a
// connection ID.
const cbcTypeCID = byte(protocol.ContentTypeConnectionID)

// cbcCipher is the AES-128-CBC HMAC-SHA256 protection of one side of a
// connection. It implements recordCipher and is safe for concurrent use:
// its fields are not modified after newCBC.
type cbcCipher struct {
	etm      bool // encrypt-then-MAC (RFC 7366)
	write    cipher.Block
	read     cipher.Block
	writeMAC []byte
	readMAC  []byte
	readHMAC cbcHMACKey // readMAC prepared for the constant-time MAC of openMtE
}

// newCBC returns the CBC record protection of one connection side: keys for
// writing (local) and reading (remote), HMAC-SHA256 MAC keys of 32 bytes,
// AES-128 keys of 16 bytes; etm selects encrypt-then-MAC (RFC 7366).
func newCBC(localKey, localMAC, remoteKey, remoteMAC []byte, etm bool) (recordCipher, error) {
	if len(localKey) != cbcKeySize || len(remoteKey) != cbcKeySize {
		return nil, fmt.Errorf("dtls: CBC: AES-128 keys of %d and %d bytes, want %d", len(localKey), len(remoteKey), cbcKeySize)
	}
	if len(localMAC) != cbcMACKeySize || len(remoteMAC) != cbcMACKeySize {
		return nil, fmt.Errorf("dtls: CBC: MAC keys of %d and %d bytes, want %d", len(localMAC), len(remoteMAC), cbcMACKeySize)
	}
	w, err := aes.NewCipher(localKey)
	if err != nil {
		return nil, err
	}
	r, err := aes.NewCipher(remoteKey)
	if err != nil {
		return nil, err
	}
	return &cbcCipher{
		etm:      etm,
		write:    w,
		read:     r,
		writeMAC: bytes.Clone(localMAC),
		readMAC:  bytes.Clone(remoteMAC),
		readHMAC: newCBCHMACKey(remoteMAC),
	}, nil
}

// cbcSealedLen is the length of the protected fragment for n plaintext bytes with minimal padding
// (the same in both forms): 16 (IV) + 32 (MAC) + n+1 rounded up to 16.
func cbcSealedLen(n int) int {
	return cbcBlockSize + cbcMACSize + (n/cbcBlockSize+1)*cbcBlockSize
}

// cbcMACHeader appends to b what precedes the data in the MAC input of a
// record whose header on the wire is hdr, for data of length n.
//
// Without a connection ID (RFC 5246 §6.2.3.1, with DTLS's seq_num of RFC
// 6347 §4.1.2.1, the epoch followed by the sequence number):
//
//	epoch + sequence_number + type + version + length
//
// For a tls12_cid record (RFC 9146 §5.1 and §5.2):
//
//	seq_num_placeholder + tls12_cid + cid_length + tls12_cid + version +
//	epoch + sequence_number + cid + length
//
// where seq_num_placeholder is 8 bytes of 0xff. The data that follows is,
// MAC-then-encrypt, the content (for tls12_cid the whole
// DTLSInnerPlaintext) and n is its length; encrypt-then-MAC, the IV and
// ciphertext, and n is their length (RFC 7366 §3: the MAC is not counted).
//
// The fields are taken from hdr, so the MAC covers the header as sent.
// Nothing here branches on n, which openMtE computes from secret padding.
func cbcMACHeader(b, hdr []byte, n int) []byte {
	if hdr[0] != cbcTypeCID {
		b = append(b, hdr[3:11]...)           // epoch, sequence_number
		b = append(b, hdr[0], hdr[1], hdr[2]) // type, version
		return append(b, byte(n>>8), byte(n)) // length
	}
	cid := hdr[11 : len(hdr)-2]
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff) // seq_num_placeholder
	b = append(b, cbcTypeCID, byte(len(cid)), cbcTypeCID, hdr[1], hdr[2])
	b = append(b, hdr[3:11]...) // epoch, sequence_number
	b = append(b, cid...)
	return append(b, byte(n>>8), byte(n))
}

// Encrypt protects a record: raw is its header (13 bytes, or 13 plus the
// CID for a tls12_cid record) followed by the plaintext. It returns the
// header, with its length rewritten, followed by the protected fragment.
// raw is not modified.
func (c *cbcCipher) Encrypt(pkt *recordlayer.RecordLayer, raw []byte) ([]byte, error) {
	hdrLen := pkt.Header.Size()
	cidLen := len(pkt.Header.ConnectionID)
	if len(raw) < hdrLen {
		return nil, errors.New("dtls: CBC: record shorter than its header")
	}
	if (raw[0] == cbcTypeCID) != (cidLen > 0) || cidLen > 255 {
		return nil, errors.New("dtls: CBC: connection ID does not match the record type")
	}
	hdr, data := raw[:hdrLen], raw[hdrLen:]
	n := len(data)
	sealed := cbcSealedLen(n)
	if sealed > cbcMaxFragment {
		return nil, fmt.Errorf("dtls: CBC: %d-byte plaintext too long for a record", n)
	}

	out := make([]byte, hdrLen+sealed)
	copy(out, hdr)
	binary.BigEndian.PutUint16(out[hdrLen-2:], uint16(sealed))
	iv := out[hdrLen : hdrLen+cbcBlockSize]
	if _, err := rand.Read(iv); err != nil {
		return nil, fmt.Errorf("dtls: CBC: IV: %w", err)
	}
	body := out[hdrLen+cbcBlockSize:]
	var scratch [cbcMaxMACHeader]byte
	mac := hmac.New(sha256.New, c.writeMAC)
	if c.etm {
		enc := body[:len(body)-cbcMACSize]
		copy(enc, data)
		cbcPad(enc[n:])
		cipher.NewCBCEncrypter(c.write, iv).CryptBlocks(enc, enc)
		mac.Write(cbcMACHeader(scratch[:0], hdr, cbcBlockSize+len(enc)))
		mac.Write(iv)
		mac.Write(enc)
		mac.Sum(body[len(enc):len(enc)])
		return out, nil
	}
	copy(body, data)
	mac.Write(cbcMACHeader(scratch[:0], hdr, n))
	mac.Write(data)
	mac.Sum(body[n:n])
	cbcPad(body[n+cbcMACSize:])
	cipher.NewCBCEncrypter(c.write, iv).CryptBlocks(body, body)
	return out, nil
}

// cbcPad fills p, the padding and padding_length byte, with len(p)-1.
func cbcPad(p []byte) {
	for i := range p {
		p[i] = byte(len(p) - 1)
	}
}

// Decrypt checks and decrypts a record. h is a zero Header, its
// ConnectionID sized to the CID length for a tls12_cid record; in is the
// whole record. It returns the header followed by the plaintext (for
// tls12_cid the DTLSInnerPlaintext), in a new buffer: in is not modified,
// even when the record is rejected. Every failure is errCBCRecord.
func (c *cbcCipher) Decrypt(h recordlayer.Header, in []byte) ([]byte, error) {
	cidLen := len(h.ConnectionID)
	hdrLen := recordlayer.FixedHeaderSize + cidLen
	if len(in) < hdrLen || (in[0] == cbcTypeCID) != (cidLen > 0) || cidLen > 255 {
		return nil, errCBCRecord
	}
	if err := h.Unmarshal(in); err != nil {
		return nil, errCBCRecord
	}
	hdr, body := in[:hdrLen], in[hdrLen:]
	if int(binary.BigEndian.Uint16(hdr[hdrLen-2:])) != len(body) || len(body) > cbcMaxFragment {
		return nil, errCBCRecord
	}
	if c.etm {
		return c.openETM(hdr, body)
	}
	return c.openMtE(hdr, body)
}

// openETM opens an encrypt-then-MAC fragment (RFC 7366 §3): it checks the
// MAC over the IV and ciphertext and decrypts only if it is right, so
// nothing about the plaintext or padding is computed from forged input.
func (c *cbcCipher) openETM(hdr, body []byte) ([]byte, error) {
	if len(body) < cbcSealedLen(0) || (len(body)-cbcMACSize)%cbcBlockSize != 0 {
		return nil, errCBCRecord
	}
	enc, tag := body[:len(body)-cbcMACSize], body[len(body)-cbcMACSize:]
	var scratch [cbcMaxMACHeader]byte
	var sum [cbcMACSize]byte
	mac := hmac.New(sha256.New, c.readMAC)
	mac.Write(cbcMACHeader(scratch[:0], hdr, len(enc)))
	mac.Write(enc)
	if !hmac.Equal(mac.Sum(sum[:0]), tag) {
		return nil, errCBCRecord
	}

	out := make([]byte, len(hdr)+len(enc)-cbcBlockSize)
	copy(out, hdr)
	pt := out[len(hdr):]
	cipher.NewCBCDecrypter(c.read, enc[:cbcBlockSize]).CryptBlocks(pt, enc[cbcBlockSize:])
	// The sender holds the MAC key, so bad padding here is a broken peer,
	// not an oracle; the check is the constant-time one all the same.
	n, good := cbcCheckPadding(pt, 0)
	if good != 1 {
		return nil, errCBCRecord
	}
	binary.BigEndian.PutUint16(out[len(hdr)-2:], uint16(n))
	return out[:len(hdr)+n], nil
}

// openMtE opens a MAC-then-encrypt fragment (RFC 5246 §6.2.3.2) so that
// its running time and memory accesses depend only on the length of the
// record, not on its padding or on whether the padding or the MAC is bad:
//
//   - cbcCheckPadding reads the last 256 bytes (or the whole plaintext)
//     whatever padding_length says, and the content length n comes out of
//     constant-time selects; on bad padding the record is processed as if
//     padding_length were 0, as RFC 5246 §6.2.3.2 advises.
//   - cbcHMACKey.sum hashes, in the same number of SHA-256 compressions for
//     every n, the header and the first n bytes: it compresses every block
//     in which the hashed data could end and keeps, with masks, the state
//     after the one in which it does end.
//   - cbcExtractMAC copies the received MAC out of the plaintext at offset
//     n by scanning every offset it could be at and rotating the result
//     into place with masks.
//   - The padding and MAC results are combined with a bitwise AND, and the
//     only branch on secret data is the final accept or reject.
func (c *cbcCipher) openMtE(hdr, body []byte) ([]byte, error) {
	if len(body) < cbcSealedLen(0) || len(body)%cbcBlockSize != 0 {
		return nil, errCBCRecord
	}
	out := make([]byte, len(hdr)+len(body)-cbcBlockSize)
	copy(out, hdr)
	pt := out[len(hdr):]
	cipher.NewCBCDecrypter(c.read, body[:cbcBlockSize]).CryptBlocks(pt, body[cbcBlockSize:])

	n, good := cbcCheckPadding(pt, cbcMACSize) // n is secret until the MAC checks out
	// The bounds of n are public: the padding is 1 to 256 bytes.
	maxN := len(pt) - cbcMACSize - 1
	minN := max(0, maxN-(cbcMaxPadding-1))

	var scratch [cbcMaxMACHeader]byte
	want := c.readHMAC.sum(cbcMACHeader(scratch[:0], hdr, n), pt[:maxN], n, minN)
	got := cbcExtractMAC(pt, n, minN)
	good &= subtle.ConstantTimeCompare(want[:], got[:])
	if good != 1 {
		return nil, errCBCRecord
	}
	binary.BigEndian.PutUint16(out[len(hdr)-2:], uint16(n))
	return out[:len(hdr)+n], nil
}

// cbcCheckPadding checks the padding at the end of the decrypted p (RFC
// 5246 §6.2.3.2): its last byte, padding_length, and the padding_length
// bytes before it must all equal padding_length, and reserve bytes (the
// MAC) must fit before them. It returns good = 1 if so and the length of
// what precedes the reserve bytes and the padding; with bad padding, the
// length as if padding_length were 0. len(p) must be at least reserve+1.
//
// The time taken and the bytes read depend only on len(p): it reads the
// last min(256, len(p)) bytes whatever padding_length is, and uses no
// branch or index that depends on their values.
func cbcCheckPadding(p []byte, reserve int) (n, good int) {
	last := len(p) - 1
	padLen := int(p[last])
	good = subtle.ConstantTimeLessOrEq(padLen+1+reserve, len(p))
	for i := range min(cbcMaxPadding, len(p)) {
		inPadding := subtle.ConstantTimeLessOrEq(i, padLen) // p[last-i] is padding
		good &= subtle.ConstantTimeByteEq(p[last-i], byte(padLen)) | (inPadding ^ 1)
	}
	padLen = subtle.ConstantTimeSelect(good, padLen, 0)
	return len(p) - reserve - 1 - padLen, good
}

// cbcExtractMAC returns p[n:n+cbcMACSize] for a secret n, minN <= n and
// n+cbcMACSize <= len(p), reading p[minN:] whatever n is and using no
// index that depends on n: each byte that belongs to the MAC is ORed into
// place modulo cbcMACSize (an index that depends only on its position),
// and the result, rotated by (n-minN) mod cbcMACSize, is rotated back one
// bit of that amount at a time with masked selects.
func cbcExtractMAC(p []byte, n, minN int) [cbcMACSize]byte {
	var rotated [cbcMACSize]byte
	end := n + cbcMACSize
	for i := minN; i < len(p); i++ {
		inMAC := subtle.ConstantTimeLessOrEq(n, i) & (subtle.ConstantTimeLessOrEq(end, i) ^ 1)
		rotated[(i-minN)%cbcMACSize] |= p[i] & byte(-inMAC)
	}
	// rotated[(r+t) % cbcMACSize] = MAC[t]: rotate left by r.
	r := (n - minN) & (cbcMACSize - 1)
	var tmp [cbcMACSize]byte
	for bit := 0; 1<<bit < cbcMACSize; bit++ {
		mask := byte(-((r >> bit) & 1))
		for t := range tmp {
			tmp[t] = rotated[(t+1<<bit)%cbcMACSize]
		}
		for t := range rotated {
			rotated[t] = rotated[t]&^mask | tmp[t]&mask
		}
	}
	return rotated
}

// cbcHMACKey is an HMAC-SHA256 key (RFC 2104) as the SHA-256 chaining
// values after its first, key-only block of the inner and of the outer
// hash.
type cbcHMACKey struct {
	inner, outer [8]uint32
}

func newCBCHMACKey(key []byte) cbcHMACKey {
	// Keys are at most one block here, so RFC 2104 pads them with zeros.
	var ipad, opad [64]byte
	copy(ipad[:], key)
	copy(opad[:], key)
	for i := range ipad {
		ipad[i] ^= 0x36
		opad[i] ^= 0x5c
	}
	k := cbcHMACKey{inner: cbcSHA256Init, outer: cbcSHA256Init}
	cbcSHA256Block(&k.inner, ipad[:])
	cbcSHA256Block(&k.outer, opad[:])
	return k
}

// sum returns HMAC-SHA256(key, prefix || data[:n]) for a secret n, with
// minN <= n <= len(data) public bounds, in the same time for every n.
//
// Hashing only the n bytes would take a number of SHA-256 compressions
// that depends on n (this is what Lucky Thirteen measures), and so does
// letting a hash.Hash pad the message (one final block or two). Instead,
// every block in which the padded message could end is built here with
// masks: data bytes before offset n, the 0x80 terminator at n, zeros
// after, and the bit length in the last 8 bytes of only the block that
// ends the message. All of them are compressed, and the chaining value
// after the block that ends the message is kept with a masked select.
// Blocks before the first one n could reach are plain data and are hashed
// as they are.
//
// Compressions use cbcSHA256Block, a plain Go SHA-256 with no branches or
// table lookups on data; crypto/sha256 does not expose its block function.
func (k *cbcHMACKey) sum(prefix, data []byte, n, minN int) [cbcMACSize]byte {
	// Offsets are within the inner hash's message after its key block.
	msgLen := len(prefix) + n // secret
	maxLen := len(prefix) + len(data)
	minLen := len(prefix) + minN
	// The message ends (0x80, at least 8 bytes of length) in block
	// (msgLen+8)/64.
	first := minLen / 64
	last := (maxLen + 8) / 64
	final := (msgLen + 8) >> 6 // secret

	buf := make([]byte, (last+1)*64)
	copy(buf, prefix)
	copy(buf[len(prefix):], data)

	state := k.inner
	for j := 0; j < first; j++ {
		cbcSHA256Block(&state, buf[64*j:64*j+64])
	}
	var bitLen [8]byte
	binary.BigEndian.PutUint64(bitLen[:], uint64(64+msgLen)*8)
	var inner [8]uint32
	var block [64]byte
	for j := first; j <= last; j++ {
		isFinal := subtle.ConstantTimeEq(int32(j), int32(final))
		for i := range block {
			o := 64*j + i
			isData := subtle.ConstantTimeLessOrEq(msgLen, o) ^ 1
			isEnd := subtle.ConstantTimeEq(int32(o), int32(msgLen))
			block[i] = buf[o]&byte(-isData) | 0x80&byte(-isEnd)
		}
		for i := range bitLen {
			block[56+i] |= bitLen[i] & byte(-isFinal)
		}
		cbcSHA256Block(&state, block[:])
		mask := uint32(-isFinal)
		for w := range inner {
			inner[w] = inner[w]&^mask | state[w]&mask
		}
	}

	// The outer hash: key block, the 32-byte inner hash, padding.
	clear(block[:])
	for w, v := range inner {
		binary.BigEndian.PutUint32(block[4*w:], v)
	}
	block[cbcMACSize] = 0x80
	binary.BigEndian.PutUint64(block[56:], (64+cbcMACSize)*8)
	state = k.outer
	cbcSHA256Block(&state, block[:])
	var mac [cbcMACSize]byte
	for w, v := range state {
		binary.BigEndian.PutUint32(mac[4*w:], v)
	}
	return mac
}

// cbcSHA256Init is the SHA-256 initial hash value (FIPS 180-4 §5.3.3).
var cbcSHA256Init = [8]uint32{
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
}

// cbcSHA256K are the SHA-256 round constants (FIPS 180-4 §4.2.2).
var cbcSHA256K = [64]uint32{
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

// cbcSHA256Block is the SHA-256 compression function (FIPS 180-4 §6.2.2)
// applied to one 64-byte block p.
func cbcSHA256Block(h *[8]uint32, p []byte) {
	var w [64]uint32
	for t := range 16 {
		w[t] = binary.BigEndian.Uint32(p[4*t:])
	}
	for t := 16; t < 64; t++ {
		s0 := bits.RotateLeft32(w[t-15], -7) ^ bits.RotateLeft32(w[t-15], -18) ^ w[t-15]>>3
		s1 := bits.RotateLeft32(w[t-2], -17) ^ bits.RotateLeft32(w[t-2], -19) ^ w[t-2]>>10
		w[t] = s1 + w[t-7] + s0 + w[t-16]
	}
	a, b, c, d, e, f, g, hh := h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
	for t := range 64 {
		S1 := bits.RotateLeft32(e, -6) ^ bits.RotateLeft32(e, -11) ^ bits.RotateLeft32(e, -25)
		ch := e&f ^ ^e&g
		t1 := hh + S1 + ch + cbcSHA256K[t] + w[t]
		S0 := bits.RotateLeft32(a, -2) ^ bits.RotateLeft32(a, -13) ^ bits.RotateLeft32(a, -22)
		maj := a&b ^ a&c ^ b&c
		t2 := S0 + maj
		hh, g, f, e, d, c, b, a = g, f, e, d+t1, c, b, a, t1+t2
	}
	h[0] += a
	h[1] += b
	h[2] += c
	h[3] += d
	h[4] += e
	h[5] += f
	h[6] += g
	h[7] += hh
}
