package coapserver

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// Block-wise transfers (RFC 7959) on the server side, done here rather than
// by go-coap. go-coap v3.5.5's server reassembles a Block1 upload by token:
// a client that gives each block its own token, as RFC 7959 §2.5 and RFC
// 9175 allow and libcoap does (with a Request-Tag option), has every block
// taken for a new upload, and the handler gets the last block alone (56 of
// 3,000 bytes in 64-byte blocks). go-coap also reassembles only PUT and POST
// (FETCH, PATCH and iPATCH bodies are cut to their first block), and
// continues a Block2 response to anything but a GET by token too.
//
// Here an upload is one operation when its blocks come on the same
// connection with the same code and the same options but Block1, Block2,
// Size1 and Size2 (the Request-Tag included, RFC 9175 §3.3): tokens do not
// matter. The handler runs once, on the whole body, without Block1 and
// Size1. A response bigger than a block goes out in blocks; a GET's later
// blocks are made by running the handler again (as go-coap does), other
// methods' are kept (for the transfer timeout) so the handler runs once.

const (
	// maxTransfersPerConn bounds the uploads, and the responses being sent
	// in blocks, that one connection has open at a time; a new one past it
	// replaces the oldest.
	maxTransfersPerConn = 4

	codeFETCH  codes.Code = 5 // RFC 8132
	codePATCH  codes.Code = 6
	codeIPATCH codes.Code = 7

	// optionRequestTag is RFC 9175's Request-Tag; go-coap has no name for
	// it.
	optionRequestTag message.OptionID = 292
)

// blockwiseHandler wraps a go-coap handler with block-wise transfers.
type blockwiseHandler struct {
	next    func(*responsewriter.ResponseWriter[*udpClient.Conn], *pool.Message)
	szx     blockwise.SZX // the largest block this server sends
	timeout time.Duration // how long an idle transfer is kept
	maxBody int           // the largest upload

	mu    sync.Mutex
	conns map[*udpClient.Conn]*connTransfers
}

// connTransfers are one connection's open transfers, oldest first.
type connTransfers struct {
	uploads   []*upload
	responses []*blockResponse
}

type upload struct {
	key      string
	body     []byte
	deadline time.Time
}

// blockResponse is a response to a request other than GET that is being
// sent in blocks.
type blockResponse struct {
	key      string
	code     codes.Code
	opts     message.Options
	body     []byte
	deadline time.Time
}

