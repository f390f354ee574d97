package proc

import (
	"bufio"
	"bytes"
	"context"
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
	"time"
)

// tailSize is how much of a process's output an error message carries.
const tailSize = 4000

// FreeUDPPortsErr is [FreeUDPPorts] without a testing.TB: it returns the
// first of n consecutive UDP ports that were all free on 127.0.0.1 a moment
// ago, or an error.
func FreeUDPPortsErr(n int) (int, error) {
	if n < 1 {
		return 0, fmt.Errorf("asked for %d ports", n)
	}
	for range 100 {
		first, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return 0, err
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
			return base, nil
		}
	}
	return 0, fmt.Errorf("found no %d consecutive free ports", n)
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

// WaitUDPBound is [WaitUDPListening] without a testing.TB, for the server
// process p: it waits until a UDP socket is bound to port, polling every
// 10ms, and returns an error (naming p, with the last line of its output)
// if ctx ends first or p exits.
func WaitUDPBound(ctx context.Context, p *Process, port int) error {
	switch err := pollUDPBound(ctx, port, p.done); {
	case err == nil:
		return nil
	case errors.Is(err, errExited):
		return fmt.Errorf("%s exited (%s) before binding UDP port %d; last line %q", p.name, p.exitDesc(), port, LastLine(p.Output()))
	case err == ctx.Err():
		return fmt.Errorf("%s did not bind UDP port %d in time; last line %q", p.name, port, LastLine(p.Output()))
	default:
		return err
	}
}

// errExited is what the polling loops return when the process exits first.
var errExited = errors.New("process exited")

// pollUDPBound polls [UDPPortBound] every 10ms until port is bound. It
// returns errExited once exited (nil: never) is closed, ctx.Err() when ctx
// ends, or the error reading the tables.
func pollUDPBound(ctx context.Context, port int, exited <-chan struct{}) error {
	for {
		bound, err := UDPPortBound(port)
		if err != nil {
			return err
		}
		if bound {
			return nil
		}
		select {
		case <-exited:
			return errExited
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
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

// Process is an external program started by [Launch] (or peers.Start).
type Process struct {
	name string // for messages: the program's base name and first argument, and pid
	cmd  *exec.Cmd
	out  *outBuffer

	stdinMu     sync.Mutex
	stdin       io.WriteCloser
	stdinClosed bool

	done    chan struct{} // closed once the process has exited and been reaped
	waitErr error         // from cmd.Wait; read after done
}

// Launch is [Start] without a testing.TB: it starts the program name with
// args the same way (own process group, stdin a pipe kept open, stdout and
// stderr merged into one buffer), but nothing stops it for the caller, who
// must call [Process.Stop].
func Launch(name string, args ...string) (*Process, error) {
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
		return nil, fmt.Errorf("Start %s: %w", name, err)
	}
	display := filepath.Base(name)
	if len(args) > 0 {
		display += " " + args[0]
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("Start %s: %w", display, err)
	}
	p := &Process{
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
	return p, nil
}

func ShellQuote(words []string) string {
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

// Stop closes the process's standard input, kills its process group
// (SIGTERM, then SIGKILL after half a second) and reaps it, waiting at most
// five seconds after the SIGKILL. It is for processes from [Launch]; [Start]
// stops its processes itself when the test ends.
func (p *Process) Stop() {
	_ = p.CloseStdin()
	p.StopWithin(500*time.Millisecond, 5*time.Second)
}

// StopWithin kills the process group: SIGTERM, then SIGKILL after grace. It
// reports whether the process was reaped (at most reapWait after the
// SIGKILL).
func (p *Process) StopWithin(grace, reapWait time.Duration) bool {
	pgid := p.cmd.Process.Pid
	select {
	case <-p.done:
		// The leader is gone; still kill anything it left in its group.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		return true
	default:
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		return true
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.done:
		return true
	case <-time.After(reapWait):
		return false
	}
}

// Name returns the name messages use for the process: the program's base
// name and first argument, with its pid ("openssl s_server[1234]").
func (p *Process) Name() string { return p.name }

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

// WaitForContext is [Process.WaitForN] bounded by ctx instead of a timeout:
// it waits until the output contains substr at least n times. Its error
// names the process and carries the last line of the output, not the tail.
func (p *Process) WaitForContext(ctx context.Context, substr string, n int) error {
	err := p.watchOutput(ctx, func(out string) bool { return strings.Count(out, substr) >= n })
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errExited):
		return fmt.Errorf("%s exited (%s) without printing %q; last line %q", p.name, p.exitDesc(), substr, LastLine(p.Output()))
	default:
		return fmt.Errorf("%s did not print %q in time; last line %q", p.name, substr, LastLine(p.Output()))
	}
}

func (p *Process) waitUntil(desc string, timeout time.Duration, cond func(string) bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := p.watchOutput(ctx, cond)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errExited):
		return fmt.Errorf("%s exited (%s) before its output contained %s; output ends:\n%s",
			p.name, p.exitDesc(), desc, Tail(p.Output(), tailSize))
	default:
		return fmt.Errorf("%s: output did not contain %s within %v; output ends:\n%s",
			p.name, desc, timeout, Tail(p.Output(), tailSize))
	}
}

