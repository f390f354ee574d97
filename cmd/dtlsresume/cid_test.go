package main

import (
	"context"
	"net"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// TestGoCoapCIDExampleAgainstServe plays go-coap v3.5.5's own connection ID
// example (examples/dtls/cid/client) against `dtlsresume serve --cid 8`: a
// pion client with CIDs makes two requests, exports its DTLS state, resumes
// it on a new socket (a new address) and makes two more without a
// handshake. Every request gets its answer.
func TestGoCoapCIDExampleAgainstServe(t *testing.T) {
	addr := freeUDPAddr(t)
	startServeAt(t, addr, "--cid", "8", "--psk", "Pion DTLS Client:abc123")
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	opts := []piondtls.Option{
		piondtls.WithPSK(func([]byte) ([]byte, error) { return []byte{0xAB, 0xC1, 0x23}, nil }),
		piondtls.WithPSKIdentityHint([]byte("Pion DTLS Client")),
		piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8),
		piondtls.WithConnectionIDGenerator(piondtls.OnlySendCIDGenerator()),
	}
	first, err := net.ListenUDP("udp", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	clientOpts := make([]piondtls.ClientOption, len(opts))
	for i, o := range opts {
		clientOpts[i] = o
	}
	client, err := piondtls.ClientWithOptions(first, raddr, clientOpts...)
	if err != nil {
		t.Fatal(err)
	}
	co := coapdtls.Client(client)
	for _, path := range []string{"/time", "/.well-known/core"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := co.Get(ctx, path)
		cancel()
		if err != nil || resp.Code() != codes.Content {
			t.Fatalf("GET %s before the move: %v %v", path, resp, err)
		}
	}
	state, ok := client.ConnectionState()
	if !ok {
		t.Fatal("pion exported no state")
	}
	second, err := net.ListenUDP("udp", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	resumed, err := piondtls.ResumeWithOptions(&state, second, raddr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	co = coapdtls.Client(resumed)
	for _, path := range []string{"/time", "/.well-known/core"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := co.Get(ctx, path)
		cancel()
		if err != nil || resp.Code() != codes.Content {
			t.Fatalf("GET %s from the new address: %v %v", path, resp, err)
		}
	}
}
