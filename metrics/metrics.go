package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/store"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Label values.
const (
	KindFull    = "full"
	KindResumed = "resumed"

	OutcomeOK    = "ok"
	OutcomeError = "error"

	ResultHit      = "hit"
	ResultMiss     = "miss"
	ResultError    = "error"
	ResultOK       = "ok"
	ResultNotFound = "not_found"
)

// HandshakeKey labels a handshake count.
type HandshakeKey struct {
	Kind       string // KindFull or KindResumed
	Resumption string // none, session_id, session_ticket, client_state
	Outcome    string // OutcomeOK or OutcomeError
}

// TrafficKey labels handshake traffic.
type TrafficKey struct {
	Kind       string
	Resumption string
}

// Traffic is the handshake cost added up over handshakes.
type Traffic struct {
	Handshakes        uint64
	DatagramsSent     uint64
	DatagramsReceived uint64
	BytesSent         uint64
	BytesReceived     uint64
}

// StoreKey labels store operations.
type StoreKey struct {
	Backend string // as given to WrapStore
	Op      string // get, put, delete
}

// StoreOps counts store calls by result.
type StoreOps struct {
	OK       uint64
	NotFound uint64 // Get only
	Errors   uint64 // failures and timeouts
}

// LookupKey labels resumption lookups in a store.
type LookupKey struct {
	Backend    string
	Resumption string // session_id, client_state, or other
}

// Lookups counts resumption lookups by result.
type Lookups struct {
	Hits, Misses, Errors uint64
}

// TicketOpens adds up the watched key rings' counters.
type TicketOpens struct {
	Sealed, Opened, UnknownKey, Rejected uint64
}

// Duration is a handshake duration summary.
type Duration struct {
	Count      uint64
	SumSeconds float64
}

// Attempts counts handshakes whose ClientHello tried to resume: Hits
// resumed, Misses ended in a full handshake or failed.
type Attempts struct {
	Hits, Misses uint64
}

// Snapshot is a copy of every counter at one moment.
type Snapshot struct {
	// Attempts is keyed by the resumption type the client tried
	// (dtls.ConnectionState.ResumptionAttempted).
	Attempts   map[string]Attempts
	Handshakes map[HandshakeKey]uint64
	Traffic    map[TrafficKey]Traffic
	Durations  map[string]Duration // by kind, completed handshakes
	Store      map[StoreKey]StoreOps
	Lookups    map[LookupKey]Lookups
	Tickets    TicketOpens
	// Limits counts, by dtls.Limit, the times a server's resource limit
	// turned a newcomer away or dropped a datagram.
	Limits map[string]uint64
	// Failures counts failed handshakes by dtls.Reason and, for a peer's
	// alert, the alert's name.
	Failures map[FailureKey]uint64
}

// FailureKey labels a failed handshake: its dtls.Reason, and the alert's
// name when the peer ended it with one.
type FailureKey struct {
	Reason string
	Alert  string
}

// HandshakeCount adds up the handshakes matching the non-empty fields of k.
func (s Snapshot) HandshakeCount(k HandshakeKey) uint64 {
	var n uint64
	for key, v := range s.Handshakes {
		if (k.Kind == "" || k.Kind == key.Kind) && (k.Resumption == "" || k.Resumption == key.Resumption) && (k.Outcome == "" || k.Outcome == key.Outcome) {
			n += v
		}
	}
	return n
}

// ResumedShare is, among the successful handshakes of sessions of type
// resumption, the share that were abbreviated; ok is false when there were
// none.
func (s Snapshot) ResumedShare(resumption string) (share float64, ok bool) {
	resumed := s.HandshakeCount(HandshakeKey{Kind: KindResumed, Resumption: resumption, Outcome: OutcomeOK})
	all := s.HandshakeCount(HandshakeKey{Resumption: resumption, Outcome: OutcomeOK})
	if all == 0 {
		return 0, false
	}
	return float64(resumed) / float64(all), true
}

// HitRatio is, for a resumption type, the share of the handshakes that
// tried to resume by it and did. Without such handshakes (metrics fed
// only by WrapStore and WatchKeyRing) it falls back to store lookups for
// session_id and client_state and ticket opens for session_ticket. ok is
// false when there was no attempt.
func (s Snapshot) HitRatio(resumption string) (ratio float64, ok bool) {
	if a, found := s.Attempts[resumption]; found && a.Hits+a.Misses > 0 {
		return float64(a.Hits) / float64(a.Hits+a.Misses), true
	}
	var hits, all uint64
	if resumption == "session_ticket" {
		hits = s.Tickets.Opened
		all = s.Tickets.Opened + s.Tickets.UnknownKey + s.Tickets.Rejected
	} else {
		for k, l := range s.Lookups {
			if k.Resumption == resumption {
				hits += l.Hits
				all += l.Hits + l.Misses + l.Errors
			}
		}
	}
	if all == 0 {
		return 0, false
	}
	return float64(hits) / float64(all), true
}

