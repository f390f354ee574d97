package main

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/dtlsresume/dtlsresume/coapclient"
	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
)

// coapMethods are the CoAP commands and the request code each sends.
var coapMethods = map[string]codes.Code{
	"get": codes.GET, "post": codes.POST, "put": codes.PUT, "delete": codes.DELETE,
	"fetch": coapclient.FETCH, "patch": coapclient.PATCH, "ipatch": coapclient.IPATCH,
	"observe": codes.GET,
}

// hasPayload says whether a CoAP command sends a payload.
func hasPayload(method string) bool {
	switch method {
	case "put", "post", "fetch", "patch", "ipatch":
		return true
	}
	return false
}

// maxPayload bounds a request payload read from stdin or a file.
const maxPayload = 16 << 20

// coapResult is what the CoAP commands print with --json, one object per
// response (per notification for observe), with the same keys in every
// command. The handshake keys are dial's.
type coapResult struct {
	// Code is the response code as class.detail: "2.05", "4.04".
	Code string `json:"code"`
	// Payload is the payload as text; MarshalJSON leaves it out when the
	// payload is not valid UTF-8. PayloadBase64 is always there.
	Payload       string `json:"payload"`
	PayloadBase64 string `json:"payload_base64"`
	// ContentFormat and Observe are null when the response has none.
	ContentFormat *uint16      `json:"content_format"`
	Observe       *uint32      `json:"observe"`
	Options       []jsonOption `json:"options"`

	Suite             string  `json:"suite"`
	Resumed           bool    `json:"resumed"`
	Resumption        string  `json:"resumption"`
	DatagramsSent     int     `json:"datagrams_sent"`
	DatagramsReceived int     `json:"datagrams_received"`
	BytesSent         int     `json:"bytes_sent"`
	BytesReceived     int     `json:"bytes_received"`
	HandshakeMS       float64 `json:"handshake_ms"`
}

// jsonOption is one option of a response. Value is a number for the
// options RFC 7252 defines as uint, a string for the string ones, and
// "0x" and hex digits for the others (the forms --option takes).
type jsonOption struct {
	Number uint16 `json:"number"`
	Name   string `json:"name"`
	Value  any    `json:"value"`
}

func (r coapResult) MarshalJSON() ([]byte, error) {
	type plain coapResult
	if utf8.ValidString(r.Payload) {
		return json.Marshal(plain(r))
	}
	return json.Marshal(struct {
		plain
		Payload *string `json:"payload,omitempty"` // hides plain.Payload
	}{plain: plain(r)})
}

func newCoapResult(r coapclient.Response, st dtls.ConnectionState) coapResult {
	res := coapResult{
		Code:          dottedCode(r.Code),
		Payload:       string(r.Payload),
		PayloadBase64: base64.StdEncoding.EncodeToString(r.Payload),
		Options:       []jsonOption{},
		Suite:         st.CipherSuite.String(), Resumed: st.Resumed, Resumption: st.Resumption.String(),
		DatagramsSent: st.HandshakeDatagramsSent, DatagramsReceived: st.HandshakeDatagramsReceived,
		BytesSent: st.HandshakeBytesSent, BytesReceived: st.HandshakeBytesReceived,
		HandshakeMS: float64(st.HandshakeDuration.Microseconds()) / 1000,
	}
	if r.HasContentFormat {
		cf := uint16(r.ContentFormat)
		res.ContentFormat = &cf
	}
	if r.HasObserve {
		obs := r.Observe
		res.Observe = &obs
	}
	for _, o := range r.Options {
		res.Options = append(res.Options, jsonOption{Number: uint16(o.ID), Name: optionName(o.ID), Value: optionValue(o)})
	}
	return res
}

// dottedCode writes a code as RFC 7252 does: class.detail, "4.04".
func dottedCode(c codes.Code) string { return fmt.Sprintf("%d.%02d", c>>5, c&0x1f) }

// optionNames are the registered names of the options people meet.
var optionNames = map[message.OptionID]string{
	1: "If-Match", 3: "Uri-Host", 4: "ETag", 5: "If-None-Match", 6: "Observe", 7: "Uri-Port",
	8: "Location-Path", 9: "OSCORE", 11: "Uri-Path", 12: "Content-Format", 14: "Max-Age", 15: "Uri-Query",
	16: "Hop-Limit", 17: "Accept", 19: "Q-Block1", 20: "Location-Query", 23: "Block2", 27: "Block1",
	28: "Size2", 31: "Q-Block2", 35: "Proxy-Uri", 39: "Proxy-Scheme", 60: "Size1", 252: "Echo",
	258: "No-Response", 292: "Request-Tag",
}

