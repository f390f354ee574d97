package interopmatrix

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/dtlsresume/dtlsresume/coapclient"
	"github.com/dtlsresume/dtlsresume/coapserver"
	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/dtlstest"
	"github.com/dtlsresume/dtlsresume/internal/pionstore"
	"github.com/dtlsresume/dtlsresume/internal/proc"
	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/store"
	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// The command lines and output strings below are the ones the tests in
// interop/, coapserver/ and coapclient/ rely on (OpenSSL 3.0, GnuTLS 3.7.9,
// libcoap 4.3.1); see those tests for what each peer prints.

// Credentials of every PSK case. libcoap's -k takes the key itself, not
// hex, hence a printable key for the CoAP cases.
const (
	pskIdentity = "client1"
	libcoapKey  = "interop-secret-psk"
)

var pskKey = []byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10}

// suite is a cipher suite under its names in each stack.
type suite struct {
	name string // OpenSSL's
	id   dtls.CipherSuiteID
	pion piondtls.CipherSuiteID
	psk  bool
	// notInPion: pion/dtls v3 lacks the suite.
	notInPion bool
}

// newSuite names a suite in every stack: pion uses the same code points,
// and dtls knows OpenSSL's name.
func newSuite(id dtls.CipherSuiteID, psk bool) suite {
	return suite{name: id.OpenSSLName(), id: id, pion: piondtls.CipherSuiteID(id), psk: psk}
}

var (
	pskCCM8   = newSuite(dtls.TLS_PSK_WITH_AES_128_CCM_8, true)
	ecdheCCM8 = newSuite(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, false)
	pskGCM    = newSuite(dtls.TLS_PSK_WITH_AES_128_GCM_SHA256, true)
	ecdheGCM  = newSuite(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, false)
	pskCCM    = newSuite(dtls.TLS_PSK_WITH_AES_128_CCM, true)
	ecdheCCM  = newSuite(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM, false)
	pskCBC    = newSuite(dtls.TLS_PSK_WITH_AES_128_CBC_SHA256, true)
	ecdheCBC  = suite{name: dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256.OpenSSLName(), id: dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, notInPion: true}
	ecdhePSK  = newSuite(dtls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256, true)

	allSuites    = []suite{pskCCM8, ecdheCCM8, pskGCM, ecdheGCM, pskCCM, ecdheCCM, pskCBC, ecdheCBC, ecdhePSK}
	resumeSuites = []suite{pskCCM8, ecdheCCM8}
	resumeTypes  = []negotiation.Type{negotiation.SessionTicket, negotiation.SessionID}
)

func fullName(s suite) string                       { return s.name + " full" }
func resumeName(s suite, t negotiation.Type) string { return s.name + " resume " + t.String() }

// ---------------------------------------------------------------------------
// Our side

// ourServer is a dtls.Listener on 127.0.0.1 that echoes every datagram and
// reports each handshake it completes.
type ourServer struct {
	addr   *net.UDPAddr
	events chan serverEvent
}

type serverEvent struct {
	st  dtls.ConnectionState
	err error
}

// ourServerConfig accepts the PSK identity client1, or presents the PKI's
// certificate, for one suite; store adds a SessionStore (session IDs).
func ourServerConfig(cx *caseEnv, s suite, withStore bool) *dtls.Config {
	cfg := &dtls.Config{CipherSuites: []dtls.CipherSuiteID{s.id}}
	if s.psk {
		cfg.PSK = func(id []byte) ([]byte, error) {
			if string(id) != pskIdentity {
				return nil, fmt.Errorf("unknown PSK identity %q", id)
			}
			return pskKey, nil
		}
	} else {
		cfg.Certificates = []tls.Certificate{cx.pki().Cert}
	}
	if withStore {
		cfg.SessionStore = store.NewMemory(store.MemoryConfig{})
	}
	return cfg
}

// observe makes cfg report its server handshakes on a channel.
func observe(cfg *dtls.Config) chan serverEvent {
	events := make(chan serverEvent, 16)
	cfg.HandshakeObserver = func(st dtls.ConnectionState, err error) {
		select {
		case events <- serverEvent{st, err}:
		default:
		}
	}
	return events
}

func startOurServer(cx *caseEnv, cfg *dtls.Config) (*ourServer, error) {
	events := observe(cfg)
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, cfg)
	if err != nil {
		return nil, fmt.Errorf("our server: %w", err)
	}
	cx.onClose(func() { l.Close() })
	go dtlstest.ServeEcho(l, nil)
	return &ourServer{addr: l.Addr().(*net.UDPAddr), events: events}, nil
}

// next returns the state of the next handshake our server completed. A
// failed handshake is remembered, not returned: a peer may retry.
func nextHandshake(cx *caseEnv, events <-chan serverEvent, which string) (dtls.ConnectionState, error) {
	var lastErr error
	for {
		select {
		case e := <-events:
			if e.err == nil {
				return e.st, nil
			}
			lastErr = e.err
		case <-cx.ctx.Done():
			if lastErr != nil {
				return dtls.ConnectionState{}, fmt.Errorf("%s: our server's handshake failed: %v", which, lastErr)
			}
			return dtls.ConnectionState{}, fmt.Errorf("%s: our server completed no handshake", which)
		}
	}
}

