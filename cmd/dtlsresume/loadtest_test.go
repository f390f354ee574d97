package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/dtlstest"
	"github.com/dtlsresume/dtlsresume/internal/peers"
	"github.com/dtlsresume/dtlsresume/store"
)

// startEchoListener runs our listener in process with the demo PSK, a
// memory store (for session_id and client_state) and an echo on every
// connection.
func startEchoListener(t *testing.T) string {
	t.Helper()
	return echoListener(t, nil)
}

// echoListener is startEchoListener, calling accepted (when set) with the
// remote address of every connection it accepts.
func echoListener(t *testing.T, accepted func(net.Addr)) string {
	t.Helper()
	key := []byte("secretPSK-dtlsresume")
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, &dtls.Config{
		PSK: func(id []byte) ([]byte, error) {
			if string(id) != demoPSKIdentity {
				return nil, errors.New("unknown PSK identity")
			}
			return key, nil
		},
		SessionStore: store.NewMemory(store.MemoryConfig{}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go dtlstest.ServeEcho(l, accepted)
	return l.Addr().String()
}

// decodeObjects parses one JSON object per line.
func decodeObjects(t *testing.T, out string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		objs = append(objs, m)
	}
	return objs
}

// runLoadtestJSON runs `dtlsresume loadtest ARGS --json` as a process,
// requires exit 0, and returns the JSON objects among its output lines
// (other lines are progress) and the whole output.
func runLoadtestJSON(t *testing.T, args ...string) ([]map[string]any, string) {
	t.Helper()
	p := peers.Start(t, binary, append(append([]string{"loadtest"}, args...), "--json")...)
	if code, err := p.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("exit %d, %v: %s", code, err, p.Output())
	}
	out := p.Output()
	var objs []map[string]any
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "{") {
			objs = append(objs, decodeObjects(t, line)...)
		}
	}
	return objs, out
}

func requireKeys(t *testing.T, m map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("no %q in %v", k, m)
		}
	}
}

var runKeys = []string{"kind", "server", "target", "protocol", "mode", "devices", "hold", "primed", "succeeded", "failed",
	"resumed", "failures", "duration_s", "handshakes_per_s", "p50_ms", "p99_ms", "max_ms", "held", "source_addresses"}

