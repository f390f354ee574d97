package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/dtlsresume/dtlsresume/internal/proc"
)

// A Run with Config.Procs above 1 shares its devices among child processes,
// the shards, because a process may open only so many sockets and every
// device holds one. Run talks to each shard over its standard input and
// output, one line at a time:
//
//	parent → shard: the shard's orders (a shardSpec, as JSON), then
//	                "measure" when every shard is ready, "stop" when Run's
//	                context ends, and the end of input when Run is done
//	shard → parent: {"event":"progress"} about once a second while devices
//	                run, {"event":"ready"} once primed (at once for full
//	                handshakes), {"event":"done"} with its counts and
//	                latencies once every device is done (with Hold: up and
//	                held)
//
// A shard with Hold keeps its connections until its input ends, and every
// shard exits when its input ends, so that none outlives Run or its
// parent; its orders' deadline bounds it besides.

// ShardReserve is how many descriptors a shard keeps for other uses than
// its devices' sockets (the runtime, its pipes): a shard holds at most the
// open-file limit less ShardReserve sockets.
const ShardReserve = 512

const (
	// shardGrace is how long Run waits for its shards' reports after its
	// context ends: they stop their devices and report what they counted.
	shardGrace = 10 * time.Second
	// shardCloseWait bounds how long a shard may take to close its held
	// connections and exit once its input ends.
	shardCloseWait = time.Minute

	orderMeasure = "measure"
	orderStop    = "stop"

	eventProgress = "progress"
	eventReady    = "ready"
	eventDone     = "done"
)

// shardSpec is a shard's orders: its slice of the devices and the load's
// settings.
type shardSpec struct {
	Index            int           `json:"index"` // from 0
	Of               int           `json:"of"`
	Target           string        `json:"target"`
	CoAPPath         string        `json:"coap_path,omitempty"`
	Devices          int           `json:"devices"`
	FirstDevice      int           `json:"first_device"`
	FirstAddress     int           `json:"first_address"`
	PortsPerAddress  int           `json:"ports_per_address"`
	Concurrency      int           `json:"concurrency"`
	Rate             float64       `json:"rate,omitempty"`
	Mode             Mode          `json:"mode"`
	Hold             bool          `json:"hold"`
	PSKIdentity      string        `json:"psk_identity"`
	PSK              []byte        `json:"psk"`
	HandshakeTimeout time.Duration `json:"handshake_timeout_ns"`
	// Deadline, when set, is when the shard gives up and exits whatever
	// its parent says.
	Deadline time.Time `json:"deadline,omitzero"`
}

// shardEvent is one line of a shard's report.
type shardEvent struct {
	Event    string    `json:"event"`
	Progress *Progress `json:"progress,omitempty"`
	Primed   int       `json:"primed,omitempty"`
	Phase    *phase    `json:"phase,omitempty"`
}

// split divides cfg's devices among cfg.Procs shards: consecutive slices
// whose sizes differ by one at most, each from source addresses of its own
// that follow the previous shard's, with its share of Concurrency (one
// worker at least) or of Rate.
func (cfg *Config) split(deadline time.Time) []shardSpec {
	n, p := cfg.Devices, cfg.Procs
	specs := make([]shardSpec, p)
	first, addr := 0, 0
	for k := range specs {
		size := n / p
		if k < n%p {
			size++
		}
		conc := cfg.Concurrency / p
		if k < cfg.Concurrency%p {
			conc++
		}
		specs[k] = shardSpec{
			Index: k, Of: p, Target: cfg.Target.String(), CoAPPath: cfg.CoAPPath,
			Devices: size, FirstDevice: first, FirstAddress: addr, PortsPerAddress: cfg.PortsPerAddress,
			Concurrency: max(conc, 1), Rate: cfg.Rate / float64(p), Mode: cfg.Mode, Hold: cfg.Hold,
			PSKIdentity: cfg.PSKIdentity, PSK: cfg.PSK, HandshakeTimeout: cfg.HandshakeTimeout, Deadline: deadline,
		}
		first += size
		addr += (size + cfg.PortsPerAddress - 1) / cfg.PortsPerAddress
	}
	return specs
}

