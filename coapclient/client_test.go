package coapclient_test

import (
	"bytes"
	"context"
	"fmt"
	"github.com/dtlsresume/dtlsresume/internal/coaptest"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/coapclient"
	"github.com/dtlsresume/dtlsresume/dtls"
	dtlsServer "github.com/plgd-dev/go-coap/v3/dtls/server"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/options"
)

func dial(t *testing.T, addr string) *coapclient.Client {
	t.Helper()
	c, err := coapclient.Dial(coaptest.Context(t), addr, coaptest.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// big is a payload of several blocks.
var big = func() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 5000; i++ {
		b.WriteString(strings.Repeat(string(rune('a'+i%26)), 63) + "\n")
	}
	return b.Bytes()[:5000]
}()

// startGoCoapServer runs go-coap's own DTLS server (dtls/server.Server) with
// a custom mux on one of our dtls.Listeners, passed as it is: it satisfies
// go-coap's server.Listener. notifiers tracks the goroutines its observable
// resource starts.
func startGoCoapServer(t *testing.T) string {
	t.Helper()
	var notifiers sync.WaitGroup
	r := mux.NewRouter()
	handle := func(path string, h func(w mux.ResponseWriter, r *mux.Message)) {
		if err := r.Handle(path, mux.HandlerFunc(h)); err != nil {
			t.Fatal(err)
		}
	}
	handle("/hello", func(w mux.ResponseWriter, r *mux.Message) {
		_ = w.SetResponse(codes.Content, message.TextPlain, bytes.NewReader([]byte("hello world")))
	})
	handle("/store", func(w mux.ResponseWriter, r *mux.Message) {
		switch r.Code() {
		case codes.PUT, codes.POST:
			body, _ := r.ReadBody()
			cf, _ := r.ContentFormat()
			code := codes.Changed
			if r.Code() == codes.POST {
				code = codes.Created
			}
			_ = w.SetResponse(code, cf, bytes.NewReader(body))
		case codes.DELETE:
			_ = w.SetResponse(codes.Deleted, message.TextPlain, nil)
		default:
			_ = w.SetResponse(codes.MethodNotAllowed, message.TextPlain, nil)
		}
	})
	handle("/query", func(w mux.ResponseWriter, r *mux.Message) {
		q, _ := r.Queries()
		_ = w.SetResponse(codes.Content, message.TextPlain, bytes.NewReader([]byte(strings.Join(q, "&"))))
	})
	handle("/big", func(w mux.ResponseWriter, r *mux.Message) {
		_ = w.SetResponse(codes.Content, message.AppOctets, bytes.NewReader(big))
	})
	// /inspect: describes the request it got (method, type, options) and
	// answers with an ETag and a Max-Age.
	handle("/inspect", func(w mux.ResponseWriter, r *mux.Message) {
		var b strings.Builder
		fmt.Fprintf(&b, "code=%d type=%v", r.Code(), r.Type())
		for _, o := range r.Options() {
			fmt.Fprintf(&b, " %d=%x", o.ID, o.Value)
		}
		_ = w.SetResponse(codes.Content, message.TextPlain, bytes.NewReader([]byte(b.String())),
			message.Option{ID: message.ETag, Value: []byte{0xe7}}, message.Option{ID: message.MaxAge, Value: []byte{30}})
	})
	// /bigobs: observable, with a representation of several blocks: go-coap
	// sends the first block of it, and the client GETs the rest (RFC 7959
	// §2.6).
	handle("/bigobs", func(w mux.ResponseWriter, r *mux.Message) {
		_ = w.SetResponse(codes.Content, message.AppOctets, bytes.NewReader(big))
		if obs, err := r.Observe(); err == nil && obs == 0 {
			w.Message().SetObserve(2)
		}
	})
	// /counter: the registration's answer carries "0", then three
	// notifications "1", "2", "3" follow at 100 ms intervals.
	handle("/counter", func(w mux.ResponseWriter, r *mux.Message) {
		obs, err := r.Observe()
		if err != nil || obs != 0 {
			_ = w.SetResponse(codes.Content, message.TextPlain, bytes.NewReader([]byte("plain")))
			return
		}
		_ = w.SetResponse(codes.Content, message.TextPlain, bytes.NewReader([]byte("0")))
		w.Message().SetObserve(2)
		cc := w.Conn()
		token := append([]byte(nil), r.Token()...)
		notifiers.Add(1)
		go func() {
			defer notifiers.Done()
			for i := 1; i <= 3; i++ {
				select {
				case <-cc.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
				ctx, cancel := context.WithTimeout(cc.Context(), coaptest.Timeout)
				m := cc.AcquireMessage(ctx)
				m.SetCode(codes.Content)
				m.SetToken(token)
				m.SetObserve(uint32(2 + i))
				m.SetContentFormat(message.TextPlain)
				m.SetBody(bytes.NewReader([]byte{byte('0' + i)}))
				err := cc.WriteMessage(m)
				cc.ReleaseMessage(m)
				cancel()
				if err != nil {
					return
				}
			}
		}()
	})

	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, coaptest.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	s := dtlsServer.New(options.WithMux(r), options.WithErrors(func(error) {}))
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(coaptest.Timeout):
			t.Errorf("go-coap's Serve did not return after Stop")
		}
		notifiers.Wait()
	})
	return l.Addr().String()
}

