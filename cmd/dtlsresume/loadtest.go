package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dtlsresume/dtlsresume/internal/loadgen"
)

// loadtestTarget is where the load goes: a DTLS echo server (HOST:PORT) or
// a CoAP server (coaps://HOST:PORT[/PATH]).
type loadtestTarget struct {
	addr *net.UDPAddr
	path string // CoAP path; empty for an echo server
}

func (t loadtestTarget) protocol() string {
	if t.path != "" {
		return "coap"
	}
	return "echo"
}

// parseLoadtestTarget reads TARGET. Only 127.0.0.0/8 is accepted (a name
// must resolve there); port 0 is allowed only when the server is spawned.
func parseLoadtestTarget(raw string, spawn bool) (loadtestTarget, error) {
	var t loadtestTarget
	hostport := raw
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "coaps" || u.Host == "" {
			return t, usagef("TARGET %q: want coaps://HOST:PORT[/PATH] or HOST:PORT", raw)
		}
		hostport = u.Host
		if u.Port() == "" {
			hostport = net.JoinHostPort(u.Hostname(), "5684")
		}
		t.path = u.EscapedPath()
		if t.path == "" || t.path == "/" {
			t.path = "/time"
		}
		if u.RawQuery != "" {
			t.path += "?" + u.RawQuery
		}
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return t, usagef("TARGET %q: want coaps://HOST:PORT[/PATH] or HOST:PORT", raw)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return t, usagef("TARGET %q: bad port %q", raw, port)
	}
	if p == 0 && !spawn {
		return t, usagef("TARGET %q: port 0 only with --spawn", raw)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		ips, err := net.LookupIP(host)
		if err != nil || len(ips) == 0 {
			return t, usagef("TARGET %q: cannot resolve %q", raw, host)
		}
		for _, a := range ips {
			if a.To4() != nil {
				ip = a
				break
			}
		}
		if ip == nil {
			ip = ips[0]
		}
	}
	if err := loadgen.CheckLoopback(ip); err != nil {
		return t, usagef("TARGET %q: %v", raw, err)
	}
	t.addr = &net.UDPAddr{IP: ip.To4(), Port: p}
	return t, nil
}