// config is the Config a shard runs its devices with.
func (s *shardSpec) config() (Config, error) {
	target, err := net.ResolveUDPAddr("udp4", s.Target)
	if err != nil {
		return Config{}, fmt.Errorf("loadgen: shard target: %w", err)
	}
	cfg := Config{
		Target: target, CoAPPath: s.CoAPPath, Devices: s.Devices, Concurrency: s.Concurrency, Rate: s.Rate,
		Mode: s.Mode, Hold: s.Hold, PSKIdentity: s.PSKIdentity, PSK: s.PSK, HandshakeTimeout: s.HandshakeTimeout,
		PortsPerAddress: s.PortsPerAddress, firstDevice: s.FirstDevice, firstAddress: s.FirstAddress,
	}
	return cfg, cfg.check()
}

// RunShard is a shard's side of a Run with Config.Procs above 1, for the
// process that Config.ShardCommand starts: it reads its orders from in,
// runs its slice of the devices and reports to out, one JSON object per
// line. It returns once it has reported all its devices done and, with
// Hold, in has ended; or when ctx ends or its orders' deadline passes.
func RunShard(ctx context.Context, in io.Reader, out io.Writer) error {
	r := bufio.NewReader(in)
	line, err := r.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("loadgen: reading the shard's orders: %w", err)
	}
	var spec shardSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		return fmt.Errorf("loadgen: the shard's orders: %w", err)
	}
	cfg, err := spec.config()
	if err != nil {
		return err
	}
	if err := checkShardFiles(&cfg); err != nil {
		return err
	}
	if !spec.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, spec.Deadline)
		defer cancel()
	}
	run, stop := context.WithCancel(ctx)
	defer stop()
	measure, ended := make(chan struct{}), make(chan struct{})
	go readOrders(r, measure, stop, ended)

	rep := &reporter{enc: json.NewEncoder(out)}
	cfg.Progress = func(p Progress) { _ = rep.send(shardEvent{Event: eventProgress, Progress: &p}) }
	e := newEngine(&cfg)
	defer e.closeHeld()
	primed, _ := e.ready(run)
	if err := rep.send(shardEvent{Event: eventReady, Primed: primed}); err != nil {
		return err
	}
	select {
	case <-measure:
	case <-run.Done(): // measure nothing, but still report
	}
	m, _ := e.measure(run)
	if err := rep.send(shardEvent{Event: eventDone, Phase: m}); err != nil {
		return err
	}
	if cfg.Hold {
		select {
		case <-ended:
		case <-ctx.Done():
		}
	}
	return nil
}

// checkShardFiles makes sure a shard may open a socket for each device it
// holds at once.
func checkShardFiles(cfg *Config) error {
	limit, err := RaiseFileLimit()
	if err != nil {
		return fmt.Errorf("loadgen: raising the open-file limit: %w", err)
	}
	if need := cfg.Sockets() + ShardReserve; uint64(need) > limit {
		return fmt.Errorf("loadgen: a shard of %d devices needs %d open files, the limit is %d: use more processes", cfg.Devices, need, limit)
	}
	return nil
}

// readOrders reads a shard's orders after its spec: it closes measure on
// "measure", calls stop on "stop" and at the end of input, and then closes
// ended.
func readOrders(r *bufio.Reader, measure chan<- struct{}, stop func(), ended chan<- struct{}) {
	defer close(ended)
	defer stop()
	var once sync.Once
	for {
		line, err := r.ReadString('\n')
		switch strings.TrimSpace(line) {
		case orderMeasure:
			once.Do(func() { close(measure) })
		case orderStop:
			stop()
		}
		if err != nil {
			return
		}
	}
}

// reporter writes a shard's events, one line each.
type reporter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (r *reporter) send(ev shardEvent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.enc.Encode(ev)
}

// shardFleet is a Run's shards, from the parent's side.
type shardFleet struct {
	cfg   *Config
	procs []*shard
	// events carries each shard's "ready" and "done", or the error that
	// ended its report; at most two per shard.
	events     chan shardMsg
	endReaders context.CancelFunc
	stopOrder  func() bool // unregisters the "stop" sent when Run's context ends
	readers    sync.WaitGroup

	mu        sync.Mutex
	reporting bool       // whether the shards' progress is passed on
	latest    []Progress // each shard's last progress in this phase
	fresh     bool       // a shard reported since the last Progress call
}

