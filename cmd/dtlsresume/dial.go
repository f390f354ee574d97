package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
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
	message := fs.String("message", "", "text to send (default: send each line of stdin as it is read, printing each reply as it comes)")
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
	if *message == "" {
		if *asJSON {
			return usagef("--json needs --message: with stdin, each reply is printed as it comes")
		}
		if *verbose {
			printHandshake(stderr, c.ConnectionState())
		}
		return streamLines(c, stdin, stdout, sec.timeout)
	}
	if _, err := c.Write([]byte(*message)); err != nil {
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
		printHandshake(stderr, st)
	}
	if strings.HasSuffix(res.Reply, "\n") {
		fmt.Fprint(stdout, res.Reply)
	} else {
		fmt.Fprintln(stdout, res.Reply)
	}
	return nil
}

// printHandshake is -v's summary line of a handshake.
func printHandshake(w io.Writer, st dtls.ConnectionState) {
	fmt.Fprintf(w, "suite=%s resumed=%t resumption=%s datagrams=%d/%d bytes=%d/%d handshake=%.1fms cid=%x/%x\n",
		st.CipherSuite, st.Resumed, st.Resumption, st.HandshakeDatagramsSent, st.HandshakeDatagramsReceived,
		st.HandshakeBytesSent, st.HandshakeBytesReceived, float64(st.HandshakeDuration.Microseconds())/1000, st.LocalCID, st.PeerCID)
}

// streamLines sends each line of stdin, as it is read, as one datagram
// (with its newline, as s_client does) and prints each reply as it comes,
// so that one session can be driven interactively and paced. At the end of
// stdin it waits up to timeout for the replies still due.
func streamLines(c *dtls.Conn, stdin io.Reader, stdout io.Writer, timeout time.Duration) error {
	var sent, got atomic.Int64
	replies := make(chan error, 1)
	go func() {
		buf := make([]byte, 64*1024)
		for {
			n, err := c.Read(buf)
			if err != nil {
				replies <- err
				return
			}
			got.Add(1)
			if _, err := stdout.Write(buf[:n]); err != nil {
				replies <- err
				return
			}
		}
	}()
	lines := bufio.NewScanner(stdin)
	lines.Buffer(make([]byte, 0, 4096), 64*1024)
	for lines.Scan() {
		if _, err := c.Write(append(lines.Bytes(), '\n')); err != nil {
			return err
		}
		sent.Add(1)
	}
	if err := lines.Err(); err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	if sent.Load() == 0 {
		return usagef("nothing to send: give --message or lines on stdin")
	}
	deadline := time.Now().Add(timeout)
	for got.Load() < sent.Load() && time.Now().Before(deadline) {
		select {
		case err := <-replies:
			return fmt.Errorf("waiting for replies: %w", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if got.Load() < sent.Load() {
		return fmt.Errorf("%d of %d replies did not come within %v", sent.Load()-got.Load(), sent.Load(), timeout)
	}
	return nil
}