// cmdLoadtest simulates many devices against one server on loopback and
// prints what it measured; with --spawn it starts the server (ours, pion's
// or both in turn) as a child process and reads its CPU time and memory.
func cmdLoadtest(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadtest TARGET", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 1000, "number of simulated devices")
	conc := fs.Int("c", loadgen.DefaultConcurrency, "devices in flight at once")
	rate := fs.Float64("rate", 0, "start this many devices per second instead of -c workers")
	modeName := fs.String("mode", "full", "measured handshake: full, session_id, session_ticket or client_state (resumptions follow one full handshake per device)")
	hold := fs.Bool("hold", false, "keep every connection open until all devices are up, then report and close")
	spawn := fs.String("spawn", "", "start the server as a child process and measure it: ours, pion or both")
	hostile := fs.Bool("hostile", false, "add traffic from unverified sources: cookie-less hellos, replayed resumption hellos, fragment bombs")
	hostileRate := fs.Float64("hostile-rate", 10000, "cookie-less ClientHellos per second with --hostile")
	hostileReplays := fs.Int("hostile-replays", 1000, "source addresses replaying a captured resumption hello (each then sends a fragment bomb) with --hostile")
	hostileLinger := fs.Duration("hostile-linger", 3*time.Second, "how long each hostile source counts what the server sends it after its last datagram")
	pskFlag := fs.String("psk", "", "pre-shared key as IDENTITY:HEXKEY (default: the demo PSK)")
	timeout := fs.Duration("timeout", loadgen.DefaultHandshakeTimeout, "each device's handshake and reply timeout")
	maxTime := fs.Duration("max-time", 10*time.Minute, "stop everything after this long")
	perAddr := fs.Int("ports-per-addr", loadgen.DefaultPortsPerAddress, "devices per source address before the next 127.1.x.y address")
	procs := fs.Int("procs", 0, "run the devices in this many child processes, each with its own open-file limit and source addresses, -c or --rate split among them (0: one process if the devices' sockets fit the limit, else as few as hold them)")
	pionBuf := fs.Int("pion-read-buffer", loadgen.DefaultReadBuffer, "the spawned pion echo's read buffer per connection, in bytes: keep it equal to ours (listen's) for a fair memory comparison")
	asJSON := fs.Bool("json", false, "one JSON object per line on stdout instead of a table")

	// TARGET may come before or after the flags.
	var raw string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		raw, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if raw == "" && fs.NArg() > 0 {
		raw = fs.Arg(0)
		if fs.NArg() > 1 {
			return usagef("unexpected argument %q", fs.Arg(1))
		}
	} else if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if raw == "" {
		return usagef("give a TARGET: HOST:PORT (DTLS echo) or coaps://HOST:PORT[/PATH]")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var servers []string
	switch *spawn {
	case "":
	case "ours", "pion":
		servers = []string{*spawn}
	case "both":
		servers = []string{"ours", "pion"}
	default:
		return usagef("--spawn %q: want ours, pion or both", *spawn)
	}
	target, err := parseLoadtestTarget(raw, len(servers) > 0)
	if err != nil {
		return err
	}
	mode, err := loadgen.ParseMode(*modeName)
	if err != nil {
		return usagef("--mode: %v", err)
	}
	switch {
	case *n < 1 || *n > loadgen.MaxDevices:
		return usagef("-n %d: want 1 to %d", *n, loadgen.MaxDevices)
	case set["c"] && set["rate"]:
		return usagef("give -c or --rate, not both")
	case *conc < 1:
		return usagef("-c %d: at least 1", *conc)
	case set["rate"] && (*rate <= 0 || *rate > 1e6):
		return usagef("--rate %v: want more than 0 and at most 1e6", *rate)
	case *hostileRate <= 0 || *hostileRate > 1e5:
		return usagef("--hostile-rate %v: want more than 0 and at most 1e5", *hostileRate)
	case *hostileReplays < 1 || *hostileReplays > 100000:
		return usagef("--hostile-replays %d: want 1 to 100000", *hostileReplays)
	case *hostileLinger <= 0 || *hostileLinger > time.Minute:
		return usagef("--hostile-linger %v: want more than 0 and at most 1m", *hostileLinger)
	case *timeout <= 0:
		return usagef("--timeout %v: want more than 0", *timeout)
	case *maxTime <= 0:
		return usagef("--max-time %v: want more than 0", *maxTime)
	case *pionBuf < 256 || *pionBuf > 65536:
		return usagef("--pion-read-buffer %d: want 256 to 65536", *pionBuf)
	case *perAddr < 1 || *perAddr > 28000:
		return usagef("--ports-per-addr %d: want 1 to 28000 (the ephemeral port range)", *perAddr)
	case *procs < 0 || *procs > min(*n, loadgen.MaxProcs):
		return usagef("--procs %d: want 0 to %d, at most one per device", *procs, loadgen.MaxProcs)
	}
	identity, key := demoPSKIdentity, []byte("secretPSK-dtlsresume")
	if *pskFlag != "" {
		if identity, key, err = parsePSK(*pskFlag); err != nil {
			return err
		}
	}

	cfg := loadgen.Config{
		Target: target.addr, CoAPPath: target.path, Devices: *n, Concurrency: *conc, Mode: mode, Hold: *hold,
		PSKIdentity: identity, PSK: key, HandshakeTimeout: *timeout, PortsPerAddress: *perAddr,
	}
	if set["rate"] {
		cfg.Rate = *rate
	}
	limit, err := loadgen.RaiseFileLimit()
	if err != nil {
		return fmt.Errorf("raising the open-file limit: %w", err)
	}
	open := cfg.Sockets()
	if cfg.Procs, err = loadtestProcs(*procs, open, limit); err != nil {
		return err
	}
	if cfg.Procs > 1 {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		cfg.ShardCommand = []string{self, "loadtest-shard"}
		fmt.Fprintf(stderr, "loadtest: %d processes run the %d devices (%d sockets at once; the open-file limit is %d)\n",
			cfg.Procs, *n, open, limit)
		open = 0 // this process holds none of them
	}
	if *hostile {
		sources := int(limit) - open - loadtestReserve
		if sources < 64 {
			return usagef("--hostile needs more open files: the limit is %d", limit)
		}
		cfg.Hostile = &loadgen.Hostile{
			HelloRate: *hostileRate, Replays: *hostileReplays, Linger: *hostileLinger, MaxSources: min(sources, 8192),
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), *maxTime)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	rep := loadtestReport{target: target, cfg: cfg, json: *asJSON}
	defer func() {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "loadtest: stopped early (--max-time %v or a signal): devices not yet started are not counted\n", *maxTime)
		}
	}()
	if len(servers) == 0 {
		res, err := runLoad(ctx, "target", cfg, stderr)
		if err != nil {
			return err
		}
		printShards(stderr, "target", cfg.Hold, res.Shards)
		rep.add("target", cfg.Target, res)
		return rep.print(stdout)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for _, kind := range servers {
		srv, err := spawnServer(ctx, self, kind, target, mode, *pskFlag, *pionBuf)
		if err != nil {
			return fmt.Errorf("starting the %s server: %w", kind, err)
		}
		fmt.Fprintf(stderr, "loadtest: %s server %s on udp %s\n", kind, srv.Name(), srv.Addr)
		c := cfg
		c.Target, c.ServerPID = srv.Addr, srv.PID()
		if c.Hostile != nil {
			h := *c.Hostile
			c.Hostile = &h
		}
		res, err := runLoad(ctx, kind, c, stderr)
		alive := srv.Alive()
		srv.Stop()
		if err == nil && !alive {
			err = fmt.Errorf("the %s server exited during the load; its output ends %q", kind, lastLines(srv.Output()))
		}
		if err != nil {
			return err
		}
		printShards(stderr, kind, cfg.Hold, res.Shards)
		rep.add(kind, srv.Addr, res)
		if ctx.Err() != nil {
			break
		}
	}
	return rep.print(stdout)
}

