package main

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/coapserver"
	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/peers"
	dtlsServer "github.com/plgd-dev/go-coap/v3/dtls/server"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
)

var demoPSK = "dtlsresume:" + hex.EncodeToString([]byte("secretPSK-dtlsresume"))

// coapRun runs the command as a process with stdin and returns its exit
// status, stdout and stderr; stdout is a pipe, not a terminal.
func coapRun(t *testing.T, stdin []byte, args ...string) (int, []byte, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0, out.Bytes(), errb.String()
		case errors.As(err, &ee):
			return ee.ExitCode(), out.Bytes(), errb.String()
		}
		t.Fatal(err)
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("%v still running after 15s; stderr %q", args, errb.String())
	}
	return 0, nil, ""
}

// binaryPayload is every byte value, then some, with no trailing newline.
func binaryPayload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	b[n-1] = 0xff
	return b
}

// seen is what the recording server saw: each request its handler got, and
// each message that arrived (before block-wise reassembly).
type seen struct {
	mu       sync.Mutex
	requests []seenRequest
	messages []seenMessage
}

type seenRequest struct {
	code codes.Code
	typ  message.Type
	opts message.Options
	body []byte
}

type seenMessage struct {
	code           codes.Code
	typ            message.Type
	block1, block2 int // block size, 0 without the option
}

func (s *seen) last() seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		return seenRequest{}
	}
	return s.requests[len(s.requests)-1]
}

// reset returns the requests that arrived (not the acknowledgements of the
// server's messages) and forgets all.
func (s *seen) reset() []seenMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	var reqs []seenMessage
	for _, m := range s.messages {
		if m.code >= codes.GET && m.code <= 7 {
			reqs = append(reqs, m)
		}
	}
	s.requests, s.messages = nil, nil
	return reqs
}

func blockSize(m *pool.Message, id message.OptionID) int {
	v, err := m.GetOptionUint32(id)
	if err != nil {
		return 0
	}
	szx, _, _, err := blockwise.DecodeBlockOption(v)
	if err != nil {
		return -1
	}
	return int(szx.Size())
}

