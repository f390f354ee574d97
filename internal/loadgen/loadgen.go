package loadgen

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dtlsresume/dtlsresume/coapclient"
	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// Mode is what a device's measured handshake is.
type Mode string

const (
	// Full is a full PSK handshake, offering no resumption.
	Full Mode = "full"
	// SessionID, SessionTicket and ClientState are resumptions by that
	// type, each after one full handshake per device that is not measured.
	SessionID     Mode = "session_id"
	SessionTicket Mode = "session_ticket"
	ClientState   Mode = "client_state"
)

// Modes lists the modes in the order the command line documents them.
var Modes = []Mode{Full, SessionID, SessionTicket, ClientState}

// ParseMode returns the Mode named s.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown mode %q: want full, session_id, session_ticket or client_state", s)
}

// Defaults and bounds.
const (
	DefaultConcurrency      = 64
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultPortsPerAddress  = 20000
	// MaxDevices bounds Config.Devices.
	MaxDevices = 1_000_000
	// MaxProcs bounds Config.Procs.
	MaxProcs = 256
	// maxInFlight bounds the devices in flight when they start at a rate.
	maxInFlight = 4096
	// settle is how long Run waits, with every connection held, before it
	// reads the server's memory: the server may still be finishing the
	// last handshakes it saw.
	settle = 500 * time.Millisecond
)

// CheckLoopback returns an error unless ip is in 127.0.0.0/8: the load is
// only ever aimed at this machine.
func CheckLoopback(ip net.IP) error {
	if ip4 := ip.To4(); ip4 == nil || ip4[0] != 127 {
		return fmt.Errorf("%s is not a loopback address: loadtest only targets 127.0.0.0/8", ip)
	}
	return nil
}

// Config configures Run.
type Config struct {
	// Target is the server, in 127.0.0.0/8.
	Target *net.UDPAddr
	// CoAPPath, when set, makes each device GET it over CoAP after its
	// handshake and expect 2.05 Content; otherwise a device sends one
	// message and expects it echoed.
	CoAPPath string
	// Devices is the number of devices, at most MaxDevices.
	Devices int
	// Concurrency is how many devices run at once when Rate is zero;
	// default DefaultConcurrency.
	Concurrency int
	// Rate, when positive, starts that many devices per second instead of
	// a fixed number of workers.
	Rate float64
	// Mode is the measured handshake; default Full.
	Mode Mode
	// Hold keeps every connection open once its handshake (and reply) is
	// done until all devices have finished; the server's memory is read
	// then.
	Hold bool
	// PSKIdentity and PSK are every device's credentials
	// (TLS_PSK_WITH_AES_128_CCM_8).
	PSKIdentity string
	PSK         []byte
	// HandshakeTimeout bounds a device's handshake and its reply; default
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// PortsPerAddress is how many devices share a source address before
	// the next one is used; default DefaultPortsPerAddress, which stays
	// below the kernel's ephemeral port range.
	PortsPerAddress int
	// ServerPID, when set, is the server's process: Run reads its CPU time
	// and memory from /proc around the measured phase.
	ServerPID int
	// Hostile, when set, adds traffic from unverified source addresses.
	Hostile *Hostile
	// Progress, when set, is called about once a second while devices run.
	Progress func(Progress)

	// Procs, when more than 1, runs the devices in that many child
	// processes (shards), each with its own open-file limit: for more
	// devices than one process may hold sockets for. Each shard gets a
	// consecutive slice of the devices, source addresses of its own, and
	// its share of Concurrency (at least one worker) or of Rate, so that the
	// whole load is what one process would make. Run itself runs the
	// hostile traffic, reads the server's usage and merges the shards'
	// counts and latencies. At most Devices and MaxProcs.
	Procs int
	// ShardCommand is the program and arguments that start a shard: a
	// process that calls RunShard with its standard input and output.
	// Required when Procs is more than 1.
	ShardCommand []string

	// firstDevice and firstAddress place a shard's devices in the whole
	// load: device i of this Run is device firstDevice+i (its client_state
	// key and its echo), from source address index firstAddress +
	// i/PortsPerAddress (see SourceIP).
	firstDevice, firstAddress int
}