func (s *ourServer) next(cx *caseEnv, which string) (dtls.ConnectionState, error) {
	return nextHandshake(cx, s.events, which)
}

// ourClientConfig is our client for one suite, with a session cache.
func ourClientConfig(cx *caseEnv, s suite) *dtls.Config {
	cfg := &dtls.Config{
		CipherSuites:       []dtls.CipherSuiteID{s.id},
		ClientSessionCache: dtls.NewLRUClientSessionCache(8),
	}
	if d, ok := cx.ctx.Deadline(); ok {
		cfg.HandshakeTimeout = time.Until(d)
	}
	if s.psk {
		cfg.PSK = func([]byte) ([]byte, error) { return pskKey, nil }
		cfg.PSKIdentityHint = []byte(pskIdentity)
	} else {
		cfg.RootCAs = cx.pki().Pool
	}
	return cfg
}

func dialOurs(cx *caseEnv, which string, port int, cfg *dtls.Config) (*dtls.Conn, error) {
	c, err := dtls.DialContext(cx.ctx, "udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: our client's handshake: %w", which, err)
	}
	cx.onClose(func() { c.Close() })
	return c, nil
}

// roundTrip writes msg on c and expects it back.
func roundTrip(cx *caseEnv, c net.Conn, msg string) error {
	if _, err := c.Write([]byte(msg)); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if d, ok := cx.ctx.Deadline(); ok {
		_ = c.SetReadDeadline(d)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("waiting for the echo of %q: %w", msg, err)
	}
	if got := string(buf[:n]); got != msg {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	return nil
}

// checkState checks a handshake's suite and resumption outcome.
func checkState(which string, st dtls.ConnectionState, s suite, resumed bool, typ negotiation.Type) error {
	if st.CipherSuite != s.id {
		return fmt.Errorf("%s: suite %v, want %v", which, st.CipherSuite, s.id)
	}
	if st.Resumed != resumed || st.Resumption != typ {
		return fmt.Errorf("%s: resumed=%v by %v, want resumed=%v by %v", which, st.Resumed, st.Resumption, resumed, typ)
	}
	return nil
}

func remaining(cx *caseEnv) time.Duration {
	if d, ok := cx.ctx.Deadline(); ok {
		return time.Until(d)
	}
	return DefaultTimeout
}

// ---------------------------------------------------------------------------
// OpenSSL

func opensslCases() []Case {
	var cs []Case
	add := func(prog, dir, name string, run func(*caseEnv) (result, error)) {
		cs = append(cs, Case{Family: "openssl", Program: prog, Direction: dir, Name: name, Needs: []string{"openssl"}, run: run})
	}
	for _, s := range allSuites {
		add("openssl s_client", PeerClient, fullName(s), func(cx *caseEnv) (result, error) { return sClientFull(cx, s) })
	}
	for _, s := range resumeSuites {
		for _, t := range resumeTypes {
			add("openssl s_client", PeerClient, resumeName(s, t), func(cx *caseEnv) (result, error) { return sClientResume(cx, s, t) })
		}
	}
	for _, s := range allSuites {
		add("openssl s_server", PeerServer, fullName(s), func(cx *caseEnv) (result, error) { return sServerFull(cx, s) })
	}
	for _, s := range resumeSuites {
		for _, t := range resumeTypes {
			add("openssl s_server", PeerServer, resumeName(s, t), func(cx *caseEnv) (result, error) { return sServerResume(cx, s, t) })
		}
	}
	return cs
}

func sClientArgs(cx *caseEnv, s suite, addr *net.UDPAddr) []string {
	args := []string{"s_client", "-dtls1_2", "-connect", addr.String(), "-cipher", s.name}
	if s.psk {
		return append(args, "-psk", hex.EncodeToString(pskKey), "-psk_identity", pskIdentity)
	}
	return append(args, "-CAfile", cx.pki().CAFile, "-verify_return_error")
}

// sClientFull: s_client against our server, a line each way (s_client
// does not print its input, so the line in its output is our echo).
func sClientFull(cx *caseEnv, s suite) (result, error) {
	srv, err := startOurServer(cx, ourServerConfig(cx, s, false))
	if err != nil {
		return result{}, err
	}
	cl, err := cx.start("openssl", sClientArgs(cx, s, srv.addr)...)
	if err != nil {
		return result{}, err
	}
	// s_client names the version a cipher first appeared in (TLSv1.0 for
	// PSK-AES128-CBC-SHA256), not the protocol's.
	if err := cl.WaitForContext(cx.ctx, "Cipher is "+s.name, 1); err != nil {
		return result{}, err
	}
	if err := cl.WriteStdin("ping from openssl\n"); err != nil {
		return result{}, err
	}
	if err := cl.WaitForContext(cx.ctx, "ping from openssl", 1); err != nil {
		return result{}, fmt.Errorf("no echo: %w", err)
	}
	st, err := srv.next(cx, "handshake")
	res := result{state: &st}
	if err != nil {
		return result{}, err
	}
	if err := checkState("our server", st, s, false, st.Resumption); err != nil {
		return res, err
	}
	if !st.ExtendedMasterSecret {
		return res, errors.New("our server: no extended master secret")
	}
	verified := ""
	if !s.psk {
		if err := cl.WaitForContext(cx.ctx, "Verify return code: 0 (ok)", 1); err != nil {
			return res, err
		}
		verified = ", s_client verified our certificate"
	}
	res.detail = fmt.Sprintf("s_client: \"Cipher is %s\"%s; extended master secret; line echoed", s.name, verified)
	return res, nil
}

// runSClient runs one s_client to the end: it waits for want, sends a line
// and waits for our echo, then closes stdin so that s_client shuts down
// (writing -sess_out) and exits.
func runSClient(cx *caseEnv, args []string, want, ping string) error {
	cl, err := cx.start("openssl", args...)
	if err != nil {
		return err
	}
	if err := cl.WaitForContext(cx.ctx, want, 1); err != nil {
		return err
	}
	if err := cl.WriteStdin(ping + "\n"); err != nil {
		return err
	}
	if err := cl.WaitForContext(cx.ctx, ping, 1); err != nil {
		return fmt.Errorf("no echo: %w", err)
	}
	_ = cl.CloseStdin()
	code, err := cl.WaitContext(cx.ctx)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("s_client exited with %d; last line %q", code, proc.LastLine(cl.Output()))
	}
	return nil
}

