package peers_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/internal/peers"
)

// fakeTB stands in for a testing.TB to observe Fatalf, Skipf, Logf and
// Cleanup; everything else goes to the real test.
type fakeTB struct {
	testing.TB
	failed bool

	mu       sync.Mutex
	fatal    string
	skip     string
	logs     []string
	cleanups []func()
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.mu.Lock()
	f.skip = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Logf(format string, args ...any) {
	f.mu.Lock()
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	f.cleanups = append(f.cleanups, fn)
	f.mu.Unlock()
}

func (f *fakeTB) Failed() bool { return f.failed }

func (f *fakeTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// runFake runs fn with a fakeTB in its own goroutine, as Fatalf and Skipf
// end that goroutine.
func runFake(t *testing.T, failed bool, fn func(tb testing.TB)) *fakeTB {
	f := &fakeTB{TB: t, failed: failed}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

func TestRequire(t *testing.T) {
	if p := peers.Require(t, "sh"); !filepath.IsAbs(p) {
		t.Fatalf("Require(sh) = %q, want an absolute path", p)
	}

	const missing = "dtlsresume-no-such-peer"
	t.Setenv(peers.AllowMissingEnv, "")
	f := runFake(t, false, func(tb testing.TB) { peers.Require(tb, missing) })
	if f.fatal == "" || f.skip != "" || !strings.Contains(f.fatal, missing) {
		t.Fatalf("missing peer without %s: fatal %q, skip %q; want a failure", peers.AllowMissingEnv, f.fatal, f.skip)
	}

	t.Setenv(peers.AllowMissingEnv, "1")
	f = runFake(t, false, func(tb testing.TB) { peers.Require(tb, missing) })
	if f.skip == "" || f.fatal != "" {
		t.Fatalf("missing peer with %s=1: fatal %q, skip %q; want a skip", peers.AllowMissingEnv, f.fatal, f.skip)
	}
}

func TestFreeUDPPort(t *testing.T) {
	port := peers.FreeUDPPort(t)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatalf("binding the free port %d: %v", port, err)
	}
	c.Close()

	base := peers.FreeUDPPorts(t, 2)
	for _, p := range []int{base, base + 1} {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
		if err != nil {
			t.Fatalf("binding free port %d of %d,%d: %v", p, base, base+1, err)
		}
		c.Close()
	}
}

func TestWaitUDPListening(t *testing.T) {
	c4, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	peers.WaitUDPListening(t, c4.LocalAddr().(*net.UDPAddr).Port, time.Second)

	if c6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err == nil {
		defer c6.Close()
		port := c6.LocalAddr().(*net.UDPAddr).Port
		peers.WaitUDPListening(t, port, time.Second)
	} else {
		t.Logf("no IPv6 loopback: %v", err)
	}

	port := peers.FreeUDPPort(t)
	start := time.Now()
	f := runFake(t, false, func(tb testing.TB) { peers.WaitUDPListening(tb, port, 100*time.Millisecond) })
	if f.fatal == "" {
		t.Fatalf("WaitUDPListening on the unbound port %d did not fail", port)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
		t.Fatalf("WaitUDPListening gave up after %v, want about 100ms", d)
	}
}

func TestProcessStdinAndOutput(t *testing.T) {
	p := peers.Start(t, "cat")
	if err := p.WriteStdin("hello cat\n"); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor("hello cat", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	if err := p.CloseStdin(); err != nil {
		t.Fatalf("second CloseStdin: %v", err)
	}
	if err := p.WriteStdin("late"); err == nil {
		t.Fatal("WriteStdin after CloseStdin succeeded")
	}
	code, err := p.Wait(5 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("Wait = %d, %v; want 0, nil", code, err)
	}
	if got := p.Output(); got != "hello cat\n" {
		t.Fatalf("Output = %q", got)
	}
}

func TestProcessMergesStderrAndReportsExitCode(t *testing.T) {
	p := peers.Start(t, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3")
	code, err := p.Wait(5 * time.Second)
	if err != nil || code != 3 {
		t.Fatalf("Wait = %d, %v; want 3, nil", code, err)
	}
	out := p.Output()
	if !strings.Contains(out, "to-stdout\n") || !strings.Contains(out, "to-stderr\n") {
		t.Fatalf("Output = %q, want both streams", out)
	}
}

func TestWaitForTimeoutCarriesOutput(t *testing.T) {
	p := peers.Start(t, "cat")
	if err := p.WriteStdin("some output\n"); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitFor("some output", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := p.WaitFor("never printed", 100*time.Millisecond)
	if err == nil {
		t.Fatal("WaitFor found text that was never printed")
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > 2*time.Second {
		t.Fatalf("WaitFor returned after %v, want about 100ms", d)
	}
	if !strings.Contains(err.Error(), "some output") || !strings.Contains(err.Error(), "never printed") {
		t.Fatalf("error %q lacks the pattern or the output", err)
	}
	if _, err := p.Wait(50 * time.Millisecond); err == nil {
		t.Fatal("Wait on a running process did not time out")
	}
}

func TestWaitForReturnsWhenProcessExits(t *testing.T) {
	p := peers.Start(t, "sh", "-c", "echo bye; exit 2")
	start := time.Now()
	err := p.WaitFor("never printed", 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "bye") {
		t.Fatalf("WaitFor = %v, want an error about the exit carrying the output", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("WaitFor took %v after the process exited", d)
	}
	// Text printed just before exiting is still found.
	p2 := peers.Start(t, "sh", "-c", "echo last words")
	if err := p2.WaitFor("last words", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestWaitForNAndRegexp(t *testing.T) {
	p := peers.Start(t, "sh", "-c", "echo 'port=4433'; sleep 0.1; echo tick; sleep 0.1; echo tick; sleep 100")
	m, err := p.WaitForRegexp(regexp.MustCompile(`port=(\d+)`), 5*time.Second)
	if err != nil || len(m) != 2 || m[1] != "4433" {
		t.Fatalf("WaitForRegexp = %q, %v", m, err)
	}
	if err := p.WaitForN("tick", 2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.WaitForN("tick", 3, 100*time.Millisecond); err == nil {
		t.Fatal("WaitForN found a third tick")
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(5 * time.Second); err == nil || code != -1 {
		t.Fatalf("Wait after Kill = %d, %v; want -1 and a signal error", code, err)
	}
}

// processGone reports whether pid has exited (or is a zombie).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

func TestCleanupKillsProcessGroup(t *testing.T) {
	var shPid, childPid int
	t.Run("inner", func(t *testing.T) {
		p := peers.Start(t, "sh", "-c", "sleep 300 & echo child=$!; wait")
		m, err := p.WaitForRegexp(regexp.MustCompile(`child=(\d+)`), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		shPid = p.Pid()
		childPid, _ = strconv.Atoi(m[1])
	})
	if shPid == 0 || childPid == 0 {
		t.Fatal("inner test did not start the processes")
	}
	deadline := time.Now().Add(5 * time.Second)
	for !processGone(shPid) || !processGone(childPid) {
		if time.Now().After(deadline) {
			t.Fatalf("after cleanup: sh %d gone %v, its child %d gone %v",
				shPid, processGone(shPid), childPid, processGone(childPid))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCleanupLogsOutputOnFailure(t *testing.T) {
	for _, failed := range []bool{false, true} {
		var p *peers.Process
		f := runFake(t, failed, func(tb testing.TB) {
			p = peers.Start(tb, "sh", "-c", "echo marker-4711; sleep 300")
			if err := p.WaitFor("marker-4711", 5*time.Second); err != nil {
				t.Error(err)
			}
		})
		start := time.Now()
		f.runCleanups()
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("cleanup took %v", d)
		}
		if code, err := p.Wait(0); err == nil || code != -1 {
			t.Errorf("after cleanup Wait = %d, %v; want killed", code, err)
		}
		logged := strings.Contains(strings.Join(f.logs, "\n"), "output of sh")
		if logged != failed {
			t.Errorf("failed=%v: output logged %v; logs %q", failed, logged, f.logs)
		}
	}
}

// The peers. What they print was observed on Debian 12 with OpenSSL 3.0.22
// and GnuTLS 3.7.9; the smoke tests below check it.
const (
	pskHex      = "0102030405060708090a0b0c0d0e0f10"
	pskIdentity = "client1"
	peerTimeout = 15 * time.Second
)

// TestOpenSSLPSKSmoke drives s_server and s_client with a PSK CCM-8 suite:
// a full handshake, a line each way, then a session resumption.
//
// Observed with OpenSSL 3.0.22:
//   - PSK-AES128-CCM8 needs no "@SECLEVEL=0"; with it, it works the same.
//   - s_client prints "New, TLSv1.2, Cipher is PSK-AES128-CCM8" after a full
//     handshake and "Reused, TLSv1.2, Cipher is PSK-AES128-CCM8" after a
//     resumption (-sess_out / -sess_in). Match the whole line: a failed
//     connection also prints "Cipher is" ("New, (NONE), Cipher is (NONE)").
//   - s_server prints "CIPHER is PSK-AES128-CCM8" per handshake, followed by
//     "Reused session-id" on a resumption, the lines it receives verbatim, and
//     "DONE" when the client closes; it then accepts the next connection. Its
//     "shutting down SSL" / "CONNECTION CLOSED" lines are buffered: they show
//     up only with later output or at exit, so do not wait for them.
//   - s_client exits with code 0 printing "DONE" when its stdin closes.
//   - s_server exits with code 0 when its stdin closes (between connections).
func TestOpenSSLPSKSmoke(t *testing.T) {
	for _, cipher := range []string{"PSK-AES128-CCM8", "PSK-AES128-CCM8@SECLEVEL=0"} {
		t.Run(cipher, func(t *testing.T) { openSSLPSKSmoke(t, cipher) })
	}
}

func openSSLPSKSmoke(t *testing.T, cipher string) {
	openssl := peers.Require(t, "openssl")
	port := peers.FreeUDPPort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	sess := filepath.Join(t.TempDir(), "session.pem")
	psk := []string{"-psk", pskHex, "-psk_identity", pskIdentity, "-cipher", cipher}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	srv := peers.Start(t, openssl, append([]string{"s_server", "-dtls1_2", "-accept", addr, "-nocert"}, psk...)...)
	peers.WaitUDPListening(t, port, peerTimeout)

	cli := peers.Start(t, openssl, append([]string{"s_client", "-dtls1_2", "-connect", addr, "-sess_out", sess}, psk...)...)
	must(cli.WaitFor("New, TLSv1.2, Cipher is PSK-AES128-CCM8", peerTimeout))
	must(srv.WaitFor("CIPHER is PSK-AES128-CCM8", peerTimeout))
	must(cli.WriteStdin("hello from s_client\n"))
	must(srv.WaitFor("hello from s_client", peerTimeout))
	must(srv.WriteStdin("hello from s_server\n"))
	must(cli.WaitFor("hello from s_server", peerTimeout))
	must(cli.CloseStdin())
	code, err := cli.Wait(peerTimeout)
	if err != nil || code != 0 {
		t.Fatalf("s_client after stdin closed: %d, %v", code, err)
	}
	must(cli.WaitFor("DONE", 0))
	must(srv.WaitFor("DONE", peerTimeout))

	// Resumption with the saved session.
	cli2 := peers.Start(t, openssl, append([]string{"s_client", "-dtls1_2", "-connect", addr, "-sess_in", sess}, psk...)...)
	must(cli2.WaitFor("Reused, TLSv1.2, Cipher is PSK-AES128-CCM8", peerTimeout))
	must(srv.WaitFor("Reused session-id", peerTimeout))
	must(srv.WaitForN("CIPHER is PSK-AES128-CCM8", 2, peerTimeout))
	must(cli2.WriteStdin("resumed hello\n"))
	must(srv.WaitFor("resumed hello", peerTimeout))
	must(cli2.CloseStdin())
	if code, err := cli2.Wait(peerTimeout); err != nil || code != 0 {
		t.Fatalf("second s_client: %d, %v", code, err)
	}
	must(srv.WaitForN("DONE", 2, peerTimeout))

	must(srv.CloseStdin())
	if code, err := srv.Wait(peerTimeout); err != nil || code != 0 {
		t.Fatalf("s_server after stdin closed: %d, %v", code, err)
	}
	// Only now, at exit, is the rest of its output flushed.
	must(srv.WaitForN("CONNECTION CLOSED", 2, 0))
	t.Logf("s_server output:\n%s", srv.Output())
}

// TestGnuTLSPSKSmoke drives gnutls-serv (echo mode) and gnutls-cli with a
// PSK CCM-8 suite, a resumption and an echoed line.
//
// Observed with GnuTLS 3.7.9:
//   - Adding "+AES-128-CCM-8" to NORMAL only enables CCM-8: NORMAL prefers
//     AES-256-GCM, which is what gets negotiated. To force CCM-8 the client
//     uses "NORMAL:-KX-ALL:+PSK:-CIPHER-ALL:+AES-128-CCM-8".
//   - gnutls-cli prints "- Description: (DTLS1.2-X.509)-(PSK)-(AES-128-CCM-8)",
//     "- Handshake was completed", and with --resume, after reconnecting,
//     "- Resume Handshake was completed" and "*** This is a resumed session";
//     then "- Simple Client Mode:" and it sends stdin lines. It prints the
//     same Session ID for both connections.
//   - gnutls-serv --echo prints "*** Processing N bytes command: LINE" and
//     echoes LINE back; it listens on 0.0.0.0 and :: (no bind address).
//   - gnutls-cli exits with code 0 when its stdin closes.
func TestGnuTLSPSKSmoke(t *testing.T) {
	serv := peers.Require(t, "gnutls-serv")
	cliBin := peers.Require(t, "gnutls-cli")
	pskFile := filepath.Join(t.TempDir(), "psk.txt")
	if err := os.WriteFile(pskFile, []byte(pskIdentity+":"+pskHex+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	port := peers.FreeUDPPort(t)
	srv := peers.Start(t, serv, "--udp", "-p", strconv.Itoa(port), "--pskpasswd", pskFile,
		"--priority", "NORMAL:+AES-128-CCM-8:+PSK", "--echo")
	peers.WaitUDPListening(t, port, peerTimeout)

	cli := peers.Start(t, cliBin, "--udp", "-p", strconv.Itoa(port), "127.0.0.1",
		"--pskusername", pskIdentity, "--pskkey", pskHex,
		"--priority", "NORMAL:-KX-ALL:+PSK:-CIPHER-ALL:+AES-128-CCM-8", "--resume")
	must(cli.WaitFor("- Description: (DTLS1.2-X.509)-(PSK)-(AES-128-CCM-8)", peerTimeout))
	must(cli.WaitFor("- Resume Handshake was completed", peerTimeout))
	must(cli.WaitFor("*** This is a resumed session", peerTimeout))
	must(cli.WaitForN("(PSK)-(AES-128-CCM-8)", 2, peerTimeout))
	must(cli.WaitFor("- Simple Client Mode:", peerTimeout))
	must(cli.WriteStdin("ping gnutls\n"))
	must(srv.WaitFor("*** Processing 12 bytes command: ping gnutls", peerTimeout))
	must(cli.WaitFor("ping gnutls", peerTimeout)) // the echo
	must(cli.CloseStdin())
	if code, err := cli.Wait(peerTimeout); err != nil || code != 0 {
		t.Fatalf("gnutls-cli after stdin closed: %d, %v", code, err)
	}

	// NORMAL plus CCM-8 still picks AES-256-GCM.
	cli2 := peers.Start(t, cliBin, "--udp", "-p", strconv.Itoa(port), "127.0.0.1",
		"--pskusername", pskIdentity, "--pskkey", pskHex, "--priority", "NORMAL:+AES-128-CCM-8:+PSK")
	must(cli2.WaitFor("- Description: (DTLS1.2-X.509)-(PSK)-(AES-256-GCM)", peerTimeout))
	must(cli2.CloseStdin())
	if code, err := cli2.Wait(peerTimeout); err != nil || code != 0 {
		t.Fatalf("second gnutls-cli: %d, %v", code, err)
	}
}

// TestLibcoapPSKSmoke fetches the default resource of coap-server-openssl
// over DTLS with a PSK.
//
// Observed with libcoap 4.3.1: coap-server-openssl -A 127.0.0.1 -p P serves
// CoAP on P and DTLS on P+1 (and TCP/TLS on the same numbers); with -v 7 both
// sides log "DTLS: session connected"; the client prints the resource, which
// starts "This is a test server made with libcoap", and exits 0.
func TestLibcoapPSKSmoke(t *testing.T) {
	server := peers.Require(t, "coap-server-openssl")
	client := peers.Require(t, "coap-client-openssl")
	const key = "secretPSK"
	port := peers.FreeUDPPorts(t, 2)
	srv := peers.Start(t, server, "-A", "127.0.0.1", "-p", strconv.Itoa(port), "-k", key, "-h", "hint", "-v", "7")
	peers.WaitUDPListening(t, port+1, peerTimeout)
	cli := peers.Start(t, client, "-u", pskIdentity, "-k", key, "-B", "10", "-v", "7",
		fmt.Sprintf("coaps://127.0.0.1:%d/", port+1))
	if code, err := cli.Wait(peerTimeout); err != nil || code != 0 {
		t.Fatalf("coap-client: %d, %v", code, err)
	}
	for _, want := range []string{"DTLS: session connected", "This is a test server made with libcoap"} {
		if err := cli.WaitFor(want, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.WaitFor("DTLS: session connected", peerTimeout); err != nil {
		t.Fatal(err)
	}
}
