package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/internal/peers"
	"github.com/dtlsresume/dtlsresume/internal/testpki"
)

var binary string

// TestMain builds the command once so that tests can run it as a process,
// the way users and scripts do.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dtlsresume-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "dtlsresume")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func runCmd(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, strings.NewReader(""), &o, &e)
	return code, o.String(), e.String()
}

func TestBadUsageGivesOneLineAndExit2(t *testing.T) {
	cases := [][]string{
		{"frobnicate"},
		{"dial", "--psk", "nocolon"},
		{"dial", "--psk", "id:zz"},
		{"dial", "--addr", "127.0.0.1:1", "--message", "x"}, // no credentials
		{"dial", "--psk", "id:00", "--suites", "RC4-MD5"},
		{"dial", "--psk", "id:00", "--ca", "/nonexistent/ca.pem"},
		{"listen", "--cert", "/nonexistent.pem", "--key", "/nonexistent.key"},
		{"listen", "--cert", "only-cert.pem"},
		{"listen", "--mtu", "100"},
		{"listen", "--log-level", "loud"},
		{"bench", "-n", "0"},
		{"demo", "extra"},
		{"get", "http://example.com/x", "--psk", "id:00"},
		{"get", "coaps:///nohost", "--psk", "id:00"},
		{"get", "--psk", "id:00"},
		{"put", "coaps://127.0.0.1/echo", "--psk", "id:00", "--content-format", "text/nonsense"},
		{"serve", "--resumption", "bogus"},
		{"dial", "--bogus"},
		{"serve", "--store", "nosuch:thing"},
	}
	for _, args := range cases {
		code, _, stderr := runCmd(args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, stderr)
		}
		if lines := strings.Count(strings.TrimSpace(stderr), "\n"); args[0] != "frobnicate" && lines != 0 {
			t.Errorf("%v: want one line on stderr, got %q", args, stderr)
		}
		if !strings.HasPrefix(stderr, "dtlsresume") {
			t.Errorf("%v: stderr %q does not name the command", args, stderr)
		}
	}
}

func TestDialFailsClearlyWhenNobodyAnswers(t *testing.T) {
	// Nothing listens: the ICMP port unreachable fails the dial at once.
	port := peers.FreeUDPPort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	start := time.Now()
	code, _, stderr := runCmd("dial", "--addr", addr, "--psk", "id:0102", "--message", "x", "--timeout", "10s")
	if code != 1 || !strings.Contains(stderr, addr) || !strings.Contains(stderr, "connection refused") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a closed port took %v to fail", d)
	}
	// Something listens but never answers: the timeout names the address
	// and what the client waited for.
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	code, _, stderr = runCmd("dial", "--addr", silent.LocalAddr().String(), "--psk", "id:0102", "--message", "x", "--timeout", "1s")
	if want := "handshake with " + silent.LocalAddr().String() + " timed out waiting for ServerHello"; code != 1 || !strings.Contains(stderr, want) {
		t.Fatalf("exit %d, stderr %q, want %q", code, stderr, want)
	}
}

// TestDialVerbosePrintsFlights: -v prints every handshake message each way,
// as s_client -msg does, then the summary line.
func TestDialVerbosePrintsFlights(t *testing.T) {
	_, addr := startListen(t)
	code, stdout, stderr := runCmd("dial", "--addr", addr, "--psk", demoPSKIdentity+":"+demoPSKHex, "--message", "hi", "-v")
	if code != 0 || stdout != "hi\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	for _, want := range []string{">>> ClientHello, ", "<<< HelloVerifyRequest, ", "<<< ServerHello, ", "<<< ServerHelloDone, 0 bytes",
		">>> ClientKeyExchange, ", ">>> ChangeCipherSpec, 1 bytes", ">>> Finished, 12 bytes, epoch 1", "<<< ChangeCipherSpec", "<<< Finished, 12 bytes, epoch 1", "suite="} {
		if !strings.Contains(stderr, want) {
			t.Errorf("-v output lacks %q:\n%s", want, stderr)
		}
	}
}