// sClientResume: s_client -sess_out, then s_client -sess_in. For
// session_id, s_client runs with -no_ticket and our server has a
// SessionStore; for session_ticket our server has no store, so only a
// ticket can resume.
func sClientResume(cx *caseEnv, s suite, typ negotiation.Type) (result, error) {
	srv, err := startOurServer(cx, ourServerConfig(cx, s, typ == negotiation.SessionID))
	if err != nil {
		return result{}, err
	}
	sess := filepath.Join(cx.dir, "session.pem")
	args := sClientArgs(cx, s, srv.addr)
	if typ == negotiation.SessionID {
		args = append(args, "-no_ticket")
	}
	if err := runSClient(cx, append(args, "-sess_out", sess), "New, TLSv1.2, Cipher is "+s.name, "first from openssl"); err != nil {
		return result{}, fmt.Errorf("first s_client: %w", err)
	}
	first, err := srv.next(cx, "full handshake")
	if err != nil {
		return result{}, err
	}
	if err := checkState("our server, full handshake", first, s, false, typ); err != nil {
		return result{state: &first}, err
	}
	if fi, err := os.Stat(sess); err != nil || fi.Size() == 0 {
		return result{state: &first}, fmt.Errorf("s_client -sess_out saved no session (%v)", err)
	}
	if err := runSClient(cx, append(args, "-sess_in", sess), "Reused, TLSv1.2, Cipher is "+s.name, "second from openssl"); err != nil {
		return result{state: &first}, fmt.Errorf("second s_client (-sess_in): %w", err)
	}
	second, err := srv.next(cx, "second handshake")
	if err != nil {
		return result{}, err
	}
	res := result{state: &second}
	if err := checkState("our server, second handshake", second, s, true, typ); err != nil {
		return res, err
	}
	noTicket := ""
	if typ == negotiation.SessionID {
		noTicket = " -no_ticket"
	}
	res.detail = fmt.Sprintf("s_client%s -sess_out, then -sess_in: \"Reused, TLSv1.2\"; our server resumed by %v; echo on both connections", noTicket, typ)
	return res, nil
}

func sServerArgs(cx *caseEnv, s suite, port, naccept int) []string {
	args := []string{"s_server", "-dtls1_2", "-accept", "127.0.0.1:" + strconv.Itoa(port), "-cipher", s.name, "-naccept", strconv.Itoa(naccept)}
	if s.psk {
		return append(args, "-nocert", "-psk", hex.EncodeToString(pskKey), "-psk_identity", pskIdentity)
	}
	return append(args, "-cert", cx.pki().CertFile, "-key", cx.pki().KeyFile)
}

// startPeerServer starts a peer server on a free port and waits until it
// has bound it.
func startPeerServer(cx *caseEnv, bin string, args func(port int) []string) (*proc.Process, int, error) {
	port, err := proc.FreeUDPPortsErr(1)
	if err != nil {
		return nil, 0, err
	}
	srv, err := cx.start(bin, args(port)...)
	if err != nil {
		return nil, 0, err
	}
	if err := proc.WaitUDPBound(cx.ctx, srv, port); err != nil {
		return nil, 0, err
	}
	return srv, port, nil
}

// sServerRoundTrip sends a line to s_server, which prints it, and has it
// send one back (s_server sends what arrives on its stdin).
func sServerRoundTrip(cx *caseEnv, srv *proc.Process, c *dtls.Conn, n int) error {
	ping := fmt.Sprintf("ping %d from dtlsresume\n", n)
	if _, err := c.Write([]byte(ping)); err != nil {
		return err
	}
	if err := srv.WaitForContext(cx.ctx, ping, 1); err != nil {
		return err
	}
	pong := fmt.Sprintf("pong %d from openssl\n", n)
	if err := srv.WriteStdin(pong); err != nil {
		return err
	}
	if d, ok := cx.ctx.Deadline(); ok {
		_ = c.SetReadDeadline(d)
	}
	buf := make([]byte, 2048)
	k, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("reading s_server's reply: %w", err)
	}
	if got := string(buf[:k]); got != pong {
		return fmt.Errorf("s_server's reply %q, want %q", got, pong)
	}
	return nil
}

