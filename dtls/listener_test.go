package dtls

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	coapdtlsserver "github.com/plgd-dev/go-coap/v3/dtls/server"
)

// TestGoCoapServeReturnsOnClose: go-coap's own Serve on a Listener stops
// when the Listener is closed instead of spinning on Accept.
func TestGoCoapServeReturnsOnClose(t *testing.T) {
	l, err := Listen("udp", &net.UDPAddr{IP: loopback1}, pskServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv := coapdtlsserver.New()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	time.Sleep(50 * time.Millisecond)
	l.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("go-coap's Serve did not return after Listener.Close")
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) || !errors.Is(err, io.EOF) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed and io.EOF", err)
	}
}
