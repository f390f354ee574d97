package interopmatrix

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/pki"
	"github.com/dtlsresume/dtlsresume/internal/proc"
)

// The two directions of a case.
const (
	PeerClient = "peer client → our server"
	PeerServer = "our client → peer server"
)

// DefaultTimeout bounds one case when Options.Timeout is zero.
const DefaultTimeout = 15 * time.Second

// Row is the outcome of one case.
type Row struct {
	// Peer is the third-party implementation and its version, e.g.
	// "openssl 3.0.22", "gnutls 3.7.9", "libcoap 4.3.1", "pion/dtls v3.1.15".
	Peer string `json:"peer"`
	// Program is the peer program that ran, e.g. "openssl s_client",
	// "gnutls-serv", "coap-client-gnutls", "pion/dtls client".
	Program string `json:"program"`
	// Direction is PeerClient or PeerServer.
	Direction string `json:"direction"`
	// Case is the suite and scenario: "PSK-AES128-CCM8 full",
	// "PSK-AES128-CCM8 resume session_ticket", "CoAP GET /time", ...
	Case string `json:"case"`
	// OK is true when the case passed. A skipped case is neither OK nor
	// failed.
	OK      bool `json:"ok"`
	Skipped bool `json:"skipped"`
	// Status is "ok", "failed" or "skipped: BIN not installed".
	Status string `json:"status"`
	// Detail says in one line what was checked, or why the case failed or
	// was skipped.
	Detail string `json:"detail"`
	// Suite is the suite our side negotiated (IANA name), if it got that
	// far.
	Suite string `json:"suite,omitempty"`
	// The cost of the handshake our side measured (the resumed one in a
	// resumption case): datagrams and bytes it sent and received. Zero when
	// our side did not get to measure it.
	DatagramsSent     int     `json:"datagrams_sent,omitempty"`
	DatagramsReceived int     `json:"datagrams_received,omitempty"`
	BytesSent         int     `json:"bytes_sent,omitempty"`
	BytesReceived     int     `json:"bytes_received,omitempty"`
	HandshakeMillis   float64 `json:"handshake_ms,omitempty"`
	// Millis is how long the whole case took, peer start-up included.
	Millis float64 `json:"ms"`
	// PeerOutput is the end of the peer processes' output when the case
	// failed.
	PeerOutput string `json:"peer_output,omitempty"`
}

// Measured reports whether the row carries our side's handshake counts.
func (r Row) Measured() bool { return r.DatagramsSent+r.DatagramsReceived > 0 }

// Case is one scenario of the matrix.
type Case struct {
	// Family is the peer implementation: "openssl", "gnutls", "libcoap" or
	// "pion/dtls".
	Family    string
	Program   string
	Direction string
	Name      string
	// Needs are the peer binaries the case runs (none for pion).
	Needs []string

	run func(cx *caseEnv) (result, error)
}

// Label names the two ends, client first: "openssl s_client → dtlsresume"
// or "dtlsresume → gnutls-serv".
func (c Case) Label() string {
	if c.Direction == PeerClient {
		return c.Program + " → dtlsresume"
	}
	return "dtlsresume → " + c.Program
}

func (c Case) String() string { return c.Label() + ": " + c.Name }

// Cases lists the whole matrix, in the order Run runs it.
func Cases() []Case {
	var all []Case
	all = append(all, opensslCases()...)
	all = append(all, gnutlsCases()...)
	all = append(all, libcoapCases()...)
	all = append(all, pionCases()...)
	return all
}

// Select returns the cases whose family, program, direction or name
// contains only (case-insensitively); all of them if only is empty.
func Select(cases []Case, only string) []Case {
	if only == "" {
		return cases
	}
	needle := strings.ToLower(only)
	var out []Case
	for _, c := range cases {
		hay := strings.ToLower(strings.Join([]string{c.Family, c.Program, c.Direction, c.Label(), c.Name}, "\n"))
		if strings.Contains(hay, needle) {
			out = append(out, c)
		}
	}
	return out
}

// Options configure Run.
type Options struct {
	// Timeout bounds each case; DefaultTimeout if zero.
	Timeout time.Duration
	// OnStart and OnDone, if set, are called before and after each case
	// (for progress output).
	OnStart func(Case)
	OnDone  func(Case, Row)
}