func TestAgainstGoCoapServer(t *testing.T) {
	addr := startGoCoapServer(t)
	c := dial(t, addr)
	ctx := coaptest.Context(t)

	check := func(what string, r coapclient.Response, err error, code codes.Code, payload string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if r.Code != code || string(r.Payload) != payload {
			t.Errorf("%s: %v %q, want %v %q", what, r.Code, abbrev(r.Payload), code, abbrev([]byte(payload)))
		}
	}

	r, err := c.Get(ctx, "/hello")
	check("GET /hello", r, err, codes.Content, "hello world")
	if !r.HasContentFormat || r.ContentFormat != message.TextPlain {
		t.Errorf("GET /hello: content format %v (present %v)", r.ContentFormat, r.HasContentFormat)
	}

	r, err = c.Put(ctx, "/store", message.AppJSON, []byte(`{"a":1}`))
	check("PUT /store", r, err, codes.Changed, `{"a":1}`)
	if r.ContentFormat != message.AppJSON {
		t.Errorf("PUT /store: content format %v", r.ContentFormat)
	}
	r, err = c.Post(ctx, "/store", message.TextPlain, []byte("posted"))
	check("POST /store", r, err, codes.Created, "posted")
	r, err = c.Post(ctx, "/store", message.AppOctets, big)
	check("POST /store (Block1 and Block2)", r, err, codes.Created, string(big))
	r, err = c.Delete(ctx, "/store")
	check("DELETE /store", r, err, codes.Deleted, "")

	r, err = c.Get(ctx, "/query?a=1&b=two")
	check("GET /query", r, err, codes.Content, "a=1&b=two")

	r, err = c.Get(ctx, "/big")
	check("GET /big (Block2)", r, err, codes.Content, string(big))

	r, err = c.Get(ctx, "/missing")
	check("GET /missing", r, err, codes.NotFound, "")

	if st := c.ConnectionState(); string(st.PSKIdentity) != coaptest.Identity || st.CipherSuite == 0 {
		t.Errorf("ConnectionState: identity %q, suite %v", st.PSKIdentity, st.CipherSuite)
	}
	if err := c.CoAP().Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func TestObserveGoCoapServer(t *testing.T) {
	addr := startGoCoapServer(t)
	c := dial(t, addr)
	ctx := coaptest.Context(t)
	got := make(chan coapclient.Response, 8)
	cancel, err := c.Observe(ctx, "/counter", func(r coapclient.Response) { got <- r })
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i <= 3; i++ {
		select {
		case r := <-got:
			if string(r.Payload) != string(rune('0'+i)) || !r.HasObserve || r.Observe != uint32(2+i) {
				t.Errorf("notification %d: %q, Observe %d (present %v)", i, r.Payload, r.Observe, r.HasObserve)
			}
		case <-ctx.Done():
			t.Fatalf("only %d notifications", i)
		}
	}
	if err := cancel(ctx); err != nil {
		t.Fatalf("cancel: %v", err)
	}
}

func TestWrongKey(t *testing.T) {
	addr := startGoCoapServer(t)
	cfg := coaptest.ClientConfig()
	cfg.PSK = func([]byte) ([]byte, error) { return []byte("wrong key"), nil }
	// The server drops the client's Finished, which does not decrypt, so the
	// client gives up at its deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if c, err := coapclient.Dial(ctx, addr, cfg); err == nil {
		c.Close()
		t.Fatal("Dial with a wrong key succeeded")
	}
}

