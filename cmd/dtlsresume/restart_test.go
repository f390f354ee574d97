package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/coapclient"
	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/peers"
	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// TestListenGracefulRestart: a client holds a connection with a connection
// ID; listen gets SIGTERM, saves it into its file store, and a new listen
// on the same address loads it: the client's next message is answered with
// zero handshake datagrams, for each resumption type the session set up.
// After SIGKILL nothing is saved, and the next message goes unanswered.
func TestListenGracefulRestart(t *testing.T) {
	for _, typ := range []negotiation.Type{negotiation.SessionID, negotiation.SessionTicket, negotiation.ClientState} {
		t.Run(typ.String(), func(t *testing.T) {
			addr := freeUDPAddr(t)
			args := []string{"listen", "--addr", addr, "--cid", "8", "--store", "file:" + filepath.Join(t.TempDir(), "store"), "--store-key", testStoreKeyHex}
			start := func() *peers.Process {
				p := peers.Start(t, binary, args...)
				if err := p.WaitFor("listening on udp", 10*time.Second); err != nil {
					t.Fatal(err)
				}
				return p
			}
			srv := start()
			raddr, err := net.ResolveUDPAddr("udp", addr)
			if err != nil {
				t.Fatal(err)
			}
			cfg := &dtls.Config{
				PSK:                   func([]byte) ([]byte, error) { return []byte("secretPSK-dtlsresume"), nil },
				PSKIdentityHint:       []byte(demoPSKIdentity),
				Resumption:            []negotiation.Type{typ},
				ConnectionIDGenerator: dtls.OnlySendCIDGenerator(),
				HandshakeTimeout:      5 * time.Second,
			}
			c, err := dtls.Dial("udp", raddr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ask := func(msg string) bool {
				if _, err := c.Write([]byte(msg)); err != nil {
					t.Fatal(err)
				}
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				buf := make([]byte, 100)
				n, err := c.Read(buf)
				return err == nil && bytes.Equal(buf[:n], []byte(msg))
			}
			if !ask("before") {
				t.Fatal("no echo before the restart")
			}
			before := c.ConnectionState()
			srv.Stop() // SIGTERM
			if err := srv.WaitFor("saved 1 connections", time.Second); err != nil {
				t.Fatal(err)
			}
			srv = start()
			if err := srv.WaitFor("restored 1 connections", 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if !ask("after a graceful restart") {
				t.Fatal("no echo after the graceful restart")
			}
			if after := c.ConnectionState(); after.HandshakeDatagramsSent != before.HandshakeDatagramsSent {
				t.Fatal("the client ran a handshake")
			}
			// SIGKILL saves nothing: the restarted server does not know
			// the connection.
			if err := srv.Kill(); err != nil {
				t.Fatal(err)
			}
			srv = start()
			if ask("after SIGKILL") {
				t.Fatal("a connection came back after SIGKILL")
			}
			srv.Stop()
		})
	}
}

// TestServeGracefulRestart: a CoAP client on a connection with a CID keeps
// it across a SIGTERM restart of serve: its next request is answered
// without a handshake.
func TestServeGracefulRestart(t *testing.T) {
	addr := freeUDPAddr(t)
	args := []string{"--cid", "8", "--store", "file:" + filepath.Join(t.TempDir(), "store"), "--store-key", testStoreKeyHex}
	srv := startServeAt(t, addr, args...)
	cfg := &dtls.Config{
		PSK:                   func([]byte) ([]byte, error) { return []byte("secretPSK-dtlsresume"), nil },
		PSKIdentityHint:       []byte(demoPSKIdentity),
		ConnectionIDGenerator: dtls.OnlySendCIDGenerator(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client, err := coapclient.Dial(ctx, addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	get := func(stage string) {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		defer rcancel()
		resp, err := client.Get(rctx, "/time")
		if err != nil || resp.Code != codes.Content {
			t.Fatalf("GET /time %s: %+v %v", stage, resp, err)
		}
	}
	get("before the restart")
	srv.Stop()
	if err := srv.WaitFor("saved 1 connections", time.Second); err != nil {
		t.Fatal(err)
	}
	srv = startServeAt(t, addr, args...)
	if err := srv.WaitFor("restored 1 connections", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	get("after the restart")
}
