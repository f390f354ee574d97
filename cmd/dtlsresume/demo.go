package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"text/tabwriter"
	"time"

	"github.com/dtlsresume/dtlsresume/coapclient"
	"github.com/dtlsresume/dtlsresume/coapserver"
	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/store"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// demoRow is one handshake of the demo.
type demoRow struct {
	Type              string  `json:"type"`
	Suite             string  `json:"suite"`
	Resumed           bool    `json:"resumed"`
	DatagramsSent     int     `json:"datagrams_sent"`
	DatagramsReceived int     `json:"datagrams_received"`
	BytesSent         int     `json:"bytes_sent"`
	BytesReceived     int     `json:"bytes_received"`
	HandshakeMS       float64 `json:"handshake_ms"`
	ClientStateBytes  int     `json:"client_state_bytes"`
	ServerStateBytes  int     `json:"server_state_bytes"`
}

// demoTypes are the resumption types the demo negotiates, each with a
// server that allows every type and a client that offers only that one.
var demoTypes = []negotiation.Type{negotiation.SessionID, negotiation.SessionTicket, negotiation.ClientState, negotiation.None}

// cmdDemo starts a CoAP server on loopback that allows every resumption
// type, and for each type runs a client through a full handshake and a
// resumption, each followed by a GET /time, printing what each handshake
// cost on the wire and what each side keeps.
func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "one JSON object per handshake instead of a table")
	suiteName := fs.String("suite", "PSK-AES128-CCM8", "cipher suite of every handshake")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	suites, err := dtls.ParseCipherSuites(*suiteName)
	if err != nil || len(suites) != 1 {
		return usagef("--suite %q: want one suite name", *suiteName)
	}
	cert, err := selfsign.GenerateSelfSignedWithDNS("localhost", "localhost")
	if err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	key := []byte("secretPSK-dtlsresume")
	scfg := &dtls.Config{
		Certificates: []tls.Certificate{cert},
		PSK:          func([]byte) ([]byte, error) { return key, nil },
		SessionStore: store.NewMemory(store.MemoryConfig{}),
	}
	// The server reports each handshake it completes, so the table can
	// show what it keeps.
	serverStates := make(chan dtls.ConnectionState, 4)
	scfg.HandshakeObserver = func(st dtls.ConnectionState, err error) {
		if err == nil {
			select {
			case serverStates <- st:
			default:
			}
		}
	}
	srv, err := coapserver.New(coapserver.Options{DTLS: scfg})
	if err != nil {
		return err
	}
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, scfg)
	if err != nil {
		return err
	}
	go srv.Serve(l) //nolint:errcheck // ends with Stop
	defer srv.Stop()

	var rows []demoRow
	for _, typ := range demoTypes {
		cache := dtls.NewLRUClientSessionCache(1)
		for _, kind := range []string{"full", "resumed"} {
			ccfg := &dtls.Config{
				CipherSuites:    suites,
				PSK:             func([]byte) ([]byte, error) { return key, nil },
				PSKIdentityHint: []byte(demoPSKIdentity),
				RootCAs:         roots,
				ServerName:      "localhost",
				Resumption:      []negotiation.Type{typ},
			}
			if typ != negotiation.ClientState {
				// client_state keeps nothing: a fresh Config every time,
				// as a new process would have.
				ccfg.ClientSessionCache = cache
			}
			row, err := demoHandshake(l.Addr().(*net.UDPAddr), ccfg)
			if err != nil {
				return fmt.Errorf("%s %s: %w", typ, kind, err)
			}
			select {
			case st := <-serverStates:
				row.ServerStateBytes = st.ResumptionStateBytes
			case <-time.After(5 * time.Second):
				return errors.New("the server did not report its connection")
			}
			if row.Resumed != (kind == "resumed" && typ != negotiation.None) {
				return fmt.Errorf("%s %s: resumed=%v", typ, kind, row.Resumed)
			}
			rows = append(rows, row)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "type\tsuite\tresumed\tdatagrams out/in\tbytes out/in\ttime (ms)\tclient keeps (B)\tserver keeps (B)\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%t\t%d/%d\t%d/%d\t%.2f\t%d\t%d\t\n", r.Type, r.Suite, r.Resumed,
			r.DatagramsSent, r.DatagramsReceived, r.BytesSent, r.BytesReceived, r.HandshakeMS, r.ClientStateBytes, r.ServerStateBytes)
	}
	return tw.Flush()
}

// demoHandshake dials the CoAP server, GETs /time and reports the
// handshake.
func demoHandshake(addr *net.UDPAddr, cfg *dtls.Config) (demoRow, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := coapclient.Dial(ctx, addr.String(), cfg)
	if err != nil {
		return demoRow{}, err
	}
	defer c.Close()
	resp, err := c.Get(ctx, "/time")
	if err != nil {
		return demoRow{}, fmt.Errorf("GET /time: %w", err)
	}
	if resp.Code != codes.Content {
		return demoRow{}, fmt.Errorf("GET /time: %v", resp.Code)
	}
	st := c.ConnectionState()
	return demoRow{
		Type: st.Resumption.String(), Suite: st.CipherSuite.String(), Resumed: st.Resumed,
		DatagramsSent: st.HandshakeDatagramsSent, DatagramsReceived: st.HandshakeDatagramsReceived,
		BytesSent: st.HandshakeBytesSent, BytesReceived: st.HandshakeBytesReceived,
		HandshakeMS:      float64(st.HandshakeDuration.Microseconds()) / 1000,
		ClientStateBytes: st.ResumptionStateBytes,
	}, nil
}