// loadtestReserve is how many descriptors loadtest keeps besides its
// devices' sockets when it runs them itself: the runtime, the server's
// pipes, the capture client.
const loadtestReserve = 256

// loadtestProcs returns how many processes run the devices, which hold open
// sockets at once: want, or with want 0 one process when they fit the
// open-file limit, else as few as hold them, each with
// loadgen.ShardReserve descriptors to spare.
func loadtestProcs(want, open int, limit uint64) (int, error) {
	perShard := int(limit) - loadgen.ShardReserve
	fits := uint64(open+loadtestReserve) <= limit
	switch {
	case want == 1 && !fits:
		return 0, usagef("%d sockets at once need %d open files, the limit is %d (raise ulimit -Hn, or leave --procs at 0 to use several processes)",
			open, open+loadtestReserve, limit)
	case want == 1 || want == 0 && fits:
		return 1, nil
	case perShard < 1:
		return 0, usagef("the open-file limit %d leaves no room for devices (raise ulimit -Hn)", limit)
	case want == 0:
		want = (open + perShard - 1) / perShard
		if want > loadgen.MaxProcs {
			return 0, usagef("%d sockets at once need %d processes at the open-file limit %d, more than %d", open, want, limit, loadgen.MaxProcs)
		}
	}
	if per := (open + want - 1) / want; per > perShard {
		return 0, usagef("--procs %d: each process would hold %d sockets, the open-file limit %d allows %d (give --procs %d or more)",
			want, per, limit, perShard, (open+perShard-1)/perShard)
	}
	return want, nil
}