// startRecordingServer serves /rec in this process on a real socket: it
// records each request and answers a code per method, with the request's
// payload. It takes the demo PSK.
func startRecordingServer(t *testing.T) (*seen, string) {
	t.Helper()
	s := &seen{}
	r := mux.NewRouter()
	answer := map[codes.Code]codes.Code{codes.GET: codes.Content, codes.POST: codes.Created, codes.PUT: codes.Changed,
		codes.DELETE: codes.Deleted, 5: codes.Content, 6: codes.Changed, 7: codes.Valid}
	if err := r.Handle("/rec", mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		body, _ := req.ReadBody()
		opts, _ := req.Options().Clone()
		s.mu.Lock()
		s.requests = append(s.requests, seenRequest{code: req.Code(), typ: req.Type(), opts: opts, body: body})
		s.mu.Unlock()
		_ = w.SetResponse(answer[req.Code()], message.AppOctets, bytes.NewReader(body))
	})); err != nil {
		t.Fatal(err)
	}
	monitor := func(_ *udpClient.Conn, m *pool.Message) (bool, error) {
		s.mu.Lock()
		s.messages = append(s.messages, seenMessage{code: m.Code(), typ: m.Type(), block1: blockSize(m, message.Block1), block2: blockSize(m, message.Block2)})
		s.mu.Unlock()
		return false, nil
	}
	cfg := &dtls.Config{PSK: func(id []byte) ([]byte, error) {
		if string(id) == demoPSKIdentity {
			return []byte("secretPSK-dtlsresume"), nil
		}
		return nil, errors.New("unknown identity")
	}}
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := coapserver.New(coapserver.Options{DTLS: cfg, Handler: r, Extra: []dtlsServer.Option{options.WithRequestMonitor(monitor)}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return s, "coaps://" + l.Addr().String()
}

// TestCoAPOutputFileByteExact: -o writes the payload as it came, a binary
// one without a trailing newline included, and nothing goes to stdout.
func TestCoAPOutputFileByteExact(t *testing.T) {
	_, addr := startServe(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	data := binaryPayload(300)
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := coapRun(t, nil, "post", "coaps://"+addr+"/echo", "--psk", demoPSK,
		"--content-format", "application/octet-stream", "--payload-file", in, "-o", out)
	if code != 0 || len(stdout) != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("-o wrote %d bytes (%v), want the %d sent", len(got), err, len(data))
	}
}

// TestCoAPStdoutByteExactWhenPiped: 300 bytes in, 300 out when stdout is
// not a terminal (no newline added), from stdin and from --payload.
func TestCoAPStdoutByteExactWhenPiped(t *testing.T) {
	_, addr := startServe(t)
	text := bytes.Repeat([]byte("abc"), 100)
	code, stdout, stderr := coapRun(t, text, "put", "coaps://"+addr+"/echo", "--psk", demoPSK)
	if code != 0 || !bytes.Equal(stdout, text) {
		t.Fatalf("exit %d, %d bytes out for %d in (stderr %q)", code, len(stdout), len(text), stderr)
	}
	code, stdout, _ = coapRun(t, nil, "get", "coaps://"+addr+"/echo", "--psk", demoPSK)
	if code != 0 || string(stdout) != "echo" {
		t.Fatalf("GET /echo: exit %d, stdout %q", code, stdout)
	}
}

// TestCoAPJSON: --json carries a binary payload in base64 and leaves the
// text out, carries text as both, names the code as 4.04, and has the same
// keys for every method, the handshake's included.
func TestCoAPJSON(t *testing.T) {
	_, addr := startServe(t)
	data := binaryPayload(300)
	code, stdout, stderr := coapRun(t, data, "put", "coaps://"+addr+"/echo", "--psk", demoPSK, "--json",
		"--content-format", "application/cbor")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var obj map[string]any
	if err := json.Unmarshal(stdout, &obj); err != nil {
		t.Fatalf("%q: %v", stdout, err)
	}
	got, err := base64.StdEncoding.DecodeString(obj["payload_base64"].(string))
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("payload_base64 gives %d bytes (%v), want the %d sent", len(got), err, len(data))
	}
	if _, ok := obj["payload"]; ok {
		t.Errorf("payload given as text for a binary payload: %q", obj["payload"])
	}
	if obj["code"] != "2.04" || obj["content_format"] != float64(60) {
		t.Errorf("code %v, content_format %v; want 2.04, 60", obj["code"], obj["content_format"])
	}
	keys := func(m map[string]any) []string {
		var k []string
		for key := range m {
			if key != "payload" {
				k = append(k, key)
			}
		}
		return k
	}
	for _, key := range []string{"code", "payload_base64", "content_format", "observe", "options", "suite", "resumed",
		"resumption", "datagrams_sent", "datagrams_received", "bytes_sent", "bytes_received", "handshake_ms"} {
		if _, ok := obj[key]; !ok {
			t.Errorf("no %q in %s", key, stdout)
		}
	}

	code, stdout, _ = coapRun(t, nil, "get", "coaps://"+addr+"/missing", "--psk", demoPSK, "--json")
	var missing map[string]any
	if err := json.Unmarshal(stdout, &missing); err != nil {
		t.Fatalf("%q: %v", stdout, err)
	}
	if code != 1 || missing["code"] != "4.04" || missing["payload"] != "" {
		t.Errorf("GET /missing: exit %d, %s; want exit 1 and code 4.04", code, stdout)
	}
	if a, b := keys(obj), keys(missing); len(a) != len(b) {
		t.Errorf("keys differ between put and get: %v and %v", a, b)
	}

	code, stdout, _ = coapRun(t, nil, "fetch", "coaps://"+addr+"/echo", "--psk", demoPSK, "--json", "--payload", "héllo")
	var text coapResult
	if err := json.Unmarshal(stdout, &text); err != nil || code != 0 {
		t.Fatalf("fetch: exit %d, %q: %v", code, stdout, err)
	}
	if text.Code != "2.05" || text.Payload != "héllo" || text.PayloadBase64 != base64.StdEncoding.EncodeToString([]byte("héllo")) {
		t.Errorf("fetch: %+v", text)
	}
}

// TestObserveNotObservable: observe on /echo prints its answer, says on
// stderr that it cannot be observed, and exits 0 at once.
func TestObserveNotObservable(t *testing.T) {
	_, addr := startServe(t)
	start := time.Now()
	code, stdout, stderr := coapRun(t, nil, "observe", "coaps://"+addr+"/echo", "--psk", demoPSK)
	if code != 0 || string(stdout) != "echo\n" || !strings.Contains(stderr, "/echo cannot be observed") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	code, _, stderr = coapRun(t, nil, "observe", "coaps://"+addr+"/missing", "--psk", demoPSK)
	if code != 1 || !strings.Contains(stderr, "4.04") {
		t.Errorf("observe /missing: exit %d, stderr %q", code, stderr)
	}
}

