package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/internal/peers"
)

var demoPSKArg = "dtlsresume:" + hex.EncodeToString([]byte("secretPSK-dtlsresume"))

// resumptionClient is one kind of client of the store tests: its
// --resumption and, for the types that keep something, a session file.
type resumptionClient struct {
	typ     string
	session string // "" for client_state: the client keeps nothing
}

func resumptionClients(t *testing.T) []resumptionClient {
	dir := t.TempDir()
	return []resumptionClient{
		{"session_id", filepath.Join(dir, "sid")},
		{"session_ticket", filepath.Join(dir, "ticket")},
		{"client_state", ""},
	}
}

// coapGet runs `dtlsresume get` against addr and returns its JSON result.
// serverName makes several servers one target for the client's session.
func coapGet(t *testing.T, addr string, c resumptionClient, serverName string) coapResult {
	t.Helper()
	args := []string{"get", "coaps://" + addr + "/time", "--psk", demoPSKArg, "--resumption", c.typ, "--json", "--timeout", "5s"}
	if c.session != "" {
		args = append(args, "--session", c.session)
	}
	if serverName != "" {
		args = append(args, "--server-name", serverName)
	}
	out, err := exec.Command(binary, args...).Output()
	if err != nil {
		t.Fatalf("get %s from %s: %v (%s)", c.typ, addr, err, out)
	}
	var res coapResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("get %s: %q: %v", c.typ, out, err)
	}
	if res.Code != "2.05" || res.Resumption != c.typ {
		t.Fatalf("get %s: %+v", c.typ, res)
	}
	return res
}

func freeUDPAddr(t *testing.T) string {
	return "127.0.0.1:" + strconv.Itoa(peers.FreeUDPPort(t))
}

func startServeAt(t *testing.T, addr string, args ...string) *peers.Process {
	t.Helper()
	p := peers.Start(t, binary, append([]string{"serve", "--addr", addr}, args...)...)
	if err := p.WaitFor("serving CoAP over DTLS on udp", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestServeFileStoreSurvivesRestart: with --store file:PATH, clients of
// every resumption type resume after the server is stopped, and after it is
// killed with SIGKILL, then started again on the same address.
func TestServeFileStoreSurvivesRestart(t *testing.T) {
	for _, how := range []string{"SIGTERM", "SIGKILL"} {
		t.Run(how, func(t *testing.T) {
			addr := freeUDPAddr(t)
			storeArgs := []string{"--store", "file:" + filepath.Join(t.TempDir(), "sessions"), "--store-key", strings.Repeat("ab", 32)}
			srv := startServeAt(t, addr, storeArgs...)
			clients := resumptionClients(t)
			for _, c := range clients {
				if res := coapGet(t, addr, c, ""); res.Resumed {
					t.Fatalf("%s: first handshake resumed", c.typ)
				}
			}
			if how == "SIGKILL" {
				if err := srv.Kill(); err != nil {
					t.Fatal(err)
				}
			} else if err := syscall.Kill(srv.Pid(), syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if _, err := srv.Wait(10 * time.Second); err != nil && how == "SIGTERM" {
				t.Fatal(err)
			}
			startServeAt(t, addr, storeArgs...)
			for _, c := range clients {
				res := coapGet(t, addr, c, "")
				if !res.Resumed {
					t.Errorf("%s after %s: full handshake, want a resumption", c.typ, how)
				}
				if res.DatagramsSent != 2 || res.DatagramsReceived != 1 {
					t.Errorf("%s after %s: %d/%d datagrams", c.typ, how, res.DatagramsSent, res.DatagramsReceived)
				}
			}
		})
	}
}

// startRedisServer runs a redis-server without persistence on a free port.
func startRedisServer(t *testing.T, port int) *peers.Process {
	t.Helper()
	p := peers.Start(t, peers.Require(t, "redis-server"), "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := p.WaitFor("Ready to accept connections", 15*time.Second); err != nil {
		t.Fatal(err)
	}
	return p
}

func freeTCPPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestServeClusterOnRedis: three serve processes share one redis-server;
// a client's first handshake on one resumes on the others, for every
// resumption type. Then redis-server dies: handshakes keep completing
// (full), and resumption comes back once it is restarted.
func TestServeClusterOnRedis(t *testing.T) {
	redisPort := freeTCPPort(t)
	redis := startRedisServer(t, redisPort)
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", redisPort)
	var addrs []string
	for i := 0; i < 3; i++ {
		addr := freeUDPAddr(t)
		startServeAt(t, addr, "--store", url, "--store-key", testStoreKeyHex)
		addrs = append(addrs, addr)
	}
	clients := resumptionClients(t)
	const target = "coap-cluster" // one name for the three servers
	for _, c := range clients {
		if res := coapGet(t, addrs[0], c, target); res.Resumed {
			t.Fatalf("%s: first handshake resumed", c.typ)
		}
		for _, addr := range addrs[1:] {
			res := coapGet(t, addr, c, target)
			if !res.Resumed || res.DatagramsSent != 2 || res.DatagramsReceived != 1 {
				t.Errorf("%s on %s: resumed=%v in %d/%d datagrams", c.typ, addr, res.Resumed, res.DatagramsSent, res.DatagramsReceived)
			}
		}
	}

	// Fault: redis-server gone. Tickets keep resuming (the servers keep their
	// keys); session_id and client_state cost a full handshake, which must
	// still complete quickly.
	if err := redis.Kill(); err != nil {
		t.Fatal(err)
	}
	_, _ = redis.Wait(10 * time.Second)
	for _, c := range clients {
		start := time.Now()
		res := coapGet(t, addrs[1], c, target)
		if c.typ != "session_ticket" && res.Resumed {
			t.Errorf("%s resumed with the store down", c.typ)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("%s with the store down took %v", c.typ, d)
		}
	}

	// Back: the next handshake stores again, the one after resumes.
	startRedisServer(t, redisPort)
	for _, c := range clients {
		deadline := time.Now().Add(10 * time.Second)
		resumed := false
		for !resumed && time.Now().Before(deadline) {
			coapGet(t, addrs[2], c, target)
			resumed = coapGet(t, addrs[0], c, target).Resumed
		}
		if !resumed {
			t.Errorf("%s: no resumption after redis-server came back", c.typ)
		}
	}
}

// TestServeMetrics: --metrics serves Prometheus text with the handshakes
// the server made, by kind and resumption type.
func TestServeMetrics(t *testing.T) {
	addr := freeUDPAddr(t)
	srv := startServeAt(t, addr, "--metrics", "127.0.0.1:0")
	m, err := srv.WaitForRegexp(regexp.MustCompile(`metrics on (http://\S+)`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := resumptionClients(t)[1] // session_ticket
	coapGet(t, addr, c, "")
	coapGet(t, addr, c, "")
	resp, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`dtlsresume_handshakes_total{kind="full",outcome="ok",resumption="session_ticket"} 1`,
		`dtlsresume_handshakes_total{kind="resumed",outcome="ok",resumption="session_ticket"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(string(body), "dtlsresume_handshakes_total"))
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
