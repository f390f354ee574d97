package coapserver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/dtlsresume/dtlsresume/internal/coaptest"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/coapclient"
	"github.com/dtlsresume/dtlsresume/coapserver"
	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/peers"
	dtlsServer "github.com/plgd-dev/go-coap/v3/dtls/server"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/options"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// startServer serves opts on a new listener on 127.0.0.1 and stops the
// server when the test ends, checking that Serve returns nil in time.
func startServer(t *testing.T, opts coapserver.Options) (*coapserver.Server, string) {
	t.Helper()
	if opts.DTLS == nil {
		opts.DTLS = coaptest.ServerConfig()
	}
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, opts.DTLS)
	if err != nil {
		t.Fatal(err)
	}
	s, err := coapserver.New(opts)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
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
			t.Errorf("Serve did not return within %v of Stop", coaptest.Timeout)
		}
	})
	return s, l.Addr().String()
}

func dial(t *testing.T, addr string, cfg *dtls.Config, opts ...coapclient.Option) *coapclient.Client {
	t.Helper()
	if cfg == nil {
		cfg = coaptest.ClientConfig()
	}
	c, err := coapclient.Dial(coaptest.Context(t), addr, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wantResponse(t *testing.T, r coapclient.Response, code codes.Code, cf message.MediaType, payload []byte) {
	t.Helper()
	if r.Code != code {
		t.Errorf("code %v, want %v (payload %q)", r.Code, code, r.Payload)
	}
	if !r.HasContentFormat || r.ContentFormat != cf {
		t.Errorf("content format %v (present %v), want %v", r.ContentFormat, r.HasContentFormat, cf)
	}
	if payload != nil && !bytes.Equal(r.Payload, payload) {
		t.Errorf("payload %q (%d bytes), want %q (%d bytes)", abbrev(r.Payload), len(r.Payload), abbrev(payload), len(payload))
	}
}

func abbrev(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "..."
	}
	return string(b)
}

func TestGetTime(t *testing.T) {
	_, addr := startServer(t, coapserver.Options{})
	c := dial(t, addr, nil)
	before := time.Now().Add(-time.Second)
	r, err := c.Get(coaptest.Context(t), "/time")
	if err != nil {
		t.Fatal(err)
	}
	wantResponse(t, r, codes.Content, message.TextPlain, nil)
	ts, err := time.Parse(time.RFC3339, string(r.Payload))
	if err != nil {
		t.Fatalf("payload %q: %v", r.Payload, err)
	}
	if !strings.HasSuffix(string(r.Payload), "Z") {
		t.Errorf("time %q is not UTC", r.Payload)
	}
	if ts.Before(before.Truncate(time.Second)) || ts.After(time.Now().Add(time.Second)) {
		t.Errorf("time %v is not now (%v)", ts, time.Now())
	}
	if r.HasObserve {
		t.Errorf("a plain GET got Observe %d", r.Observe)
	}
	if st := c.ConnectionState(); string(st.PSKIdentity) != coaptest.Identity {
		t.Errorf("PSK identity %q", st.PSKIdentity)
	}
}

func TestEcho(t *testing.T) {
	_, addr := startServer(t, coapserver.Options{})
	c := dial(t, addr, nil)
	ctx := coaptest.Context(t)

	r, err := c.Get(ctx, "/echo")
	if err != nil {
		t.Fatal(err)
	}
	wantResponse(t, r, codes.Content, message.TextPlain, []byte("echo"))

	r, err = c.Put(ctx, "/echo", message.TextPlain, []byte("hello over PUT"))
	if err != nil {
		t.Fatal(err)
	}
	wantResponse(t, r, codes.Changed, message.TextPlain, []byte("hello over PUT"))

	bin := []byte{0, 1, 2, 0xff, 0xfe, 'x'}
	r, err = c.Post(ctx, "/echo", message.AppOctets, bin)
	if err != nil {
		t.Fatal(err)
	}
	wantResponse(t, r, codes.Changed, message.AppOctets, bin)

	// Bigger than a datagram both ways: Block1 up, Block2 down.
	big := bytes.Repeat([]byte("0123456789abcdef"), 200)
	r, err = c.Post(ctx, "/echo", message.AppJSON, big)
	if err != nil {
		t.Fatal(err)
	}
	wantResponse(t, r, codes.Changed, message.AppJSON, big)

	r, err = c.Delete(ctx, "/echo")
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != codes.MethodNotAllowed {
		t.Errorf("DELETE /echo: %v, want 4.05", r.Code)
	}
}

func TestWellKnownCore(t *testing.T) {
	_, addr := startServer(t, coapserver.Options{})
	c := dial(t, addr, nil)
	r, err := c.Get(coaptest.Context(t), "/.well-known/core")
	if err != nil {
		t.Fatal(err)
	}
	wantResponse(t, r, codes.Content, message.AppLinkFormat, nil)
	links := map[string]string{}
	for _, link := range strings.Split(string(r.Payload), ",") {
		i, j := strings.IndexByte(link, '<'), strings.IndexByte(link, '>')
		if i != 0 || j < 0 {
			t.Fatalf("malformed link %q in %q", link, r.Payload)
		}
		links[link[1:j]] = link[j+1:]
	}
	for _, p := range []string{"/time", "/echo", "/large"} {
		if _, ok := links[p]; !ok {
			t.Errorf("%s missing from %q", p, r.Payload)
		}
	}
	if !strings.Contains(links["/time"], ";obs") {
		t.Errorf("/time not marked observable: %q", r.Payload)
	}
	// Every listed resource answers.
	for p := range links {
		r, err := c.Get(coaptest.Context(t), p)
		if err != nil || r.Code != codes.Content {
			t.Errorf("GET %s: %v, %v", p, r.Code, err)
		}
	}
}

func TestObserveTime(t *testing.T) {
	_, addr := startServer(t, coapserver.Options{})
	c := dial(t, addr, nil)
	ctx := coaptest.Context(t)
	var (
		mu   sync.Mutex
		got  []coapclient.Response
		more = make(chan struct{}, 16)
	)
	cancel, err := c.Observe(ctx, "/time", func(r coapclient.Response) {
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
		select {
		case more <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	// The registration's response and two notifications.
	for count() < 3 {
		select {
		case <-more:
		case <-ctx.Done():
			t.Fatalf("%d responses before the deadline", count())
		}
	}
	if err := cancel(ctx); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	after := count()
	mu.Lock()
	for i, r := range got {
		if r.Code != codes.Content || !r.HasObserve {
			t.Errorf("response %d: %v, Observe present %v", i, r.Code, r.HasObserve)
		}
		if _, err := time.Parse(time.RFC3339, string(r.Payload)); err != nil {
			t.Errorf("response %d: %v", i, err)
		}
		if i > 0 && r.Observe <= got[i-1].Observe {
			t.Errorf("Observe sequence %d after %d", r.Observe, got[i-1].Observe)
		}
	}
	mu.Unlock()
	// Deregistered: no notification follows (the server notifies every
	// second).
	time.Sleep(1500 * time.Millisecond)
	if n := count(); n != after {
		t.Errorf("%d notifications after cancel", n-after)
	}
	// The connection is still good.
	if r, err := c.Get(ctx, "/echo"); err != nil || string(r.Payload) != "echo" {
		t.Errorf("GET after cancel: %v, %v", r, err)
	}
}

func TestBlockwiseLarge(t *testing.T) {
	for _, mtu := range []int{0, 512} {
		t.Run(fmt.Sprintf("mtu=%d", mtu), func(t *testing.T) {
			scfg, ccfg := coaptest.ServerConfig(), coaptest.ClientConfig()
			scfg.MTU, ccfg.MTU = mtu, mtu
			_, addr := startServer(t, coapserver.Options{DTLS: scfg})
			c := dial(t, addr, ccfg)
			r, err := c.Get(coaptest.Context(t), "/large")
			if err != nil {
				t.Fatal(err)
			}
			large := coapserver.Large()
			if len(large) != coapserver.LargeSize || coapserver.LargeSize <= 1232 {
				t.Fatalf("Large() is %d bytes", len(large))
			}
			wantResponse(t, r, codes.Content, message.TextPlain, large)
		})
	}
}

func TestNotFound(t *testing.T) {
	_, addr := startServer(t, coapserver.Options{})
	c := dial(t, addr, nil)
	r, err := c.Get(coaptest.Context(t), "/nonexistent")
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != codes.NotFound {
		t.Errorf("GET /nonexistent: %v, want 4.04", r.Code)
	}
}

// TestNonConfirmable sends a NON request through go-coap's client and gets
// the answer.
func TestNonConfirmable(t *testing.T) {
	_, addr := startServer(t, coapserver.Options{})
	c := dial(t, addr, nil)
	ctx := coaptest.Context(t)
	cc := c.CoAP()
	req, err := cc.NewGetRequest(ctx, "/echo")
	if err != nil {
		t.Fatal(err)
	}
	defer cc.ReleaseMessage(req)
	req.SetType(message.NonConfirmable)
	resp, err := cc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.ReleaseMessage(resp)
	body, err := resp.ReadBody()
	// go-coap answers a NON request with a separate CON response (RFC 7252
	// §5.2.3 allows either).
	if err != nil || string(body) != "echo" || resp.Code() != codes.Content {
		t.Errorf("NON GET /echo: %v %v %q, %v", resp.Type(), resp.Code(), body, err)
	}
}

// TestCustomHandler serves a go-coap mux of its own, whose handler reads
// the DTLS state of its peer, and passes go-coap options through Extra.
func TestCustomHandler(t *testing.T) {
	r := mux.NewRouter()
	if err := r.Handle("/whoami", mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		st, ok := coapserver.ConnectionState(w.Conn())
		if !ok {
			_ = w.SetResponse(codes.InternalServerError, message.TextPlain, nil)
			return
		}
		_ = w.SetResponse(codes.Content, message.TextPlain, bytes.NewReader(st.PSKIdentity))
	})); err != nil {
		t.Fatal(err)
	}
	newConns := make(chan struct{}, 4)
	_, addr := startServer(t, coapserver.Options{
		Handler: r,
		Extra: []dtlsServer.Option{options.WithOnNewConn(func(*udpClient.Conn) {
			newConns <- struct{}{}
		})},
	})
	c := dial(t, addr, nil)
	resp, err := c.Get(coaptest.Context(t), "/whoami")
	if err != nil {
		t.Fatal(err)
	}
	wantResponse(t, resp, codes.Content, message.TextPlain, []byte(coaptest.Identity))
	select {
	case <-newConns:
	default:
		t.Error("OnNewConn from Extra was not called")
	}
	if resp, err := c.Get(coaptest.Context(t), "/time"); err != nil || resp.Code != codes.NotFound {
		t.Errorf("GET /time on a custom mux: %v, %v", resp, err)
	}
}

func TestListenAndServe(t *testing.T) {
	port := peers.FreeUDPPort(t)
	s, err := coapserver.New(coapserver.Options{DTLS: coaptest.ServerConfig()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(fmt.Sprintf("127.0.0.1:%d", port)) }()
	stopped := false
	defer func() {
		if !stopped {
			s.Stop()
			<-done
		}
	}()
	peers.WaitUDPListening(t, port, coaptest.Timeout)
	c := dial(t, fmt.Sprintf("127.0.0.1:%d", port), nil)
	r, err := c.Get(coaptest.Context(t), "/echo")
	if err != nil || string(r.Payload) != "echo" {
		t.Fatalf("GET /echo: %v, %v", r, err)
	}
	s.Stop()
	stopped = true
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ListenAndServe: %v", err)
		}
	case <-time.After(coaptest.Timeout):
		t.Fatal("ListenAndServe did not return after Stop")
	}
	// Stop closed the client's connection (close_notify).
	select {
	case <-c.CoAP().Done():
	case <-time.After(coaptest.Timeout):
		t.Error("the client's connection outlived Stop")
	}
	if bound, err := peers.UDPPortBound(port); err != nil || bound {
		t.Errorf("port %d still bound after Stop (%v)", port, err)
	}
}

func TestInactivityTimeout(t *testing.T) {
	_, addr := startServer(t, coapserver.Options{InactivityTimeout: 500 * time.Millisecond})
	c := dial(t, addr, nil)
	if _, err := c.Get(coaptest.Context(t), "/echo"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	select {
	case <-c.CoAP().Done():
		t.Logf("server closed the idle connection after %v", time.Since(start))
	case <-time.After(coaptest.Timeout):
		t.Fatal("the server kept an idle connection")
	}
}

func TestInactivityDisabled(t *testing.T) {
	_, addr := startServer(t, coapserver.Options{InactivityTimeout: -1})
	c := dial(t, addr, nil)
	if _, err := c.Get(coaptest.Context(t), "/echo"); err != nil {
		t.Fatal(err)
	}
	// go-coap's default would close after 16 s; 2 s is enough to see that
	// a short timeout does not apply.
	select {
	case <-c.CoAP().Done():
		t.Fatal("connection closed although inactivity is disabled")
	case <-time.After(2 * time.Second):
	}
	if _, err := c.Get(coaptest.Context(t), "/echo"); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentClients(t *testing.T) {
	_, addr := startServer(t, coapserver.Options{})
	const clients = 8
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), coaptest.Timeout)
			defer cancel()
			c, err := coapclient.Dial(ctx, addr, coaptest.ClientConfig())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for j := range 5 {
				p := []byte(fmt.Sprintf("client %d message %d", i, j))
				r, err := c.Post(ctx, "/echo", message.TextPlain, p)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(r.Payload, p) {
					errs <- fmt.Errorf("client %d: %q, want %q", i, r.Payload, p)
					return
				}
			}
			if r, err := c.Get(ctx, "/large"); err != nil || !bytes.Equal(r.Payload, coapserver.Large()) {
				errs <- fmt.Errorf("client %d: GET /large: %d bytes, %v", i, len(r.Payload), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestStopBeforeServe(t *testing.T) {
	s, err := coapserver.New(coapserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, coaptest.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	s.Stop()
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after Stop: %v", err)
		}
	case <-time.After(coaptest.Timeout):
		t.Fatal("Serve after Stop did not return")
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("listener not closed by Serve: %v", err)
	}
}

// TestListenerClosedUnderneath closes the dtls.Listener itself: Serve must
// return rather than spin on the accept error.
func TestListenerClosedUnderneath(t *testing.T) {
	s, err := coapserver.New(coapserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, coaptest.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	time.Sleep(50 * time.Millisecond)
	l.Close()
	select {
	case <-done:
	case <-time.After(coaptest.Timeout):
		t.Fatal("Serve did not return after its listener was closed")
	}
}
