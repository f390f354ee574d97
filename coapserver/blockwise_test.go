package coapserver_test

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/coapclient"
	"github.com/dtlsresume/dtlsresume/coapserver"
	"github.com/dtlsresume/dtlsresume/internal/coaptest"
	dtlsServer "github.com/plgd-dev/go-coap/v3/dtls/server"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// body is n bytes of numbered lines, so that a lost or repeated block shows.
func body(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%05d block-wise\n", i)
	}
	return b.Bytes()[:n]
}

// rawBlock sends one message of an upload by hand, with the token and
// options given, and returns the response.
func rawBlock(t *testing.T, c *coapclient.Client, code codes.Code, token []byte, path string, block uint32, payload []byte, opts ...message.Option) (codes.Code, message.Options, []byte) {
	t.Helper()
	cc := c.CoAP()
	m := cc.AcquireMessage(coaptest.Context(t))
	defer cc.ReleaseMessage(m)
	m.SetCode(code)
	m.SetToken(token)
	if err := m.SetPath(path); err != nil {
		t.Fatal(err)
	}
	m.SetOptionUint32(message.Block1, block)
	for _, o := range opts {
		m.AddOptionBytes(o.ID, o.Value)
	}
	m.SetContentFormat(message.AppOctets)
	m.SetBody(bytes.NewReader(payload))
	resp, err := cc.Do(m)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.ReleaseMessage(resp)
	opts2, err := resp.Options().Clone()
	if err != nil {
		t.Fatal(err)
	}
	b, err := resp.ReadBody()
	if err != nil {
		t.Fatal(err)
	}
	return resp.Code(), opts2, b
}