// Progress is a snapshot of a running phase.
type Progress struct {
	// Phase is "prime" (the full handshakes before resumptions) or
	// "measure".
	Phase                                    string
	Elapsed                                  time.Duration
	Total, Succeeded, Failed, InFlight, Held int
	// HandshakesPerSecond is the rate of successes since the last report.
	HandshakesPerSecond float64
}

// Result is what Run measured.
type Result struct {
	Mode    Mode
	CoAP    bool
	Devices int
	// Primed counts the devices whose full handshake before a resumption
	// succeeded (resumption modes only).
	Primed int
	// Succeeded and Failed count the measured devices; Resumed counts the
	// successes that were abbreviated handshakes.
	Succeeded, Failed, Resumed int
	// Failures counts failed devices by reason (see Reason).
	Failures map[string]int
	// Elapsed is the measured phase's duration, from the first device's
	// start to the last one's end.
	Elapsed time.Duration
	Latency Latency
	// Held is the number of connections open at the end, with Hold.
	Held int
	// SourceAddresses is the number of source addresses the measured
	// devices used.
	SourceAddresses int
	// Server is the server's usage, when Config.ServerPID was set.
	Server *ServerUsage
	// Hostile reports the hostile traffic, when Config.Hostile was set.
	Hostile *HostileResult
	// Shards are the child processes that ran the devices, with
	// Config.Procs more than 1.
	Shards []Shard
}

// Shard is what one child process of a Run did.
type Shard struct {
	PID int
	// FirstDevice and Devices are its slice of the devices.
	FirstDevice, Devices int
	// FirstIP and LastIP are the first and last of its source addresses.
	FirstIP, LastIP net.IP
	// Concurrency or Rate is its share of the Config's.
	Concurrency int
	Rate        float64
	// Succeeded, Failed and Held count its measured devices.
	Succeeded, Failed, Held int
}

// HandshakesPerSecond is the rate of successful devices over the measured
// phase.
func (r *Result) HandshakesPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Succeeded) / r.Elapsed.Seconds()
}

// ServerUsage is a server process's cost during the measured phase.
type ServerUsage struct {
	PID int
	// CPU is the server's user and system time during the measured phase,
	// hostile traffic included when it ran alongside.
	CPU time.Duration
	// CPUPerHandshake is CPU divided by the successful devices.
	CPUPerHandshake time.Duration
	// RSSBefore is the resident memory before the measured phase, RSSAfter
	// at its end (with Hold: with every connection held).
	RSSBefore, RSSAfter int64
	// RSSPerConn is (RSSAfter-RSSBefore)/Held, with Hold only.
	RSSPerConn float64
}

// SourceIP is the source address of device i: 127.1.0.1 onwards, each
// address serving perAddr devices. Hostile sources use 127.128.0.0 and up.
func SourceIP(i, perAddr int) net.IP {
	a := i / perAddr
	return net.IPv4(127, byte(1+a/(254*256)), byte(a/254%256), byte(1+a%254))
}

// sourceIP is the source address of device i of this Run.
func (cfg *Config) sourceIP(i int) net.IP {
	return SourceIP(cfg.firstAddress*cfg.PortsPerAddress+i, cfg.PortsPerAddress)
}

