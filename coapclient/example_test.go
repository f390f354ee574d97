package coapclient_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/dtlsresume/dtlsresume/coapclient"
	"github.com/dtlsresume/dtlsresume/coapserver"
	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
)

// psk is the key the example's server and client share.
func psk([]byte) ([]byte, error) { return []byte("the key of sensor-17"), nil }

// startServer serves /temperature over DTLS on 127.0.0.1 and returns its
// address and a function that stops it.
func startServer() (addr string, stop func()) {
	router := mux.NewRouter()
	err := router.Handle("/temperature", mux.HandlerFunc(func(w mux.ResponseWriter, r *mux.Message) {
		_ = w.SetResponse(codes.Content, message.TextPlain, bytes.NewReader([]byte("21.5 C")))
	}))
	if err != nil {
		log.Fatal(err)
	}
	cfg := &dtls.Config{PSK: psk}
	srv, err := coapserver.New(coapserver.Options{DTLS: cfg, Handler: router})
	if err != nil {
		log.Fatal(err)
	}
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, cfg)
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	return l.Addr().String(), func() { srv.Stop(); <-done }
}

// A device GETs a resource over DTLS with its pre-shared key.
func ExampleDial() {
	addr, stop := startServer()
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := coapclient.Dial(ctx, addr, &dtls.Config{
		PSK:             psk,
		PSKIdentityHint: []byte("sensor-17"), // the identity this client sends
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	resp, err := c.Get(ctx, "/temperature")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Code)
	fmt.Println(resp.ContentFormat)
	fmt.Println(string(resp.Payload))
	fmt.Println(c.ConnectionState().CipherSuite)
	// Output:
	// Content
	// text/plain; charset=utf-8
	// 21.5 C
	// TLS_PSK_WITH_AES_128_CCM_8
}