func sServerFull(cx *caseEnv, s suite) (result, error) {
	srv, port, err := startPeerServer(cx, "openssl", func(port int) []string { return sServerArgs(cx, s, port, 1) })
	if err != nil {
		return result{}, err
	}
	cfg := ourClientConfig(cx, s)
	cfg.ExtendedMasterSecret = dtls.RequireExtendedMasterSecret
	c, err := dialOurs(cx, "handshake", port, cfg)
	if err != nil {
		return result{}, err
	}
	st := c.ConnectionState()
	res := result{state: &st}
	if err := checkState("our client", st, s, false, st.Resumption); err != nil {
		return res, err
	}
	if err := sServerRoundTrip(cx, srv, c, 1); err != nil {
		return res, err
	}
	if err := srv.WaitForContext(cx.ctx, "CIPHER is "+s.name, 1); err != nil {
		return res, err
	}
	verified := ""
	if !s.psk {
		verified = "; we verified its certificate"
	}
	res.detail = fmt.Sprintf("s_server: \"CIPHER is %s\"; extended master secret required%s; a line each way", s.name, verified)
	return res, nil
}

// sServerResume: two dials with one session cache against s_server
// -naccept 2 (with -no_ticket for session_id).
func sServerResume(cx *caseEnv, s suite, typ negotiation.Type) (result, error) {
	srv, port, err := startPeerServer(cx, "openssl", func(port int) []string {
		args := sServerArgs(cx, s, port, 2)
		if typ == negotiation.SessionID {
			args = append(args, "-no_ticket")
		}
		return args
	})
	if err != nil {
		return result{}, err
	}
	res, err := dialTwice(cx, s, typ, port, func(c *dtls.Conn, n int) error {
		if err := sServerRoundTrip(cx, srv, c, n); err != nil {
			return err
		}
		if n == 1 && strings.Contains(srv.Output(), "Reused session-id") {
			return errors.New("s_server reports the full handshake as reused")
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	if err := srv.WaitForContext(cx.ctx, "Reused session-id", 1); err != nil {
		return res, err
	}
	flag := "default"
	if typ == negotiation.SessionID {
		flag = "-no_ticket"
	}
	res.detail = fmt.Sprintf("s_server (%s) -naccept 2: \"Reused session-id\"; we resumed by %v; a line each way on both connections", flag, typ)
	return res, nil
}

// dialTwice runs our client against a peer server on port twice with one
// session cache: a full handshake, then one that must resume by typ;
// exchange moves data on connection n (1, then 2). The result carries the
// second handshake's state.
func dialTwice(cx *caseEnv, s suite, typ negotiation.Type, port int, exchange func(c *dtls.Conn, n int) error) (result, error) {
	cfg := ourClientConfig(cx, s)
	c1, err := dialOurs(cx, "full handshake", port, cfg)
	if err != nil {
		return result{}, err
	}
	st1 := c1.ConnectionState()
	if err := checkState("our client, full handshake", st1, s, false, typ); err != nil {
		return result{state: &st1}, err
	}
	if err := exchange(c1, 1); err != nil {
		return result{state: &st1}, err
	}
	if err := c1.Close(); err != nil {
		return result{state: &st1}, err
	}
	c2, err := dialOurs(cx, "second handshake", port, cfg)
	if err != nil {
		return result{state: &st1}, err
	}
	st2 := c2.ConnectionState()
	res := result{state: &st2}
	if err := checkState("our client, second handshake", st2, s, true, typ); err != nil {
		return res, err
	}
	return res, exchange(c2, 2)
}

// ---------------------------------------------------------------------------
// GnuTLS

// GnuTLS priorities that force exactly one of our suites.
func gnutlsPriority(s suite) string {
	switch s {
	case pskCCM8:
		return "NORMAL:-KX-ALL:+PSK:-CIPHER-ALL:+AES-128-CCM-8"
	case ecdheCCM8:
		return "NORMAL:-KX-ALL:+ECDHE-ECDSA:-CIPHER-ALL:+AES-128-CCM-8"
	case pskGCM:
		return "NORMAL:-KX-ALL:+PSK:-CIPHER-ALL:+AES-128-GCM"
	case pskCCM:
		return "NORMAL:-KX-ALL:+PSK:-CIPHER-ALL:+AES-128-CCM"
	case ecdheCCM:
		return "NORMAL:-KX-ALL:+ECDHE-ECDSA:-CIPHER-ALL:+AES-128-CCM"
	case pskCBC:
		return "NORMAL:-KX-ALL:+PSK:-CIPHER-ALL:+AES-128-CBC:-MAC-ALL:+SHA256"
	case ecdheCBC:
		return "NORMAL:-KX-ALL:+ECDHE-ECDSA:-CIPHER-ALL:+AES-128-CBC:-MAC-ALL:+SHA256"
	case ecdhePSK:
		return "NORMAL:-KX-ALL:+ECDHE-PSK:-CIPHER-ALL:+AES-128-CBC:-MAC-ALL:+SHA256"
	default:
		return "NORMAL:-KX-ALL:+ECDHE-ECDSA:-CIPHER-ALL:+AES-128-GCM"
	}
}

func gnutlsCases() []Case {
	var cs []Case
	add := func(bin, dir, name string, run func(*caseEnv) (result, error)) {
		cs = append(cs, Case{Family: "gnutls", Program: bin, Direction: dir, Name: name, Needs: []string{bin}, run: run})
	}
	type rc struct {
		s suite
		t negotiation.Type
	}
	rcs := []rc{{pskCCM8, negotiation.SessionTicket}, {pskCCM8, negotiation.SessionID}, {ecdheCCM8, negotiation.SessionTicket}}
	// Not ECDHE-PSK: gnutls-cli 3.7.9 crashes after any ECDHE-PSK handshake.
	for _, s := range []suite{pskGCM, ecdheGCM, pskCCM, ecdheCCM, pskCBC, ecdheCBC} {
		add("gnutls-cli", PeerClient, fullName(s), func(cx *caseEnv) (result, error) { return gnutlsCliFull(cx, s) })
	}
	for _, r := range rcs {
		add("gnutls-cli", PeerClient, resumeName(r.s, r.t), func(cx *caseEnv) (result, error) { return gnutlsCliResume(cx, r.s, r.t) })
	}
	for _, r := range rcs {
		add("gnutls-serv", PeerServer, resumeName(r.s, r.t), func(cx *caseEnv) (result, error) { return gnutlsServResume(cx, r.s, r.t) })
	}
	return cs
}

func gnutlsCliArgs(cx *caseEnv, s suite, port int, priority string) []string {
	args := []string{"--udp", "-p", strconv.Itoa(port), "127.0.0.1", "--priority", priority}
	if s.psk {
		return append(args, "--pskusername", pskIdentity, "--pskkey", hex.EncodeToString(pskKey))
	}
	return append(args, "--x509cafile", cx.pki().CAFile)
}

// gnutlsPing sends a line from gnutls-cli (in its Simple Client Mode) and
// waits for our echo, which it prints. gnutls-cli is slow to exit once its
// stdin closes, so the case kills it at the end instead.
func gnutlsPing(cx *caseEnv, g *proc.Process) error {
	if err := g.WaitForContext(cx.ctx, "- Simple Client Mode", 1); err != nil {
		return err
	}
	if err := g.WriteStdin("ping from gnutls\n"); err != nil {
		return err
	}
	if err := g.WaitForContext(cx.ctx, "ping from gnutls", 1); err != nil {
		return fmt.Errorf("no echo: %w", err)
	}
	return nil
}

func gnutlsCliFull(cx *caseEnv, s suite) (result, error) {
	srv, err := startOurServer(cx, ourServerConfig(cx, s, false))
	if err != nil {
		return result{}, err
	}
	g, err := cx.start("gnutls-cli", gnutlsCliArgs(cx, s, srv.addr.Port, gnutlsPriority(s))...)
	if err != nil {
		return result{}, err
	}
	if err := gnutlsPing(cx, g); err != nil {
		return result{}, err
	}
	st, err := srv.next(cx, "handshake")
	if err != nil {
		return result{}, err
	}
	res := result{state: &st}
	if err := checkState("our server", st, s, false, st.Resumption); err != nil {
		return res, err
	}
	if !st.ExtendedMasterSecret {
		return res, errors.New("our server: no extended master secret")
	}
	res.detail = fmt.Sprintf("gnutls-cli --priority %s: handshake completed, extended master secret; line echoed", gnutlsPriority(s))
	return res, nil
}

// gnutlsCliResume: gnutls-cli --resume connects twice; for session_id it
// adds %NO_TICKETS to its priority and our server has a SessionStore.
func gnutlsCliResume(cx *caseEnv, s suite, typ negotiation.Type) (result, error) {
	srv, err := startOurServer(cx, ourServerConfig(cx, s, typ == negotiation.SessionID))
	if err != nil {
		return result{}, err
	}
	priority := gnutlsPriority(s)
	if typ == negotiation.SessionID {
		priority += ":%NO_TICKETS"
	}
	g, err := cx.start("gnutls-cli", append(gnutlsCliArgs(cx, s, srv.addr.Port, priority), "--resume")...)
	if err != nil {
		return result{}, err
	}
	if err := g.WaitForContext(cx.ctx, "- Simple Client Mode", 1); err != nil {
		return result{}, err
	}
	if !strings.Contains(g.Output(), "*** This is a resumed session") {
		return result{}, errors.New("gnutls-cli did not print \"This is a resumed session\"")
	}
	if err := gnutlsPing(cx, g); err != nil {
		return result{}, err
	}
	first, err := srv.next(cx, "full handshake")
	if err != nil {
		return result{}, err
	}
	if err := checkState("our server, full handshake", first, s, false, typ); err != nil {
		return result{state: &first}, err
	}
	second, err := srv.next(cx, "second handshake")
	if err != nil {
		return result{state: &first}, err
	}
	res := result{state: &second}
	if err := checkState("our server, second handshake", second, s, true, typ); err != nil {
		return res, err
	}
	res.detail = fmt.Sprintf("gnutls-cli --resume --priority %s: \"This is a resumed session\"; our server resumed by %v; line echoed", priority, typ)
	return res, nil
}

// gnutlsServResume: our client dials gnutls-serv --echo twice with one
// session cache; --noticket for session_id.
func gnutlsServResume(cx *caseEnv, s suite, typ negotiation.Type) (result, error) {
	pskFile := filepath.Join(cx.dir, "psk.txt")
	if err := os.WriteFile(pskFile, []byte(pskIdentity+":"+hex.EncodeToString(pskKey)+"\n"), 0o600); err != nil {
		return result{}, err
	}
	_, port, err := startPeerServer(cx, "gnutls-serv", func(port int) []string {
		args := []string{"--udp", "-p", strconv.Itoa(port), "--echo", "--priority", gnutlsPriority(s)}
		if s.psk {
			args = append(args, "--pskpasswd", pskFile)
		} else {
			args = append(args, "--x509certfile", cx.pki().CertFile, "--x509keyfile", cx.pki().KeyFile)
		}
		if typ == negotiation.SessionID {
			args = append(args, "--noticket")
		}
		return args
	})
	if err != nil {
		return result{}, err
	}
	res, err := dialTwice(cx, s, typ, port, func(c *dtls.Conn, n int) error {
		return roundTrip(cx, c, fmt.Sprintf("connection %d to gnutls", n))
	})
	if err != nil {
		return res, err
	}
	flag := "default"
	if typ == negotiation.SessionID {
		flag = "--noticket"
	}
	res.detail = fmt.Sprintf("gnutls-serv --echo (%s): we resumed by %v; echo on both connections", flag, typ)
	return res, nil
}

// ---------------------------------------------------------------------------
// libcoap

const libcoapGreeting = "This is a test server made with libcoap"

func libcoapCases() []Case {
	var cs []Case
	add := func(bin, dir, name string, run func(*caseEnv) (result, error)) {
		cs = append(cs, Case{Family: "libcoap", Program: bin, Direction: dir, Name: name, Needs: []string{bin}, run: run})
	}
	for _, bin := range []string{"coap-client-openssl", "coap-client-gnutls"} {
		add(bin, PeerClient, "CoAP GET /time", func(cx *caseEnv) (result, error) { return coapClientCase(cx, bin, "get") })
		add(bin, PeerClient, "CoAP PUT /echo", func(cx *caseEnv) (result, error) { return coapClientCase(cx, bin, "put") })
	}
	for _, bin := range []string{"coap-server-openssl", "coap-server-gnutls"} {
		add(bin, PeerServer, "CoAP GET /", func(cx *caseEnv) (result, error) { return coapServerCase(cx, bin, false) })
	}
	// coap-server-openssl resumes (OpenSSL's defaults); coap-server-gnutls
	// does not.
	add("coap-server-openssl", PeerServer, "CoAP GET / resume session_ticket", func(cx *caseEnv) (result, error) {
		return coapServerCase(cx, "coap-server-openssl", true)
	})
	return cs
}

// coapClientCase: one coap-client request against our coapserver.
func coapClientCase(cx *caseEnv, bin, method string) (result, error) {
	cfg := &dtls.Config{PSK: func(id []byte) ([]byte, error) {
		if string(id) != pskIdentity {
			return nil, fmt.Errorf("unknown PSK identity %q", id)
		}
		return []byte(libcoapKey), nil
	}}
	events := observe(cfg)
	srv, err := coapserver.New(coapserver.Options{DTLS: cfg})
	if err != nil {
		return result{}, err
	}
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, cfg)
	if err != nil {
		return result{}, fmt.Errorf("our server: %w", err)
	}
	go srv.Serve(l) //nolint:errcheck // ends with Stop
	cx.onClose(srv.Stop)
	wait := max(1, int(remaining(cx).Seconds())-1)
	args := []string{"-B", strconv.Itoa(wait), "-u", pskIdentity, "-k", libcoapKey, "-m", method}
	payload := "from " + bin
	uri := "coaps://" + l.Addr().String()
	if method == "put" {
		args = append(args, "-t", "text/plain", "-e", payload, uri+"/echo")
	} else {
		args = append(args, uri+"/time")
	}
	p, err := cx.start(bin, args...)
	if err != nil {
		return result{}, err
	}
	code, err := p.WaitContext(cx.ctx)
	if err != nil {
		return result{}, err
	}
	if code != 0 {
		return result{}, fmt.Errorf("%s exited with %d; last line %q", bin, code, proc.LastLine(p.Output()))
	}
	out := strings.TrimSpace(p.Output())
	var detail string
	if method == "put" {
		if out != payload {
			return result{}, fmt.Errorf("PUT /echo printed %q, want %q", proc.LastLine(out), payload)
		}
		detail = fmt.Sprintf("%s printed the echoed payload %q", bin, payload)
	} else {
		if _, err := time.Parse(time.RFC3339, out); err != nil {
			return result{}, fmt.Errorf("GET /time printed %q, not an RFC 3339 time", proc.LastLine(out))
		}
		detail = fmt.Sprintf("%s printed the time %s", bin, out)
	}
	st, err := nextHandshake(cx, events, "handshake")
	if err != nil {
		return result{}, err
	}
	if string(st.PSKIdentity) != pskIdentity {
		return result{state: &st}, fmt.Errorf("PSK identity %q", st.PSKIdentity)
	}
	return result{state: &st, detail: detail + "; suite " + st.CipherSuite.String()}, nil
}

// coapServerCase: our coapclient GETs / from coap-server (DTLS on its port
// + 1); with resume, a second connection with the same session cache must
// resume.
func coapServerCase(cx *caseEnv, bin string, resume bool) (result, error) {
	base, err := proc.FreeUDPPortsErr(2)
	if err != nil {
		return result{}, err
	}
	srv, err := cx.start(bin, "-A", "127.0.0.1", "-p", strconv.Itoa(base), "-k", libcoapKey, "-h", "hint")
	if err != nil {
		return result{}, err
	}
	if err := proc.WaitUDPBound(cx.ctx, srv, base+1); err != nil {
		return result{}, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(base+1)
	cfg := &dtls.Config{
		PSK:                func([]byte) ([]byte, error) { return []byte(libcoapKey), nil },
		PSKIdentityHint:    []byte(pskIdentity),
		ClientSessionCache: dtls.NewLRUClientSessionCache(4),
		HandshakeTimeout:   remaining(cx),
	}
	get := func(which string) (dtls.ConnectionState, error) {
		c, err := coapclient.Dial(cx.ctx, addr, cfg)
		if err != nil {
			return dtls.ConnectionState{}, fmt.Errorf("%s: %w", which, err)
		}
		defer c.Close()
		st := c.ConnectionState()
		r, err := c.Get(cx.ctx, "/")
		if err != nil {
			return st, fmt.Errorf("%s: GET /: %w", which, err)
		}
		if r.Code != codes.Content || !strings.HasPrefix(string(r.Payload), libcoapGreeting) {
			return st, fmt.Errorf("%s: GET /: %v %q, want 2.05 starting %q", which, r.Code, proc.LastLine(string(r.Payload)), libcoapGreeting)
		}
		return st, nil
	}
	st, err := get("full handshake")
	if err != nil {
		return result{state: &st}, err
	}
	if st.Resumed {
		return result{state: &st}, errors.New("the first handshake resumed")
	}
	if !resume {
		return result{state: &st, detail: fmt.Sprintf("2.05 %q...; suite %v", libcoapGreeting, st.CipherSuite)}, nil
	}
	st2, err := get("second handshake")
	res := result{state: &st2}
	if err != nil {
		return res, err
	}
	if !st2.Resumed || st2.Resumption != negotiation.SessionTicket {
		return res, fmt.Errorf("second handshake: resumed=%v by %v, want resumed by session_ticket", st2.Resumed, st2.Resumption)
	}
	res.detail = fmt.Sprintf("second connection resumed by %v; GET / 2.05 on both; suite %v", st2.Resumption, st2.CipherSuite)
	return res, nil
}

// ---------------------------------------------------------------------------
// pion/dtls v3, in process

// pionVersion is the pion/dtls v3 version this binary was built with.
func pionVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/pion/dtls/v3" {
				if d.Replace != nil && d.Replace.Version != "" {
					return d.Replace.Version
				}
				return d.Version
			}
		}
	}
	return "v3"
}