// shard is one child process.
type shard struct {
	spec   shardSpec
	p      *proc.Process
	offset int // how much of its output has been read, in bytes
	lines  int // and in lines
	result *phase
}

type shardMsg struct {
	shard int
	ev    shardEvent
	err   error
}

// startShards starts cfg.Procs shards, which prime their devices (if the
// mode needs it) at once.
func startShards(ctx context.Context, cfg *Config) (*shardFleet, error) {
	var deadline time.Time
	if d, ok := ctx.Deadline(); ok {
		deadline = d.Add(shardGrace + shardCloseWait)
	}
	specs := cfg.split(deadline)
	f := &shardFleet{cfg: cfg, events: make(chan shardMsg, 2*len(specs)), reporting: true, latest: make([]Progress, len(specs))}
	for _, spec := range specs {
		s, err := launchShard(cfg.ShardCommand, spec)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("loadgen: starting shard %d of %d: %w", spec.Index+1, spec.Of, err)
		}
		f.procs = append(f.procs, s)
	}
	readCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f.endReaders = cancel
	for i, s := range f.procs {
		f.readers.Add(1)
		go f.read(readCtx, i, s)
	}
	if cfg.Progress != nil {
		f.readers.Add(1)
		go f.passProgress(readCtx)
	}
	f.stopOrder = context.AfterFunc(ctx, func() { f.order(orderStop) })
	return f, nil
}

// launchShard starts one shard and gives it its orders.
func launchShard(argv []string, spec shardSpec) (*shard, error) {
	line, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	p, err := proc.Launch(argv[0], argv[1:]...)
	if err != nil {
		return nil, err
	}
	if err := p.WriteStdin(string(line) + "\n"); err != nil {
		p.Stop()
		return nil, err
	}
	return &shard{spec: spec, p: p}, nil
}

// next returns the shard's next line of output, waiting for it until ctx
// ends or the shard exits.
func (s *shard) next(ctx context.Context) (string, error) {
	if err := s.p.WaitForContext(ctx, "\n", s.lines+1); err != nil {
		return "", err
	}
	out := s.p.Output()[s.offset:]
	line, _, _ := strings.Cut(out, "\n")
	s.offset += len(line) + 1
	s.lines++
	return line, nil
}

// read passes on shard i's events until it is done or its output ends.
// Lines that are not events (a shard's error message) stay in its output,
// for the error that its exit causes.
func (f *shardFleet) read(ctx context.Context, i int, s *shard) {
	defer f.readers.Done()
	ready := false
	for {
		line, err := s.next(ctx)
		if err != nil {
			f.events <- shardMsg{shard: i, err: err}
			return
		}
		var ev shardEvent
		if json.Unmarshal([]byte(line), &ev) != nil {
			continue
		}
		switch {
		case ev.Event == eventProgress && ev.Progress != nil:
			f.noteProgress(i, *ev.Progress)
		case ev.Event == eventReady && !ready:
			ready = true
			f.events <- shardMsg{shard: i, ev: ev}
		case ev.Event == eventDone && ev.Phase != nil:
			f.events <- shardMsg{shard: i, ev: ev}
			return
		}
	}
}

// order sends every shard one order; a shard that is gone shows in its
// report instead.
func (f *shardFleet) order(o string) {
	for _, s := range f.procs {
		_ = s.p.WriteStdin(o + "\n")
	}
}

// await waits for every shard's event, in shard order. Once ctx ends it
// still waits shardGrace for the reports of the devices that ran.
func (f *shardFleet) await(ctx context.Context, event string) ([]shardEvent, error) {
	ctx, cancel := withGrace(ctx, shardGrace)
	defer cancel()
	evs := make([]shardEvent, len(f.procs))
	for n := 0; n < len(f.procs); n++ {
		select {
		case m := <-f.events:
			s := f.procs[m.shard]
			switch {
			case m.err != nil:
				return nil, fmt.Errorf("loadgen: shard %d of %d: %w", s.spec.Index+1, s.spec.Of, m.err)
			case m.ev.Event != event:
				return nil, fmt.Errorf("loadgen: shard %d of %d said %q, want %q", s.spec.Index+1, s.spec.Of, m.ev.Event, event)
			}
			evs[m.shard] = m.ev
		case <-ctx.Done():
			return nil, fmt.Errorf("loadgen: %d of %d shards did not report %q in time", len(f.procs)-n, len(f.procs), event)
		}
	}
	return evs, nil
}

