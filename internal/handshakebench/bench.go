package handshakebench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/pionstore"
	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/store"
	piondtls "github.com/pion/dtls/v3"
	pionelliptic "github.com/pion/dtls/v3/pkg/crypto/elliptic"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
)

// Kind is a handshake to measure.
type Kind struct {
	Name string
	Ours dtls.CipherSuiteID
	Pion piondtls.CipherSuiteID
	PSK  bool
	// Resume is the mechanism our client resumes with (None: a full
	// handshake each time). pion/dtls has no tickets, so its column always
	// resumes by session ID.
	Resume negotiation.Type
	// Curve is the ECDHE group both clients ask for (0: each stack's
	// default, P-256 for both). pion names groups by the same code points.
	Curve dtls.CurveID
}

// Kinds are the handshakes both stacks can do.
var Kinds = []Kind{
	{"full PSK-AES128-CCM8", dtls.TLS_PSK_WITH_AES_128_CCM_8, piondtls.TLS_PSK_WITH_AES_128_CCM_8, true, negotiation.None, 0},
	{"full ECDHE-ECDSA-AES128-CCM8", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, false, negotiation.None, 0},
	{"resumed session_id PSK-AES128-CCM8", dtls.TLS_PSK_WITH_AES_128_CCM_8, piondtls.TLS_PSK_WITH_AES_128_CCM_8, true, negotiation.SessionID, 0},
	{"resumed session_ticket PSK-AES128-CCM8", dtls.TLS_PSK_WITH_AES_128_CCM_8, piondtls.TLS_PSK_WITH_AES_128_CCM_8, true, negotiation.SessionTicket, 0},
	{"resumed client_state PSK-AES128-CCM8", dtls.TLS_PSK_WITH_AES_128_CCM_8, piondtls.TLS_PSK_WITH_AES_128_CCM_8, true, negotiation.ClientState, 0},
	{"resumed session_id ECDHE-ECDSA-AES128-CCM8", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, false, negotiation.SessionID, 0},
	{"resumed session_ticket ECDHE-ECDSA-AES128-CCM8", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, false, negotiation.SessionTicket, 0},
	{"resumed client_state ECDHE-ECDSA-AES128-CCM8", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, false, negotiation.ClientState, 0},
	{"full PSK-AES128-CCM", dtls.TLS_PSK_WITH_AES_128_CCM, piondtls.TLS_PSK_WITH_AES_128_CCM, true, negotiation.None, 0},
	{"full ECDHE-ECDSA-AES128-CCM", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM, piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM, false, negotiation.None, 0},
	{"full PSK-AES128-CBC-SHA256", dtls.TLS_PSK_WITH_AES_128_CBC_SHA256, piondtls.TLS_PSK_WITH_AES_128_CBC_SHA256, true, negotiation.None, 0},
	{"full ECDHE-PSK-AES128-CBC-SHA256", dtls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256, piondtls.TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256, true, negotiation.None, 0},
	{"full ECDHE-ECDSA-AES128-CCM8 X25519", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, false, negotiation.None,
		dtls.CurveX25519},
	{"full ECDHE-ECDSA-AES128-CCM8 P-384", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, false, negotiation.None,
		dtls.CurveP384},
}

// Stack names an implementation.
type Stack string

const (
	Ours Stack = "dtlsresume"
	Pion Stack = "pion/dtls v3"
)

// Result is the average cost of one handshake.
type Result struct {
	Kind              string        `json:"kind"`
	Stack             Stack         `json:"stack"`
	Handshakes        int           `json:"handshakes"`
	Time              time.Duration `json:"-"`
	TimeMS            float64       `json:"time_ms"`
	DatagramsSent     float64       `json:"datagrams_sent"`
	DatagramsReceived float64       `json:"datagrams_received"`
	BytesSent         float64       `json:"bytes_sent"`
	BytesReceived     float64       `json:"bytes_received"`
	// RoundTrips counts the times the client waited for the server: a
	// received datagram that follows one the client sent.
	RoundTrips float64 `json:"round_trips"`
	// ClientKeeps and ServerKeeps are the bytes each side holds between
	// connections to resume the session (for pion: the byte fields of its
	// Session entry).
	ClientKeeps float64 `json:"client_keeps_bytes"`
	ServerKeeps float64 `json:"server_keeps_bytes"`
}

// pionSessionBytes is what a pion Session entry holds in byte fields.
func pionSessionBytes(key []byte, s piondtls.Session) int {
	n := len(key) + len(s.ID) + len(s.Secret) + len(s.IdentityHint) + len(s.PSKHash) + 2 + 1 + 1 + 1
	for _, c := range s.PeerCertificates {
		n += len(c)
	}
	return n
}

// bytesPerEntry averages the entries of a pion store.
func bytesPerEntry(s *pionstore.Store) float64 {
	n, entries := 0, 0
	s.Each(func(k []byte, v piondtls.Session) {
		n += pionSessionBytes(k, v)
		entries++
	})
	if entries == 0 {
		return 0
	}
	return float64(n) / float64(entries)
}