func pionCases() []Case {
	var cs []Case
	add := func(prog, dir, name string, run func(*caseEnv) (result, error)) {
		cs = append(cs, Case{Family: "pion/dtls", Program: prog, Direction: dir, Name: name, run: run})
	}
	for _, s := range allSuites {
		if s.notInPion {
			continue
		}
		add("pion/dtls client", PeerClient, fullName(s), func(cx *caseEnv) (result, error) { return pionClient(cx, s, false) })
	}
	for _, s := range resumeSuites {
		add("pion/dtls client", PeerClient, resumeName(s, negotiation.SessionID), func(cx *caseEnv) (result, error) { return pionClient(cx, s, true) })
	}
	for _, s := range allSuites {
		if s.notInPion {
			continue
		}
		add("pion/dtls server", PeerServer, fullName(s), func(cx *caseEnv) (result, error) { return pionServer(cx, s, false) })
	}
	for _, s := range resumeSuites {
		add("pion/dtls server", PeerServer, resumeName(s, negotiation.SessionID), func(cx *caseEnv) (result, error) { return pionServer(cx, s, true) })
	}
	return cs
}

// pionClient: pion's client against our server, once, or twice with a
// pion SessionStore (pion resumes by session ID only).
func pionClient(cx *caseEnv, s suite, resume bool) (result, error) {
	srv, err := startOurServer(cx, ourServerConfig(cx, s, resume))
	if err != nil {
		return result{}, err
	}
	ps := pionstore.New(0)
	ccfg := &piondtls.Config{CipherSuites: []piondtls.CipherSuiteID{s.pion}, ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret}
	if resume {
		ccfg.SessionStore = ps
	}
	if s.psk {
		ccfg.PSK = func([]byte) ([]byte, error) { return pskKey, nil }
		ccfg.PSKIdentityHint = []byte(pskIdentity)
	} else {
		ccfg.RootCAs = cx.pki().Pool
		ccfg.ServerName = "localhost"
	}
	dial := func(which, msg string) (piondtls.State, error) {
		c, err := piondtls.Dial("udp", srv.addr, ccfg)
		if err != nil {
			return piondtls.State{}, fmt.Errorf("%s: pion: %w", which, err)
		}
		defer c.Close()
		if err := c.HandshakeContext(cx.ctx); err != nil {
			return piondtls.State{}, fmt.Errorf("%s: pion's handshake: %w", which, err)
		}
		if err := roundTrip(cx, c, msg); err != nil {
			return piondtls.State{}, fmt.Errorf("%s: %w", which, err)
		}
		st, _ := c.ConnectionState()
		return st, nil
	}
	p1, err := dial("full handshake", "pion to us, 1")
	if err != nil {
		return result{}, err
	}
	if uint16(p1.CipherSuiteID) != uint16(s.id) {
		return result{}, fmt.Errorf("pion negotiated %v", p1.CipherSuiteID)
	}
	first, err := srv.next(cx, "full handshake")
	if err != nil {
		return result{}, err
	}
	want := negotiation.None
	if resume {
		want = negotiation.SessionID
	}
	if err := checkState("our server, full handshake", first, s, false, want); err != nil {
		return result{state: &first}, err
	}
	if !first.ExtendedMasterSecret {
		return result{state: &first}, errors.New("our server: no extended master secret")
	}
	if s.psk && string(first.PSKIdentity) != pskIdentity {
		return result{state: &first}, fmt.Errorf("our server: PSK identity %q", first.PSKIdentity)
	}
	if !resume {
		return result{state: &first, detail: "pion required extended master secret; line echoed"}, nil
	}
	if ps.Len() != 1 {
		return result{state: &first}, fmt.Errorf("pion's client stored %d sessions after the full handshake, want 1", ps.Len())
	}
	p2, err := dial("second handshake", "pion to us, 2")
	if err != nil {
		return result{state: &first}, err
	}
	second, err := srv.next(cx, "second handshake")
	if err != nil {
		return result{state: &first}, err
	}
	res := result{state: &second}
	if err := checkState("our server, second handshake", second, s, true, negotiation.SessionID); err != nil {
		return res, err
	}
	if len(first.SessionID) == 0 || !bytes.Equal(first.SessionID, second.SessionID) || !bytes.Equal(p1.SessionID, p2.SessionID) {
		return res, fmt.Errorf("session IDs: ours %x then %x, pion's %x then %x", first.SessionID, second.SessionID, p1.SessionID, p2.SessionID)
	}
	res.detail = "pion SessionStore: second connection resumed the session ID; echo on both connections"
	return res, nil
}