// watchOutput waits until cond holds for the output. It returns errExited
// if the process exits first, or ctx.Err() if ctx ends first.
func (p *Process) watchOutput(ctx context.Context, cond func(string) bool) error {
	for {
		out, changed := p.out.snapshot()
		if cond(out) {
			return nil
		}
		select {
		case <-changed:
		case <-p.done:
			// All output has been copied once the process is reaped.
			if cond(p.Output()) {
				return nil
			}
			return errExited
		case <-ctx.Done():
			return ctx.Err()
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
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if !p.waitDone(ctx) {
		return -1, fmt.Errorf("%s still running after %v; output ends:\n%s", p.name, timeout, Tail(p.Output(), tailSize))
	}
	return p.exitCode()
}

// WaitContext is [Process.Wait] bounded by ctx instead of a timeout. Its
// error for a process still running carries the last line of the output,
// not the tail.
func (p *Process) WaitContext(ctx context.Context) (exitCode int, err error) {
	if !p.waitDone(ctx) {
		return -1, fmt.Errorf("%s still running; last line %q", p.name, LastLine(p.Output()))
	}
	return p.exitCode()
}

// waitDone waits until the process has exited and been reaped (true) or ctx
// ends (false). A process already reaped is reported even if ctx has ended.
func (p *Process) waitDone(ctx context.Context) bool {
	select {
	case <-p.done:
		return true
	default:
	}
	select {
	case <-p.done:
		return true
	case <-ctx.Done():
		return false
	}
}

// exitCode is the exit code of the reaped process, or -1 and an error if it
// was killed by a signal; call only after done.
func (p *Process) exitCode() (int, error) {
	ps := p.cmd.ProcessState
	if ps == nil {
		return -1, fmt.Errorf("%s: %v", p.name, p.waitErr)
	}
	if code := ps.ExitCode(); code >= 0 {
		return code, nil
	}
	return -1, fmt.Errorf("%s: %s", p.name, ps)
}

// Tail returns the last max bytes of s, marked "[...]" if cut.
func Tail(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return "[...]" + s[len(s)-max:]
}

// LastLine returns the last non-empty line of s, trimmed and cut to 160
// bytes, for one-line error messages.
func LastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\r\n\t "), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if len(l) > 160 {
		l = l[:160] + "..."
	}
	return l
}

// WaitPortBound waits until a UDP socket is bound to port (see
// [UDPPortBound]), polling every 10ms, until ctx ends.
func WaitPortBound(ctx context.Context, port int) error { return pollUDPBound(ctx, port, nil) }
