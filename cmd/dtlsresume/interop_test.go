package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/internal/interopmatrix"
	"github.com/dtlsresume/dtlsresume/internal/peers"
)

// interopPeers are the binaries `dtlsresume interop` drives; the test
// command installs them all, so none may be skipped.
var interopPeers = []string{"openssl", "gnutls-cli", "gnutls-serv", "coap-client-openssl", "coap-client-gnutls", "coap-server-openssl", "coap-server-gnutls"}

func decodeInteropRows(t *testing.T, out []byte) []interopmatrix.Row {
	t.Helper()
	var rows []interopmatrix.Row
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var r interopmatrix.Row
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("decoding the JSON rows: %v\n%s", err, out)
		}
		rows = append(rows, r)
	}
	return rows
}

// TestInteropMatrix runs `dtlsresume interop --json` as a process against
// every installed peer: every row must pass.
func TestInteropMatrix(t *testing.T) {
	for _, bin := range interopPeers {
		peers.Require(t, bin)
	}
	start := time.Now()
	cmd := exec.Command(binary, "interop", "--json", "-v")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Logf("interop took %v; stderr:\n%s", time.Since(start).Round(time.Millisecond), stderr.String())
	if err != nil {
		t.Fatalf("interop: %v", err)
	}
	rows := decodeInteropRows(t, out)
	if want := len(interopmatrix.Cases()); len(rows) != want {
		t.Fatalf("%d rows, want one per case (%d)", len(rows), want)
	}
	seen := map[string]bool{}
	for _, r := range rows {
		name := r.Program + ": " + r.Case
		seen[r.Program+"|"+r.Direction] = true
		if !r.OK || r.Skipped || r.Status != "ok" {
			t.Errorf("%s: %s: %s", name, r.Status, r.Detail)
			continue
		}
		if r.Detail == "" || strings.Contains(r.Detail, "\n") || r.Millis <= 0 {
			t.Errorf("%s: detail %q, %v ms", name, r.Detail, r.Millis)
		}
		if !r.Measured() || r.Suite == "" {
			t.Errorf("%s: our side measured nothing: %+v", name, r)
		}
		// Our server resumes in one round trip, without a cookie
		// exchange: it sends one datagram and receives two.
		if r.Direction == interopmatrix.PeerClient && strings.Contains(r.Case, " resume ") &&
			(r.DatagramsSent != 1 || r.DatagramsReceived != 2) {
			t.Errorf("%s: our server's resumed handshake took %d/%d datagrams, want 1/2", name, r.DatagramsSent, r.DatagramsReceived)
		}
	}
	for _, want := range []string{
		"openssl s_client|" + interopmatrix.PeerClient, "openssl s_server|" + interopmatrix.PeerServer,
		"gnutls-cli|" + interopmatrix.PeerClient, "gnutls-serv|" + interopmatrix.PeerServer,
		"coap-client-openssl|" + interopmatrix.PeerClient, "coap-client-gnutls|" + interopmatrix.PeerClient,
		"coap-server-openssl|" + interopmatrix.PeerServer, "coap-server-gnutls|" + interopmatrix.PeerServer,
		"pion/dtls client|" + interopmatrix.PeerClient, "pion/dtls server|" + interopmatrix.PeerServer,
	} {
		if !seen[want] {
			t.Errorf("no row for %s", want)
		}
	}
	if !strings.Contains(stderr.String(), "interop: openssl s_client → dtlsresume: PSK-AES128-CCM8 full ... ok") ||
		!strings.Contains(stderr.String(), "passed, 0 failed, 0 skipped") {
		t.Errorf("progress on stderr lacks the expected lines")
	}
}

// TestInteropTable runs the in-process pion cases and checks the table and
// its summary line.
func TestInteropTable(t *testing.T) {
	code, out, stderr := runCmd("interop", "--only", "pion/dtls")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	n := len(interopmatrix.Select(interopmatrix.Cases(), "pion/dtls"))
	if n == 0 || len(lines) != n+2 {
		t.Fatalf("%d lines for %d cases:\n%s", len(lines), n, out)
	}
	if h := strings.Fields(lines[0]); h[0] != "peer" || h[1] != "program" {
		t.Errorf("header %q", lines[0])
	}
	if want := strconv.Itoa(n) + " passed, 0 failed, 0 skipped"; lines[len(lines)-1] != want {
		t.Errorf("summary %q, want %q", lines[len(lines)-1], want)
	}
	if got := strings.Count(stderr, "interop: "); got != n {
		t.Errorf("%d progress lines, want %d:\n%s", got, n, stderr)
	}
}

// TestInteropSkipsMissingPeers: with no peer on PATH, the cases that need
// one are skipped, and skipped cases do not fail the run.
func TestInteropSkipsMissingPeers(t *testing.T) {
	cmd := exec.Command(binary, "interop", "--json", "--only", "openssl s_server")
	cmd.Env = append(os.Environ(), "PATH="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("interop with no peers: %v\n%s", err, stderr.String())
	}
	rows := decodeInteropRows(t, out)
	if len(rows) == 0 {
		t.Fatal("no rows")
	}
	for _, r := range rows {
		if !r.Skipped || r.OK || r.Status != "skipped: openssl not installed" {
			t.Errorf("%s: %+v", r.Case, r)
		}
	}
	if !strings.Contains(stderr.String(), "0 passed, 0 failed, "+strconv.Itoa(len(rows))+" skipped") {
		t.Errorf("stderr %q", stderr.String())
	}
}

func TestInteropBadUsage(t *testing.T) {
	for _, args := range [][]string{
		{"interop", "--bogus"},
		{"interop", "--timeout", "0s"},
		{"interop", "--timeout", "soon"},
		{"interop", "--only", "no-such-peer-or-case"},
		{"interop", "extra"},
	} {
		code, out, stderr := runCmd(args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, stderr)
		}
		if out != "" {
			t.Errorf("%v: stdout %q", args, out)
		}
		if !strings.Contains(stderr, "dtlsresume interop:") {
			t.Errorf("%v: stderr %q does not name the command", args, stderr)
		}
	}
}