// Run simulates cfg.Devices devices against cfg.Target and returns what it
// measured. In resumption modes each device first makes one full handshake
// (the "prime" phase), then the resumptions are measured. Run returns an
// error only when the load cannot run at all; devices that fail are
// counted.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	f, err := cfg.start(ctx)
	if err != nil {
		return nil, err
	}
	defer f.close()
	res := &Result{Mode: cfg.Mode, CoAP: cfg.CoAPPath != "", Devices: cfg.Devices}
	if res.Primed, err = f.ready(ctx); err != nil {
		return nil, err
	}

	var h *hostileRun
	if cfg.Hostile != nil {
		if h, err = startHostile(ctx, &cfg); err != nil {
			return nil, err
		}
		defer h.stop() // a no-op once stopped below
	}
	before, err := cfg.usage()
	if err != nil {
		return nil, err
	}
	m, err := f.measure(ctx)
	if err != nil {
		return nil, err
	}
	cpuAfter, err := cfg.usage()
	if err != nil {
		return nil, err
	}
	rssAfter := cpuAfter
	if cfg.Hold && cfg.ServerPID != 0 {
		select {
		case <-time.After(settle):
		case <-ctx.Done():
		}
		if rssAfter, err = cfg.usage(); err != nil {
			return nil, err
		}
	}
	res.record(m)
	res.Shards = f.shards()
	if cfg.ServerPID != 0 {
		u := &ServerUsage{PID: cfg.ServerPID, CPU: cpuAfter.CPU - before.CPU, RSSBefore: before.RSS, RSSAfter: rssAfter.RSS}
		if res.Succeeded > 0 {
			u.CPUPerHandshake = u.CPU / time.Duration(res.Succeeded)
		}
		if cfg.Hold && res.Held > 0 {
			u.RSSPerConn = float64(rssAfter.RSS-before.RSS) / float64(res.Held)
		}
		res.Server = u
	}
	if h != nil {
		res.Hostile = h.stop()
		if n := res.Succeeded + res.Failed; n > 0 {
			res.Hostile.LegitSuccessRate = float64(res.Succeeded) / float64(n)
		}
	}
	return res, nil
}

// record fills in the counts and latencies of the measured phase.
func (r *Result) record(m *phase) {
	r.Elapsed = m.End.Sub(m.Start)
	r.Succeeded, r.Failed, r.Resumed = len(m.Latencies), m.Failed, m.Resumed
	r.Failures = m.Failures
	if r.Failures == nil {
		r.Failures = map[string]int{}
	}
	r.Latency = latencyOf(m.Latencies)
	r.Held = m.Held
	r.SourceAddresses = m.Addresses
}

// fleet runs the devices of a Run: an engine in this process, or shards in
// child processes.
type fleet interface {
	// ready prepares the devices for the measured phase: in resumption
	// modes, each one's full handshake. It returns how many were primed.
	ready(ctx context.Context) (primed int, err error)
	// measure runs the measured phase and returns when every device is
	// done, each connection held open with Config.Hold.
	measure(ctx context.Context) (*phase, error)
	// shards reports the child processes, if any.
	shards() []Shard
	// close releases the held connections and whatever else the fleet
	// holds.
	close()
}

// start returns the fleet that runs cfg's devices.
func (cfg *Config) start(ctx context.Context) (fleet, error) {
	if cfg.Procs > 1 {
		return startShards(ctx, cfg)
	}
	return newEngine(cfg), nil
}