var psk = []byte("benchmark-psk-0123456789abcdef")

// counter wraps a client's socket to count what crosses it.
type counter struct {
	net.PacketConn
	dgOut, dgIn, bOut, bIn, rtt atomic.Int64
	lastWasSend                 atomic.Bool
}

func (c *counter) WriteTo(p []byte, a net.Addr) (int, error) {
	c.lastWasSend.Store(true)
	c.dgOut.Add(1)
	c.bOut.Add(int64(len(p)))
	return c.PacketConn.WriteTo(p, a)
}

func (c *counter) ReadFrom(p []byte) (int, net.Addr, error) {
	n, a, err := c.PacketConn.ReadFrom(p)
	if err == nil {
		if c.lastWasSend.Swap(false) {
			c.rtt.Add(1)
		}
		c.dgIn.Add(1)
		c.bIn.Add(int64(n))
	}
	return n, a, err
}

// Bench holds the servers of both stacks for one kind, and for resumed
// kinds the clients' session caches.
type Bench struct {
	kind            Kind
	oursCache       dtls.ClientSessionCache
	pionCache       *pionstore.Store
	pionServerStore *pionstore.Store
	serverKeeps     atomic.Int64 // our server's ResumptionStateBytes, last handshake
	pool            *x509.CertPool
	ours            *dtls.Listener
	pion            net.Listener
	oursAddr        *net.UDPAddr
	pionAddr        *net.UDPAddr
	done            map[Stack]int // handshakes made per stack
}

// primed reports whether stack already made the handshake that gives a
// resumed kind its session.
func (b *Bench) primed(stack Stack) bool { return b.done[stack] > 0 }

// New starts a server of each stack on loopback for kind.
func New(kind Kind) (*Bench, error) {
	cert, err := selfsign.GenerateSelfSignedWithDNS("localhost", "localhost")
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, err
	}
	b := &Bench{kind: kind, pool: x509.NewCertPool(), done: map[Stack]int{}}
	b.pool.AddCert(leaf)
	lo := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}

	ocfg := &dtls.Config{CipherSuites: []dtls.CipherSuiteID{kind.Ours}}
	pcfg := &piondtls.Config{CipherSuites: []piondtls.CipherSuiteID{kind.Pion}, ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret}
	if kind.Resume != negotiation.None {
		ocfg.SessionStore = store.NewMemory(store.MemoryConfig{})
		b.pionServerStore = pionstore.New(0)
		pcfg.SessionStore = b.pionServerStore
		b.oursCache = dtls.NewLRUClientSessionCache(1)
		b.pionCache = pionstore.New(0)
	}
	if kind.PSK {
		ocfg.PSK = func([]byte) ([]byte, error) { return psk, nil }
		pcfg.PSK = func([]byte) ([]byte, error) { return psk, nil }
	} else {
		ocfg.Certificates = []tls.Certificate{cert}
		pcfg.Certificates = []tls.Certificate{cert}
	}
	if b.ours, err = dtls.Listen("udp", lo, ocfg); err != nil {
		return nil, err
	}
	go serve(b.ours, func(c net.Conn) error {
		b.serverKeeps.Store(int64(c.(*dtls.Conn).ConnectionState().ResumptionStateBytes))
		return nil
	})
	if b.pion, err = piondtls.Listen("udp", lo, pcfg); err != nil {
		b.ours.Close()
		return nil, err
	}
	go serve(b.pion, func(c net.Conn) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return c.(*piondtls.Conn).HandshakeContext(ctx)
	})
	b.oursAddr = b.ours.Addr().(*net.UDPAddr)
	b.pionAddr = b.pion.Addr().(*net.UDPAddr)
	if kind.Resume != negotiation.None {
		// One full handshake each gives the clients a session to resume.
		for _, stack := range []Stack{Ours, Pion} {
			if _, err := b.One(stack); err != nil {
				b.Close()
				return nil, fmt.Errorf("priming %s: %w", stack, err)
			}
		}
	}
	return b, nil
}

// serve accepts connections, completes their handshake and waits for the
// client to close.
func serve(l net.Listener, handshake func(net.Conn) error) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if handshake(c) != nil {
				return
			}
			buf := make([]byte, 1500)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
	}
}

// Close stops both servers.
func (b *Bench) Close() {
	b.ours.Close()
	b.pion.Close()
}