func optionName(id message.OptionID) string { return optionNames[id] }

func optionValue(o message.Option) any {
	switch message.CoapOptionDefs[o.ID].ValueFormat {
	case message.ValueUint:
		var v uint64
		for _, b := range o.Value {
			v = v<<8 | uint64(b)
		}
		return v
	case message.ValueString:
		if utf8.Valid(o.Value) {
			return string(o.Value)
		}
	}
	return "0x" + hex.EncodeToString(o.Value)
}

func describeOptions(opts message.Options) string {
	var parts []string
	for _, o := range opts {
		name := optionName(o.ID)
		if name == "" {
			name = strconv.Itoa(int(o.ID))
		}
		parts = append(parts, fmt.Sprintf("%s=%v", name, optionValue(o)))
	}
	return strings.Join(parts, " ")
}

var contentFormats = map[string]message.MediaType{
	"text/plain":               message.TextPlain,
	"application/link-format":  message.AppLinkFormat,
	"application/xml":          message.AppXML,
	"application/octet-stream": message.AppOctets,
	"application/exi":          message.AppExi,
	"application/json":         message.AppJSON,
	"application/cbor":         message.AppCBOR,
	"application/senml+json":   message.AppSenmlJSON,
	"application/senml+cbor":   message.AppSenmlCbor,
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

// optionFlags collects --option NUM,VALUE.
type optionFlags []message.Option

func (f *optionFlags) String() string { return "" }

func (f *optionFlags) Set(v string) error {
	o, err := parseOption(v)
	if err != nil {
		return err
	}
	*f = append(*f, o)
	return nil
}

func (f optionFlags) has(id message.OptionID) bool {
	for _, o := range f {
		if o.ID == id {
			return true
		}
	}
	return false
}

// parseOption reads NUM,VALUE: VALUE is hex when it starts with 0x, an
// unsigned integer for the options RFC 7252 defines as uint (Content-Format,
// Accept, Max-Age, Uri-Port, Observe, No-Response, ...), text otherwise.
func parseOption(v string) (message.Option, error) {
	num, val, ok := strings.Cut(v, ",")
	if !ok {
		return message.Option{}, fmt.Errorf("want NUM,VALUE")
	}
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		return message.Option{}, fmt.Errorf("option number %q: want 1 to 65535", num)
	}
	id := message.OptionID(n)
	switch id {
	case message.Block1, message.Block2, message.Size1, message.Size2:
		return message.Option{}, fmt.Errorf("option %d (%s) is block-wise: use --block-size", n, optionName(id))
	}
	def, known := message.CoapOptionDefs[id]
	var value []byte
	switch {
	case strings.HasPrefix(val, "0x") || strings.HasPrefix(val, "0X"):
		if value, err = hex.DecodeString(val[2:]); err != nil {
			return message.Option{}, fmt.Errorf("value %q: not hex", val)
		}
	case known && def.ValueFormat == message.ValueUint:
		u, err := strconv.ParseUint(val, 10, 32)
		if err != nil {
			return message.Option{}, fmt.Errorf("option %d (%s) takes an unsigned integer or 0x and hex digits, not %q", n, optionName(id), val)
		}
		value = encodeUint(uint32(u))
	default:
		value = []byte(val)
	}
	if known && (uint32(len(value)) < def.MinLen || uint32(len(value)) > def.MaxLen) {
		return message.Option{}, fmt.Errorf("option %d (%s) takes %d to %d bytes; %q is %d", n, optionName(id), def.MinLen, def.MaxLen, val, len(value))
	}
	return message.Option{ID: id, Value: value}, nil
}

// encodeUint is a uint option value: big-endian without leading zero bytes.
func encodeUint(v uint32) []byte {
	b := []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	return b
}

// parseBlockSize turns --block-size (16 to 1024, a power of two) into a
// block-wise SZX.
func parseBlockSize(n int) (blockwise.SZX, error) {
	if n < 16 || n > 1024 || n&(n-1) != 0 {
		return 0, usagef("--block-size %d: want a power of two from 16 to 1024", n)
	}
	return blockwise.SZX(bits.TrailingZeros(uint(n)) - 4), nil
}