// StoreErrors adds up the store errors of every backend and operation.
func (s Snapshot) StoreErrors() uint64 {
	var n uint64
	for _, v := range s.Store {
		n += v.Errors
	}
	return n
}

// durationBuckets are the upper bounds of the handshake duration histogram.
var durationBuckets = prometheus.ExponentialBuckets(0.0005, 2, 16) // 0.5 ms .. 16 s

type histogram struct {
	counts []uint64 // per bucket, not cumulative
	count  uint64
	sum    float64
}

// Metrics counts handshakes, traffic, lookups and store calls. Safe for
// concurrent use; its methods never block on anything but a short mutex.
type Metrics struct {
	mu         sync.Mutex
	attempts   map[string]*Attempts
	handshakes map[HandshakeKey]uint64
	traffic    map[TrafficKey]*Traffic
	durations  map[string]*histogram
	store      map[StoreKey]*StoreOps
	lookups    map[LookupKey]*Lookups
	limits     map[string]uint64
	failures   map[FailureKey]uint64
	rings      []*ticketfmt.KeyRing

	gatherer prometheus.Gatherer
}

// New returns empty metrics registered with reg; nil registers them, with Go
// runtime and process metrics, in a registry of their own. It panics if reg
// already holds metrics of the same names (as prometheus.MustRegister).
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		attempts:   make(map[string]*Attempts),
		handshakes: make(map[HandshakeKey]uint64),
		traffic:    make(map[TrafficKey]*Traffic),
		durations:  make(map[string]*histogram),
		store:      make(map[StoreKey]*StoreOps),
		lookups:    make(map[LookupKey]*Lookups),
		limits:     make(map[string]uint64),
		failures:   make(map[FailureKey]uint64),
	}
	for _, l := range dtls.Limits() {
		m.limits[string(l)] = 0
	}
	c := &collector{m: m}
	if reg == nil {
		r := prometheus.NewRegistry()
		r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg = r
	}
	reg.MustRegister(c)
	if g, ok := reg.(prometheus.Gatherer); ok {
		m.gatherer = g
	} else {
		r := prometheus.NewRegistry()
		r.MustRegister(c)
		m.gatherer = r
	}
	return m
}

// ObserveLimit counts a reached resource limit; it has the signature of
// dtls.Config.LimitObserver.
func (m *Metrics) ObserveLimit(l dtls.Limit) {
	m.mu.Lock()
	m.limits[string(l)]++
	m.mu.Unlock()
}

// Observe records a handshake; it has the signature of
// dtls.Config.HandshakeObserver.
func (m *Metrics) Observe(st dtls.ConnectionState, err error) {
	kind := KindFull
	if st.Resumed {
		kind = KindResumed
	}
	outcome := OutcomeOK
	if err != nil {
		outcome = OutcomeError
	}
	res := st.Resumption.String()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.handshakes[HandshakeKey{kind, res, outcome}]++
	if err != nil {
		r, alert := dtls.ReasonOf(err)
		m.failures[FailureKey{string(r), alert}]++
	}
	if tried := st.ResumptionAttempted; tried != negotiation.None {
		a := m.attempts[tried.String()]
		if a == nil {
			a = new(Attempts)
			m.attempts[tried.String()] = a
		}
		if err == nil && st.Resumed {
			a.Hits++
		} else {
			a.Misses++
		}
	}
	tk := TrafficKey{kind, res}
	t := m.traffic[tk]
	if t == nil {
		t = new(Traffic)
		m.traffic[tk] = t
	}
	t.Handshakes++
	t.DatagramsSent += uint64(max(st.HandshakeDatagramsSent, 0))
	t.DatagramsReceived += uint64(max(st.HandshakeDatagramsReceived, 0))
	t.BytesSent += uint64(max(st.HandshakeBytesSent, 0))
	t.BytesReceived += uint64(max(st.HandshakeBytesReceived, 0))
	if err == nil && st.HandshakeDuration > 0 {
		h := m.durations[kind]
		if h == nil {
			h = &histogram{counts: make([]uint64, len(durationBuckets)+1)}
			m.durations[kind] = h
		}
		sec := st.HandshakeDuration.Seconds()
		i := 0
		for i < len(durationBuckets) && sec > durationBuckets[i] {
			i++
		}
		h.counts[i]++
		h.count++
		h.sum += sec
	}
}

// WatchKeyRing adds ring's ticket counters (sealed, opened, unknown key,
// rejected) to the metrics. A nil ring is ignored.
func (m *Metrics) WatchKeyRing(ring *ticketfmt.KeyRing) {
	if ring == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rings = append(m.rings, ring)
}

