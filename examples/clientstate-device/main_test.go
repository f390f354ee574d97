package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/coapserver"
	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/store"
)

// TestResumesWithoutState runs the device twice against a server set up as
// `dtlsresume serve` is (demo PSK, a session store, DefaultMux): the second
// run, with nothing carried over from the first, resumes.
func TestResumesWithoutState(t *testing.T) {
	cfg := &dtls.Config{
		PSK:          func([]byte) ([]byte, error) { return []byte("secretPSK-dtlsresume"), nil },
		SessionStore: store.NewMemory(store.MemoryConfig{}),
	}
	srv, err := coapserver.New(coapserver.Options{DTLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	defer func() {
		srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i, want := range []string{"resumed=false datagrams=3/3", "resumed=true datagrams=2/1"} {
		var out strings.Builder
		if err := run(ctx, []string{"-addr", l.Addr().String(), "-reading", "20.0 C"}, &out); err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		if !strings.Contains(out.String(), `POST /echo: Changed "20.0 C"`) ||
			!strings.Contains(out.String(), "resumption=client_state "+want) ||
			!strings.Contains(out.String(), "the device keeps 0 bytes") {
			t.Errorf("run %d: output %q, want %s", i+1, out.String(), want)
		}
	}
}
