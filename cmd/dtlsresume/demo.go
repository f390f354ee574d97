package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"text/tabwriter"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
)

// demoRow is one handshake of the demo.
type demoRow struct {
	Kind              string  `json:"kind"`
	Suite             string  `json:"suite"`
	Resumed           bool    `json:"resumed"`
	DatagramsSent     int     `json:"datagrams_sent"`
	DatagramsReceived int     `json:"datagrams_received"`
	BytesSent         int     `json:"bytes_sent"`
	BytesReceived     int     `json:"bytes_received"`
	HandshakeMS       float64 `json:"handshake_ms"`
}

// cmdDemo starts an echo server on loopback and runs a client through a
// handshake per suite, printing what each cost on the wire.
func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "one JSON object per handshake instead of a table")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
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
	}
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, scfg)
	if err != nil {
		return err
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serveEcho(c.(*dtls.Conn), slog.New(slog.DiscardHandler))
		}
	}()

	var rows []demoRow
	for _, suite := range dtls.CipherSuites() {
		ccfg := &dtls.Config{
			CipherSuites:    []dtls.CipherSuiteID{suite},
			PSK:             func([]byte) ([]byte, error) { return key, nil },
			PSKIdentityHint: []byte(demoPSKIdentity),
			RootCAs:         roots,
			ServerName:      "localhost",
		}
		row, err := demoHandshake(l.Addr().(*net.UDPAddr), ccfg, "full")
		if err != nil {
			return fmt.Errorf("%s: %w", suite, err)
		}
		rows = append(rows, row)
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
	fmt.Fprintln(tw, "kind\tsuite\tresumed\tdatagrams out/in\tbytes out/in\ttime (ms)\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%t\t%d/%d\t%d/%d\t%.2f\t\n", r.Kind, r.Suite, r.Resumed,
			r.DatagramsSent, r.DatagramsReceived, r.BytesSent, r.BytesReceived, r.HandshakeMS)
	}
	return tw.Flush()
}

func demoHandshake(addr *net.UDPAddr, cfg *dtls.Config, kind string) (demoRow, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dtls.DialContext(ctx, "udp", addr, cfg)
	if err != nil {
		return demoRow{}, err
	}
	defer c.Close()
	msg := []byte("demo")
	if _, err := c.Write(msg); err != nil {
		return demoRow{}, err
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	if err != nil {
		return demoRow{}, fmt.Errorf("echo: %w", err)
	}
	if !bytes.Equal(buf[:n], msg) {
		return demoRow{}, fmt.Errorf("echo returned %q", buf[:n])
	}
	st := c.ConnectionState()
	return demoRow{
		Kind: kind, Suite: st.CipherSuite.String(), Resumed: st.Resumed,
		DatagramsSent: st.HandshakeDatagramsSent, DatagramsReceived: st.HandshakeDatagramsReceived,
		BytesSent: st.HandshakeBytesSent, BytesReceived: st.HandshakeBytesReceived,
		HandshakeMS: float64(st.HandshakeDuration.Microseconds()) / 1000,
	}, nil
}
