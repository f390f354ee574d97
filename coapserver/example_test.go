package coapserver_test

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

// A go-coap handler of your own on a DTLS listener: /hello greets each
// device by the PSK identity it authenticated with.
func ExampleNew() {
	router := mux.NewRouter()
	err := router.Handle("/hello", mux.HandlerFunc(func(w mux.ResponseWriter, r *mux.Message) {
		state, _ := coapserver.ConnectionState(w.Conn()) // the DTLS side of the request
		greeting := fmt.Sprintf("hello, %s", state.PSKIdentity)
		if err := w.SetResponse(codes.Content, message.TextPlain, bytes.NewReader([]byte(greeting))); err != nil {
			log.Print(err)
		}
	}))
	if err != nil {
		log.Fatal(err)
	}

	cfg := &dtls.Config{
		PSK: func(identity []byte) ([]byte, error) {
			if string(identity) != "sensor-17" {
				return nil, fmt.Errorf("unknown PSK identity %q", identity)
			}
			return []byte("the key of sensor-17"), nil
		},
	}
	srv, err := coapserver.New(coapserver.Options{DTLS: cfg, Handler: router})
	if err != nil {
		log.Fatal(err)
	}
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, cfg)
	if err != nil {
		log.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()

	// A device asks.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := coapclient.Dial(ctx, l.Addr().String(), &dtls.Config{
		PSK:             func([]byte) ([]byte, error) { return []byte("the key of sensor-17"), nil },
		PSKIdentityHint: []byte("sensor-17"),
	})
	if err != nil {
		log.Fatal(err)
	}
	resp, err := c.Get(ctx, "/hello")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Code, string(resp.Payload))
	c.Close()

	srv.Stop() // closes the listener; Serve returns nil
	fmt.Println("Serve returned", <-done)
	// Output:
	// Content hello, sensor-17
	// Serve returned <nil>
}
