package interopmatrix

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
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

// This file is what package internal/peers does for tests, without a
// testing.TB: peer processes with their output in a buffer, free ports,
// waiting for a port to be bound, peer versions, a throwaway PKI.

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

func (b *outBuffer) snapshot() (string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String(), b.changed
}

// proc is a peer process: its own process group, stdin a pipe kept open
// until closeStdin (OpenSSL's s_server and s_client exit when it closes),
// stdout and stderr merged into one buffer.
type proc struct {
	name  string // program base name and first argument, for messages
	cmd   *exec.Cmd
	out   *outBuffer
	done  chan struct{} // closed once the process has exited and been reaped
	stdMu sync.Mutex
	stdin io.WriteCloser
}

func startProc(path string, args ...string) (*proc, error) {
	cmd := exec.Command(path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := newOutBuffer()
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.WaitDelay = time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	name := filepath.Base(path)
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name += " " + args[0]
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, out: out, done: make(chan struct{}), stdin: stdin}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) output() string {
	s, _ := p.out.snapshot()
	return s
}

func (p *proc) write(s string) error {
	p.stdMu.Lock()
	defer p.stdMu.Unlock()
	if p.stdin == nil {
		return fmt.Errorf("%s: stdin closed", p.name)
	}
	if _, err := io.WriteString(p.stdin, s); err != nil {
		return fmt.Errorf("%s: writing stdin: %w", p.name, err)
	}
	return nil
}

func (p *proc) closeStdin() {
	p.stdMu.Lock()
	defer p.stdMu.Unlock()
	if p.stdin != nil {
		_ = p.stdin.Close()
		p.stdin = nil
	}
}

// waitFor waits until the output contains substr n times.
func (p *proc) waitFor(ctx context.Context, substr string, n int) error {
	for {
		out, changed := p.out.snapshot()
		if strings.Count(out, substr) >= n {
			return nil
		}
		select {
		case <-changed:
		case <-p.done:
			if strings.Count(p.output(), substr) >= n {
				return nil
			}
			return fmt.Errorf("%s exited (%s) without printing %q; last line %q", p.name, p.exitDesc(), substr, lastLine(p.output()))
		case <-ctx.Done():
			return fmt.Errorf("%s did not print %q in time; last line %q", p.name, substr, lastLine(p.output()))
		}
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(ctx context.Context) (int, error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		return -1, fmt.Errorf("%s still running; last line %q", p.name, lastLine(p.output()))
	}
	if code := p.cmd.ProcessState.ExitCode(); code >= 0 {
		return code, nil
	}
	return -1, fmt.Errorf("%s: %s", p.name, p.cmd.ProcessState)
}

func (p *proc) exitDesc() string {
	if ps := p.cmd.ProcessState; ps != nil {
		return ps.String()
	}
	return "unknown status"
}

// stop kills the process group and reaps the process: SIGTERM, then
// SIGKILL after half a second.
func (p *proc) stop() {
	p.closeStdin()
	pgid := p.cmd.Process.Pid
	select {
	case <-p.done:
		_ = syscall.Kill(-pgid, syscall.SIGKILL) // anything it left behind
		return
	default:
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(500 * time.Millisecond):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// lastLine is the last non-empty line of s, cut to 160 bytes.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\r\n\t "), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if len(l) > 160 {
		l = l[:160] + "..."
	}
	return l
}

// tail is the last max bytes of s.
func tail(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return "[...]" + s[len(s)-max:]
}

// runQuick runs a short command (a version query) and returns its output.
func runQuick(ctx context.Context, path string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	out, _ := cmd.CombinedOutput() // usage messages exit non-zero
	return string(out)
}

var versionRe = regexp.MustCompile(`\b[v]?(\d+\.\d+(?:\.\d+)?)\b`)

// peerVersion asks an installed peer binary for its version: "3.0.22", or
// "" when it cannot tell.
func peerVersion(ctx context.Context, bin string) string {
	path, err := exec.LookPath(bin)
	if err != nil {
		return ""
	}
	var out string
	switch {
	case bin == "openssl":
		out = runQuick(ctx, path, "version") // OpenSSL 3.0.22 25 Aug 2026 (...)
	case strings.HasPrefix(bin, "gnutls-"):
		out = runQuick(ctx, path, "--version") // gnutls-cli 3.7.9
	case strings.HasPrefix(bin, "coap-"):
		// libcoap has no version flag; an unknown option prints the
		// usage, whose first line carries it: "coap-client-openssl v4.3.1 -- ...".
		out = runQuick(ctx, path, "--version")
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(strings.ToLower(line), "usage") {
			continue
		}
		if m := versionRe.FindStringSubmatch(line); m != nil {
			return m[1]
		}
	}
	return ""
}

// freeUDPPorts returns the first of n consecutive UDP ports that were all
// free on 127.0.0.1 a moment ago (libcoap's coap-server serves DTLS on the
// port after its CoAP port).
func freeUDPPorts(n int) (int, error) {
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
	return 0, fmt.Errorf("no %d consecutive free UDP ports", n)
}

// udpPortBound reports whether some UDP socket is bound to port, according
// to /proc/net/udp and /proc/net/udp6.
func udpPortBound(port int) (bool, error) {
	var firstErr error
	read := 0
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		read++
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
			if p, err := strconv.ParseUint(fields[1][i+1:], 16, 16); err == nil && int(p) == port {
				return true, nil
			}
		}
	}
	if read == 0 {
		return false, firstErr
	}
	return false, nil
}

// waitUDPBound waits until p has bound port (polling every 10 ms).
func waitUDPBound(ctx context.Context, p *proc, port int) error {
	for {
		bound, err := udpPortBound(port)
		if err != nil {
			return err
		}
		if bound {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%s) before binding UDP port %d; last line %q", p.name, p.exitDesc(), port, lastLine(p.output()))
		case <-ctx.Done():
			return fmt.Errorf("%s did not bind UDP port %d in time; last line %q", p.name, port, lastLine(p.output()))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// pki is a throwaway ECDSA P-256 CA and a leaf it signed for 127.0.0.1 and
// localhost, as PEM files in a directory and as Go values.
type pki struct {
	caFile, certFile, keyFile string
	pool                      *x509.CertPool
	cert                      tls.Certificate
}

func newPKI(dir string) (*pki, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dtlsresume interop CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	p := &pki{
		caFile:   filepath.Join(dir, "ca.pem"),
		certFile: filepath.Join(dir, "server.pem"),
		keyFile:  filepath.Join(dir, "server.key"),
		pool:     x509.NewCertPool(),
		cert:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
	}
	p.pool.AddCert(caCert)
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{p.caFile, "CERTIFICATE", caDER}, {p.certFile, "CERTIFICATE", der}, {p.keyFile, "EC PRIVATE KEY", keyDER}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}