func TestCloseTwiceAndAfterPeerGone(t *testing.T) {
	addr := startGoCoapServer(t)
	c, err := coapclient.Dial(coaptest.Context(t), addr, coaptest.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(coaptest.Context(t), "/hello"); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := c.Get(ctx, "/hello"); err == nil {
		t.Error("Get after Close succeeded")
	}
}

func abbrev(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + "..."
	}
	return string(b)
}

// TestDoOptionsAndNON: Do sends the options it is given, a query, and NON
// when asked; the response's options come back, and a payload goes with
// any method.
func TestDoOptionsAndNON(t *testing.T) {
	addr := startGoCoapServer(t)
	c := dial(t, addr)
	ctx := coaptest.Context(t)
	r, err := c.Do(ctx, coapclient.Request{Method: codes.GET, Path: "/inspect?a=1", NonConfirmable: true,
		Options: []message.Option{{ID: message.Accept, Value: []byte{60}}, {ID: 65000, Value: []byte{0xca, 0xfe}}}})
	if err != nil {
		t.Fatal(err)
	}
	// Uri-Path "inspect", Uri-Query "a=1", Accept 60, option 65000.
	want := "code=1 type=NonConfirmable 11=696e7370656374 15=613d31 17=3c 65000=cafe"
	if string(r.Payload) != want {
		t.Errorf("the server saw %q, want %q", r.Payload, want)
	}
	if e, err := r.Options.GetBytes(message.ETag); err != nil || !bytes.Equal(e, []byte{0xe7}) {
		t.Errorf("ETag %x (%v) in Options %v", e, err, r.Options)
	}
	if v, err := r.Options.GetUint32(message.MaxAge); err != nil || v != 30 {
		t.Errorf("Max-Age %d (%v)", v, err)
	}
	if _, err := c.Do(ctx, coapclient.Request{Method: codes.GET, Path: "/inspect",
		Options: []message.Option{{ID: message.Block2, Value: []byte{1}}}}); err == nil {
		t.Error("Do took a Block2 option of the caller's")
	}
}

// TestObserveBlockwiseNotification: a representation bigger than a block
// reaches onNotify whole (the client fetches the blocks after the first).
func TestObserveBlockwiseNotification(t *testing.T) {
	addr := startGoCoapServer(t)
	c := dial(t, addr)
	ctx := coaptest.Context(t)
	first, cancel, err := c.ObserveRequest(ctx, coapclient.Request{Method: codes.GET, Path: "/bigobs"}, func(coapclient.Response) {})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel(ctx)
	if first.Code != codes.Content || !first.HasObserve || !bytes.Equal(first.Payload, big) {
		t.Errorf("registration: %v observe=%v with %d bytes, want 2.05 with Observe and %d bytes", first.Code, first.HasObserve, len(first.Payload), len(big))
	}
}

// TestObserveRequestNotObservable: a resource that answers without Observe
// gives its answer and no observation.
func TestObserveRequestNotObservable(t *testing.T) {
	addr := startGoCoapServer(t)
	c := dial(t, addr)
	ctx := coaptest.Context(t)
	first, cancel, err := c.ObserveRequest(ctx, coapclient.Request{Method: codes.GET, Path: "/hello"}, func(r coapclient.Response) {
		t.Errorf("notification %v", r)
	})
	if err != nil {
		t.Fatal(err)
	}
	if first.HasObserve || string(first.Payload) != "hello world" {
		t.Errorf("answer %v, Observe %v", first, first.HasObserve)
	}
	if err := cancel(ctx); err != nil {
		t.Errorf("cancel: %v", err)
	}
	first, _, err = c.ObserveRequest(ctx, coapclient.Request{Method: codes.GET, Path: "/missing"}, func(coapclient.Response) {})
	if err != nil || first.Code != codes.NotFound {
		t.Errorf("observing /missing: %v, %v; want the 4.04", first, err)
	}
}