func block1(t *testing.T, szx blockwise.SZX, num int64, more bool) uint32 {
	t.Helper()
	v, err := blockwise.EncodeBlockOption(szx, num, more)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestBlock1NewTokenPerBlock uploads the way libcoap does: every block with
// a token of its own, the blocks tied by a Request-Tag (RFC 9175). Two
// uploads to the same path interleave, told apart by their tags, and the
// handler sees each whole.
func TestBlock1NewTokenPerBlock(t *testing.T) {
	_, addr := startServer(t, coapserver.Options{})
	c := dial(t, addr, nil)
	const size = 64
	a, b := body(300), bytes.ToUpper(body(300))
	tagA := message.Option{ID: 292, Value: []byte{0xaa, 1}}
	tagB := message.Option{ID: 292, Value: []byte{0xbb, 2}}
	blocks := (len(a) + size - 1) / size
	for num := 0; num < blocks; num++ {
		end := min((num+1)*size, len(a))
		more := end < len(a)
		for _, up := range []struct {
			data []byte
			tag  message.Option
		}{{a, tagA}, {b, tagB}} {
			token := []byte{byte(num), up.tag.Value[0]}
			code, opts, got := rawBlock(t, c, codes.PUT, token, "/echo", block1(t, blockwise.SZX64, int64(num), more), up.data[num*size:end], up.tag)
			v, err := opts.GetUint32(message.Block1)
			if err != nil || v != block1(t, blockwise.SZX64, int64(num), more) {
				t.Fatalf("block %d: Block1 %x (%v) in the answer", num, v, err)
			}
			switch {
			case more && code != codes.Continue:
				t.Fatalf("block %d: %v, want 2.31 Continue", num, code)
			case !more && (code != codes.Changed || !bytes.Equal(got, up.data)):
				t.Fatalf("last block: %v with %d bytes %q, want 2.04 with the %d bytes sent", code, len(got), abbrev(got), len(up.data))
			}
		}
	}
}

// TestBlock1EveryMethod uploads through coapclient, whose blocks share a
// token, with every method that carries a payload; /echo answers the whole
// body, which comes back in blocks too.
func TestBlock1EveryMethod(t *testing.T) {
	_, addr := startServer(t, coapserver.Options{})
	c := dial(t, addr, nil, options.WithBlockwise(true, blockwise.SZX64, 10*time.Second))
	ctx := coaptest.Context(t)
	data := body(3000)
	for _, m := range []struct {
		code, want codes.Code
	}{{codes.PUT, codes.Changed}, {codes.POST, codes.Changed}, {coapclient.FETCH, codes.Content},
		{coapclient.PATCH, codes.Changed}, {coapclient.IPATCH, codes.Changed}} {
		r, err := c.Do(ctx, coapclient.Request{Method: m.code, Path: "/echo", Payload: data,
			Options: []message.Option{{ID: message.ContentFormat, Value: []byte{byte(message.AppOctets)}}}})
		if err != nil {
			t.Fatalf("%v: %v", m.code, err)
		}
		wantResponse(t, r, m.want, message.AppOctets, data)
	}
}

// TestBlockwiseRequestsAsSeen counts what reaches the server: a client with
// 64-byte blocks uploads in 64-byte blocks and asks for 64-byte blocks of
// the answer (RFC 7959 §2.4), and the handler runs once.
func TestBlockwiseRequestsAsSeen(t *testing.T) {
	var mu sync.Mutex
	var block1s, block2s, calls int
	r := mux.NewRouter()
	data := body(1000)
	if err := r.Handle("/sink", mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		mu.Lock()
		calls++
		mu.Unlock()
		got, _ := req.ReadBody()
		if req.HasOption(message.Block1) || !bytes.Equal(got, data) {
			_ = w.SetResponse(codes.BadRequest, message.TextPlain, nil)
			return
		}
		_ = w.SetResponse(codes.Changed, message.TextPlain, bytes.NewReader(got))
	})); err != nil {
		t.Fatal(err)
	}
	monitor := func(_ *udpClient.Conn, m *pool.Message) (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		if v, err := m.GetOptionUint32(message.Block1); err == nil {
			if szx, _, _, _ := blockwise.DecodeBlockOption(v); szx == blockwise.SZX64 {
				block1s++
			}
		}
		if v, err := m.GetOptionUint32(message.Block2); err == nil {
			if szx, _, _, _ := blockwise.DecodeBlockOption(v); szx == blockwise.SZX64 {
				block2s++
			}
		}
		return false, nil
	}
	_, addr := startServer(t, coapserver.Options{Handler: r, Extra: []dtlsServer.Option{options.WithRequestMonitor(monitor)}})
	c := dial(t, addr, nil, options.WithBlockwise(true, blockwise.SZX64, 10*time.Second))
	resp, err := c.Put(coaptest.Context(t), "/sink", message.TextPlain, data)
	if err != nil {
		t.Fatal(err)
	}
	wantResponse(t, resp, codes.Changed, message.TextPlain, data)
	mu.Lock()
	defer mu.Unlock()
	// 16 blocks up; the last asks for 64-byte blocks back, then 15 more.
	if block1s != 16 || block2s != 16 || calls != 1 {
		t.Errorf("%d Block1 and %d Block2 requests of 64 bytes, %d handler calls; want 16, 16, 1", block1s, block2s, calls)
	}
}