// printShards says on stderr what each child process of a run did.
func printShards(stderr io.Writer, name string, hold bool, shards []loadgen.Shard) {
	for i, s := range shards {
		from := s.FirstIP.String()
		if !s.LastIP.Equal(s.FirstIP) {
			from += "-" + s.LastIP.String()
		}
		how := fmt.Sprintf("%d workers", s.Concurrency)
		if s.Rate > 0 {
			how = fmt.Sprintf("%g/s", s.Rate)
		}
		held := ""
		if hold {
			held = fmt.Sprintf(", %d held", s.Held)
		}
		fmt.Fprintf(stderr, "loadtest %s: shard %d/%d pid %d: devices %d-%d from %s, %s: %d ok, %d failed%s\n",
			name, i+1, len(shards), s.PID, s.FirstDevice, s.FirstDevice+s.Devices-1, from, how, s.Succeeded, s.Failed, held)
	}
}

// runLoad runs the load with a progress line on stderr once a second.
func runLoad(ctx context.Context, name string, cfg loadgen.Config, stderr io.Writer) (*loadgen.Result, error) {
	cfg.Progress = func(p loadgen.Progress) {
		fmt.Fprintf(stderr, "loadtest %s %s: %d/%d ok, %d failed, %d in flight, %d held, %.0f handshakes/s, %.0fs\n",
			name, p.Phase, p.Succeeded, p.Total, p.Failed, p.InFlight, p.Held, p.HandshakesPerSecond, p.Elapsed.Seconds())
	}
	return loadgen.Run(ctx, cfg)
}

// spawnServer starts kind's server for target on a free port (or the
// target's own) as a child process: ours is this binary's listen or serve
// with the demo PSK (or --psk); pion is a pion/dtls v3 echo, or go-coap's
// DTLS server, run by the hidden loadtest-peer command.
func spawnServer(ctx context.Context, self, kind string, target loadtestTarget, mode loadgen.Mode, psk string, pionBuf int) (*loadgen.Server, error) {
	addr := *target.addr
	if addr.Port == 0 {
		p, err := loadgen.FreeLoopbackPort()
		if err != nil {
			return nil, err
		}
		addr.Port = p
	}
	var argv []string
	var ready string
	switch {
	case kind == "ours" && target.path == "":
		argv = []string{self, "listen", "--addr", addr.String(), "--log-level", "warn"}
		ready = "listening on udp"
	case kind == "ours":
		argv = []string{self, "serve", "--addr", addr.String(), "--log-level", "warn"}
		ready = "serving CoAP over DTLS on udp"
	case target.path == "":
		argv = []string{self, "loadtest-peer", "pion-echo", "--addr", addr.String(), "--read-buffer", strconv.Itoa(pionBuf)}
		ready = "listening on udp"
	default:
		argv = []string{self, "loadtest-peer", "pion-coap", "--addr", addr.String()}
		ready = "serving CoAP over DTLS on udp"
	}
	if psk != "" {
		argv = append(argv, "--psk", psk)
	}
	if kind == "pion" && (mode == loadgen.SessionID || mode == loadgen.SessionTicket) {
		argv = append(argv, "--session-store")
	}
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return loadgen.Spawn(sctx, &addr, ready, argv...)
}

// lastLines is the end of a process's output, for an error message.
func lastLines(out string) string {
	out = strings.TrimSpace(out)
	if len(out) > 400 {
		out = "..." + out[len(out)-400:]
	}
	return out
}

// cmdLoadtestPeer is the hidden command `loadtest-peer pion-echo|pion-coap`:
// the pion/dtls v3 server that loadtest --spawn pion runs as a process of
// its own. It stops on SIGINT or SIGTERM, or when its standard input ends
// (the load test that started it is gone).
func cmdLoadtestPeer(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "pion-echo" && args[0] != "pion-coap") {
		return usagef("want pion-echo or pion-coap")
	}
	which := args[0]
	fs := flag.NewFlagSet("loadtest-peer "+which, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:5684", "UDP address to serve on")
	pskFlag := fs.String("psk", "", "pre-shared key as IDENTITY:HEXKEY (default: the demo PSK)")
	sessions := fs.Bool("session-store", false, "keep sessions so that clients resume by session ID")
	readBuf := fs.Int("read-buffer", loadgen.DefaultReadBuffer, "echo read buffer per connection, in bytes")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	laddr, err := net.ResolveUDPAddr("udp", *addr)
	if err != nil {
		return usagef("--addr %q: %v", *addr, err)
	}
	cfg := loadgen.PeerConfig{Addr: laddr, PSKIdentity: demoPSKIdentity, PSK: []byte("secretPSK-dtlsresume"), SessionStore: *sessions, ReadBuffer: *readBuf}
	if *pskFlag != "" {
		id, key, err := parsePSK(*pskFlag)
		if err != nil {
			return err
		}
		cfg.PSKIdentity, cfg.PSK = id, key
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		cancel()
	}()
	if which == "pion-echo" {
		return loadgen.ServePionEcho(ctx, cfg, stdout)
	}
	return loadgen.ServePionCoAP(ctx, cfg, stdout)
}