// TestCoAPMethods: every method reaches the server as its code, and the
// command reports the server's answer.
func TestCoAPMethods(t *testing.T) {
	s, uri := startRecordingServer(t)
	for _, m := range []struct {
		method string
		code   codes.Code
		answer string
	}{{"get", codes.GET, "2.05"}, {"post", codes.POST, "2.01"}, {"put", codes.PUT, "2.04"}, {"delete", codes.DELETE, "2.02"},
		{"fetch", 5, "2.05"}, {"patch", 6, "2.04"}, {"ipatch", 7, "2.03"}} {
		args := []string{m.method, uri + "/rec", "--psk", demoPSK, "--json"}
		if hasPayload(m.method) {
			args = append(args, "--payload", "body of "+m.method)
		}
		code, stdout, stderr := coapRun(t, nil, args...)
		var res coapResult
		if err := json.Unmarshal(stdout, &res); err != nil || code != 0 {
			t.Fatalf("%s: exit %d, %q, %v (stderr %q)", m.method, code, stdout, err, stderr)
		}
		req := s.last()
		if req.code != m.code || res.Code != m.answer {
			t.Errorf("%s: the server got code %d, the command printed %s; want %d and %s", m.method, req.code, res.Code, m.code, m.answer)
		}
		if hasPayload(m.method) && string(req.body) != "body of "+m.method {
			t.Errorf("%s: the server got %q", m.method, req.body)
		}
		if cf, err := req.opts.ContentFormat(); hasPayload(m.method) && (err != nil || cf != message.TextPlain) {
			t.Errorf("%s: Content-Format %v (%v), want the default text/plain", m.method, cf, err)
		}
	}
}

// TestCoAPOptionFlags: --option (hex, uint, text), --accept and
// --content-format reach the server as options.
func TestCoAPOptionFlags(t *testing.T) {
	s, uri := startRecordingServer(t)
	code, _, stderr := coapRun(t, nil, "post", uri+"/rec", "--psk", demoPSK, "--payload", "{}",
		"--content-format", "application/json", "--accept", "application/cbor",
		"--option", "65000,0xcafe", "--option", "14,3600", "--option", "2048,some text", "--option", "4,0x0102")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	req := s.last()
	for _, want := range []message.Option{
		{ID: message.ContentFormat, Value: []byte{50}}, {ID: message.Accept, Value: []byte{60}},
		{ID: 65000, Value: []byte{0xca, 0xfe}}, {ID: message.MaxAge, Value: []byte{0x0e, 0x10}},
		{ID: 2048, Value: []byte("some text")}, {ID: message.ETag, Value: []byte{1, 2}},
	} {
		got, err := req.opts.GetBytes(want.ID)
		if err != nil || !bytes.Equal(got, want.Value) {
			t.Errorf("option %d: %x (%v), want %x", want.ID, got, err, want.Value)
		}
	}
	// --option 12 stands in for the default Content-Format.
	if code, _, stderr := coapRun(t, nil, "put", uri+"/rec", "--psk", demoPSK, "--payload", "x", "--option", "12,42"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if cf, err := s.last().opts.ContentFormat(); err != nil || cf != message.AppOctets {
		t.Errorf("--option 12,42: Content-Format %v (%v)", cf, err)
	}
}

// TestCoAPNonAndBlockSize: --non sends NON messages, and --block-size sets
// the size of the blocks both ways, as the server sees them arrive; the
// handler gets the upload whole.
func TestCoAPNonAndBlockSize(t *testing.T) {
	s, uri := startRecordingServer(t)
	if code, stdout, stderr := coapRun(t, nil, "get", uri+"/rec", "--psk", demoPSK, "--non"); code != 0 || len(stdout) != 0 {
		t.Fatalf("exit %d, %q: %s", code, stdout, stderr)
	}
	msgs := s.reset()
	if len(msgs) != 1 || msgs[0].typ != message.NonConfirmable {
		t.Errorf("--non: the server got %+v, want one NON", msgs)
	}

	data := binaryPayload(3000)
	code, stdout, stderr := coapRun(t, data, "put", uri+"/rec", "--psk", demoPSK, "--block-size", "64", "--non")
	if code != 0 || !bytes.Equal(stdout, data) {
		t.Fatalf("exit %d, %d bytes back of %d: %s", code, len(stdout), len(data), stderr)
	}
	if got := s.last().body; !bytes.Equal(got, data) {
		t.Errorf("the handler got %d bytes, want %d", len(got), len(data))
	}
	msgs = s.reset()
	var up, down, con int
	for _, m := range msgs {
		if m.block1 == 64 {
			up++
		}
		if m.block2 == 64 {
			down++
		}
		if m.typ == message.Confirmable {
			con++
		}
	}
	// 47 blocks up (the last asks for 64-byte blocks back), then 46 more.
	if up != 47 || down != 47 || con != 0 {
		t.Errorf("--block-size 64 --non: %d Block1 and %d Block2 messages of 64 bytes, %d CON; want 47, 47, 0", up, down, con)
	}
}

// TestPutBlockSizeToServe: `put --block-size 64` of 3,000 bytes to /echo on
// `dtlsresume serve` gets all 3,000 back.
func TestPutBlockSizeToServe(t *testing.T) {
	_, addr := startServe(t)
	data := binaryPayload(3000)
	code, stdout, stderr := coapRun(t, data, "put", "coaps://"+addr+"/echo", "--psk", demoPSK, "--block-size", "64")
	if code != 0 || !bytes.Equal(stdout, data) {
		t.Fatalf("exit %d, %d bytes back of %d: %s", code, len(stdout), len(data), stderr)
	}
}

// TestLibcoapBlockwisePutToServe: coap-client-openssl -m put -b 64 -f FILE
// of 3,000 bytes to /echo on `dtlsresume serve` gets all 3,000 back (each
// block of libcoap has a token of its own).
func TestLibcoapBlockwisePutToServe(t *testing.T) {
	path := peers.Require(t, "coap-client-openssl")
	_, addr := startServe(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	data := binaryPayload(3000)
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command(path, "-B", "10", "-m", "put", "-b", "64", "-f", in, "-o", out, "-u", demoPSKIdentity,
		"-k", "secretPSK-dtlsresume", "coaps://"+addr+"/echo").CombinedOutput()
	if err != nil {
		t.Fatalf("coap-client: %v\n%s", err, b)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("coap-client got %d bytes back (%v), want %d", len(got), err, len(data))
	}
}

// TestCoAPBadFlags: each bad value is one line naming the flag, exit 2.
func TestCoAPBadFlags(t *testing.T) {
	uri := "coaps://127.0.0.1:1/x"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"get", uri, "--block-size", "100"}, "--block-size 100"},
		{[]string{"get", uri, "--block-size", "2048"}, "--block-size 2048"},
		{[]string{"get", uri, "--option", "nocomma"}, "nocomma"},
		{[]string{"get", uri, "--option", "70000,x"}, "70000"},
		{[]string{"get", uri, "--option", "17,text"}, "17,text"},
		{[]string{"get", uri, "--option", "4,0xzz"}, "0xzz"},
		{[]string{"get", uri, "--option", "23,1"}, "--block-size"},
		{[]string{"get", uri, "--option", "4,"}, "4,"},
		{[]string{"get", uri, "--accept", "text/nonsense"}, "--accept \"text/nonsense\""},
		{[]string{"put", uri, "--content-format", "application/json", "--option", "12,0"}, "--content-format"},
		{[]string{"put", uri, "--payload", "x", "--payload-file", "/etc/hostname"}, "--payload-file"},
		{[]string{"put", uri, "--payload-file", "/nonexistent/file"}, "/nonexistent/file"},
		{[]string{"get", uri, "-o", "/nonexistent/dir/out"}, "-o /nonexistent/dir/out"},
		{[]string{"delete", uri, "--payload", "x"}, "-payload"},
		{[]string{"observe", uri, "--count", "-1"}, "--count -1"},
	} {
		args := append(c.args, "--psk", demoPSK)
		code, stdout, stderr := runCmd(args...)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, c.want) || stdout != "" {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line with %q", c.args, code, stderr, c.want)
		}
	}
}

