package interopmatrix

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/internal/peers"
)

func TestCasesAreWellFormed(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Cases() {
		if c.run == nil || c.Name == "" || c.Program == "" || c.Family == "" {
			t.Errorf("incomplete case %+v", c)
		}
		if c.Direction != PeerClient && c.Direction != PeerServer {
			t.Errorf("%v: direction %q", c, c.Direction)
		}
		if c.Family != "pion/dtls" && len(c.Needs) == 0 {
			t.Errorf("%v: a process peer that needs no binary", c)
		}
		if seen[c.String()] {
			t.Errorf("duplicate case %v", c)
		}
		seen[c.String()] = true
	}
	if len(seen) < 40 {
		t.Errorf("only %d cases", len(seen))
	}
}

func TestSelect(t *testing.T) {
	all := Cases()
	if got := Select(all, ""); len(got) != len(all) {
		t.Fatalf("empty filter kept %d of %d", len(got), len(all))
	}
	for _, tc := range []struct {
		only string
		ok   func(Case) bool
	}{
		{"S_CLIENT", func(c Case) bool { return c.Program == "openssl s_client" }},
		{"resume session_id", func(c Case) bool { return strings.HasSuffix(c.Name, "resume session_id") }},
		{"dtlsresume → gnutls", func(c Case) bool { return c.Program == "gnutls-serv" }},
		{"pion/dtls", func(c Case) bool { return c.Family == "pion/dtls" }},
	} {
		got := Select(all, tc.only)
		if len(got) == 0 {
			t.Errorf("%q selects nothing", tc.only)
		}
		for _, c := range got {
			if !tc.ok(c) {
				t.Errorf("%q selects %v", tc.only, c)
			}
		}
	}
	if got := Select(all, "no such case"); len(got) != 0 {
		t.Errorf("nonsense filter selects %d", len(got))
	}
}

// TestPion runs the in-process pion/dtls cases, which need no binary.
func TestPion(t *testing.T) {
	rows, err := Run(context.Background(), Select(Cases(), "pion/dtls"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatal("no rows")
	}
	for _, r := range rows {
		if !r.OK || r.Status != "ok" || !r.Measured() || !strings.HasPrefix(r.Peer, "pion/dtls v3") {
			t.Errorf("%+v", r)
		}
	}
}

func TestMissingPeerIsSkipped(t *testing.T) {
	ran := false
	c := Case{Family: "fake", Program: "fake-cli", Direction: PeerClient, Name: "X full", Needs: []string{"no-such-peer-binary"},
		run: func(*caseEnv) (result, error) { ran = true; return result{}, nil }}
	rows, err := Run(context.Background(), []Case{c}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := rows[0]
	if ran || !r.Skipped || r.OK || r.Status != "skipped: no-such-peer-binary not installed" || r.Peer != "fake" {
		t.Fatalf("ran=%v row %+v", ran, r)
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

// TestTimeoutKillsThePeer: a case that waits for output its peer never
// prints fails at the timeout, with the peer's output, and the peer (and
// its children) are killed.
func TestTimeoutKillsThePeer(t *testing.T) {
	var pid int
	c := Case{Family: "fake", Program: "sh", Direction: PeerServer, Name: "hang", Needs: []string{"sh"},
		run: func(cx *caseEnv) (result, error) {
			p, err := cx.start("sh", "-c", "echo started; sleep 300 & wait")
			if err != nil {
				return result{}, err
			}
			pid = p.Pid()
			return result{}, p.WaitForContext(cx.ctx, "never printed", 1)
		}}
	start := time.Now()
	rows, err := Run(context.Background(), []Case{c}, Options{Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v with a 200ms timeout", d)
	}
	r := rows[0]
	if r.OK || r.Skipped || r.Status != "failed" || !strings.Contains(r.Detail, "case timeout") ||
		!strings.Contains(r.Detail, `"never printed"`) || !strings.Contains(r.PeerOutput, "started") {
		t.Fatalf("row %+v", r)
	}
	if pid == 0 || !processGone(pid) {
		t.Fatalf("peer %d still running", pid)
	}
}

func TestFailureAndPanicBecomeRows(t *testing.T) {
	cases := []Case{
		{Family: "fake", Program: "a", Direction: PeerClient, Name: "fails",
			run: func(*caseEnv) (result, error) { return result{}, errors.New("first line\nsecond line") }},
		{Family: "fake", Program: "b", Direction: PeerClient, Name: "panics",
			run: func(*caseEnv) (result, error) { panic("boom") }},
		{Family: "fake", Program: "c", Direction: PeerClient, Name: "passes",
			run: func(*caseEnv) (result, error) { return result{detail: "fine"}, nil }},
	}
	var started, done []string
	rows, err := Run(context.Background(), cases, Options{
		OnStart: func(c Case) { started = append(started, c.Name) },
		OnDone:  func(c Case, r Row) { done = append(done, c.Name+"="+r.Status) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if rows[0].OK || rows[0].Detail != "first line second line" {
		t.Errorf("failing case: %+v", rows[0])
	}
	if rows[1].OK || rows[1].Detail != "panic: boom" {
		t.Errorf("panicking case: %+v", rows[1])
	}
	if !rows[2].OK || rows[2].Detail != "fine" || rows[2].Measured() {
		t.Errorf("passing case: %+v", rows[2])
	}
	if strings.Join(started, ",") != "fails,panics,passes" || strings.Join(done, ",") != "fails=failed,panics=failed,passes=ok" {
		t.Errorf("callbacks: %v %v", started, done)
	}
}

func TestPeerVersions(t *testing.T) {
	semver := regexp.MustCompile(`^\d+\.\d+(\.\d+)?$`)
	for _, bin := range []string{"openssl", "gnutls-cli", "coap-client-openssl", "coap-server-gnutls"} {
		peers.Require(t, bin)
		if v := peerVersion(context.Background(), bin); !semver.MatchString(v) {
			t.Errorf("%s: version %q", bin, v)
		}
	}
	if v := pionVersion(); !strings.HasPrefix(v, "v3") {
		t.Errorf("pion version %q", v)
	}
}