// One runs a single client handshake with stack and returns what it cost.
func (b *Bench) One(stack Stack) (Result, error) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return Result{}, err
	}
	cnt := &counter{PacketConn: pc}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var elapsed time.Duration
	var clientKeeps float64
	start := time.Now()
	switch stack {
	case Ours:
		cfg := &dtls.Config{CipherSuites: []dtls.CipherSuiteID{b.kind.Ours}, ExtendedMasterSecret: dtls.RequireExtendedMasterSecret}
		if b.kind.Resume != negotiation.None {
			cfg.Resumption = []negotiation.Type{b.kind.Resume}
			if b.kind.Resume != negotiation.ClientState {
				cfg.ClientSessionCache = b.oursCache
			} else if !b.kind.PSK {
				cfg.ClientStateKey = []byte("bench client key")
			}
		}
		if b.kind.PSK {
			cfg.PSK = func([]byte) ([]byte, error) { return psk, nil }
			cfg.PSKIdentityHint = []byte("bench")
		} else {
			cfg.RootCAs, cfg.ServerName = b.pool, "localhost"
		}
		if b.kind.Curve != 0 {
			// The group for ECDHE, then the certificate's (RFC 8422 §5.1).
			cfg.CurvePreferences = []dtls.CurveID{b.kind.Curve, dtls.CurveP256}
		}
		c, err := dtls.Client(cnt, b.oursAddr, cfg)
		if err != nil {
			return Result{}, err
		}
		defer c.Close()
		if err := c.HandshakeContext(ctx); err != nil {
			return Result{}, fmt.Errorf("%s %s: %w", stack, b.kind.Name, err)
		}
		elapsed = time.Since(start)
		st := c.ConnectionState()
		if b.primed(stack) && st.Resumed != (b.kind.Resume != negotiation.None) {
			return Result{}, fmt.Errorf("%s %s: resumed=%v", stack, b.kind.Name, st.Resumed)
		}
		if b.kind.Curve != 0 && st.Curve != b.kind.Curve {
			return Result{}, fmt.Errorf("%s %s: the server chose %v", stack, b.kind.Name, st.Curve)
		}
		clientKeeps = float64(st.ResumptionStateBytes)
	case Pion:
		cfg := &piondtls.Config{CipherSuites: []piondtls.CipherSuiteID{b.kind.Pion}, ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret}
		if b.pionCache != nil {
			cfg.SessionStore = b.pionCache
		}
		if b.kind.PSK {
			cfg.PSK = func([]byte) ([]byte, error) { return psk, nil }
			cfg.PSKIdentityHint = []byte("bench")
		} else {
			cfg.RootCAs, cfg.ServerName = b.pool, "localhost"
		}
		if b.kind.Curve != 0 {
			cfg.EllipticCurves = []pionelliptic.Curve{pionelliptic.Curve(b.kind.Curve), pionelliptic.P256}
		}
		c, err := piondtls.Client(cnt, b.pionAddr, cfg)
		if err != nil {
			return Result{}, err
		}
		defer c.Close()
		if err := c.HandshakeContext(ctx); err != nil {
			return Result{}, fmt.Errorf("%s %s: %w", stack, b.kind.Name, err)
		}
		elapsed = time.Since(start)
	default:
		return Result{}, errors.New("unknown stack " + string(stack))
	}
	b.done[stack]++
	r := Result{
		Kind: b.kind.Name, Stack: stack, Handshakes: 1, Time: elapsed, ClientKeeps: clientKeeps,
		DatagramsSent: float64(cnt.dgOut.Load()), DatagramsReceived: float64(cnt.dgIn.Load()),
		BytesSent: float64(cnt.bOut.Load()), BytesReceived: float64(cnt.bIn.Load()),
		RoundTrips: float64(cnt.rtt.Load()),
	}
	r.TimeMS = float64(r.Time.Microseconds()) / 1000
	return r, nil
}

// Run measures n handshakes of each stack, alternating them so that both see
// the same machine load, and returns the averages (ours first).
func (b *Bench) Run(n int) ([2]Result, error) {
	var sum [2]Result
	for i := 0; i < n; i++ {
		for j, stack := range []Stack{Ours, Pion} {
			r, err := b.One(stack)
			if err != nil {
				return sum, err
			}
			s := &sum[j]
			s.Kind, s.Stack = r.Kind, r.Stack
			s.Handshakes++
			s.Time += r.Time
			s.DatagramsSent += r.DatagramsSent
			s.DatagramsReceived += r.DatagramsReceived
			s.BytesSent += r.BytesSent
			s.BytesReceived += r.BytesReceived
			s.RoundTrips += r.RoundTrips
			s.ClientKeeps += r.ClientKeeps
		}
	}
	for j := range sum {
		s := &sum[j]
		k := float64(s.Handshakes)
		s.Time /= time.Duration(s.Handshakes)
		s.TimeMS = float64(s.Time.Microseconds()) / 1000
		s.DatagramsSent /= k
		s.DatagramsReceived /= k
		s.BytesSent /= k
		s.BytesReceived /= k
		s.RoundTrips /= k
		s.ClientKeeps /= k
	}
	if b.kind.Resume != negotiation.None {
		// What the servers hold per session once the handshakes are done;
		// our server reports it when Accept returns, so give the serving
		// goroutine a moment.
		for i := 0; i < 100 && b.serverKeeps.Load() == 0 && b.kind.Resume != negotiation.SessionTicket; i++ {
			time.Sleep(time.Millisecond)
		}
		sum[0].ServerKeeps = float64(b.serverKeeps.Load())
		sum[1].ServerKeeps = bytesPerEntry(b.pionServerStore)
		sum[1].ClientKeeps = bytesPerEntry(b.pionCache)
	}
	return sum, nil
}