// cmdLoadtestShard is the hidden command `loadtest-shard`: one of the child
// processes among which loadtest shares its devices (--procs). Its orders
// come on its standard input and its reports go to its standard output, one
// JSON object per line (see loadgen.RunShard); it ends when its standard
// input does (the load test is done, or gone), on SIGINT or SIGTERM.
func cmdLoadtestShard(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q: the orders come on standard input", args[0])
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return loadgen.RunShard(ctx, stdin, stdout)
}

// loadtestReport collects the runs of one loadtest and prints them.
type loadtestReport struct {
	target loadtestTarget
	cfg    loadgen.Config
	json   bool
	names  []string
	addrs  []*net.UDPAddr
	runs   []*loadgen.Result
}

func (r *loadtestReport) add(name string, addr *net.UDPAddr, res *loadgen.Result) {
	r.names = append(r.names, name)
	r.addrs = append(r.addrs, addr)
	r.runs = append(r.runs, res)
}

// loadtestRun is one run as a JSON object.
type loadtestRun struct {
	Kind            string             `json:"kind"` // "run"
	Server          string             `json:"server"`
	Target          string             `json:"target"`
	Protocol        string             `json:"protocol"`
	Path            string             `json:"path,omitempty"`
	Mode            string             `json:"mode"`
	Devices         int                `json:"devices"`
	Concurrency     int                `json:"concurrency,omitempty"`
	Rate            float64            `json:"rate,omitempty"`
	Hold            bool               `json:"hold"`
	Primed          int                `json:"primed"`
	Succeeded       int                `json:"succeeded"`
	Failed          int                `json:"failed"`
	Resumed         int                `json:"resumed"`
	Failures        map[string]int     `json:"failures"`
	DurationS       float64            `json:"duration_s"`
	HandshakesPerS  float64            `json:"handshakes_per_s"`
	P50MS           float64            `json:"p50_ms"`
	P99MS           float64            `json:"p99_ms"`
	MaxMS           float64            `json:"max_ms"`
	Held            int                `json:"held"`
	SourceAddresses int                `json:"source_addresses"`
	ServerUsage     *loadtestUsage     `json:"server_usage,omitempty"`
	Hostile         *loadtestHostileJS `json:"hostile,omitempty"`
}

type loadtestUsage struct {
	PID                 int      `json:"pid"`
	CPUMS               float64  `json:"cpu_ms"`
	CPUMSPerHandshake   float64  `json:"cpu_ms_per_handshake"`
	RSSBeforeBytes      int64    `json:"rss_before_bytes"`
	RSSAfterBytes       int64    `json:"rss_after_bytes"`
	RSSPerHeldConnBytes *float64 `json:"rss_per_held_conn_bytes,omitempty"` // with --hold
}

type loadtestTally struct {
	Sources       int     `json:"sources"`
	Datagrams     int     `json:"datagrams"`
	BytesSent     int64   `json:"bytes_sent"`
	BytesReceived int64   `json:"bytes_received"`
	MaxRatio      float64 `json:"max_ratio"`
	OverBound     int     `json:"over_bound"`
}

