package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// shardEnv makes the test binary run as a shard (see TestMain), so that
// Run's child processes can be tested without the dtlsresume command.
const shardEnv = "LOADGEN_TEST_SHARD"

func TestMain(m *testing.M) {
	if os.Getenv(shardEnv) == "1" {
		if err := RunShard(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestSplit(t *testing.T) {
	cfg := Config{
		Target: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5684}, Devices: 10, Procs: 3, Concurrency: 4,
		PortsPerAddress: 3, PSKIdentity: "device", PSK: testPSK, Mode: ClientState, Hold: true,
	}
	specs := cfg.split(time.Time{})
	want := []struct{ devices, first, addr, conc int }{{4, 0, 0, 2}, {3, 4, 2, 1}, {3, 7, 3, 1}}
	if len(specs) != len(want) {
		t.Fatalf("%d shards", len(specs))
	}
	for k, w := range want {
		s := specs[k]
		if s.Devices != w.devices || s.FirstDevice != w.first || s.FirstAddress != w.addr || s.Concurrency != w.conc {
			t.Errorf("shard %d: %d devices from %d, address %d, %d workers; want %+v", k, s.Devices, s.FirstDevice, s.FirstAddress, s.Concurrency, w)
		}
		if s.Target != "127.0.0.1:5684" || s.Mode != ClientState || !s.Hold || s.PSKIdentity != "device" || string(s.PSK) != string(testPSK) {
			t.Errorf("shard %d: %+v", k, s)
		}
	}
	// Fewer workers than shards: one each all the same.
	cfg.Concurrency = 2
	for k, s := range cfg.split(time.Time{}) {
		if s.Concurrency != 1 {
			t.Errorf("shard %d: %d workers", k, s.Concurrency)
		}
	}
	// A rate is shared out.
	cfg.Rate = 300
	if s := cfg.split(time.Time{})[0]; s.Rate != 100 {
		t.Errorf("rate %v", s.Rate)
	}
}

// TestShardAddresses checks that shards' source addresses never overlap,
// whatever the slice sizes.
func TestShardAddresses(t *testing.T) {
	cfg := Config{Target: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, Devices: 1003, Procs: 7, Concurrency: 1, PortsPerAddress: 50, PSKIdentity: "device", PSK: testPSK}
	owner := map[string]int{}
	for k, s := range cfg.split(time.Time{}) {
		c, err := s.config()
		if err != nil {
			t.Fatalf("shard %d: %v", k, err)
		}
		for i := range c.Devices {
			ip := c.sourceIP(i).String()
			if o, ok := owner[ip]; ok && o != k {
				t.Fatalf("%s used by shards %d and %d", ip, o, k)
			}
			owner[ip] = k
		}
	}
}

func TestPhaseMerge(t *testing.T) {
	t0 := time.Now()
	a := &phase{Start: t0.Add(time.Second), End: t0.Add(3 * time.Second), Latencies: []time.Duration{3, 1}, Failed: 1,
		Failures: map[string]int{ReasonTimeout: 1}, Held: 2, Addresses: 1, Resumed: 2}
	b := &phase{Start: t0, End: t0.Add(2 * time.Second), Latencies: []time.Duration{2}, Failed: 2,
		Failures: map[string]int{ReasonTimeout: 1, ReasonRefused: 1}, Held: 1, Addresses: 2, Resumed: 1}
	m := &phase{}
	m.merge(a)
	m.merge(b)
	if !m.Start.Equal(t0) || !m.End.Equal(t0.Add(3*time.Second)) {
		t.Errorf("window %v to %v", m.Start, m.End)
	}
	if len(m.Latencies) != 3 || m.Failed != 3 || m.Resumed != 3 || m.Held != 3 || m.Addresses != 3 ||
		m.Failures[ReasonTimeout] != 2 || m.Failures[ReasonRefused] != 1 {
		t.Errorf("merged %+v", m)
	}
	if l := latencyOf(m.Latencies); l.P50 != 2 || l.Max != 3 {
		t.Errorf("latency %+v", l)
	}
}

// TestRunShardInProcess speaks the parent's side of the protocol to
// RunShard over pipes.
func TestRunShardInProcess(t *testing.T) {
	addr, _ := echoServer(t)
	cfg := Config{Target: addr, Devices: 12, Procs: 2, Concurrency: 4, PortsPerAddress: 5, PSKIdentity: "device", PSK: testPSK, Mode: SessionTicket, Hold: true}
	spec := cfg.split(time.Now().Add(time.Minute))[1]
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- RunShard(context.Background(), inR, outW)
		outW.Close()
	}()
	line, _ := json.Marshal(spec)
	if _, err := fmt.Fprintf(inW, "%s\n", line); err != nil {
		t.Fatal(err)
	}
	events := bufio.NewScanner(outR)
	events.Buffer(nil, 1<<20)
	next := func(want string) shardEvent {
		t.Helper()
		for events.Scan() {
			var ev shardEvent
			if err := json.Unmarshal(events.Bytes(), &ev); err != nil {
				t.Fatalf("line %q: %v", events.Text(), err)
			}
			if ev.Event != eventProgress {
				if ev.Event != want {
					t.Fatalf("event %q, want %q", ev.Event, want)
				}
				return ev
			}
		}
		t.Fatalf("no %q: %v, %v", want, events.Err(), <-done)
		return shardEvent{}
	}
	if ev := next(eventReady); ev.Primed != 6 {
		t.Errorf("primed %d", ev.Primed)
	}
	fmt.Fprintln(inW, orderMeasure)
	m := next(eventDone).Phase
	if len(m.Latencies) != 6 || m.Failed != 0 || m.Resumed != 6 || m.Held != 6 || m.Addresses != 2 || !m.End.After(m.Start) {
		t.Errorf("phase %+v", m)
	}
	// Holding on until its input ends.
	select {
	case err := <-done:
		t.Fatalf("returned before its input ended: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	inW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunShard did not return once its input ended")
	}
}

// TestRunWithShards runs the devices in three child processes (this test
// binary as a shard) and checks that the result reads as one run.
func TestRunWithShards(t *testing.T) {
	t.Setenv(shardEnv, "1")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	addr, sources := echoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Run(ctx, Config{
		Target: addr, Devices: 31, Concurrency: 6, PSKIdentity: "device", PSK: testPSK, PortsPerAddress: 4, Hold: true,
		Mode: SessionTicket, Procs: 3, ShardCommand: []string{self},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Primed != 31 || res.Succeeded != 31 || res.Resumed != 31 || res.Failed != 0 || res.Held != 31 || res.SourceAddresses != 9 {
		t.Fatalf("result %+v", res)
	}
	if res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 || res.Elapsed <= 0 {
		t.Errorf("latency %+v over %v", res.Latency, res.Elapsed)
	}
	pids := map[int]bool{}
	for k, s := range res.Shards {
		pids[s.PID] = true
		if s.Succeeded != s.Devices || s.Held != s.Devices || s.Concurrency != 2 {
			t.Errorf("shard %d: %+v", k, s)
		}
	}
	if len(res.Shards) != 3 || len(pids) != 3 || pids[os.Getpid()] {
		t.Errorf("shards %+v", res.Shards)
	}
	seen := sources()
	for a := range 9 {
		if ip := SourceIP(a*4, 4).String(); !seen[ip] {
			t.Errorf("no connection from %s (saw %v)", ip, seen)
		}
	}
	if len(seen) != 9 {
		t.Errorf("%d source addresses: %v", len(seen), seen)
	}
}

// TestRunWithFailingShard reports a shard that exits without a word.
func TestRunWithFailingShard(t *testing.T) {
	addr, _ := echoServer(t)
	_, err := Run(context.Background(), Config{
		Target: addr, Devices: 4, PSKIdentity: "device", PSK: testPSK, Procs: 2, ShardCommand: []string{"/bin/false"},
	})
	if err == nil || !strings.Contains(err.Error(), "shard") {
		t.Fatalf("error %v", err)
	}
}
