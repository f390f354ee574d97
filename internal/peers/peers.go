package peers

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/internal/proc"
)

// AllowMissingEnv names the environment variable that, set to "1", makes
// [Require] skip a test whose peer is not installed instead of failing it.
const AllowMissingEnv = "DTLSRESUME_ALLOW_MISSING_PEERS"

// logSize is how much of a process's output is logged on a failed test.
const logSize = 64 << 10

// Process is a peer process; see package internal/proc.
type Process = proc.Process

// UDPPortBound reports whether some UDP socket is bound to port.
func UDPPortBound(port int) (bool, error) { return proc.UDPPortBound(port) }

// Require returns the path of the executable bin (looked up in PATH). If it
// is missing the test fails, or is skipped when AllowMissingEnv is "1".
func Require(t testing.TB, bin string) string {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err == nil {
		return path
	}
	if os.Getenv(AllowMissingEnv) == "1" {
		t.Skipf("peer %s not installed (%v); skipping because %s=1", bin, err, AllowMissingEnv)
		return ""
	}
	t.Fatalf("peer %s not installed (%v): scripts/test.sh installs the peers; set %s=1 to skip instead", bin, err, AllowMissingEnv)
	return ""
}

// FreeUDPPort returns a UDP port that was free on 127.0.0.1 a moment ago:
// it binds 127.0.0.1:0, reads the port and closes the socket.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	port, err := proc.FreeUDPPortsErr(1)
	if err != nil {
		t.Fatalf("FreeUDPPort: %v", err)
		return 0
	}
	return port
}

// FreeUDPPorts returns the first of n consecutive UDP ports that were all
// free on 127.0.0.1 a moment ago (libcoap's coap-server, for one, serves
// CoAP on a port P and DTLS on P+1).
func FreeUDPPorts(t testing.TB, n int) int {
	t.Helper()
	port, err := proc.FreeUDPPortsErr(n)
	if err != nil {
		t.Fatalf("FreeUDPPorts: %v", err)
		return 0
	}
	return port
}

// WaitUDPListening waits until a UDP socket is bound to port (see
// [UDPPortBound]), polling every 10ms, and fails the test after timeout.
func WaitUDPListening(t testing.TB, port int, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	switch err := proc.WaitPortBound(ctx, port); {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded):
		t.Fatalf("WaitUDPListening: nothing bound UDP port %d within %v", port, timeout)
	default:
		t.Fatalf("WaitUDPListening(%d): %v", port, err)
	}
}

// Start starts the program name with args, in a process group of its own,
// with its standard input a pipe that stays open until [Process.CloseStdin]
// and its stdout and stderr merged into one buffer. When the test ends, the
// process group is killed (SIGTERM, then SIGKILL after a second) and the
// process reaped; if the test failed, the output is logged.
func Start(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	p, err := proc.Launch(name, args...)
	if err != nil {
		t.Fatal(err)
		return nil
	}
	t.Logf("started %s: %s", p.Name(), proc.ShellQuote(append([]string{name}, args...)))
	t.Cleanup(func() {
		if !p.StopWithin(time.Second, 10*time.Second) {
			t.Errorf("%s: not reaped 10s after SIGKILL", p.Name())
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", p.Name(), proc.Tail(p.Output(), logSize))
		}
	})
	return p
}