type loadtestHostileJS struct {
	Hellos            loadtestTally `json:"hellos"`
	Replays           loadtestTally `json:"replays"`
	ReplayResumed     bool          `json:"replay_resumed"`
	ReplayResumption  string        `json:"replay_resumption"`
	Skipped           int           `json:"skipped_sources"`
	MaxRatio          float64       `json:"max_ratio"`
	Bound             float64       `json:"bound"`
	LegitSuccessRate  float64       `json:"legit_success_rate"`
	PreludeSources    int           `json:"prelude_sources"`
	ServerRSSGrowth   int64         `json:"server_rss_growth_bytes,omitempty"`
	RSSPerSourceBytes float64       `json:"server_rss_per_source_bytes,omitempty"`
}

// loadtestComparison is ours beside pion, as ratios ours/pion.
type loadtestComparison struct {
	Kind                string   `json:"kind"` // "comparison"
	HandshakesPerS      float64  `json:"handshakes_per_s_ours_over_pion"`
	P50                 float64  `json:"p50_ours_over_pion"`
	P99                 float64  `json:"p99_ours_over_pion"`
	CPUPerHandshake     float64  `json:"cpu_per_handshake_ours_over_pion"`
	RSSPerHeldConn      *float64 `json:"rss_per_held_conn_ours_over_pion,omitempty"`      // with --hold
	RSSPerHostileSource *float64 `json:"rss_per_hostile_source_ours_over_pion,omitempty"` // with --hostile
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func tallyJSON(t loadgen.SourceTally) loadtestTally {
	return loadtestTally{t.Sources, t.Datagrams, t.BytesSent, t.BytesReceived, t.MaxRatio, t.OverBound}
}

func (r *loadtestReport) row(i int) loadtestRun {
	res := r.runs[i]
	failures := res.Failures
	if failures == nil {
		failures = map[string]int{}
	}
	row := loadtestRun{
		Kind: "run", Server: r.names[i], Target: r.addrs[i].String(), Protocol: r.target.protocol(), Path: r.target.path,
		Mode: string(res.Mode), Devices: res.Devices, Hold: r.cfg.Hold, Primed: res.Primed,
		Succeeded: res.Succeeded, Failed: res.Failed, Resumed: res.Resumed, Failures: failures,
		DurationS: res.Elapsed.Seconds(), HandshakesPerS: res.HandshakesPerSecond(),
		P50MS: ms(res.Latency.P50), P99MS: ms(res.Latency.P99), MaxMS: ms(res.Latency.Max),
		Held: res.Held, SourceAddresses: res.SourceAddresses,
	}
	if r.cfg.Rate > 0 {
		row.Rate = r.cfg.Rate
	} else {
		row.Concurrency = r.cfg.Concurrency
	}
	if u := res.Server; u != nil {
		row.ServerUsage = &loadtestUsage{
			PID: u.PID, CPUMS: ms(u.CPU), CPUMSPerHandshake: float64(u.CPUPerHandshake.Nanoseconds()) / 1e6,
			RSSBeforeBytes: u.RSSBefore, RSSAfterBytes: u.RSSAfter,
		}
		if r.cfg.Hold {
			row.ServerUsage.RSSPerHeldConnBytes = &u.RSSPerConn
		}
	}
	if h := res.Hostile; h != nil {
		row.Hostile = &loadtestHostileJS{
			Hellos: tallyJSON(h.Hellos), Replays: tallyJSON(h.Replays),
			ReplayResumed: h.ReplayResumed, ReplayResumption: h.ReplayResumption, Skipped: h.Skipped,
			MaxRatio: h.MaxRatio, Bound: loadgen.AmplificationBound, LegitSuccessRate: h.LegitSuccessRate,
			PreludeSources: h.PreludeSources, ServerRSSGrowth: h.ServerRSSGrowth, RSSPerSourceBytes: h.RSSPerSource,
		}
	}
	return row
}

// ratio is a/b, or 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// comparison returns ours beside pion when the report has both.
func (r *loadtestReport) comparison() (loadtestRun, loadtestRun, *loadtestComparison) {
	if len(r.runs) != 2 || r.names[0] != "ours" || r.names[1] != "pion" {
		return loadtestRun{}, loadtestRun{}, nil
	}
	o, p := r.row(0), r.row(1)
	c := &loadtestComparison{
		Kind: "comparison", HandshakesPerS: ratio(o.HandshakesPerS, p.HandshakesPerS),
		P50: ratio(o.P50MS, p.P50MS), P99: ratio(o.P99MS, p.P99MS),
	}
	if o.ServerUsage != nil && p.ServerUsage != nil {
		c.CPUPerHandshake = ratio(o.ServerUsage.CPUMSPerHandshake, p.ServerUsage.CPUMSPerHandshake)
		if o.ServerUsage.RSSPerHeldConnBytes != nil && p.ServerUsage.RSSPerHeldConnBytes != nil {
			v := ratio(*o.ServerUsage.RSSPerHeldConnBytes, *p.ServerUsage.RSSPerHeldConnBytes)
			c.RSSPerHeldConn = &v
		}
	}
	if o.Hostile != nil && p.Hostile != nil && o.ServerUsage != nil {
		v := ratio(o.Hostile.RSSPerSourceBytes, p.Hostile.RSSPerSourceBytes)
		c.RSSPerHostileSource = &v
	}
	return o, p, c
}

func (r *loadtestReport) print(w io.Writer) error {
	if r.json {
		enc := json.NewEncoder(w)
		for i := range r.runs {
			if err := enc.Encode(r.row(i)); err != nil {
				return err
			}
		}
		if _, _, c := r.comparison(); c != nil {
			return enc.Encode(c)
		}
		return nil
	}
	rows := make([]loadtestRun, len(r.runs))
	for i := range r.runs {
		rows[i] = r.row(i)
	}
	_, _, cmp := r.comparison()
	how := fmt.Sprintf("%d workers", r.cfg.Concurrency)
	if r.cfg.Rate > 0 {
		how = fmt.Sprintf("%g/s", r.cfg.Rate)
	}
	held := ""
	if r.cfg.Hold {
		held = ", held open"
	}
	fmt.Fprintf(w, "loadtest: %d devices, %s handshakes, %s, %s%s\n", r.cfg.Devices, r.cfg.Mode, r.target.protocol(), how, held)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	header := "\t"
	for _, name := range r.names {
		header += name + "\t"
	}
	if cmp != nil {
		header += "ours/pion\t"
	}
	fmt.Fprintln(tw, header)
	line := func(label string, value func(loadtestRun) string, ratio float64) {
		s := label + "\t"
		for _, row := range rows {
			s += value(row) + "\t"
		}
		if cmp != nil {
			if ratio != 0 {
				s += fmt.Sprintf("%.2f", ratio)
			}
			s += "\t"
		}
		fmt.Fprintln(tw, s)
	}
	noRatio := 0.0
	var c loadtestComparison
	if cmp != nil {
		c = *cmp
	}
	line("succeeded", func(x loadtestRun) string { return strconv.Itoa(x.Succeeded) }, noRatio)
	line("failed", func(x loadtestRun) string { return strconv.Itoa(x.Failed) }, noRatio)
	if r.cfg.Mode != loadgen.Full {
		line("primed (full handshakes first)", func(x loadtestRun) string { return strconv.Itoa(x.Primed) }, noRatio)
		line("resumed", func(x loadtestRun) string { return strconv.Itoa(x.Resumed) }, noRatio)
	}
	line("failures", func(x loadtestRun) string { return failureList(x.Failures) }, noRatio)
	line("handshakes/s", func(x loadtestRun) string { return fmt.Sprintf("%.0f", x.HandshakesPerS) }, c.HandshakesPerS)
	line("p50 handshake (ms)", func(x loadtestRun) string { return fmt.Sprintf("%.2f", x.P50MS) }, c.P50)
	line("p99 handshake (ms)", func(x loadtestRun) string { return fmt.Sprintf("%.2f", x.P99MS) }, c.P99)
	if r.cfg.Hold {
		line("held", func(x loadtestRun) string { return strconv.Itoa(x.Held) }, noRatio)
	}
	line("source addresses", func(x loadtestRun) string { return strconv.Itoa(x.SourceAddresses) }, noRatio)
	if rows[0].ServerUsage != nil {
		u := func(f func(*loadtestUsage) string) func(loadtestRun) string {
			return func(x loadtestRun) string {
				if x.ServerUsage == nil {
					return "-"
				}
				return f(x.ServerUsage)
			}
		}
		// /proc counts CPU time in 10 ms ticks: the total says how
		// coarse the per-handshake figure is.
		line("server CPU (ms)", u(func(u *loadtestUsage) string { return fmt.Sprintf("%.0f", u.CPUMS) }), noRatio)
		line("server CPU/handshake (ms)", u(func(u *loadtestUsage) string { return fmt.Sprintf("%.3f", u.CPUMSPerHandshake) }), c.CPUPerHandshake)
		line("server RSS before (MiB)", u(func(u *loadtestUsage) string { return fmt.Sprintf("%.1f", float64(u.RSSBeforeBytes)/(1<<20)) }), noRatio)
		after := "server RSS after (MiB)"
		if r.cfg.Hold {
			after = "server RSS all held (MiB)"
		}
		line(after, u(func(u *loadtestUsage) string { return fmt.Sprintf("%.1f", float64(u.RSSAfterBytes)/(1<<20)) }), noRatio)
		if r.cfg.Hold {
			line("server RSS/held conn (B)", u(func(u *loadtestUsage) string { return fmt.Sprintf("%.0f", *u.RSSPerHeldConnBytes) }), deref(c.RSSPerHeldConn))
		}
	}
	if rows[0].Hostile != nil {
		h := func(f func(*loadtestHostileJS) string) func(loadtestRun) string {
			return func(x loadtestRun) string { return f(x.Hostile) }
		}
		line("hostile hellos: sources/datagrams", h(func(h *loadtestHostileJS) string {
			return fmt.Sprintf("%d/%d", h.Hellos.Sources, h.Hellos.Datagrams)
		}), noRatio)
		line("  bytes sent/received", h(func(h *loadtestHostileJS) string {
			return fmt.Sprintf("%d/%d", h.Hellos.BytesSent, h.Hellos.BytesReceived)
		}), noRatio)
		line("hostile replays+bombs: sources", h(func(h *loadtestHostileJS) string {
			kind := "full"
			if h.ReplayResumed {
				kind = h.ReplayResumption
			}
			return fmt.Sprintf("%d (%s)", h.Replays.Sources, kind)
		}), noRatio)
		line("  bytes sent/received", h(func(h *loadtestHostileJS) string {
			return fmt.Sprintf("%d/%d", h.Replays.BytesSent, h.Replays.BytesReceived)
		}), noRatio)
		line(fmt.Sprintf("max received/sent (bound %d)", loadgen.AmplificationBound), h(func(h *loadtestHostileJS) string {
			verdict := "ok"
			if over := h.Hellos.OverBound + h.Replays.OverBound; over > 0 {
				verdict = fmt.Sprintf("%d over", over)
			}
			return fmt.Sprintf("%.2f %s", h.MaxRatio, verdict)
		}), noRatio)
		if rows[0].Hostile.Skipped > 0 || len(rows) > 1 && rows[1].Hostile.Skipped > 0 {
			line("hostile sources skipped", h(func(h *loadtestHostileJS) string { return strconv.Itoa(h.Skipped) }), noRatio)
		}
		line("legit success under attack", h(func(h *loadtestHostileJS) string {
			return fmt.Sprintf("%.1f%%", 100*h.LegitSuccessRate)
		}), noRatio)
		if rows[0].ServerUsage != nil {
			line("server RSS/hostile source (B)", h(func(h *loadtestHostileJS) string {
				return fmt.Sprintf("%.0f", h.RSSPerSourceBytes)
			}), deref(c.RSSPerHostileSource))
		}
	}
	return tw.Flush()
}

func deref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

// failureList is "-" or the reasons and counts, most frequent first.
func failureList(f map[string]int) string {
	if len(f) == 0 {
		return "-"
	}
	keys := slices.Sorted(maps.Keys(f))
	slices.SortStableFunc(keys, func(a, b string) int { return f[b] - f[a] })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", strings.ReplaceAll(k, " ", "_"), f[k])
	}
	return strings.Join(parts, ",")
}