// pionServer: our client against pion's listener, once, or twice with one
// session cache against a pion SessionStore.
func pionServer(cx *caseEnv, s suite, resume bool) (result, error) {
	ps := pionstore.New(0)
	scfg := &piondtls.Config{CipherSuites: []piondtls.CipherSuiteID{s.pion}, ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret}
	if resume {
		scfg.SessionStore = ps
	}
	if s.psk {
		scfg.PSK = func([]byte) ([]byte, error) { return pskKey, nil }
		scfg.PSKIdentityHint = []byte("hint")
	} else {
		scfg.Certificates = []tls.Certificate{cx.pki().Cert}
	}
	l, err := piondtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, scfg)
	if err != nil {
		return result{}, fmt.Errorf("pion listener: %w", err)
	}
	cx.onClose(func() { l.Close() })
	go dtlstest.ServeEcho(l, nil)
	port := l.Addr().(*net.UDPAddr).Port
	cfg := ourClientConfig(cx, s)
	cfg.ExtendedMasterSecret = dtls.RequireExtendedMasterSecret
	cfg.ServerName = "localhost"
	want := negotiation.None
	if resume {
		want = negotiation.SessionID
	}
	c1, err := dialOurs(cx, "full handshake", port, cfg)
	if err != nil {
		return result{}, err
	}
	st1 := c1.ConnectionState()
	if err := checkState("our client, full handshake", st1, s, false, want); err != nil {
		return result{state: &st1}, err
	}
	if err := roundTrip(cx, c1, "us to pion, 1"); err != nil {
		return result{state: &st1}, err
	}
	if s.psk && string(st1.PSKIdentityHint) != "hint" {
		return result{state: &st1}, fmt.Errorf("PSK identity hint %q, want \"hint\"", st1.PSKIdentityHint)
	}
	if !resume {
		return result{state: &st1, detail: "extended master secret on both sides; line echoed"}, nil
	}
	if err := c1.Close(); err != nil {
		return result{state: &st1}, err
	}
	if ps.Len() != 1 {
		return result{state: &st1}, fmt.Errorf("pion's server stored %d sessions after the full handshake, want 1", ps.Len())
	}
	c2, err := dialOurs(cx, "second handshake", port, cfg)
	if err != nil {
		return result{state: &st1}, err
	}
	st2 := c2.ConnectionState()
	res := result{state: &st2}
	if err := checkState("our client, second handshake", st2, s, true, negotiation.SessionID); err != nil {
		return res, err
	}
	if !bytes.Equal(st1.SessionID, st2.SessionID) {
		return res, fmt.Errorf("session IDs: full %x, resumed %x", st1.SessionID, st2.SessionID)
	}
	if err := roundTrip(cx, c2, "us to pion, 2"); err != nil {
		return res, err
	}
	res.detail = "pion SessionStore: we resumed its session ID; echo on both connections"
	return res, nil
}
