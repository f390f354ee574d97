// Command psk is a DTLS 1.2 echo server and client that authenticate each
// other with a pre-shared key: the smallest use of package dtls.
//
//	go run ./examples/psk                                          # server and client in one process
//	go run ./examples/psk -mode server -addr 127.0.0.1:5684        # or in two
//	go run ./examples/psk -mode client -addr 127.0.0.1:5684 -message "hi"
//
// The server looks up each client's key by the PSK identity the client
// sends; the client sends -identity and uses -key (hex). The client prints
// the server's reply and the negotiated cipher suite.
package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "psk:", err)
		os.Exit(1)
	}
}

// run is the program: main without the process around it, so a test can
// call it.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("psk", flag.ContinueOnError)
	mode := fs.String("mode", "both", "server, client, or both (server and client in one process)")
	addr := fs.String("addr", "127.0.0.1:5684", "server address (with -mode both, port 0 picks a free one)")
	identity := fs.String("identity", "sensor-17", "the client's PSK identity")
	keyHex := fs.String("key", hex.EncodeToString([]byte("the key of sensor-17")), "the pre-shared key, hex")
	message := fs.String("message", "hello over DTLS", "what the client sends")
	if err := fs.Parse(args); err != nil {
		return err
	}
	key, err := hex.DecodeString(*keyHex)
	if err != nil || len(key) == 0 {
		return fmt.Errorf("-key: want hex digits")
	}
	udpAddr, err := net.ResolveUDPAddr("udp", *addr)
	if err != nil {
		return err
	}

	switch *mode {
	case "server":
		l, err := listen(udpAddr, *identity, key, out)
		if err != nil {
			return err
		}
		return serve(ctx, l)
	case "client":
		return dial(ctx, udpAddr, *identity, key, *message, out)
	case "both":
		l, err := listen(udpAddr, *identity, key, out)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- serve(ctx, l) }()
		err = dial(ctx, l.Addr().(*net.UDPAddr), *identity, key, *message, out)
		cancel()
		return errors.Join(err, <-done)
	}
	return fmt.Errorf("-mode %q: want server, client or both", *mode)
}

// listen opens the server's socket. Its Config knows one client; a real
// server looks identities up in its device database.
func listen(addr *net.UDPAddr, identity string, key []byte, out io.Writer) (*dtls.Listener, error) {
	cfg := &dtls.Config{
		PSK: func(id []byte) ([]byte, error) {
			if string(id) != identity {
				return nil, fmt.Errorf("unknown PSK identity %q", id)
			}
			return key, nil
		},
	}
	l, err := dtls.Listen("udp", addr, cfg)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(out, "server: listening on", l.Addr())
	return l, nil
}

// serve echoes every datagram of every connection until ctx ends.
func serve(ctx context.Context, l *dtls.Listener) error {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	for {
		conn, err := l.Accept() // returns connections whose handshake is complete
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			defer conn.Close()
			buf := make([]byte, 1500)
			for {
				n, err := conn.Read(buf)
				if err != nil {
					return
				}
				if _, err := conn.Write(buf[:n]); err != nil {
					return
				}
			}
		}()
	}
}

// dial connects, sends message and prints the echo.
func dial(ctx context.Context, addr *net.UDPAddr, identity string, key []byte, message string, out io.Writer) error {
	cfg := &dtls.Config{
		PSK:             func([]byte) ([]byte, error) { return key, nil },
		PSKIdentityHint: []byte(identity), // on a client: the identity it sends
	}
	conn, err := dtls.DialContext(ctx, "udp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(message)); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second)) // UDP: the reply may never come
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "client: %s replied %q (%s)\n", conn.RemoteAddr(), buf[:n], conn.ConnectionState().CipherSuite)
	return nil
}