// TestBlock1Refusals: blocks that do not make an upload get the codes of
// RFC 7959 §2.9.
func TestBlock1Refusals(t *testing.T) {
	_, addr := startServer(t, coapserver.Options{})
	c := dial(t, addr, nil)
	chunk := bytes.Repeat([]byte{'x'}, 64)
	// A block whose upload never started.
	if code, _, _ := rawBlock(t, c, codes.PUT, []byte{1}, "/echo", block1(t, blockwise.SZX64, 3, true), chunk); code != codes.RequestEntityIncomplete {
		t.Errorf("block 3 first: %v, want 4.08", code)
	}
	// A gap.
	if code, _, _ := rawBlock(t, c, codes.PUT, []byte{2}, "/echo", block1(t, blockwise.SZX64, 0, true), chunk); code != codes.Continue {
		t.Fatalf("block 0: %v", code)
	}
	if code, _, _ := rawBlock(t, c, codes.PUT, []byte{2}, "/echo", block1(t, blockwise.SZX64, 2, true), chunk); code != codes.RequestEntityIncomplete {
		t.Errorf("block 2 after 0: %v, want 4.08", code)
	}
	// A block that is not the last but is short.
	if code, _, _ := rawBlock(t, c, codes.PUT, []byte{3}, "/echo", block1(t, blockwise.SZX64, 0, true), chunk[:10]); code != codes.BadRequest {
		t.Errorf("short block: %v, want 4.00", code)
	}
	// An upload that announces more than the server takes.
	code, opts, _ := rawBlock(t, c, codes.PUT, []byte{4}, "/echo", block1(t, blockwise.SZX64, 0, true), chunk,
		message.Option{ID: message.Size1, Value: []byte{0x10, 0, 0, 0}})
	if s1, err := opts.GetUint32(message.Size1); code != codes.RequestEntityTooLarge || err != nil || s1 != 64*1024 {
		t.Errorf("Size1 256 MiB: %v with Size1 %d (%v), want 4.13 with 65536", code, s1, err)
	}
	// The connection still serves a whole upload.
	data := body(500)
	r, err := c.Put(coaptest.Context(t), "/echo", message.AppOctets, data)
	if err != nil {
		t.Fatal(err)
	}
	wantResponse(t, r, codes.Changed, message.AppOctets, data)
}

// TestBlock2OfPostIsKept: the answer to a POST comes in blocks from one run
// of the handler; the client's later requests carry no payload.
func TestBlock2OfPostIsKept(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	data := body(5000)
	r := mux.NewRouter()
	if err := r.Handle("/report", mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		// Each run answers differently: blocks from two runs would mix.
		_ = w.SetResponse(codes.Changed, message.TextPlain, bytes.NewReader(append([]byte{byte('0' + n)}, data...)))
	})); err != nil {
		t.Fatal(err)
	}
	_, addr := startServer(t, coapserver.Options{Handler: r})
	c := dial(t, addr, nil)
	resp, err := c.Post(coaptest.Context(t), "/report", message.TextPlain, []byte("go"))
	if err != nil {
		t.Fatal(err)
	}
	wantResponse(t, resp, codes.Changed, message.TextPlain, append([]byte{'1'}, data...))
	mu.Lock()
	if calls != 1 {
		t.Errorf("handler ran %d times", calls)
	}
	mu.Unlock()
	// A continuation with nothing to continue.
	cc := c.CoAP()
	m := cc.AcquireMessage(coaptest.Context(t))
	defer cc.ReleaseMessage(m)
	m.SetCode(codes.POST)
	m.SetToken([]byte{9})
	_ = m.SetPath("/elsewhere")
	m.SetOptionUint32(message.Block2, block1(t, blockwise.SZX1024, 2, false))
	got, err := cc.Do(m)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.ReleaseMessage(got)
	if got.Code() != codes.RequestEntityIncomplete {
		t.Errorf("Block2 of nothing: %v, want 4.08", got.Code())
	}
}

// TestBlockwiseOff: options.WithBlockwise(false, …) in Extra leaves blocks
// to the handler.
func TestBlockwiseOff(t *testing.T) {
	_, addr := startServer(t, coapserver.Options{Extra: []dtlsServer.Option{options.WithBlockwise(false, blockwise.SZX1024, time.Second)}})
	c := dial(t, addr, nil)
	chunk := bytes.Repeat([]byte{'y'}, 64)
	code, _, got := rawBlock(t, c, codes.PUT, []byte{1}, "/echo", block1(t, blockwise.SZX64, 0, true), chunk)
	if code != codes.Changed || !bytes.Equal(got, chunk) {
		t.Errorf("block 0 with block-wise off: %v %q, want the handler's 2.04 echo", code, got)
	}
}