func (cfg *Config) check() error {
	if cfg.Target == nil {
		return errors.New("loadgen: no target")
	}
	if err := CheckLoopback(cfg.Target.IP); err != nil {
		return err
	}
	if cfg.Target.Port == 0 {
		return errors.New("loadgen: target has no port")
	}
	if cfg.Devices < 1 || cfg.Devices > MaxDevices {
		return fmt.Errorf("loadgen: %d devices: want 1 to %d", cfg.Devices, MaxDevices)
	}
	if cfg.Mode == "" {
		cfg.Mode = Full
	}
	if _, err := ParseMode(string(cfg.Mode)); err != nil {
		return err
	}
	if cfg.PSKIdentity == "" || len(cfg.PSK) == 0 {
		return errors.New("loadgen: no PSK")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.PortsPerAddress <= 0 {
		cfg.PortsPerAddress = DefaultPortsPerAddress
	}
	if cfg.Hostile != nil {
		cfg.Hostile.defaults()
	}
	if cfg.Procs > 1 {
		if cfg.Procs > cfg.Devices || cfg.Procs > MaxProcs {
			return fmt.Errorf("loadgen: %d processes for %d devices: want at most %d and at most one per device", cfg.Procs, cfg.Devices, MaxProcs)
		}
		if len(cfg.ShardCommand) == 0 {
			return errors.New("loadgen: Procs without a ShardCommand")
		}
	}
	if cfg.firstDevice < 0 || cfg.firstAddress < 0 || cfg.firstDevice+cfg.Devices > MaxDevices {
		return fmt.Errorf("loadgen: devices %d to %d: want 0 to %d", cfg.firstDevice, cfg.firstDevice+cfg.Devices-1, MaxDevices-1)
	}
	return nil
}

// Sockets is the most sockets cfg's devices hold open at once in one
// process: every device with Hold, else those in flight.
func (cfg *Config) Sockets() int {
	switch {
	case cfg.Hold:
		return cfg.Devices
	case cfg.Rate > 0:
		return min(cfg.Devices, maxInFlight)
	}
	return min(cfg.Devices, max(cfg.Concurrency, 1))
}

// engine runs the devices of one Run.
type engine struct {
	cfg *Config
	// full is the Config of full handshakes, shared by all devices;
	// resumption modes give each device a Config of its own (its session
	// cache or its client_state key), made on first use.
	full    *dtls.Config
	configs []*dtls.Config

	heldMu sync.Mutex
	held   []func()
}

func newEngine(cfg *Config) *engine {
	e := &engine{cfg: cfg, full: cfg.baseDTLS()}
	e.full.Resumption = []negotiation.Type{negotiation.None}
	if cfg.Mode != Full {
		e.configs = make([]*dtls.Config, cfg.Devices)
	}
	return e
}

// baseDTLS is a device's Config without resumption.
func (cfg *Config) baseDTLS() *dtls.Config {
	key := cfg.PSK
	return &dtls.Config{
		PSK:              func([]byte) ([]byte, error) { return key, nil },
		PSKIdentityHint:  []byte(cfg.PSKIdentity),
		CipherSuites:     []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CCM_8},
		HandshakeTimeout: cfg.HandshakeTimeout,
	}
}

// dtlsConfig returns device i's Config. Devices of a resumption mode each
// have their own: a one-entry session cache for session_id and
// session_ticket, and a client_state key of their own (derived from the PSK
// and the device number), so that each device has its own handle and
// record on the server, as real devices with their own PSKs would.
func (e *engine) dtlsConfig(i int) *dtls.Config {
	if e.cfg.Mode == Full {
		return e.full
	}
	// Each index is used by one goroutine at a time (the phases run one
	// after the other), so no lock is needed.
	if c := e.configs[i]; c != nil {
		return c
	}
	c := e.cfg.baseDTLS()
	switch e.cfg.Mode {
	case SessionID:
		c.Resumption = []negotiation.Type{negotiation.SessionID}
		c.ClientSessionCache = dtls.NewLRUClientSessionCache(1)
	case SessionTicket:
		c.Resumption = []negotiation.Type{negotiation.SessionTicket}
		c.ClientSessionCache = dtls.NewLRUClientSessionCache(1)
	case ClientState:
		c.Resumption = []negotiation.Type{negotiation.ClientState}
		k := sha256.Sum256(fmt.Appendf(append([]byte("loadgen client_state key\x00"), e.cfg.PSK...), "\x00%d", e.cfg.firstDevice+i))
		c.ClientStateKey = k[:16]
	}
	e.configs[i] = c
	return c
}