// withGrace returns a context that ends grace after ctx does.
func withGrace(ctx context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	g, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var t *time.Timer
	var mu sync.Mutex
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		t = time.AfterFunc(grace, cancel)
	})
	return g, func() {
		stop()
		mu.Lock()
		if t != nil {
			t.Stop()
		}
		mu.Unlock()
		cancel()
	}
}

// ready waits until every shard has primed its devices.
func (f *shardFleet) ready(ctx context.Context) (int, error) {
	evs, err := f.await(ctx, eventReady)
	f.setReporting(false)
	if err != nil {
		return 0, err
	}
	primed := 0
	for _, ev := range evs {
		primed += ev.Primed
	}
	return primed, nil
}

// measure starts every shard's measured phase and merges their reports.
func (f *shardFleet) measure(ctx context.Context) (*phase, error) {
	f.setReporting(true)
	f.order(orderMeasure)
	evs, err := f.await(ctx, eventDone)
	f.setReporting(false)
	if err != nil {
		return nil, err
	}
	m := &phase{}
	for i, ev := range evs {
		f.procs[i].result = ev.Phase
		m.merge(ev.Phase)
	}
	return m, nil
}

func (f *shardFleet) shards() []Shard {
	out := make([]Shard, 0, len(f.procs))
	for _, s := range f.procs {
		sp := s.spec
		last := (sp.FirstAddress + (sp.Devices-1)/sp.PortsPerAddress) * sp.PortsPerAddress
		r := Shard{
			PID: s.p.Pid(), FirstDevice: sp.FirstDevice, Devices: sp.Devices,
			FirstIP: SourceIP(sp.FirstAddress*sp.PortsPerAddress, sp.PortsPerAddress), LastIP: SourceIP(last, sp.PortsPerAddress),
			Concurrency: sp.Concurrency, Rate: sp.Rate,
		}
		if m := s.result; m != nil {
			r.Succeeded, r.Failed, r.Held = len(m.Latencies), m.Failed, m.Held
		}
		out = append(out, r)
	}
	return out
}

// close ends every shard's input, so that they close their connections
// and exit, waits for them (at most shardCloseWait) and reaps them.
func (f *shardFleet) close() {
	if f.stopOrder != nil {
		f.stopOrder()
	}
	for _, s := range f.procs {
		_ = s.p.CloseStdin()
	}
	ctx, cancel := context.WithTimeout(context.Background(), shardCloseWait)
	defer cancel()
	for _, s := range f.procs {
		_, _ = s.p.WaitContext(ctx)
		s.p.Stop()
	}
	if f.endReaders != nil {
		f.endReaders()
		f.readers.Wait()
	}
}

// noteProgress keeps shard i's latest progress.
func (f *shardFleet) noteProgress(i int, p Progress) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reporting {
		f.latest[i] = p
		f.fresh = true
	}
}

// setReporting starts or ends a phase's progress reports.
func (f *shardFleet) setReporting(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reporting, f.fresh = on, false
	clear(f.latest)
}

// passProgress calls Config.Progress once a second with the sum of the
// shards' latest progress, while they report any, until ctx ends.
func (f *shardFleet) passProgress(ctx context.Context) {
	defer f.readers.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if p, ok := f.sumProgress(); ok {
			f.cfg.Progress(p)
		}
	}
}

// sumProgress adds up the shards' latest progress, if any came since the
// last call.
func (f *shardFleet) sumProgress() (Progress, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.fresh {
		return Progress{}, false
	}
	f.fresh = false
	var sum Progress
	for _, p := range f.latest {
		if p.Phase != "" {
			sum.Phase = p.Phase
		}
		sum.Elapsed = max(sum.Elapsed, p.Elapsed)
		sum.Succeeded += p.Succeeded
		sum.Failed += p.Failed
		sum.InFlight += p.InFlight
		sum.Held += p.Held
		sum.HandshakesPerSecond += p.HandshakesPerSecond
	}
	sum.Total = f.cfg.Devices
	return sum, true
}
