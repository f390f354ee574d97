package peers

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// AllowMissingEnv names the environment variable that, set to "1", makes
// [Require] skip a test whose peer is not installed instead of failing it.
const AllowMissingEnv = "DTLSRESUME_ALLOW_MISSING_PEERS"

// tailSize is how much of a process's output an error message carries.
const tailSize = 4000

// logSize is how much of a process's output is logged on a failed test.
const logSize = 64 << 10

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
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("FreeUDPPort: %v", err)
		return 0
	}
	port := c.LocalAddr().(*net.UDPAddr).Port
	c.Close()
	return port
}

// FreeUDPPorts returns the first of n consecutive UDP ports that were all
// free on 127.0.0.1 a moment ago (libcoap's coap-server, for one, serves
// CoAP on a port P and DTLS on P+1).
func FreeUDPPorts(t testing.TB, n int) int {
	t.Helper()
	if n < 1 {
		t.Fatalf("FreeUDPPorts(%d)", n)
		return 0
	}
	for range 100 {
		first, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatalf("FreeUDPPorts: %v", err)
			return 0
		}
		base := first.LocalAddr().(*net.UDPAddr).Port
		conns := []*net.UDPConn{first}
		ok := base+n-1 <= 65535
		for i := 1; ok && i < n; i++ {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: base + i})
			if err != nil {
				ok = false
				break
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("FreeUDPPorts: found no %d consecutive free ports", n)
	return 0
}

// UDPPortBound reports whether some UDP socket (IPv4 or IPv6, any address)
// is bound to port, according to /proc/net/udp and /proc/net/udp6.
func UDPPortBound(port int) (bool, error) {
	var firstErr error
	read := 0
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		bound, err := portInProcFile(f, port)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		read++
		if bound {
			return true, nil
		}
	}
	if read == 0 {
		return false, firstErr
	}
	return false, nil
}

// portInProcFile looks for port among the local addresses of a
// /proc/net/udp-style table ("sl local_address rem_address st ...", where
// local_address is HEXADDR:HEXPORT).
func portInProcFile(name string, port int) (bool, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return false, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Scan() // header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		i := strings.LastIndexByte(fields[1], ':')
		if i < 0 {
			continue
		}
		p, err := strconv.ParseUint(fields[1][i+1:], 16, 16)
		if err == nil && int(p) == port {
			return true, nil
		}
	}
	return false, sc.Err()
}

// WaitUDPListening waits until a UDP socket is bound to port (see
// [UDPPortBound]), polling every 10ms, and fails the test after timeout.
func WaitUDPListening(t testing.TB, port int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		bound, err := UDPPortBound(port)
		if err != nil {
			t.Fatalf("WaitUDPListening(%d): %v", port, err)
			return
		}
		if bound {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("WaitUDPListening: nothing bound UDP port %d within %v", port, timeout)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// outBuffer is a thread-safe buffer that wakes waiters on every write.
type outBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed (and replaced) by each Write
}

func newOutBuffer() *outBuffer { return &outBuffer{changed: make(chan struct{})} }

func (b *outBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

// snapshot returns the output so far and a channel closed on the next write.
func (b *outBuffer) snapshot() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String(), b.changed
}

// Process is an external program started by [Start].
type Process struct {
	t    testing.TB
	name string // for messages: the program's base name and first argument
	cmd  *exec.Cmd
	out  *outBuffer

	stdinMu     sync.Mutex
	stdin       io.WriteCloser
	stdinClosed bool

	done    chan struct{} // closed once the process has exited and been reaped
	waitErr error         // from cmd.Wait; read after done
}

// Start starts the program name with args, in a process group of its own,
// with its standard input a pipe that stays open until [Process.CloseStdin]
// and its stdout and stderr merged into one buffer. When the test ends, the
// process group is killed (SIGTERM, then SIGKILL after a second) and the
// process reaped; if the test failed, the output is logged.
func Start(t testing.TB, name string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := newOutBuffer()
	cmd.Stdout = out
	cmd.Stderr = out
	// If a child the program left behind holds the output pipe open, do not
	// wait for it forever once the program itself has exited.
	cmd.WaitDelay = 2 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("Start %s: %v", name, err)
		return nil
	}
	display := filepath.Base(name)
	if len(args) > 0 {
		display += " " + args[0]
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("Start %s: %v", display, err)
		return nil
	}
	p := &Process{
		t:     t,
		name:  fmt.Sprintf("%s[%d]", display, cmd.Process.Pid),
		cmd:   cmd,
		out:   out,
		stdin: stdin,
		done:  make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	t.Logf("started %s: %s", p.name, shellQuote(append([]string{name}, args...)))
	t.Cleanup(p.cleanup)
	return p
}

func shellQuote(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@,+%") == "" {
			q[i] = w
		} else {
			q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}

func (p *Process) cleanup() {
	p.stop()
	if p.t.Failed() {
		p.t.Logf("output of %s:\n%s", p.name, tail(p.Output(), logSize))
	}
}

// stop kills the process group and reaps the process.
func (p *Process) stop() {
	pgid := p.cmd.Process.Pid
	select {
	case <-p.done:
		// The leader is gone; still kill anything it left in its group.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		return
	default:
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		return
	case <-time.After(time.Second):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.t.Errorf("%s: not reaped 10s after SIGKILL", p.name)
	}
}

// Pid returns the process id (which is also its process group id).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// WriteStdin writes s to the process's standard input.
func (p *Process) WriteStdin(s string) error {
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.stdinClosed {
		return fmt.Errorf("%s: stdin already closed", p.name)
	}
	if _, err := io.WriteString(p.stdin, s); err != nil {
		return fmt.Errorf("%s: write stdin: %w", p.name, err)
	}
	return nil
}

// CloseStdin closes the process's standard input. Closing it again is a
// no-op.
func (p *Process) CloseStdin() error {
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.stdinClosed {
		return nil
	}
	p.stdinClosed = true
	if err := p.stdin.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("%s: close stdin: %w", p.name, err)
	}
	return nil
}

