// Command coap-handler serves CoAP resources of its own over DTLS: a go-coap
// router (github.com/plgd-dev/go-coap/v3/mux) on package coapserver.
//
//	go run ./examples/coap-handler                      # serves on 127.0.0.1:5684
//	go run ./examples/coap-handler -demo                # serves, asks itself once, exits
//	dtlsresume get coaps://127.0.0.1:5684/hello --psk dtlsresume:73656372657450534b2d64746c73726573756d65
//	dtlsresume put coaps://127.0.0.1:5684/led --payload on --psk dtlsresume:73656372657450534b2d64746c73726573756d65
//
// Resources: /hello greets the device by the PSK identity it authenticated
// with (coapserver.ConnectionState gives a handler the DTLS side of its
// request); /led keeps "on" or "off": GET reads it, PUT sets it. It
// accepts the demo PSK of `dtlsresume serve` (identity "dtlsresume", key
// "secretPSK-dtlsresume"), so the command line and libcoap's coap-client
// work against it as they are.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/dtlsresume/dtlsresume/coapclient"
	"github.com/dtlsresume/dtlsresume/coapserver"
	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/store"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
)

// The demo credentials of `dtlsresume serve`.
const (
	pskIdentity = "dtlsresume"
	pskKey      = "secretPSK-dtlsresume"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "coap-handler:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("coap-handler", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:5684", "UDP address to serve CoAP over DTLS on")
	demo := fs.Bool("demo", false, "also run a client against the server once, print its answers and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	udpAddr, err := net.ResolveUDPAddr("udp", *addr)
	if err != nil {
		return err
	}

	cfg := &dtls.Config{
		PSK: func(identity []byte) ([]byte, error) {
			if string(identity) != pskIdentity {
				return nil, fmt.Errorf("unknown PSK identity %q", identity)
			}
			return []byte(pskKey), nil
		},
		SessionStore: store.NewMemory(store.MemoryConfig{}), // session_id and client_state resumption
	}
	srv, err := coapserver.New(coapserver.Options{DTLS: cfg, Handler: newRouter()})
	if err != nil {
		return err
	}
	l, err := dtls.Listen("udp", udpAddr, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "serving CoAP over DTLS on", l.Addr())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()

	if *demo {
		err = ask(ctx, l.Addr().String(), out)
	} else {
		<-ctx.Done()
	}
	srv.Stop()
	return errors.Join(err, <-done)
}

// newRouter builds the handlers: any go-coap mux.Handler works, and so does
// coapserver.DefaultMux() with routes added to it.
func newRouter() *mux.Router {
	r := mux.NewRouter()
	must(r.Handle("/hello", mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		if req.Code() != codes.GET {
			reply(w, codes.MethodNotAllowed, "")
			return
		}
		state, ok := coapserver.ConnectionState(w.Conn())
		if !ok {
			reply(w, codes.InternalServerError, "")
			return
		}
		reply(w, codes.Content, fmt.Sprintf("hello, %s (resumed=%v)", state.PSKIdentity, state.Resumed))
	})))

	var mu sync.Mutex
	led := "off"
	must(r.Handle("/led", mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		mu.Lock()
		defer mu.Unlock()
		switch req.Code() {
		case codes.GET:
			reply(w, codes.Content, led)
		case codes.PUT:
			body, err := req.ReadBody()
			if err != nil || (string(body) != "on" && string(body) != "off") {
				reply(w, codes.BadRequest, `want "on" or "off"`)
				return
			}
			led = string(body)
			reply(w, codes.Changed, led)
		default:
			reply(w, codes.MethodNotAllowed, "")
		}
	})))
	return r
}

func reply(w mux.ResponseWriter, code codes.Code, text string) {
	var body io.ReadSeeker
	if text != "" {
		body = bytes.NewReader([]byte(text))
	}
	if err := w.SetResponse(code, message.TextPlain, body); err != nil {
		fmt.Fprintln(os.Stderr, "coap-handler:", err)
	}
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// ask is the -demo client: GET /hello, PUT /led "on", GET /led, then
// GET /hello on a new connection, which resumes the first one's session
// (client_state: the client keeps nothing).
func ask(ctx context.Context, addr string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cfg := &dtls.Config{
		PSK:             func([]byte) ([]byte, error) { return []byte(pskKey), nil },
		PSKIdentityHint: []byte(pskIdentity),
		Resumption:      []negotiation.Type{negotiation.ClientState},
	}
	for conn := 1; conn <= 2; conn++ {
		c, err := coapclient.Dial(ctx, addr, cfg)
		if err != nil {
			return err
		}
		type request struct{ method, path, payload string }
		requests := []request{{"GET", "/hello", ""}}
		if conn == 1 {
			requests = append(requests, request{"PUT", "/led", "on"}, request{"GET", "/led", ""})
		}
		for _, r := range requests {
			var resp coapclient.Response
			if r.method == "PUT" {
				resp, err = c.Put(ctx, r.path, message.TextPlain, []byte(r.payload))
			} else {
				resp, err = c.Get(ctx, r.path)
			}
			if err != nil {
				c.Close()
				return err
			}
			fmt.Fprintf(out, "%s %s: %v %q\n", r.method, r.path, resp.Code, resp.Payload)
		}
		c.Close()
	}
	return nil
}