// drive runs fn for devices 0..Devices-1, from Concurrency workers or at
// Rate, and reports progress once a second. It returns when every device
// is done or ctx ends (devices not started by then are not run), with the
// number of devices it started.
func (e *engine) drive(ctx context.Context, phase string, st *stats, fn func(context.Context, int)) (started int) {
	n := e.cfg.Devices
	var inFlight, count atomic.Int64
	run := func(i int) {
		count.Add(1)
		inFlight.Add(1)
		defer inFlight.Add(-1)
		fn(ctx, i)
	}
	stop := make(chan struct{})
	var progress sync.WaitGroup
	if e.cfg.Progress != nil {
		progress.Add(1)
		go func() {
			defer progress.Done()
			start := time.Now()
			last, lastOK := start, 0
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case now := <-t.C:
					ok, failed := st.counts()
					e.cfg.Progress(Progress{
						Phase: phase, Elapsed: now.Sub(start), Total: n, Succeeded: ok, Failed: failed,
						InFlight: int(inFlight.Load()), Held: e.heldCount(),
						HandshakesPerSecond: float64(ok-lastOK) / now.Sub(last).Seconds(),
					})
					last, lastOK = now, ok
				}
			}
		}()
	}
	var wg sync.WaitGroup
	if e.cfg.Rate > 0 {
		sem := make(chan struct{}, min(n, maxInFlight))
		start := time.Now()
		t := time.NewTicker(10 * time.Millisecond)
	loop:
		for i := 0; i < n; {
			due := min(n, int(time.Since(start).Seconds()*e.cfg.Rate)+1)
			for ; i < due; i++ {
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					break loop
				}
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					defer func() { <-sem }()
					run(i)
				}(i)
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				break loop
			}
		}
		t.Stop()
	} else {
		var next atomic.Int64
		for range min(n, e.cfg.Concurrency) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					i := int(next.Add(1)) - 1
					if i >= n {
						return
					}
					run(i)
				}
			}()
		}
	}
	wg.Wait()
	close(stop)
	progress.Wait()
	return int(count.Load())
}

// ready runs the prime phase: each device's full handshake before its
// resumption. A full handshake needs none.
func (e *engine) ready(ctx context.Context) (int, error) {
	if e.cfg.Mode == Full {
		return 0, nil
	}
	st := newStats(e.cfg.Devices)
	e.drive(ctx, "prime", st, func(ctx context.Context, i int) {
		d := e.device(ctx, i, false)
		if d.reason != "" {
			st.failure(d.reason)
			return
		}
		d.close()
		st.success(d.latency, false)
	})
	primed, _ := st.counts()
	return primed, nil
}

// measure runs the measured phase.
func (e *engine) measure(ctx context.Context) (*phase, error) {
	st := newStats(e.cfg.Devices)
	start := time.Now()
	started := e.drive(ctx, "measure", st, func(ctx context.Context, i int) {
		d := e.device(ctx, i, true)
		if d.reason != "" {
			st.failure(d.reason)
			return
		}
		st.success(d.latency, d.state.Resumed)
		if e.cfg.Hold {
			e.hold(d.close)
		} else {
			d.close()
		}
	})
	m := st.phase(start, time.Now())
	m.Held = e.heldCount()
	m.Addresses = (started + e.cfg.PortsPerAddress - 1) / e.cfg.PortsPerAddress
	return m, nil
}

func (e *engine) shards() []Shard { return nil }

func (e *engine) close() { e.closeHeld() }

func (e *engine) hold(close func()) {
	e.heldMu.Lock()
	e.held = append(e.held, close)
	e.heldMu.Unlock()
}

func (e *engine) heldCount() int {
	e.heldMu.Lock()
	defer e.heldMu.Unlock()
	return len(e.held)
}

// closeHeld closes the held connections, a few at a time.
func (e *engine) closeHeld() {
	e.heldMu.Lock()
	held := e.held
	e.held = nil
	e.heldMu.Unlock()
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(held) {
					return
				}
				held[i]()
			}
		}()
	}
	wg.Wait()
}