// Snapshot returns a copy of every counter.
func (m *Metrics) Snapshot() Snapshot {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := Snapshot{
		Attempts:   make(map[string]Attempts, len(m.attempts)),
		Handshakes: make(map[HandshakeKey]uint64, len(m.handshakes)),
		Traffic:    make(map[TrafficKey]Traffic, len(m.traffic)),
		Durations:  make(map[string]Duration, len(m.durations)),
		Store:      make(map[StoreKey]StoreOps, len(m.store)),
		Lookups:    make(map[LookupKey]Lookups, len(m.lookups)),
		Limits:     make(map[string]uint64, len(m.limits)),
		Failures:   make(map[FailureKey]uint64, len(m.failures)),
	}
	for k, v := range m.failures {
		s.Failures[k] = v
	}
	for k, v := range m.limits {
		s.Limits[k] = v
	}
	for k, v := range m.attempts {
		s.Attempts[k] = *v
	}
	for k, v := range m.handshakes {
		s.Handshakes[k] = v
	}
	for k, v := range m.traffic {
		s.Traffic[k] = *v
	}
	for k, v := range m.durations {
		s.Durations[k] = Duration{Count: v.count, SumSeconds: v.sum}
	}
	for k, v := range m.store {
		s.Store[k] = *v
	}
	for k, v := range m.lookups {
		s.Lookups[k] = *v
	}
	s.Tickets = m.ticketsLocked()
	return s
}

func (m *Metrics) ticketsLocked() TicketOpens {
	var t TicketOpens
	for _, r := range m.rings {
		st := r.Stats()
		t.Sealed += st.Sealed
		t.Opened += st.Opened
		t.UnknownKey += st.UnknownKey
		t.Rejected += st.Rejected
	}
	return t
}

// Handler serves the metrics in the Prometheus exposition format, from the
// registry given to New (when it is also a Gatherer) or from one of their
// own.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{})
}

// Serve serves Handler at /metrics (and /) on addr (HOST:PORT; port 0 picks
// one) until shutdown is called. It returns the address it listens on.
func (m *Metrics) Serve(addr string, logger *slog.Logger) (bound net.Addr, shutdown func(context.Context) error, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.Handle("/{$}", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && logger != nil {
			logger.Warn("metrics: server stopped", "err", err)
		}
	}()
	return ln.Addr(), srv.Shutdown, nil
}

// WrapStore returns s with its calls counted under the backend name.
func (m *Metrics) WrapStore(s dtls.SessionStore, backend string) dtls.SessionStore {
	return &countingStore{s: s, m: m, backend: backend}
}

type countingStore struct {
	s       dtls.SessionStore
	m       *Metrics
	backend string
}

// lookupType classifies a key by the dtls engine's prefixes.
func lookupType(key []byte) string {
	switch {
	case len(key) >= 4 && string(key[:4]) == "sid/":
		return "session_id"
	case len(key) >= 4 && string(key[:4]) == "csh/":
		return "client_state"
	}
	return "other"
}

func (c *countingStore) count(op string, err error, lookup []byte) {
	result := ResultOK
	switch {
	case err == nil:
	case errors.Is(err, store.ErrNotFound):
		result = ResultNotFound
	default:
		result = ResultError
	}
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	k := StoreKey{c.backend, op}
	o := c.m.store[k]
	if o == nil {
		o = new(StoreOps)
		c.m.store[k] = o
	}
	switch result {
	case ResultOK:
		o.OK++
	case ResultNotFound:
		o.NotFound++
	default:
		o.Errors++
	}
	if lookup != nil {
		lk := LookupKey{c.backend, lookupType(lookup)}
		l := c.m.lookups[lk]
		if l == nil {
			l = new(Lookups)
			c.m.lookups[lk] = l
		}
		switch result {
		case ResultOK:
			l.Hits++
		case ResultNotFound:
			l.Misses++
		default:
			l.Errors++
		}
	}
}

func (c *countingStore) Get(ctx context.Context, key []byte) ([]byte, error) {
	v, err := c.s.Get(ctx, key)
	c.count("get", err, key)
	return v, err
}

func (c *countingStore) Put(ctx context.Context, key, value []byte, ttl time.Duration) error {
	err := c.s.Put(ctx, key, value, ttl)
	c.count("put", err, nil)
	return err
}

func (c *countingStore) Delete(ctx context.Context, key []byte) error {
	err := c.s.Delete(ctx, key)
	c.count("delete", err, nil)
	return err
}

// Unwrap returns the wrapped store.
func (c *countingStore) Unwrap() dtls.SessionStore { return c.s }