// cmdCoAP runs get, put, post, delete, fetch, patch, ipatch and observe:
// like libcoap's coap-client, for coaps:// URIs over this stack.
func cmdCoAP(method string, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(method, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sec securityFlags
	sec.registerSecurity(fs, true)
	verbose := fs.Bool("v", false, "print each handshake message sent (>>>) and received (<<<), the handshake, and each response's code and options to stderr")
	asJSON := fs.Bool("json", false, "print one JSON object per response (per notification for observe)")
	sessionFile := fs.String("session", "", "file to resume the DTLS session from and save it to (mode 0600)")
	outFile := fs.String("o", "", "write the response payload to `FILE`, byte for byte (observe: the latest notification)")
	accept := fs.String("accept", "", "Accept option `FMT`: a media type (text/plain, application/cbor, ...) or a number")
	var extra optionFlags
	fs.Var(&extra, "option", "send option `NUM,VALUE` (repeatable): VALUE is hex with a 0x prefix, an unsigned integer for the\nuint options (Content-Format, Accept, Max-Age, Uri-Port, Observe, No-Response), text otherwise")
	non := fs.Bool("non", false, "send the request as NON (non-confirmable)")
	blockSize := fs.Int("block-size", 0, "block size `N` of block-wise transfers, 16 to 1024, a power of two (default: what fits the MTU)")
	var payload, payloadFile, format *string
	var count *int
	var duration *time.Duration
	if hasPayload(method) {
		payload = fs.String("payload", "", "request payload (default: read stdin)")
		payloadFile = fs.String("payload-file", "", "read the request payload from `FILE`")
		format = fs.String("content-format", "text/plain", "Content-Format `FMT`: a media type, a number, or none")
	}
	if method == "observe" {
		count = fs.Int("count", 0, "stop after this many responses, the registration's included (0: until interrupted or --duration)")
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
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	req := coapclient.Request{Method: coapMethods[method], Path: path, NonConfirmable: *non}
	if *accept != "" {
		if extra.has(message.Accept) {
			return usagef("--accept %q and --option 17: give one", *accept)
		}
		mt, err := parseMediaType("--accept", *accept)
		if err != nil {
			return err
		}
		req.Options = append(req.Options, message.Option{ID: message.Accept, Value: encodeUint(uint32(mt))})
	}
	if format != nil && *format != "none" {
		switch {
		case extra.has(message.ContentFormat) && set["content-format"]:
			return usagef("--content-format %q and --option 12: give one", *format)
		case extra.has(message.ContentFormat):
			// --option 12 replaces the default text/plain.
		default:
			mt, err := parseContentFormat(*format)
			if err != nil {
				return err
			}
			req.Options = append(req.Options, message.Option{ID: message.ContentFormat, Value: encodeUint(uint32(mt))})
		}
	}
	req.Options = append(req.Options, extra...)
	var clientOpts []coapclient.Option
	if set["block-size"] {
		szx, err := parseBlockSize(*blockSize)
		if err != nil {
			return err
		}
		clientOpts = append(clientOpts, options.WithBlockwise(true, szx, 10*time.Second))
	}
	if count != nil && *count < 0 {
		return usagef("--count %d: must be 0 or more", *count)
	}
	cfg, err := sec.config(true)
	if err != nil {
		return err
	}
	if *verbose {
		cfg.Trace = traceTo(stderr)
	}
	var sessions *coapclient.FileSessionCache
	if *sessionFile != "" {
		if sessions, err = coapclient.NewFileSessionCache(*sessionFile); err != nil {
			return usagef("--session: %v", err)
		}
		cfg.ClientSessionCache = sessions
	}
	toFile := *outFile != ""
	if toFile {
		// Fail on a path that cannot be written before any traffic.
		f, err := os.OpenFile(*outFile, os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return usagef("-o %s: %v", *outFile, err)
		}
		f.Close()
	}
	if hasPayload(method) {
		if req.Payload, err = readPayload(*payload, *payloadFile, stdin); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), sec.timeout)
	defer cancel()
	client, err := coapclient.Dial(ctx, addr, cfg, clientOpts...)
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
	// A terminal gets a newline after a payload that lacks one, and so does
	// each notification of observe (one per line); otherwise stdout gets the
	// payload byte for byte.
	lines := method == "observe" || isTerminal(stdout)
	print := func(r coapclient.Response) error {
		if *verbose {
			fmt.Fprintf(stderr, "coap: %s %v, %d bytes", dottedCode(r.Code), r.Code, len(r.Payload))
			if len(r.Options) > 0 {
				fmt.Fprintf(stderr, ", %s", describeOptions(r.Options))
			}
			fmt.Fprintln(stderr)
		}
		if toFile && r.Code < codes.BadRequest {
			if err := os.WriteFile(*outFile, r.Payload, 0o644); err != nil {
				return fmt.Errorf("-o %s: %w", *outFile, err)
			}
		}
		switch {
		case *asJSON:
			return json.NewEncoder(stdout).Encode(newCoapResult(r, st))
		case toFile:
			return nil
		}
		_, err := stdout.Write(r.Payload)
		if err == nil && lines && len(r.Payload) > 0 && r.Payload[len(r.Payload)-1] != '\n' {
			_, err = io.WriteString(stdout, "\n")
		}
		return err
	}
	failed := func(r coapclient.Response) error {
		msg := fmt.Sprintf("%s %s: %s %v", strings.ToUpper(method), path, dottedCode(r.Code), r.Code)
		if toFile && len(r.Payload) > 0 && utf8.Valid(r.Payload) {
			msg += ": " + string(r.Payload) // the diagnostic payload went nowhere else
		}
		return errors.New(msg)
	}

	if method == "observe" {
		return observe(client, req, *count, *duration, sec.timeout, print, failed, stderr)
	}
	reqCtx, reqCancel := context.WithTimeout(context.Background(), sec.timeout)
	defer reqCancel()
	resp, err := client.Do(reqCtx, req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", strings.ToUpper(method), path, err)
	}
	if err := print(resp); err != nil {
		return err
	}
	if resp.Code >= codes.BadRequest {
		return failed(resp)
	}
	return nil
}

// readPayload reads the request payload: --payload when given (and not
// empty), else --payload-file, else stdin.
func readPayload(payload, file string, stdin io.Reader) ([]byte, error) {
	if payload != "" && file != "" {
		return nil, usagef("--payload and --payload-file: give one")
	}
	if payload != "" {
		return []byte(payload), nil
	}
	src, name := stdin, "stdin"
	if file != "" && file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, usagef("--payload-file %s: %v", file, err)
		}
		defer f.Close()
		src, name = f, file
	}
	b, err := io.ReadAll(io.LimitReader(src, maxPayload+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(b) > maxPayload {
		return nil, usagef("payload from %s: more than %d bytes", name, maxPayload)
	}
	return b, nil
}

// isTerminal says whether w is a terminal: a character device other than
// /dev/null.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	null, err := os.Stat(os.DevNull)
	return err != nil || !os.SameFile(fi, null)
}