// usage reads the server's usage, or nothing without a ServerPID.
func (cfg *Config) usage() (Usage, error) {
	if cfg.ServerPID == 0 {
		return Usage{}, nil
	}
	u, err := ReadUsage(cfg.ServerPID)
	if err != nil {
		return Usage{}, fmt.Errorf("loadgen: reading the server's usage: %w", err)
	}
	return u, nil
}

// deviceRun is one device's outcome: reason is empty on success, and then
// close releases the connection.
type deviceRun struct {
	reason  string
	latency time.Duration
	state   dtls.ConnectionState
	close   func()
}

// device runs device i once: a socket from its source address, a
// handshake, and, when exchange is set, its message or CoAP request.
func (e *engine) device(parent context.Context, i int, exchange bool) deviceRun {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	ctx, cancelTimeout := context.WithTimeout(ctx, e.cfg.HandshakeTimeout)
	defer cancelTimeout()
	fail := func(err error) deviceRun { return deviceRun{reason: Reason(ctx, err)} }

	pc, err := dialFrom(e.cfg.sourceIP(i), e.cfg.Target, func() { cancel(errRefused) })
	if err != nil {
		return fail(err)
	}
	c, err := dtls.Client(pc, e.cfg.Target, e.dtlsConfig(i))
	if err != nil {
		pc.Close()
		return fail(err)
	}
	start := time.Now()
	err = c.HandshakeContext(ctx)
	d := deviceRun{latency: time.Since(start)}
	if err != nil {
		c.Close()
		pc.Close()
		return fail(err)
	}
	d.state = c.ConnectionState()
	d.close = func() { c.Close(); pc.Close() }
	if !exchange {
		return d
	}
	if e.cfg.CoAPPath != "" {
		cl := coapclient.NewClient(c)
		d.close = func() { cl.Close(); pc.Close() }
		resp, err := cl.Get(ctx, e.cfg.CoAPPath)
		if err == nil && resp.Code != codes.Content {
			err = fmt.Errorf("%w: CoAP %v", errBadReply, resp.Code)
		}
		if err != nil {
			d.close()
			return fail(err)
		}
		return d
	}
	if err := echo(ctx, c, e.cfg.firstDevice+i); err != nil {
		d.close()
		return fail(err)
	}
	return d
}

// echo sends one message on c and checks that the same bytes come back.
func echo(ctx context.Context, c *dtls.Conn, i int) error {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
		defer c.SetDeadline(time.Time{})
	}
	msg := fmt.Appendf(nil, "loadgen device %d", i)
	if _, err := c.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if !bytes.Equal(buf[:n], msg) {
		return fmt.Errorf("%w: echo %q, want %q", errBadReply, buf[:n], msg)
	}
	return nil
}

// connectedConn is a connected UDP socket with the net.PacketConn methods
// dtls.Client uses. Connected, it hears of ICMP port unreachable
// (ECONNREFUSED), which ends the device at once as "refused" instead of a
// timeout; and the kernel delivers the server's datagrams to it directly.
type connectedConn struct {
	*net.UDPConn
	raddr   *net.UDPAddr
	refused func()
}

// dialFrom opens a UDP socket from src (any free port) connected to raddr.
// refused, if set, is called when the socket reports ECONNREFUSED.
func dialFrom(src net.IP, raddr *net.UDPAddr, refused func()) (*connectedConn, error) {
	uc, err := net.DialUDP("udp4", &net.UDPAddr{IP: src}, raddr)
	if err != nil {
		return nil, err
	}
	return &connectedConn{UDPConn: uc, raddr: raddr, refused: refused}, nil
}

func (c *connectedConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, err := c.UDPConn.Read(p)
	if err != nil && errors.Is(err, syscall.ECONNREFUSED) && c.refused != nil {
		c.refused()
	}
	return n, c.raddr, err
}

func (c *connectedConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	n, err := c.UDPConn.Write(p)
	if err != nil && errors.Is(err, syscall.ECONNREFUSED) && c.refused != nil {
		c.refused()
	}
	return n, err
}