// Kill sends SIGKILL to the process group. Use [Process.Wait] to reap.
func (p *Process) Kill() error {
	err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// Output returns everything the process has written to stdout and stderr
// so far.
func (p *Process) Output() string {
	s, _ := p.out.snapshot()
	return s
}

// WaitFor waits until the output contains substr (a plain substring, not a
// regular expression). It returns an error, carrying the tail of the
// output, if timeout passes first or the process exits without printing it.
func (p *Process) WaitFor(substr string, timeout time.Duration) error {
	return p.WaitForN(substr, 1, timeout)
}

// WaitForN waits until the output contains substr at least n times (for
// example the second "Reused" of a server that served two resumptions).
func (p *Process) WaitForN(substr string, n int, timeout time.Duration) error {
	desc := fmt.Sprintf("%q", substr)
	if n != 1 {
		desc = fmt.Sprintf("%q %d times", substr, n)
	}
	return p.waitUntil(desc, timeout, func(out string) bool {
		return strings.Count(out, substr) >= n
	})
}

// WaitForRegexp waits until re matches the output and returns the match and
// its submatches (as regexp.FindStringSubmatch).
func (p *Process) WaitForRegexp(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	var m []string
	err := p.waitUntil("/"+re.String()+"/", timeout, func(out string) bool {
		m = re.FindStringSubmatch(out)
		return m != nil
	})
	return m, err
}

func (p *Process) waitUntil(desc string, timeout time.Duration, cond func(string) bool) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		out, changed := p.out.snapshot()
		if cond(out) {
			return nil
		}
		select {
		case <-changed:
		case <-p.done:
			// All output has been copied once the process is reaped.
			out = p.Output()
			if cond(out) {
				return nil
			}
			return fmt.Errorf("%s exited (%s) before its output contained %s; output ends:\n%s",
				p.name, p.exitDesc(), desc, tail(out, tailSize))
		case <-timer.C:
			out = p.Output()
			return fmt.Errorf("%s: output did not contain %s within %v; output ends:\n%s",
				p.name, desc, timeout, tail(out, tailSize))
		}
	}
}

// exitDesc describes how the process ended; call only after done.
func (p *Process) exitDesc() string {
	if ps := p.cmd.ProcessState; ps != nil {
		return ps.String()
	}
	return fmt.Sprint(p.waitErr)
}

// Wait waits up to timeout for the process to exit and returns its exit
// code. A non-zero exit is not an error: check the code. The error is
// non-nil if the process is still running after timeout (it is left
// running), or if it was killed by a signal (the code is then -1).
func (p *Process) Wait(timeout time.Duration) (exitCode int, err error) {
	select {
	case <-p.done:
	default:
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		select {
		case <-p.done:
		case <-timer.C:
			return -1, fmt.Errorf("%s still running after %v; output ends:\n%s", p.name, timeout, tail(p.Output(), tailSize))
		}
	}
	ps := p.cmd.ProcessState
	if ps == nil {
		return -1, fmt.Errorf("%s: %v", p.name, p.waitErr)
	}
	if code := ps.ExitCode(); code >= 0 {
		return code, nil
	}
	return -1, fmt.Errorf("%s: %s", p.name, ps)
}

// tail returns the last max bytes of s.
func tail(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return "[...]" + s[len(s)-max:]
}