// TestLoadtestInProcess runs loadtest against an in-process listener in
// every handshake mode but session_id, then briefly with hostile traffic.
func TestLoadtestInProcess(t *testing.T) {
	addr := startEchoListener(t)
	for _, mode := range []string{"full", "session_ticket", "client_state"} {
		t.Run(mode, func(t *testing.T) {
			code, stdout, stderr := runCmd("loadtest", addr, "-n", "50", "-c", "8", "--mode", mode, "--ports-per-addr", "10", "--hold", "--json")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			objs := decodeObjects(t, stdout)
			if len(objs) != 1 {
				t.Fatalf("%d objects: %s", len(objs), stdout)
			}
			r := objs[0]
			requireKeys(t, r, runKeys...)
			if r["kind"] != "run" || r["mode"] != mode || r["protocol"] != "echo" {
				t.Errorf("kind %v, mode %v, protocol %v", r["kind"], r["mode"], r["protocol"])
			}
			if r["succeeded"] != 50.0 || r["failed"] != 0.0 || r["held"] != 50.0 || r["source_addresses"] != 5.0 {
				t.Errorf("succeeded %v, failed %v (%v), held %v, source addresses %v", r["succeeded"], r["failed"], r["failures"], r["held"], r["source_addresses"])
			}
			wantResumed := 50.0
			if mode == "full" {
				wantResumed = 0
			} else if r["primed"] != 50.0 {
				t.Errorf("primed %v", r["primed"])
			}
			if r["resumed"] != wantResumed {
				t.Errorf("resumed %v, want %v", r["resumed"], wantResumed)
			}
			if _, ok := r["server_usage"]; ok {
				t.Error("server_usage without a spawned server")
			}
		})
	}
	t.Run("hostile", func(t *testing.T) {
		code, stdout, stderr := runCmd("loadtest", addr, "-n", "50", "-c", "8", "--hostile", "--hostile-rate", "300",
			"--hostile-replays", "20", "--hostile-linger", "1500ms", "--json")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		objs := decodeObjects(t, stdout)
		if len(objs) != 1 {
			t.Fatalf("%d objects: %s", len(objs), stdout)
		}
		r := objs[0]
		requireKeys(t, r, append(runKeys, "hostile")...)
		if r["succeeded"] != 50.0 || r["failed"] != 0.0 {
			t.Errorf("succeeded %v, failed %v (%v)", r["succeeded"], r["failed"], r["failures"])
		}
		h, _ := r["hostile"].(map[string]any)
		requireKeys(t, h, "hellos", "replays", "replay_resumed", "replay_resumption", "max_ratio", "bound", "legit_success_rate", "prelude_sources")
		hellos, _ := h["hellos"].(map[string]any)
		replays, _ := h["replays"].(map[string]any)
		requireKeys(t, hellos, "sources", "datagrams", "bytes_sent", "bytes_received", "max_ratio", "over_bound")
		if n, _ := hellos["sources"].(float64); n < 1 {
			t.Errorf("hello sources %v", hellos["sources"])
		}
		if replays["sources"] != 20.0 || h["replay_resumed"] != true || h["replay_resumption"] != "session_ticket" {
			t.Errorf("replays %v, resumed %v by %v", replays["sources"], h["replay_resumed"], h["replay_resumption"])
		}
		if n, _ := replays["bytes_received"].(float64); n == 0 {
			t.Error("the server answered no replayed resumption hello")
		}
		if h["legit_success_rate"] != 1.0 {
			t.Errorf("legit success rate %v", h["legit_success_rate"])
		}
		if ratio, _ := h["max_ratio"].(float64); ratio > 3 || hellos["over_bound"] != 0.0 || replays["over_bound"] != 0.0 {
			t.Errorf("a hostile source got more than 3x what it sent: max ratio %v, over bound %v/%v", ratio, hellos["over_bound"], replays["over_bound"])
		}
	})
}

func TestLoadtestTable(t *testing.T) {
	addr := startEchoListener(t)
	code, stdout, stderr := runCmd("loadtest", addr, "-n", "20", "--rate", "200")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"20 devices, full handshakes, echo, 200/s", "succeeded", "handshakes/s", "p50 handshake (ms)", "p99 handshake (ms)", "failures"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("no %q in\n%s", want, stdout)
		}
	}
}