// startListen runs `dtlsresume listen` as a process and returns its address.
func startListen(t *testing.T, args ...string) (*peers.Process, string) {
	t.Helper()
	p := peers.Start(t, binary, append([]string{"listen", "--addr", "127.0.0.1:0"}, args...)...)
	m, err := p.WaitForRegexp(regexp.MustCompile(`listening on udp (\S+)`), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return p, m[1]
}

// TestOpenSSLClientAgainstListen is the acceptance check: openssl
// s_client -dtls1_2 with a PSK completes a handshake and an echo against
// `dtlsresume listen`.
func TestOpenSSLClientAgainstListen(t *testing.T) {
	openssl := peers.Require(t, "openssl")
	key := "00112233445566778899aabbccddeeff"
	srv, addr := startListen(t, "--psk", "device7:"+key)
	cl := peers.Start(t, openssl, "s_client", "-dtls1_2", "-connect", addr, "-psk", key, "-psk_identity", "device7",
		"-cipher", "PSK-AES128-CCM8@SECLEVEL=0")
	if err := cl.WaitFor("New, TLSv1.2, Cipher is PSK-AES128-CCM8", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := cl.WriteStdin("echo me please\n"); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitFor("echo me please", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := srv.WaitFor("suite=TLS_PSK_WITH_AES_128_CCM_8", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestDialAgainstOpenSSLServer is the other acceptance check: `dtlsresume
// dial` completes ECDHE-ECDSA-CCM8 against openssl s_server -dtls1_2 and
// verifies its certificate.
func TestDialAgainstOpenSSLServer(t *testing.T) {
	openssl := peers.Require(t, "openssl")
	p := testpki.New(t)
	ca, certFile, keyFile := p.CAFile, p.CertFile, p.KeyFile
	port := peers.FreeUDPPort(t)
	srv := peers.Start(t, openssl, "s_server", "-dtls1_2", "-accept", "127.0.0.1:"+strconv.Itoa(port),
		"-cert", certFile, "-key", keyFile, "-cipher", "ECDHE-ECDSA-AES128-CCM8@SECLEVEL=0", "-naccept", "1")
	peers.WaitUDPListening(t, port, 10*time.Second)
	// s_server answers with what arrives on its stdin: send the reply once
	// our message shows up.
	go func() {
		if srv.WaitFor("hello from dial", 10*time.Second) == nil {
			_ = srv.WriteStdin("reply from openssl\n")
		}
	}()
	cmd := exec.Command(binary, "dial", "--addr", "127.0.0.1:"+strconv.Itoa(port), "--ca", ca,
		"--suites", "ECDHE-ECDSA-AES128-CCM8", "--message", "hello from dial", "--json")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dial: %v\n%s", err, out)
	}
	var res dialResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("json %q: %v", out, err)
	}
	if res.Suite != "TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8" || res.Reply != "reply from openssl\n" || res.Resumed || res.DatagramsSent != 3 {
		t.Fatalf("result %+v", res)
	}
	if err := srv.WaitFor("CIPHER is ECDHE-ECDSA-AES128-CCM8", time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestListenAndDialTogether runs both commands as processes with the
// embedded demo credentials.
func TestListenAndDialTogether(t *testing.T) {
	_, addr := startListen(t)
	out, err := exec.Command(binary, "dial", "--addr", addr, "--psk", "dtlsresume:"+hex.EncodeToString([]byte("secretPSK-dtlsresume")), "--message", "round trip", "-v").CombinedOutput()
	if err != nil {
		t.Fatalf("dial: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "round trip\n") || !strings.Contains(string(out), "suite=TLS_PSK_WITH_AES_128_CCM_8 resumed=false resumption=session_id datagrams=3/3") {
		t.Fatalf("output %q", out)
	}
}

// TestDialSessionFileResumesAcrossRuns: `dial --session FILE` keeps the
// session between processes, by ticket and by session ID.
func TestDialSessionFileResumesAcrossRuns(t *testing.T) {
	_, addr := startListen(t)
	psk := "dtlsresume:" + hex.EncodeToString([]byte("secretPSK-dtlsresume"))
	for _, mech := range []string{"session_ticket", "session_id"} {
		file := filepath.Join(t.TempDir(), "session")
		for i, wantResumed := range []bool{false, true, true} {
			out, err := exec.Command(binary, "dial", "--addr", addr, "--psk", psk, "--resumption", mech,
				"--session", file, "--message", "x", "--json").Output()
			if err != nil {
				t.Fatalf("%s run %d: %v", mech, i, err)
			}
			var res dialResult
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatal(err)
			}
			if res.Resumed != wantResumed || res.Resumption != mech {
				t.Fatalf("%s run %d: resumed=%v resumption=%s", mech, i, res.Resumed, res.Resumption)
			}
			if wantResumed && (res.DatagramsSent != 2 || res.DatagramsReceived != 1) {
				t.Errorf("%s run %d: %d/%d datagrams, want 2/1", mech, i, res.DatagramsSent, res.DatagramsReceived)
			}
			if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("session file: %v %v", fi, err)
			}
		}
	}
}

// TestDialClientStateFreshProcesses is the client_state promise: each dial
// is a new process that holds nothing but its PSK, and from the second run
// on it resumes in three datagrams because the server kept its ticket.
func TestDialClientStateFreshProcesses(t *testing.T) {
	_, addr := startListen(t, "--resumption", "client_state,session_ticket,session_id")
	psk := "dtlsresume:" + hex.EncodeToString([]byte("secretPSK-dtlsresume"))
	for i, wantResumed := range []bool{false, true, true} {
		out, err := exec.Command(binary, "dial", "--addr", addr, "--psk", psk, "--resumption", "client_state",
			"--message", "x", "--json").Output()
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		var res dialResult
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatal(err)
		}
		if res.Resumed != wantResumed || res.Resumption != "client_state" {
			t.Fatalf("run %d: resumed=%v resumption=%s", i, res.Resumed, res.Resumption)
		}
		if wantResumed && (res.DatagramsSent != 2 || res.DatagramsReceived != 1) {
			t.Errorf("run %d: %d/%d datagrams, want 2/1", i, res.DatagramsSent, res.DatagramsReceived)
		}
	}
}

// TestDemo runs the README's first command and checks its rows.
func TestDemo(t *testing.T) {
	code, out, stderr := runCmd("demo", "--json")
	if code != 0 {
		t.Fatalf("demo exit %d: %s", code, stderr)
	}
	var rows []demoRow
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var r demoRow
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	if len(rows) != 2*len(demoTypes) {
		t.Fatalf("%d rows, want %d", len(rows), 2*len(demoTypes))
	}
	for i, r := range rows {
		typ := demoTypes[i/2]
		resumed := i%2 == 1 && typ.String() != "none"
		if r.Type != typ.String() || r.Resumed != resumed {
			t.Errorf("row %d: %+v", i, r)
		}
		if resumed && (r.DatagramsSent != 2 || r.DatagramsReceived != 1) {
			t.Errorf("row %d: resumed in %d/%d datagrams", i, r.DatagramsSent, r.DatagramsReceived)
		}
		switch typ.String() {
		case "client_state":
			if r.ClientStateBytes != 0 || r.ServerStateBytes == 0 {
				t.Errorf("client_state row %d keeps %d/%d bytes (client/server)", i, r.ClientStateBytes, r.ServerStateBytes)
			}
		case "session_ticket":
			if r.ServerStateBytes != 0 || r.ClientStateBytes == 0 {
				t.Errorf("session_ticket row %d keeps %d/%d bytes", i, r.ClientStateBytes, r.ServerStateBytes)
			}
		case "session_id":
			if r.ServerStateBytes == 0 || r.ClientStateBytes == 0 {
				t.Errorf("session_id row %d keeps %d/%d bytes", i, r.ClientStateBytes, r.ServerStateBytes)
			}
		}
	}
}

// startServe runs `dtlsresume serve` as a process and returns its address.
func startServe(t *testing.T, args ...string) (*peers.Process, string) {
	t.Helper()
	p := peers.Start(t, binary, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	m, err := p.WaitForRegexp(regexp.MustCompile(`serving CoAP over DTLS on udp (\S+)`), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return p, m[1]
}

// TestLibcoapClientsAgainstServe: libcoap's coap-client (OpenSSL and GnuTLS
// builds) gets answers from `dtlsresume serve` on its embedded defaults.
func TestLibcoapClientsAgainstServe(t *testing.T) {
	_, addr := startServe(t)
	for _, bin := range []string{"coap-client-openssl", "coap-client-gnutls"} {
		t.Run(bin, func(t *testing.T) {
			path := peers.Require(t, bin)
			out, err := exec.Command(path, "-B", "10", "-m", "put", "-e", "from "+bin, "-u", demoPSKIdentity,
				"-k", "secretPSK-dtlsresume", "coaps://"+addr+"/echo").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "from "+bin) {
				t.Fatalf("PUT /echo: %v\n%s", err, out)
			}
			out, err = exec.Command(path, "-B", "10", "-m", "get", "-u", demoPSKIdentity,
				"-k", "secretPSK-dtlsresume", "coaps://"+addr+"/time").CombinedOutput()
			if err != nil {
				t.Fatalf("GET /time: %v\n%s", err, out)
			}
			if _, err := time.Parse(time.RFC3339, strings.TrimSpace(string(out))); err != nil {
				t.Fatalf("GET /time returned %q", out)
			}
		})
	}
}

// TestGetAgainstLibcoapServers: `dtlsresume get` with a PSK against
// coap-server-openssl and coap-server-gnutls (DTLS on port P+1).
func TestGetAgainstLibcoapServers(t *testing.T) {
	for _, bin := range []string{"coap-server-openssl", "coap-server-gnutls"} {
		t.Run(bin, func(t *testing.T) {
			path := peers.Require(t, bin)
			port := peers.FreeUDPPorts(t, 2)
			peers.Start(t, path, "-A", "127.0.0.1", "-p", strconv.Itoa(port), "-k", "libcoap-key", "-h", "hint")
			peers.WaitUDPListening(t, port+1, 10*time.Second)
			out, err := exec.Command(binary, "get", "coaps://127.0.0.1:"+strconv.Itoa(port+1)+"/",
				"--psk", "client1:"+hex.EncodeToString([]byte("libcoap-key"))).Output()
			if err != nil {
				t.Fatalf("get: %v\n%s", err, out)
			}
			if !strings.HasPrefix(string(out), "This is a test server made with libcoap") {
				t.Fatalf("payload %q", out)
			}
		})
	}
}

// TestGetClientStateFreshProcess: a CoAP request right after a client_state
// resumption, from a fresh client process that holds only its PSK.
func TestGetClientStateFreshProcess(t *testing.T) {
	_, addr := startServe(t)
	psk := "dtlsresume:" + hex.EncodeToString([]byte("secretPSK-dtlsresume"))
	for i, wantResumed := range []bool{false, true} {
		out, err := exec.Command(binary, "put", "coaps://"+addr+"/echo", "--psk", psk, "--resumption", "client_state",
			"--payload", "reading "+strconv.Itoa(i), "--json").Output()
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		var res coapResult
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatal(err)
		}
		if res.Resumed != wantResumed || res.Resumption != "client_state" || res.Payload != "reading "+strconv.Itoa(i) {
			t.Fatalf("run %d: %+v", i, res)
		}
		if wantResumed && (res.DatagramsSent != 2 || res.DatagramsReceived != 1) {
			t.Errorf("run %d: %d/%d datagrams", i, res.DatagramsSent, res.DatagramsReceived)
		}
	}
}

// TestObserveCommand prints notifications as they come.
func TestObserveCommand(t *testing.T) {
	_, addr := startServe(t)
	psk := "dtlsresume:" + hex.EncodeToString([]byte("secretPSK-dtlsresume"))
	out, err := exec.Command(binary, "observe", "coaps://"+addr+"/time", "--psk", psk, "--count", "3").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines: %q", len(lines), out)
	}
	for _, l := range lines {
		if _, err := time.Parse(time.RFC3339, l); err != nil {
			t.Fatalf("line %q", l)
		}
	}
}

// TestListenLogsHandshakeFailures: a failed handshake is logged once at
// INFO with the peer, the identity it claimed, the stage and a bounded
// reason, in text or JSON; the key never appears.
func TestListenLogsHandshakeFailures(t *testing.T) {
	p, addr := startListen(t, "--log-format", "json")
	// An unknown identity is answered as a wrong key (RFC 4279 §2).
	code, _, stderr := runCmd("dial", "--addr", addr, "--psk", "intruder:0102030405", "--message", "x", "--timeout", "5s", "--retransmit", "100ms")
	if code != 1 || !strings.Contains(stderr, "decrypt_error") {
		t.Fatalf("dial: exit %d, stderr %q", code, stderr)
	}
	m, err := p.WaitForRegexp(regexp.MustCompile(`\{[^\n]*"msg":"handshake failed"[^\n]*\}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	if err := json.Unmarshal([]byte(m[0]), &line); err != nil {
		t.Fatalf("%v: %s", err, m[0])
	}
	if line["level"] != "INFO" || line["identity"] != "intruder" || line["reason"] != "unknown_identity" ||
		!strings.HasPrefix(fmt.Sprint(line["peer"]), "127.0.0.1:") || !strings.Contains(fmt.Sprint(line["stage"]), "Finished") {
		t.Fatalf("log line %s", m[0])
	}
	if strings.Contains(m[0], "0102030405") {
		t.Fatal("the log line holds key material")
	}
}

// TestDialWrongPSKNamesTheLikelyCause: a wrong key ends with the server's
// decrypt_error and a message that says what it most likely means.
func TestDialWrongPSKNamesTheLikelyCause(t *testing.T) {
	_, addr := startListen(t)
	code, _, stderr := runCmd("dial", "--addr", addr, "--psk", demoPSKIdentity+":00112233445566778899aabbccddeeff", "--message", "x",
		"--timeout", "5s", "--retransmit", "100ms")
	if code != 1 || !strings.Contains(stderr, "decrypt_error") || !strings.Contains(stderr, "a wrong PSK") || !strings.Contains(stderr, addr) {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

// TestListenDialWithConnectionIDs: --cid on both ends negotiates RFC 9146
// connection IDs; a bad length is a usage error.
func TestListenDialWithConnectionIDs(t *testing.T) {
	_, addr := startListen(t, "--cid", "8")
	for _, cid := range []string{"0", "4"} {
		code, stdout, stderr := runCmd("dial", "--addr", addr, "--psk", demoPSKIdentity+":"+demoPSKHex, "--cid", cid, "--message", "cid "+cid)
		if code != 0 || stdout != "cid "+cid+"\n" {
			t.Fatalf("--cid %s: exit %d, stdout %q, stderr %q", cid, code, stdout, stderr)
		}
	}
	if code, _, stderr := runCmd("dial", "--addr", addr, "--psk", demoPSKIdentity+":"+demoPSKHex, "--cid", "256", "--message", "x"); code != 2 || !strings.Contains(stderr, "--cid 256") {
		t.Fatalf("--cid 256: exit %d, stderr %q", code, stderr)
	}
}

// TestDialStreamsStdinLines: without --message, dial sends each stdin line
// as it is read and prints each reply as it comes, so one session can be
// driven interactively: the second line is written only after the first
// reply was seen.
func TestDialStreamsStdinLines(t *testing.T) {
	_, addr := startListen(t, "--cid", "4")
	p := peers.Start(t, binary, "dial", "--addr", addr, "--psk", demoPSKIdentity+":"+demoPSKHex, "--cid", "0", "-v")
	for _, line := range []string{"first line", "second line", "third line"} {
		if err := p.WriteStdin(line + "\n"); err != nil {
			t.Fatal(err)
		}
		if err := p.WaitFor(line+"\n", 5*time.Second); err != nil {
			t.Fatalf("no reply to %q: %v", line, err)
		}
	}
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(5 * time.Second); err != nil || code != 0 {
		t.Fatalf("exit %d, %v: %s", code, err, p.Output())
	}
	if out := p.Output(); !strings.Contains(out, "resumed=false") || strings.Count(out, "handshake=") != 1 {
		t.Fatalf("one session expected:\n%s", out)
	}
}
