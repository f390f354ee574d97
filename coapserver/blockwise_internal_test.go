package coapserver

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/coapclient"
	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/coaptest"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
)

// TestTransfersEndWithTheConnection: an upload left half done is forgotten
// when its connection closes, and one that waits longer than the transfer
// timeout is gone (its next block gets 4.08).
func TestTransfersEndWithTheConnection(t *testing.T) {
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, coaptest.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{DTLS: coaptest.ServerConfig()})
	if err != nil {
		t.Fatal(err)
	}
	s.blockwise.timeout = 200 * time.Millisecond
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	defer func() {
		s.Stop()
		<-done
	}()
	c, err := coapclient.Dial(coaptest.Context(t), l.Addr().String(), coaptest.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	send := func(num int64) codes.Code {
		t.Helper()
		cc := c.CoAP()
		m := cc.AcquireMessage(coaptest.Context(t))
		defer cc.ReleaseMessage(m)
		m.SetCode(codes.PUT)
		m.SetToken([]byte{byte(num)})
		_ = m.SetPath("/echo")
		v, _ := blockwise.EncodeBlockOption(blockwise.SZX16, num, true)
		m.SetOptionUint32(message.Block1, v)
		m.SetBody(bytes.NewReader(bytes.Repeat([]byte{'z'}, 16)))
		resp, err := cc.Do(m)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.ReleaseMessage(resp)
		return resp.Code()
	}
	conns := func() int {
		s.blockwise.mu.Lock()
		defer s.blockwise.mu.Unlock()
		return len(s.blockwise.conns)
	}
	if code := send(0); code != codes.Continue {
		t.Fatalf("block 0: %v", code)
	}
	time.Sleep(300 * time.Millisecond)
	if code := send(1); code != codes.RequestEntityIncomplete {
		t.Errorf("block 1 after the transfer timeout: %v, want 4.08", code)
	}
	if code := send(0); code != codes.Continue || conns() != 1 {
		t.Fatalf("block 0 again: %v, %d connections with transfers", code, conns())
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for conns() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := conns(); n != 0 {
		t.Errorf("%d connections' transfers kept after the client closed", n)
	}
}