func TestLoadtestBadUsage(t *testing.T) {
	for _, args := range [][]string{
		{"loadtest"},
		{"loadtest", "10.1.2.3:5684"},
		{"loadtest", "coaps://192.0.2.1/time"},
		{"loadtest", "[::1]:5684"},
		{"loadtest", "127.0.0.1:0"}, // port 0 only with --spawn
		{"loadtest", "http://127.0.0.1:80/"},
		{"loadtest", "127.0.0.1:5684", "-n", "0"},
		{"loadtest", "127.0.0.1:5684", "-c", "4", "--rate", "10"},
		{"loadtest", "127.0.0.1:5684", "--mode", "psk"},
		{"loadtest", "127.0.0.1:5684", "--spawn", "openssl"},
		{"loadtest", "127.0.0.1:5684", "extra"},
		{"loadtest-peer", "openssl-echo"},
		{"loadtest", "127.0.0.1:5684", "--procs", "-1"},
		{"loadtest", "127.0.0.1:5684", "--procs", "300", "-n", "1000"},
		{"loadtest", "127.0.0.1:5684", "--procs", "6", "-n", "5"},
		{"loadtest-shard", "extra"},
	} {
		code, _, stderr := runCmd(args...)
		if code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
	_, _, stderr := runCmd("loadtest", "10.1.2.3:5684")
	if !strings.Contains(stderr, "127.0.0.0/8") {
		t.Errorf("the refusal does not say what is allowed: %q", stderr)
	}
}

// TestLoadtestPeerThroughBinary starts the hidden pion echo command as a
// process and puts devices through it.
func TestLoadtestPeerThroughBinary(t *testing.T) {
	port := peers.FreeUDPPort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p := peers.Start(t, binary, "loadtest-peer", "pion-echo", "--addr", addr)
	if _, err := p.WaitForRegexp(regexp.MustCompile(`listening on udp 127\.0\.0\.1:\d+ \(pion/dtls v3 echo\)`), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCmd("loadtest", addr, "-n", "30", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if r := decodeObjects(t, stdout)[0]; r["succeeded"] != 30.0 {
		t.Fatalf("succeeded %v, failures %v", r["succeeded"], r["failures"])
	}
	// Its standard input ending (the load test is gone) stops it.
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(5 * time.Second); err != nil || code != 0 {
		t.Fatalf("exit %d, %v", code, err)
	}
}

// TestLoadtestSpawnBoth runs the binary as users do: both servers spawned
// in turn, connections held, one JSON object per server and the ratios.
func TestLoadtestSpawnBoth(t *testing.T) {
	objs, out := runLoadtestJSON(t, "127.0.0.1:0", "--spawn", "both", "-n", "40", "--hold")
	if len(objs) != 3 {
		t.Fatalf("%d objects in\n%s", len(objs), out)
	}
	for i, server := range []string{"ours", "pion"} {
		r := objs[i]
		if target, _ := r["target"].(string); strings.HasSuffix(target, ":0") {
			t.Errorf("%s: target %q, not the address the server listened on", server, target)
		}
		if r["server"] != server || r["succeeded"] != 40.0 || r["held"] != 40.0 {
			t.Errorf("%s: server %v, succeeded %v (failures %v), held %v", server, r["server"], r["succeeded"], r["failures"], r["held"])
		}
		u, _ := r["server_usage"].(map[string]any)
		requireKeys(t, u, "pid", "cpu_ms", "cpu_ms_per_handshake", "rss_before_bytes", "rss_after_bytes", "rss_per_held_conn_bytes")
		if rss, _ := u["rss_after_bytes"].(float64); rss <= 0 {
			t.Errorf("%s: resident memory %v", server, u["rss_after_bytes"])
		}
	}
	requireKeys(t, objs[2], "kind", "handshakes_per_s_ours_over_pion", "cpu_per_handshake_ours_over_pion", "rss_per_held_conn_ours_over_pion")
	if objs[2]["kind"] != "comparison" {
		t.Errorf("last object %v", objs[2])
	}
}

func TestLoadtestProcsCount(t *testing.T) {
	for _, c := range []struct {
		want, open int
		limit      uint64
		procs      int // 0: a usage error
	}{
		{0, 100, 20000, 1},
		{0, 19744, 20000, 1},
		{0, 19745, 20000, 2},
		{0, 100000, 20000, 6}, // at most 19,488 each
		{0, 30000, 20000, 2},
		{1, 100, 20000, 1},
		{1, 100000, 20000, 0},
		{2, 100000, 20000, 0},
		{6, 100000, 20000, 6},
		{10, 100000, 20000, 10},
		{2, 100, 20000, 2},
		{0, 1000, 400, 0}, // no room at all
	} {
		got, err := loadtestProcs(c.want, c.open, c.limit)
		if c.procs == 0 {
			if err == nil || !errors.As(err, new(usageError)) {
				t.Errorf("%+v: %d processes, error %v; want a usage error", c, got, err)
			}
			continue
		}
		if err != nil || got != c.procs {
			t.Errorf("%+v: %d processes, %v", c, got, err)
		}
	}
}

// shardLine is what loadtest says on stderr about each child process.
var shardLine = regexp.MustCompile(`loadtest (\w+): shard (\d+)/(\d+) pid (\d+): devices (\d+)-(\d+) from (\S+), (\d+) workers: (\d+) ok, (\d+) failed, (\d+) held`)

// TestLoadtestProcs shares 100 held devices between two child processes
// and checks that the run reads as one: merged counts, one JSON object,
// and 100 distinct source address and port pairs, 50 from each child's own
// addresses.
func TestLoadtestProcs(t *testing.T) {
	var mu sync.Mutex
	sources := map[string]int{} // address:port → connections
	addr := echoListener(t, func(a net.Addr) {
		mu.Lock()
		defer mu.Unlock()
		sources[a.String()]++
	})
	objs, out := runLoadtestJSON(t, addr, "--procs", "2", "-n", "100", "-c", "8", "--hold", "--ports-per-addr", "10")
	if len(objs) != 1 {
		t.Fatalf("%d objects in\n%s", len(objs), out)
	}
	r := objs[0]
	requireKeys(t, r, runKeys...)
	if r["devices"] != 100.0 || r["concurrency"] != 8.0 || r["succeeded"] != 100.0 || r["failed"] != 0.0 || r["held"] != 100.0 || r["source_addresses"] != 10.0 {
		t.Errorf("devices %v, -c %v, succeeded %v, failed %v (%v), held %v, source addresses %v",
			r["devices"], r["concurrency"], r["succeeded"], r["failed"], r["failures"], r["held"], r["source_addresses"])
	}
	if p50, p99 := r["p50_ms"].(float64), r["p99_ms"].(float64); p50 <= 0 || p99 < p50 {
		t.Errorf("p50 %v, p99 %v", p50, p99)
	}

	shards := shardLine.FindAllStringSubmatch(out, -1)
	if len(shards) != 2 {
		t.Fatalf("%d shard lines in\n%s", len(shards), out)
	}
	want := [][]string{
		{"1", "2", "0", "49", "127.1.0.1-127.1.0.5", "4", "50", "0", "50"},
		{"2", "2", "50", "99", "127.1.0.6-127.1.0.10", "4", "50", "0", "50"},
	}
	for i, m := range shards {
		got := append([]string{m[2], m[3]}, m[5:]...) // all but the pid
		if strings.Join(got, " ") != strings.Join(want[i], " ") {
			t.Errorf("shard line %q, want %v", m[0], want[i])
		}
	}
	if shards[0][4] == shards[1][4] {
		t.Errorf("both shards had pid %s", shards[0][4])
	}

	mu.Lock()
	defer mu.Unlock()
	perIP := map[string]int{}
	for a, n := range sources {
		host, _, _ := net.SplitHostPort(a)
		perIP[host]++
		if n != 1 {
			t.Errorf("%d connections from %s", n, a)
		}
	}
	if len(sources) != 100 || len(perIP) != 10 {
		t.Errorf("%d source address:port pairs from %d addresses: %v", len(sources), len(perIP), perIP)
	}
	for i := 1; i <= 10; i++ {
		if ip := "127.1.0." + strconv.Itoa(i); perIP[ip] != 10 {
			t.Errorf("%d devices from %s", perIP[ip], ip)
		}
	}
}

// TestLoadtestProcsSpawn measures a spawned server of ours while two child
// processes hold resumed connections to it.
func TestLoadtestProcsSpawn(t *testing.T) {
	objs, out := runLoadtestJSON(t, "127.0.0.1:0", "--spawn", "ours", "--procs", "2", "-n", "60", "--mode", "session_ticket", "--hold")
	if len(objs) != 1 {
		t.Fatalf("%d objects in\n%s", len(objs), out)
	}
	r := objs[0]
	if r["server"] != "ours" || r["primed"] != 60.0 || r["succeeded"] != 60.0 || r["resumed"] != 60.0 || r["held"] != 60.0 {
		t.Errorf("server %v, primed %v, succeeded %v (failures %v), resumed %v, held %v", r["server"], r["primed"], r["succeeded"], r["failures"], r["resumed"], r["held"])
	}
	u, _ := r["server_usage"].(map[string]any)
	requireKeys(t, u, "pid", "cpu_ms", "cpu_ms_per_handshake", "rss_before_bytes", "rss_after_bytes", "rss_per_held_conn_bytes")
	if n := len(shardLine.FindAllString(out, -1)); n != 2 {
		t.Errorf("%d shard lines in\n%s", n, out)
	}
}