// observe prints the registration's response and each notification until
// count responses were printed, the duration passed, or SIGINT/SIGTERM. A
// resource that answers without an Observe option cannot be observed: its
// answer is printed, stderr says so, and observe ends.
func observe(client *coapclient.Client, req coapclient.Request, count int, duration, timeout time.Duration,
	print, failed func(coapclient.Response) error, stderr io.Writer) error {
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
	first, cancelObs, err := client.ObserveRequest(regCtx, req, func(r coapclient.Response) {
		select {
		case got <- r:
		default:
		}
	})
	if err != nil {
		return fmt.Errorf("OBSERVE %s: %w", req.Path, err)
	}
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_ = cancelObs(c)
	}()
	if err := print(first); err != nil {
		return err
	}
	if first.Code >= codes.BadRequest {
		return failed(first)
	}
	if !first.HasObserve {
		fmt.Fprintf(stderr, "dtlsresume observe: %s cannot be observed: the response has no Observe option\n", req.Path)
		return nil
	}
	for n := 1; count == 0 || n < count; n++ {
		select {
		case r := <-got:
			if err := print(r); err != nil {
				return err
			}
			if r.Code >= codes.BadRequest {
				return failed(r) // RFC 7641 §3.2: an error ends the observation
			}
		case <-ctx.Done():
			return nil // --duration passed or interrupted: a normal end
		}
	}
	return nil
}

// parseContentFormat reads --content-format's media type name or number.
func parseContentFormat(v string) (message.MediaType, error) {
	return parseMediaType("--content-format", v)
}

// parseMediaType reads a media type name or number given to flag.
func parseMediaType(flag, v string) (message.MediaType, error) {
	if mt, ok := contentFormats[v]; ok {
		return mt, nil
	}
	n, err := strconv.ParseUint(v, 10, 16)
	if err != nil {
		return 0, usagef("%s %q: want a media type (%s) or a number", flag, v, strings.Join(knownFormats(), ", "))
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
