// Command clientstate-device is a CoAP device that keeps nothing between
// connections, yet resumes its DTLS session: it offers only client_state
// (Config.Resumption = []negotiation.Type{negotiation.ClientState}), so the
// server parks the device's sealed session state for it and hands it back
// in the next handshake.
//
//	go run ./cmd/dtlsresume serve &                 # a server with the demo PSK, on 127.0.0.1:5684
//	go run ./examples/clientstate-device            # a full handshake
//	go run ./examples/clientstate-device            # a fresh process, resumed in 3 datagrams
//
// Each run POSTs one reading to /echo and prints the answer and what the
// handshake cost. The device holds only its PSK (-psk ID:HEXKEY, the demo
// PSK of `dtlsresume serve` by default): its ticket key is derived from the
// PSK, so a new process, or a device that rebooted, resumes without any
// file or flash write.
package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dtlsresume/dtlsresume/coapclient"
	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/plgd-dev/go-coap/v3/message"
)

// demoPSK is the PSK `dtlsresume serve` accepts without --psk.
const demoPSK = "dtlsresume:73656372657450534b2d64746c73726573756d65"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "clientstate-device:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("clientstate-device", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:5684", "the CoAP server, HOST:PORT")
	psk := fs.String("psk", demoPSK, "the device's PSK identity and key, ID:HEXKEY")
	reading := fs.String("reading", "21.5 C", "what the device reports")
	if err := fs.Parse(args); err != nil {
		return err
	}
	identity, keyHex, ok := strings.Cut(*psk, ":")
	key, err := hex.DecodeString(keyHex)
	if !ok || err != nil || len(key) == 0 {
		return fmt.Errorf("-psk %q: want ID:HEXKEY", *psk)
	}

	// Everything the device knows: its credential and what to offer.
	cfg := &dtls.Config{
		PSK:             func([]byte) ([]byte, error) { return key, nil },
		PSKIdentityHint: []byte(identity), // on a client: the identity it sends
		CipherSuites:    []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CCM_8},
		Resumption:      []negotiation.Type{negotiation.ClientState},
		// No ClientSessionCache: nothing is kept, in memory or on disk.
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := coapclient.Dial(ctx, *addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := c.Post(ctx, "/echo", message.TextPlain, []byte(*reading))
	if err != nil {
		return err
	}
	s := c.ConnectionState()
	fmt.Fprintf(out, "POST /echo: %v %q\n", resp.Code, resp.Payload)
	fmt.Fprintf(out, "handshake: resumption=%s resumed=%v datagrams=%d/%d bytes=%d/%d; the device keeps %d bytes\n",
		s.Resumption, s.Resumed, s.HandshakeDatagramsSent, s.HandshakeDatagramsReceived,
		s.HandshakeBytesSent, s.HandshakeBytesReceived, s.ResumptionStateBytes)
	return nil
}