func TestParseOption(t *testing.T) {
	for in, want := range map[string]message.Option{
		"4,0x0a0B":     {ID: 4, Value: []byte{0x0a, 0x0b}},
		"12,0":         {ID: 12, Value: []byte{}},
		"60000,hello":  {ID: 60000, Value: []byte("hello")},
		"14,65536":     {ID: 14, Value: []byte{1, 0, 0}},
		"292,0x":       {ID: 292, Value: []byte{}},
		"11,a,b":       {ID: 11, Value: []byte("a,b")},
		"258,0x1a":     {ID: 258, Value: []byte{0x1a}},
		"65000,0XCAFE": {ID: 65000, Value: []byte{0xca, 0xfe}},
	} {
		got, err := parseOption(in)
		if err != nil || got.ID != want.ID || !bytes.Equal(got.Value, want.Value) {
			t.Errorf("parseOption(%q) = %v %x, %v; want %v %x", in, got.ID, got.Value, err, want.ID, want.Value)
		}
	}
}

// FuzzParseOption: no --option value makes the parser panic, and what it
// accepts fits its option's length limits.
func FuzzParseOption(f *testing.F) {
	for _, s := range []string{"4,0x0a0b", "12,0", "60000,text", "14,4294967295", "292,0x", ",", "0,x", "65535,0X", "17,99999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := parseOption(s)
		if err != nil {
			return
		}
		if def, ok := message.CoapOptionDefs[o.ID]; ok && (uint32(len(o.Value)) < def.MinLen || uint32(len(o.Value)) > def.MaxLen) {
			t.Fatalf("parseOption(%q) = %d with %d bytes", s, o.ID, len(o.Value))
		}
		if o.ID == 0 || o.ID == message.Block1 || o.ID == message.Block2 {
			t.Fatalf("parseOption(%q) = option %d", s, o.ID)
		}
	})
}
