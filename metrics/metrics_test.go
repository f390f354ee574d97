package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/store"
	"github.com/dtlsresume/dtlsresume/ticketfmt"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var testPSK = []byte("0123456789abcdef")

func serve(t *testing.T, cfg *dtls.Config) net.Addr {
	t.Helper()
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 1500)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					c.Write(buf[:n])
				}
			}()
		}
	}()
	return l.Addr()
}

func dial(t *testing.T, addr net.Addr, cfg *dtls.Config) (dtls.ConnectionState, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dtls.DialContext(ctx, "udp", addr.(*net.UDPAddr), cfg)
	if err != nil {
		return dtls.ConnectionState{}, err
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		return dtls.ConnectionState{}, err
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	if _, err := c.Read(buf); err != nil {
		return dtls.ConnectionState{}, err
	}
	return c.ConnectionState(), nil
}

// TestServerMetrics runs every resumption type against a server with
// metrics, and reads them from Go and in the Prometheus format.
func TestServerMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	ring, err := ticketfmt.NewKeyRing(ticketfmt.KeyRingConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m.WatchKeyRing(ring)
	m.WatchKeyRing(nil)
	cfg := &dtls.Config{
		PSK: func(id []byte) ([]byte, error) {
			if string(id) != "client1" {
				return nil, errors.New("unknown identity")
			}
			return testPSK, nil
		},
		SessionStore:       m.WrapStore(store.NewMemory(store.MemoryConfig{}), "memory"),
		TicketKeys:         ring,
		HandshakeObserver:  m.Observe,
		RetransmitInterval: 200 * time.Millisecond,
	}
	addr := serve(t, cfg)
	client := func(typ negotiation.Type, cache dtls.ClientSessionCache) *dtls.Config {
		return &dtls.Config{
			PSK:                func([]byte) ([]byte, error) { return testPSK, nil },
			PSKIdentityHint:    []byte("client1"),
			Resumption:         []negotiation.Type{typ},
			ClientSessionCache: cache,
			RetransmitInterval: 200 * time.Millisecond,
		}
	}
	for _, typ := range []negotiation.Type{negotiation.SessionID, negotiation.SessionTicket, negotiation.ClientState} {
		cache := dtls.NewLRUClientSessionCache(2)
		for i := range 3 {
			st, err := dial(t, addr, client(typ, cache))
			if err != nil {
				t.Fatal(err)
			}
			if st.Resumed != (i > 0) || st.Resumption != typ {
				t.Fatalf("%v dial %d: resumed=%v by %v", typ, i, st.Resumed, st.Resumption)
			}
		}
	}
	// A failing handshake: unknown identity.
	bad := client(negotiation.SessionID, nil)
	bad.PSKIdentityHint = []byte("intruder")
	if _, err := dial(t, addr, bad); err == nil {
		t.Fatal("handshake with an unknown identity succeeded")
	}
	// A forged ticket: a client offering garbage as its ticket gets a full
	// handshake; simulated here by opening garbage on the ring directly.
	if _, err := ring.Open(make([]byte, 80), ticketfmt.LabelServer); err == nil {
		t.Fatal("garbage ticket opened")
	}

	// The server's observer runs when its side ends: wait for all ten.
	var s Snapshot
	deadline := time.Now().Add(5 * time.Second)
	for {
		s = m.Snapshot()
		if s.HandshakeCount(HandshakeKey{}) >= 10 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, typ := range []string{"session_id", "session_ticket", "client_state"} {
		if n := s.HandshakeCount(HandshakeKey{Kind: KindFull, Resumption: typ, Outcome: OutcomeOK}); n != 1 {
			t.Errorf("%s: %d full handshakes, want 1", typ, n)
		}
		if n := s.HandshakeCount(HandshakeKey{Kind: KindResumed, Resumption: typ, Outcome: OutcomeOK}); n != 2 {
			t.Errorf("%s: %d resumed handshakes, want 2", typ, n)
		}
		if share, ok := s.ResumedShare(typ); !ok || share < 0.66 || share > 0.67 {
			t.Errorf("%s: resumed share %v %v", typ, share, ok)
		}
		tr := s.Traffic[TrafficKey{KindResumed, typ}]
		full := s.Traffic[TrafficKey{KindFull, typ}]
		if tr.Handshakes != 2 || tr.DatagramsReceived != 4 || tr.DatagramsSent != 2 || tr.BytesSent == 0 ||
			full.BytesSent+full.BytesReceived <= (tr.BytesSent+tr.BytesReceived)/2 {
			t.Errorf("%s traffic: resumed %+v, full %+v", typ, tr, full)
		}
	}
	if n := s.HandshakeCount(HandshakeKey{Outcome: OutcomeError}); n != 1 {
		t.Errorf("%d failed handshakes, want 1", n)
	}
	if n := s.Failures[FailureKey{Reason: "unknown_identity"}]; n != 1 || len(s.Failures) != 1 {
		t.Errorf("failures by reason %v, want one unknown_identity", s.Failures)
	}
	// session_id: 2 hits (the resumptions). client_state: 2 hits, and the
	// misses of the first handshake (before and after its cookie, and the
	// binding check before its record was stored).
	if r, ok := s.HitRatio("session_id"); !ok || r != 1 {
		t.Errorf("session_id hit ratio %v %v; lookups %+v", r, ok, s.Lookups)
	}
	if l := s.Lookups[LookupKey{"memory", "client_state"}]; l.Hits != 2 || l.Misses < 1 || l.Misses > 3 {
		t.Errorf("client_state lookups %+v", l)
	}
	if s.Tickets.Opened != 2 || s.Tickets.Rejected+s.Tickets.UnknownKey != 1 || s.Tickets.Sealed < 1 {
		t.Errorf("tickets %+v", s.Tickets)
	}
	// Per handshake: every session_ticket attempt resumed (the forged
	// ticket above never reached a handshake); a client_state client asks
	// to resume on its first contact too, so one miss and two hits.
	if r, ok := s.HitRatio("session_ticket"); !ok || r != 1 {
		t.Errorf("session_ticket hit ratio %v %v", r, ok)
	}
	if a := s.Attempts["client_state"]; a.Hits != 2 || a.Misses != 1 {
		t.Errorf("client_state attempts %+v", a)
	}
	if r, ok := s.HitRatio("client_state"); !ok || r < 0.66 || r > 0.67 {
		t.Errorf("client_state hit ratio %v %v", r, ok)
	}
	if _, ok := s.HitRatio("none"); ok {
		t.Error("hit ratio for none")
	}
	if s.StoreErrors() != 0 {
		t.Errorf("store errors %+v", s.Store)
	}
	if d := s.Durations[KindResumed]; d.Count != 6 || d.SumSeconds <= 0 {
		t.Errorf("durations %+v", s.Durations)
	}

	// The Prometheus view.
	if n := testutil.ToFloat64(prometheusCounter(t, reg, "dtlsresume_handshakes_total", map[string]string{"kind": "resumed", "resumption": "session_id", "outcome": "ok"})); n != 2 {
		t.Errorf("prometheus resumed session_id handshakes %v", n)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`dtlsresume_handshakes_total{kind="resumed",outcome="ok",resumption="client_state"} 2`,
		`dtlsresume_handshake_datagrams_total{direction="received",kind="resumed",resumption="session_ticket"} 4`,
		`dtlsresume_resumption_lookups_total{backend="memory",result="hit",resumption="session_id"} 2`,
		`dtlsresume_ticket_opens_total{result="opened"} 2`,
		`dtlsresume_store_errors_total{backend="memory",op="get"} 0`,
		`dtlsresume_handshake_duration_seconds_bucket{kind="full",le="+Inf"} 3`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %s", want)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

// prometheusCounter finds one labelled series of a metric family.
func prometheusCounter(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) prometheus.Collector {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, mt := range f.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x"}, func() float64 { return mt.GetCounter().GetValue() })
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return nil
}

// failingStore fails every call, as a store that is down.
type failingStore struct{}

func (failingStore) Get(context.Context, []byte) ([]byte, error) { return nil, errors.New("down") }
func (failingStore) Put(context.Context, []byte, []byte, time.Duration) error {
	return errors.New("down")
}
func (failingStore) Delete(context.Context, []byte) error { return context.DeadlineExceeded }

func TestStoreErrors(t *testing.T) {
	m := New(nil)
	s := m.WrapStore(failingStore{}, "redis")
	ctx := context.Background()
	s.Get(ctx, []byte("sid/x"))
	s.Get(ctx, []byte("csh/y"))
	s.Put(ctx, []byte("sid/x"), nil, time.Second)
	s.Delete(ctx, []byte("sid/x"))
	mem := m.WrapStore(store.NewMemory(store.MemoryConfig{}), "memory")
	mem.Get(ctx, []byte("sid/none"))
	snap := m.Snapshot()
	if snap.StoreErrors() != 4 {
		t.Errorf("store errors %d, want 4: %+v", snap.StoreErrors(), snap.Store)
	}
	if o := snap.Store[StoreKey{"memory", "get"}]; o.NotFound != 1 || o.Errors != 0 {
		t.Errorf("a miss counted as %+v", o)
	}
	if l := snap.Lookups[LookupKey{"redis", "client_state"}]; l.Errors != 1 {
		t.Errorf("lookups %+v", snap.Lookups)
	}
	if r, ok := snap.HitRatio("session_id"); !ok || r != 0 {
		t.Errorf("hit ratio with the store down %v %v", r, ok)
	}
	if u, ok := s.(interface{ Unwrap() dtls.SessionStore }); !ok || u.Unwrap() != (failingStore{}) {
		t.Error("Unwrap")
	}

	// Serve: a real HTTP endpoint, with Go runtime metrics in a registry of
	// our own.
	addr, shutdown, err := m.Serve("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer shutdown(context.Background())
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`dtlsresume_store_errors_total{backend="redis",op="put"} 1`, "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// A second Metrics on the same registry is a programming error.
	reg := prometheus.NewRegistry()
	New(reg)
	defer func() {
		if recover() == nil {
			t.Error("duplicate registration did not panic")
		}
	}()
	New(reg)
}

// TestObserveConcurrent: Observe, WrapStore and Snapshot from many
// goroutines (run with -race).
func TestObserveConcurrent(t *testing.T) {
	m := New(prometheus.NewRegistry())
	s := m.WrapStore(store.NewMemory(store.MemoryConfig{}), "memory")
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 500 {
				m.Observe(dtls.ConnectionState{Resumed: i%2 == 0, Resumption: negotiation.Type(g % 4), HandshakeDuration: time.Millisecond,
					HandshakeBytesSent: 100, HandshakeDatagramsSent: 1}, nil)
				s.Get(context.Background(), []byte("sid/k"))
				if i%100 == 0 {
					m.Snapshot()
					rec := httptest.NewRecorder()
					m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	if n := m.Snapshot().HandshakeCount(HandshakeKey{}); n != 2000 {
		t.Errorf("%d handshakes", n)
	}
}