// Run runs cases one after the other and returns a row for each. A case
// whose peer binary is missing is skipped, not failed. The error is for
// what keeps the whole run from starting (a temporary directory, the PKI)
// or ctx ending; the rows so far come with it.
func Run(ctx context.Context, cases []Case, opts Options) ([]Row, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	dir, err := os.MkdirTemp("", "dtlsresume-interop")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	p, err := pki.Generate(dir)
	if err != nil {
		return nil, fmt.Errorf("interop: generating the test PKI: %w", err)
	}
	sh := &shared{dir: dir, pki: p, versions: map[string]string{}}
	var rows []Row
	for i, c := range cases {
		if err := ctx.Err(); err != nil {
			return rows, err
		}
		if opts.OnStart != nil {
			opts.OnStart(c)
		}
		r := runCase(ctx, sh, c, opts.Timeout, filepath.Join(dir, fmt.Sprintf("case%02d", i)))
		rows = append(rows, r)
		if opts.OnDone != nil {
			opts.OnDone(c, r)
		}
	}
	return rows, ctx.Err()
}

// shared is what the cases of one run share.
type shared struct {
	dir      string
	pki      *pki.PKI
	versions map[string]string // by family
}

// peerName is the family with the version of its first installed binary.
func (sh *shared) peerName(ctx context.Context, c Case) string {
	if c.Family == "pion/dtls" {
		return "pion/dtls " + pionVersion()
	}
	v, ok := sh.versions[c.Family]
	if !ok {
		for _, bin := range c.Needs {
			if v = peerVersion(ctx, bin); v != "" {
				break
			}
		}
		if v != "" {
			sh.versions[c.Family] = v
		}
	}
	if v == "" {
		return c.Family
	}
	return c.Family + " " + v
}

// result is what a case's run reports on success.
type result struct {
	detail string
	state  *dtls.ConnectionState // our side's, of the handshake that counts
}

// caseEnv is one case's run: its deadline, its directory, the peer
// processes and other things to release at the end.
type caseEnv struct {
	ctx      context.Context
	sh       *shared
	dir      string
	paths    map[string]string // peer binary -> path
	procs    []*proc.Process
	cleanups []func()
}

func (cx *caseEnv) pki() *pki.PKI { return cx.sh.pki }

// start runs the peer binary bin; the process is killed when the case ends.
func (cx *caseEnv) start(bin string, args ...string) (*proc.Process, error) {
	p, err := proc.Launch(cx.paths[bin], args...)
	if err != nil {
		return nil, err
	}
	cx.procs = append(cx.procs, p)
	return p, nil
}

func (cx *caseEnv) onClose(f func()) { cx.cleanups = append(cx.cleanups, f) }

func (cx *caseEnv) close() {
	for i := len(cx.cleanups) - 1; i >= 0; i-- {
		cx.cleanups[i]()
	}
	for _, p := range cx.procs {
		p.Stop()
	}
}

// peerOutput is the end of every process's output, for a failed case.
func (cx *caseEnv) peerOutput() string {
	var b strings.Builder
	for _, p := range cx.procs {
		fmt.Fprintf(&b, "--- %s:\n%s\n", p.Name(), strings.TrimRight(proc.Tail(p.Output(), 3000), "\n"))
	}
	return b.String()
}

func runCase(ctx context.Context, sh *shared, c Case, timeout time.Duration, dir string) (r Row) {
	r = Row{Peer: sh.peerName(ctx, c), Program: c.Program, Direction: c.Direction, Case: c.Name}
	start := time.Now()
	defer func() { r.Millis = float64(time.Since(start).Microseconds()) / 1000 }()
	cx := &caseEnv{sh: sh, dir: dir, paths: map[string]string{}}
	for _, bin := range c.Needs {
		path, err := exec.LookPath(bin)
		if err != nil {
			r.Skipped = true
			r.Status = "skipped: " + bin + " not installed"
			r.Detail = r.Status
			return r
		}
		cx.paths[bin] = path
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		r.Status, r.Detail = "failed", err.Error()
		return r
	}
	var cancel context.CancelFunc
	cx.ctx, cancel = context.WithTimeout(ctx, timeout)
	res, err := func() (res result, err error) {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("panic: %v", v)
			}
		}()
		return c.run(cx)
	}()
	switch {
	case err == nil:
	case ctx.Err() != nil:
		err = fmt.Errorf("%w (interrupted)", err)
	case cx.ctx.Err() != nil:
		err = fmt.Errorf("%w (case timeout %v)", err, timeout)
	}
	cancel()
	if err != nil {
		r.PeerOutput = cx.peerOutput()
	}
	cx.close()
	if st := res.state; st != nil {
		r.Suite = st.CipherSuite.String()
		r.DatagramsSent, r.DatagramsReceived = st.HandshakeDatagramsSent, st.HandshakeDatagramsReceived
		r.BytesSent, r.BytesReceived = st.HandshakeBytesSent, st.HandshakeBytesReceived
		r.HandshakeMillis = float64(st.HandshakeDuration.Microseconds()) / 1000
	}
	if err != nil {
		r.Status = "failed"
		r.Detail = oneLine(err.Error())
		return r
	}
	r.OK, r.Status, r.Detail = true, "ok", oneLine(res.detail)
	return r
}

// oneLine folds s onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