func newBlockwiseHandler(next func(*responsewriter.ResponseWriter[*udpClient.Conn], *pool.Message), szx blockwise.SZX, timeout time.Duration, maxBody uint32) *blockwiseHandler {
	if szx > blockwise.SZX1024 {
		szx = blockwise.SZX1024
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &blockwiseHandler{next: next, szx: szx, timeout: timeout, maxBody: int(maxBody),
		conns: make(map[*udpClient.Conn]*connTransfers)}
}

func isRequest(c codes.Code) bool { return c >= codes.GET && c <= codeIPATCH }

// serve is the go-coap handler.
func (h *blockwiseHandler) serve(w *responsewriter.ResponseWriter[*udpClient.Conn], r *pool.Message) {
	code := r.Code()
	if !isRequest(code) {
		h.next(w, r)
		return
	}
	var lastBlock1 uint32
	upload := false
	if v, err := r.GetOptionUint32(message.Block1); err == nil {
		var whole bool
		if lastBlock1, whole = h.receive(w, r, v); !whole {
			return
		}
		upload = true
	}
	num, szx := int64(0), h.szx
	if v, err := r.GetOptionUint32(message.Block2); err == nil {
		s, n, _, err := blockwise.DecodeBlockOption(v)
		if err != nil || s > blockwise.SZX1024 {
			diagnostic(w, codes.BadOption, "Block2 option 0x%x is not valid over UDP", v)
			return
		}
		num = n
		szx = min(s, szx) // the client may ask for smaller blocks (RFC 7959 §2.4)
		r.Remove(message.Block2)
		r.Remove(message.Size2)
		if num > 0 && code != codes.GET && !upload {
			h.continueResponse(w, r, num, szx)
			return
		}
	}
	h.next(w, r)
	m := w.Message()
	if !m.IsModified() {
		return // no piggybacked response: nothing to split
	}
	if upload {
		m.SetOptionUint32(message.Block1, lastBlock1)
	}
	h.split(w, r, num, szx)
}

// receive takes one block of an upload. It answers the block itself and
// returns false, or, when the block completes the upload, makes r the whole
// request (its body, no Block1 or Size1) and returns true with the Block1
// value for the final response.
func (h *blockwiseHandler) receive(w *responsewriter.ResponseWriter[*udpClient.Conn], r *pool.Message, v uint32) (uint32, bool) {
	szx, num, more, err := blockwise.DecodeBlockOption(v)
	if err != nil || szx > blockwise.SZX1024 {
		diagnostic(w, codes.BadOption, "Block1 option 0x%x is not valid over UDP", v)
		return 0, false
	}
	size := int(szx.Size())
	payload, err := r.ReadBody()
	if err != nil {
		diagnostic(w, codes.BadRequest, "reading the block: %v", err)
		return 0, false
	}
	if len(payload) > size || more && len(payload) != size {
		diagnostic(w, codes.BadRequest, "Block1 block %d carries %d bytes; a block of size %d that is not the last carries %d", num, len(payload), size, size)
		return 0, false
	}
	if num == 0 && !more { // the whole body in one block
		r.Remove(message.Block1)
		r.Remove(message.Size1)
		return v, true
	}
	if s1, err := r.GetOptionUint32(message.Size1); err == nil && int64(s1) > int64(h.maxBody) {
		tooLarge(w, h.maxBody)
		return 0, false
	}
	key := operationKey(r, true)
	off := num * int64(size)
	cc := w.Conn()
	now := time.Now()

	h.mu.Lock()
	t := h.transfers(cc, now)
	u := t.upload(key)
	switch {
	case num == 0:
		if u == nil {
			u = &upload{key: key}
			t.uploads = appendBounded(t.uploads, u)
		}
		u.body = u.body[:0]
	case u == nil:
		h.mu.Unlock()
		diagnostic(w, codes.RequestEntityIncomplete, "Block1 block %d of an upload whose first block did not arrive or expired", num)
		return 0, false
	}
	switch have := int64(len(u.body)); {
	case off == have:
		if len(u.body)+len(payload) > h.maxBody {
			t.removeUpload(u)
			h.mu.Unlock()
			tooLarge(w, h.maxBody)
			return 0, false
		}
		u.body = append(u.body, payload...)
	case off+int64(len(payload)) <= have && bytes.Equal(u.body[off:off+int64(len(payload))], payload):
		// A block we already have, sent again under a new message ID.
	default:
		t.removeUpload(u)
		h.mu.Unlock()
		diagnostic(w, codes.RequestEntityIncomplete, "Block1 block %d starts at byte %d; %d bytes had arrived", num, off, have)
		return 0, false
	}
	u.deadline = now.Add(h.timeout)
	if more {
		h.mu.Unlock()
		_ = w.SetResponse(codes.Continue, message.TextPlain, nil)
		w.Message().SetOptionUint32(message.Block1, v)
		return 0, false
	}
	body := u.body
	t.removeUpload(u)
	h.mu.Unlock()

	r.SetBody(bytes.NewReader(body))
	r.Remove(message.Block1)
	r.Remove(message.Size1)
	return v, true
}

// split sends block num of the response the handler set, when it is bigger
// than a block, and keeps the rest of a response to anything but a GET for
// the requests that follow.
func (h *blockwiseHandler) split(w *responsewriter.ResponseWriter[*udpClient.Conn], r *pool.Message, num int64, szx blockwise.SZX) {
	m := w.Message()
	body, err := m.ReadBody()
	if err != nil {
		diagnostic(w, codes.InternalServerError, "reading the response: %v", err)
		return
	}
	size := szx.Size()
	if num == 0 && int64(len(body)) <= size {
		return
	}
	if !setBlock(m, body, num, szx) {
		diagnostic(w, codes.BadOption, "Block2 block %d is past the end of the %d-byte response", num, len(body))
		return
	}
	if r.Code() == codes.GET || (num+1)*size >= int64(len(body)) {
		return
	}
	opts, err := m.Options().Clone()
	if err != nil {
		return
	}
	opts = opts.Remove(message.Block1).Remove(message.Block2).Remove(message.Size2)
	key := operationKey(r, false)
	cc := w.Conn()
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.transfers(cc, now)
	if old := t.response(key); old != nil {
		t.removeResponse(old)
	}
	t.responses = appendBounded(t.responses, &blockResponse{key: key, code: m.Code(), opts: opts, body: body, deadline: now.Add(h.timeout)})
}

// continueResponse answers a request for block num (> 0) of a response to
// anything but a GET from what split kept.
func (h *blockwiseHandler) continueResponse(w *responsewriter.ResponseWriter[*udpClient.Conn], r *pool.Message, num int64, szx blockwise.SZX) {
	key := operationKey(r, false)
	cc := w.Conn()
	now := time.Now()
	h.mu.Lock()
	t := h.transfers(cc, now)
	b := t.response(key)
	if b == nil {
		h.mu.Unlock()
		diagnostic(w, codes.RequestEntityIncomplete, "Block2 block %d of a response that is not (or no longer) being sent", num)
		return
	}
	last := (num+1)*szx.Size() >= int64(len(b.body))
	if last {
		t.removeResponse(b)
	} else {
		b.deadline = now.Add(h.timeout)
	}
	h.mu.Unlock()

	m := w.Message()
	m.SetCode(b.code)
	m.ResetOptionsTo(b.opts)
	if !setBlock(m, b.body, num, szx) {
		diagnostic(w, codes.BadOption, "Block2 block %d is past the end of the %d-byte response", num, len(b.body))
	}
}

// setBlock makes m's payload block num of body, with Block2 and Size2; it
// returns false when the block starts past the end.
func setBlock(m *pool.Message, body []byte, num int64, szx blockwise.SZX) bool {
	size := szx.Size()
	off := num * size
	if off >= int64(len(body)) && !(off == 0 && len(body) == 0) {
		return false
	}
	end := min(off+size, int64(len(body)))
	more := end < int64(len(body))
	v, err := blockwise.EncodeBlockOption(szx, num, more)
	if err != nil {
		return false
	}
	m.SetBody(bytes.NewReader(body[off:end]))
	m.SetOptionUint32(message.Block2, v)
	m.SetOptionUint32(message.Size2, uint32(len(body)))
	return true
}

// transfers returns cc's transfers, creating them, and drops those that
// timed out. Called with h.mu held.
func (h *blockwiseHandler) transfers(cc *udpClient.Conn, now time.Time) *connTransfers {
	t := h.conns[cc]
	if t == nil {
		// Kept until the connection closes, so that one close hook serves
		// all its transfers.
		t = &connTransfers{}
		h.conns[cc] = t
		cc.AddOnClose(func() {
			h.mu.Lock()
			delete(h.conns, cc)
			h.mu.Unlock()
		})
		if cc.Context().Err() != nil {
			// Closed already: the hook may have run before it was added.
			delete(h.conns, cc)
		}
		return t
	}
	t.uploads = dropExpired(t.uploads, now, func(u *upload) time.Time { return u.deadline })
	t.responses = dropExpired(t.responses, now, func(b *blockResponse) time.Time { return b.deadline })
	return t
}

func (t *connTransfers) upload(key string) *upload {
	for _, u := range t.uploads {
		if u.key == key {
			return u
		}
	}
	return nil
}

func (t *connTransfers) removeUpload(u *upload) {
	t.uploads = remove(t.uploads, u)
}

func (t *connTransfers) response(key string) *blockResponse {
	for _, b := range t.responses {
		if b.key == key {
			return b
		}
	}
	return nil
}

func (t *connTransfers) removeResponse(b *blockResponse) {
	t.responses = remove(t.responses, b)
}

func remove[T comparable](s []T, v T) []T {
	for i, e := range s {
		if e == v {
			return append(s[:i], s[i+1:]...)
		}
	}
	return s
}

// appendBounded appends v, dropping the oldest element past
// maxTransfersPerConn.
func appendBounded[T any](s []T, v T) []T {
	if len(s) >= maxTransfersPerConn {
		s = append(s[:0], s[len(s)-maxTransfersPerConn+1:]...)
	}
	return append(s, v)
}

func dropExpired[T any](s []T, now time.Time, deadline func(T) time.Time) []T {
	out := s[:0]
	for _, e := range s {
		if now.Before(deadline(e)) {
			out = append(out, e)
		}
	}
	return out
}

// operationKey identifies the operation a block belongs to: the code and
// every option but the block-wise ones (RFC 9175 §3.3); withTag keeps
// Request-Tag, which separates concurrent uploads but is not repeated when
// a client asks for the next block of a response.
func operationKey(r *pool.Message, withTag bool) string {
	b := []byte{byte(r.Code())}
	for _, o := range r.Options() {
		switch o.ID {
		case message.Block1, message.Block2, message.Size1, message.Size2:
			continue
		case optionRequestTag:
			if !withTag {
				continue
			}
		}
		b = binary.BigEndian.AppendUint16(b, uint16(o.ID))
		b = binary.BigEndian.AppendUint16(b, uint16(len(o.Value)))
		b = append(b, o.Value...)
	}
	return string(b)
}

// diagnostic answers with code and a diagnostic payload (RFC 7252 §5.5.2).
func diagnostic(w *responsewriter.ResponseWriter[*udpClient.Conn], code codes.Code, format string, a ...any) {
	_ = w.SetResponse(code, message.TextPlain, bytes.NewReader([]byte(fmt.Sprintf(format, a...))))
}

// tooLarge answers 4.13 with the largest body this server takes (RFC 7959
// §2.9.3).
func tooLarge(w *responsewriter.ResponseWriter[*udpClient.Conn], maxBody int) {
	diagnostic(w, codes.RequestEntityTooLarge, "an upload may have at most %d bytes", maxBody)
	w.Message().SetOptionUint32(message.Size1, uint32(maxBody))
}
