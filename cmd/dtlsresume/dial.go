package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/dtlsresume/dtlsresume/coapclient"
	"github.com/dtlsresume/dtlsresume/dtls"
)

// dialResult is what dial reports, as one JSON object with --json.
type dialResult struct {
	Suite             string  `json:"suite"`
	Resumed           bool    `json:"resumed"`
	Resumption        string  `json:"resumption"`
	DatagramsSent     int     `json:"datagrams_sent"`
	DatagramsReceived int     `json:"datagrams_received"`
	BytesSent         int     `json:"bytes_sent"`
	BytesReceived     int     `json:"bytes_received"`
	HandshakeMS       float64 `json:"handshake_ms"`
	Reply             string  `json:"reply"`
}

func cmdDial(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dial", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sec securityFlags
	sec.register(fs, true)
	message := fs.String("message", "", "text to send (default: read stdin)")
	verbose := fs.Bool("v", false, "print each handshake message sent (>>>) and received (<<<), then one line about the handshake, to stderr")
	asJSON := fs.Bool("json", false, "print one JSON object instead of the bare reply")
	sessionFile := fs.String("session", "", "file to resume the session from and to save it to (holds the master secret: mode 0600)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	cfg, err := sec.config(true)
	if err != nil {
		return err
	}
	if *verbose {
		cfg.Trace = traceTo(stderr)
	}
	raddr, err := net.ResolveUDPAddr("udp", sec.addr)
	if err != nil {
		return usagef("--addr %q: %v", sec.addr, err)
	}
	var sessions *coapclient.FileSessionCache
	if *sessionFile != "" {
		if sessions, err = coapclient.NewFileSessionCache(*sessionFile); err != nil {
			return usagef("--session: %v", err)
		}
		cfg.ClientSessionCache = sessions
	}
	payload := []byte(*message)
	if *message == "" {
		if payload, err = io.ReadAll(io.LimitReader(stdin, 64*1024)); err != nil {
			return fmt.Errorf("reading stdin: %w", err)
		}
		if len(payload) == 0 {
			return usagef("nothing to send: give --message or data on stdin")
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), sec.timeout)
	defer cancel()
	c, err := dtls.DialContext(ctx, "udp", raddr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	// The session is worth keeping as soon as the handshake is done, even
	// if no reply comes.
	if sessions != nil {
		if err := sessions.Err(); err != nil {
			return err
		}
	}
	if _, err := c.Write(payload); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(sec.timeout))
	buf := make([]byte, 64*1024)
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("waiting for the reply: %w", err)
	}
	st := c.ConnectionState()
	res := dialResult{
		Suite:             st.CipherSuite.String(),
		Resumed:           st.Resumed,
		Resumption:        st.Resumption.String(),
		DatagramsSent:     st.HandshakeDatagramsSent,
		DatagramsReceived: st.HandshakeDatagramsReceived,
		BytesSent:         st.HandshakeBytesSent,
		BytesReceived:     st.HandshakeBytesReceived,
		HandshakeMS:       float64(st.HandshakeDuration.Microseconds()) / 1000,
		Reply:             string(buf[:n]),
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	if *verbose {
		fmt.Fprintf(stderr, "suite=%s resumed=%t resumption=%s datagrams=%d/%d bytes=%d/%d handshake=%.1fms\n",
			res.Suite, res.Resumed, res.Resumption, res.DatagramsSent, res.DatagramsReceived, res.BytesSent, res.BytesReceived, res.HandshakeMS)
	}
	if strings.HasSuffix(res.Reply, "\n") {
		fmt.Fprint(stdout, res.Reply)
	} else {
		fmt.Fprintln(stdout, res.Reply)
	}
	return nil
}
