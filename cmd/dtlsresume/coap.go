package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dtlsresume/dtlsresume/coapclient"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// coapResult is what get/put/post print with --json.
type coapResult struct {
	Code              string  `json:"code"`
	Payload           string  `json:"payload"`
	Suite             string  `json:"suite"`
	Resumed           bool    `json:"resumed"`
	Resumption        string  `json:"resumption"`
	DatagramsSent     int     `json:"datagrams_sent"`
	DatagramsReceived int     `json:"datagrams_received"`
	BytesSent         int     `json:"bytes_sent"`
	BytesReceived     int     `json:"bytes_received"`
	HandshakeMS       float64 `json:"handshake_ms"`
}

var contentFormats = map[string]message.MediaType{
	"text/plain":               message.TextPlain,
	"application/link-format":  message.AppLinkFormat,
	"application/xml":          message.AppXML,
	"application/octet-stream": message.AppOctets,
	"application/json":         message.AppJSON,
	"application/cbor":         message.AppCBOR,
}

// parseCoapsURI splits coaps://HOST[:PORT]/PATH[?QUERY] into an address
// (default port 5684) and the path with its query.
func parseCoapsURI(raw string) (addr, path string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", usagef("URI %q: %v", raw, err)
	}
	if u.Scheme != "coaps" {
		return "", "", usagef("URI %q: want a coaps:// URI", raw)
	}
	if u.Hostname() == "" {
		return "", "", usagef("URI %q: no host", raw)
	}
	port := u.Port()
	if port == "" {
		port = "5684"
	}
	path = u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	return net.JoinHostPort(u.Hostname(), port), path, nil
}

// cmdCoAP runs get, put, post and observe: like libcoap's coap-client,
// for coaps:// URIs over this stack.
func cmdCoAP(method string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(method, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sec securityFlags
	sec.registerSecurity(fs, true)
	verbose := fs.Bool("v", false, "print the handshake and the response code to stderr")
	asJSON := fs.Bool("json", false, "print one JSON object per response")
	sessionFile := fs.String("session", "", "file to resume the DTLS session from and save it to (mode 0600)")
	var payload, format *string
	var count *int
	var duration *time.Duration
	switch method {
	case "put", "post":
		payload = fs.String("payload", "", "request payload (default: read stdin)")
		format = fs.String("content-format", "text/plain", "content format: a media type name or number")
	case "observe":
		count = fs.Int("count", 0, "stop after this many notifications (0: until interrupted or --duration)")
		duration = fs.Duration("duration", 0, "stop after this long (0: no limit)")
	}
	// Flags may come before or after the URI.
	var uri string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		uri, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if uri == "" && fs.NArg() > 0 {
		uri = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if uri == "" {
		return usagef("give a coaps://HOST:PORT/PATH URI")
	}
	addr, path, err := parseCoapsURI(uri)
	if err != nil {
		return err
	}
	cfg, err := sec.config(true)
	if err != nil {
		return err
	}
	var body []byte
	mediaType := message.TextPlain
	if payload != nil {
		if mediaType, err = parseContentFormat(*format); err != nil {
			return err
		}
		body = []byte(*payload)
		if *payload == "" {
			if body, err = io.ReadAll(io.LimitReader(stdin, 1<<20)); err != nil {
				return fmt.Errorf("reading stdin: %w", err)
			}
		}
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
	client, err := coapclient.Dial(ctx, addr, cfg)
	if err != nil {
		return err
	}
	defer client.Close()
	st := client.ConnectionState()
	if sessions != nil {
		if err := sessions.Err(); err != nil {
			return err
		}
	}
	if *verbose {
		fmt.Fprintf(stderr, "dtls: suite=%s resumed=%t resumption=%s datagrams=%d/%d bytes=%d/%d handshake=%.1fms\n",
			st.CipherSuite, st.Resumed, st.Resumption, st.HandshakeDatagramsSent, st.HandshakeDatagramsReceived,
			st.HandshakeBytesSent, st.HandshakeBytesReceived, float64(st.HandshakeDuration.Microseconds())/1000)
	}
	print := func(r coapclient.Response) error {
		if *verbose {
			fmt.Fprintf(stderr, "coap: %v, %d bytes\n", r.Code, len(r.Payload))
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(coapResult{
				Code: r.Code.String(), Payload: string(r.Payload), Suite: st.CipherSuite.String(),
				Resumed: st.Resumed, Resumption: st.Resumption.String(),
				DatagramsSent: st.HandshakeDatagramsSent, DatagramsReceived: st.HandshakeDatagramsReceived,
				BytesSent: st.HandshakeBytesSent, BytesReceived: st.HandshakeBytesReceived,
				HandshakeMS: float64(st.HandshakeDuration.Microseconds()) / 1000,
			})
		}
		_, err := stdout.Write(r.Payload)
		if err == nil && len(r.Payload) > 0 && r.Payload[len(r.Payload)-1] != '\n' {
			_, err = io.WriteString(stdout, "\n")
		}
		return err
	}

	if method == "observe" {
		return observe(client, path, *count, *duration, sec.timeout, print)
	}
	reqCtx, reqCancel := context.WithTimeout(context.Background(), sec.timeout)
	defer reqCancel()
	var resp coapclient.Response
	switch method {
	case "get":
		resp, err = client.Get(reqCtx, path)
	case "put":
		resp, err = client.Put(reqCtx, path, mediaType, body)
	case "post":
		resp, err = client.Post(reqCtx, path, mediaType, body)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", strings.ToUpper(method), path, err)
	}
	if err := print(resp); err != nil {
		return err
	}
	if resp.Code >= codes.BadRequest {
		return fmt.Errorf("%s %s: %v", strings.ToUpper(method), path, resp.Code)
	}
	return nil
}

// observe prints the registration's response and each notification until
// count notifications arrived, the duration passed, or SIGINT/SIGTERM.
func observe(client *coapclient.Client, path string, count int, duration, timeout time.Duration, print func(coapclient.Response) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	got := make(chan coapclient.Response, 16)
	regCtx, regCancel := context.WithTimeout(ctx, timeout)
	defer regCancel()
	cancelObs, err := client.Observe(regCtx, path, func(r coapclient.Response) {
		select {
		case got <- r:
		default:
		}
	})
	if err != nil {
		return fmt.Errorf("OBSERVE %s: %w", path, err)
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_ = cancelObs(c)
	}()
	for n := 0; count == 0 || n < count; n++ {
		select {
		case r := <-got:
			if err := print(r); err != nil {
				return err
			}
			if r.Code >= codes.BadRequest {
				return fmt.Errorf("OBSERVE %s: %v", path, r.Code)
			}
		case <-ctx.Done():
			return nil // --duration passed or interrupted: a normal end
		}
	}
	return nil
}

func parseContentFormat(v string) (message.MediaType, error) {
	if mt, ok := contentFormats[v]; ok {
		return mt, nil
	}
	n, err := strconv.ParseUint(v, 10, 16)
	if err != nil {
		return 0, usagef("--content-format %q: want a media type (%s) or a number", v, strings.Join(knownFormats(), ", "))
	}
	return message.MediaType(n), nil
}

func knownFormats() []string {
	var out []string
	for k := range contentFormats {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
