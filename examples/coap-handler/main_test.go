package main

import (
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/coapclient"
	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

func TestDemo(t *testing.T) {
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := run(ctx, []string{"-demo", "-addr", "127.0.0.1:0"}, &out); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`GET /hello: Content "hello, dtlsresume (resumed=false)"`,
		`PUT /led: Changed "on"`,
		`GET /led: Content "on"`,
		`GET /hello: Content "hello, dtlsresume (resumed=true)"`,
	}
	for _, w := range want {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
}

// syncWriter is a strings.Builder safe for the server goroutine and the test.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestServe: the server as it runs by default, asked by a plain client; it
// answers a bad request with 4.00 and stops on its context.
func TestServe(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out := new(syncWriter)
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-addr", "127.0.0.1:0"}, out) }()
	re := regexp.MustCompile(`serving CoAP over DTLS on (\S+)`)
	var addr string
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run returned %v; output %q", err, out.String())
		case <-time.After(10 * time.Millisecond):
		}
	}

	c, err := coapclient.Dial(ctx, addr, &dtls.Config{
		PSK:             func([]byte) ([]byte, error) { return []byte(pskKey), nil },
		PSKIdentityHint: []byte(pskIdentity),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Put(ctx, "/led", message.TextPlain, []byte("blinking"))
	if err != nil || resp.Code != codes.BadRequest {
		t.Fatalf("PUT /led blinking: %v, %v", resp, err)
	}
	resp, err = c.Get(ctx, "/led")
	if err != nil || resp.Code != codes.Content || string(resp.Payload) != "off" {
		t.Fatalf("GET /led: %v, %v", resp, err)
	}
	resp, err = c.Get(ctx, "/nothing")
	if err != nil || resp.Code != codes.NotFound {
		t.Fatalf("GET /nothing: %v, %v", resp, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}
