package coapclient_test

import (
	"context"
	"github.com/dtlsresume/dtlsresume/internal/coaptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/dtlsresume/dtlsresume/coapclient"
	"github.com/dtlsresume/dtlsresume/internal/peers"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// Our coapclient against libcoap's coap-server, built with OpenSSL and with
// GnuTLS (libcoap 4.3.1). coap-server -A 127.0.0.1 -p P serves CoAP on P and
// DTLS on P+1; -k is the PSK itself (not hex), -h the identity hint.

const libcoapGreeting = "This is a test server made with libcoap"

func startLibcoapServer(t *testing.T, bin string) string {
	t.Helper()
	path := peers.Require(t, bin)
	port := peers.FreeUDPPorts(t, 2)
	peers.Start(t, path, "-A", "127.0.0.1", "-p", strconv.Itoa(port), "-k", coaptest.Key, "-h", "hint")
	peers.WaitUDPListening(t, port+1, coaptest.Timeout)
	return "127.0.0.1:" + strconv.Itoa(port+1)
}

func TestLibcoapServer(t *testing.T) {
	for _, bin := range []string{"coap-server-openssl", "coap-server-gnutls"} {
		t.Run(bin, func(t *testing.T) {
			addr := startLibcoapServer(t, bin)
			c := dial(t, addr)
			ctx := coaptest.Context(t)

			r, err := c.Get(ctx, "/")
			if err != nil {
				t.Fatal(err)
			}
			if r.Code != codes.Content || !strings.HasPrefix(string(r.Payload), libcoapGreeting) {
				t.Errorf("GET /: %v %q, want 2.05 starting %q", r.Code, r.Payload, libcoapGreeting)
			}

			r, err = c.Get(ctx, "/.well-known/core")
			if err != nil {
				t.Fatal(err)
			}
			if r.Code != codes.Content || r.ContentFormat != message.AppLinkFormat || !strings.Contains(string(r.Payload), "</time>") {
				t.Errorf("GET /.well-known/core: %v ct=%v %q", r.Code, r.ContentFormat, r.Payload)
			}

			// coap-server's /example_data keeps what is PUT.
			const data = "stored by coapclient"
			r, err = c.Put(ctx, "/example_data", message.TextPlain, []byte(data))
			if err != nil {
				t.Fatal(err)
			}
			if r.Code != codes.Changed && r.Code != codes.Created {
				t.Errorf("PUT /example_data: %v", r.Code)
			}
			r, err = c.Get(ctx, "/example_data")
			if err != nil {
				t.Fatal(err)
			}
			if r.Code != codes.Content || string(r.Payload) != data {
				t.Errorf("GET /example_data: %v %q, want %q", r.Code, r.Payload, data)
			}

			if st := c.ConnectionState(); string(st.PSKIdentity) != coaptest.Identity {
				t.Errorf("PSK identity %q", st.PSKIdentity)
			}
		})
	}
}

// TestLibcoapServerObserve observes coap-server's /time, which notifies
// every second.
func TestLibcoapServerObserve(t *testing.T) {
	for _, bin := range []string{"coap-server-openssl", "coap-server-gnutls"} {
		t.Run(bin, func(t *testing.T) {
			addr := startLibcoapServer(t, bin)
			c := dial(t, addr)
			ctx := coaptest.Context(t)
			var mu sync.Mutex
			var got []coapclient.Response
			more := make(chan struct{}, 1)
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
			for count() < 3 {
				select {
				case <-more:
				case <-ctx.Done():
					t.Fatalf("%d responses before the deadline", count())
				}
			}
			ctx2, cancel2 := context.WithTimeout(context.Background(), coaptest.Timeout)
			defer cancel2()
			if err := cancel(ctx2); err != nil {
				t.Errorf("cancel: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			for i, r := range got {
				if r.Code != codes.Content || len(r.Payload) == 0 {
					t.Errorf("notification %d: %v %q", i, r.Code, r.Payload)
				}
			}
		})
	}
}
