package dtls

import (
	"log/slog"
	"net"
	"sync"
	"time"
)

// Limit names a per-peer resource bound that a server reached. A limit
// costs the newcomer a HelloVerifyRequest or a dropped datagram, never an
// established connection (docs/decisions.md, "Resource model").
type Limit string

const (
	// LimitConnections: MaxConnections associations exist; a new
	// ClientHello gets a HelloVerifyRequest at most.
	LimitConnections Limit = "connections"
	// LimitHandshakes: MaxHandshakes handshakes are running.
	LimitHandshakes Limit = "handshakes"
	// LimitHandshakesPerIP: MaxHandshakesPerIP handshakes from one IP
	// address are running.
	LimitHandshakesPerIP Limit = "handshakes_per_ip"
	// LimitAcceptBacklog: a completed handshake found the accept backlog
	// full and its connection was closed.
	LimitAcceptBacklog Limit = "accept_backlog"
	// LimitHandshakeMemory: a handshake fragment was dropped because the
	// handshake's reassembly memory was spent.
	LimitHandshakeMemory Limit = "handshake_memory"
	// LimitInboundBytes: a datagram was dropped because the connection's
	// queue of unread datagrams was full.
	LimitInboundBytes Limit = "inbound_bytes"
	// LimitAmplification: a datagram to an address that has not proven it
	// is reachable was not sent, since it would exceed
	// AmplificationFactor times what that address sent.
	LimitAmplification Limit = "amplification"
)

// Limits lists every Limit, for metrics that pre-declare their labels.
func Limits() []Limit {
	return []Limit{LimitConnections, LimitHandshakes, LimitHandshakesPerIP, LimitAcceptBacklog,
		LimitHandshakeMemory, LimitInboundBytes, LimitAmplification}
}

// Defaults of the Config's resource limits.
const (
	DefaultMaxConnections     = 200000
	DefaultMaxHandshakes      = 4096
	DefaultMaxHandshakesPerIP = 64
	DefaultMaxHandshakeMemory = 64 << 10
	DefaultMaxInboundBytes    = 32 << 10
	DefaultAcceptBacklog      = 128
	DefaultCookieLifetime     = 60 * time.Second
	// unverifiedHandshakeMemory caps the reassembly memory of a handshake
	// whose peer skipped the cookie exchange (an abbreviated handshake
	// needs at most a client_state ticket and a Finished from it).
	unverifiedHandshakeMemory = 4 << 10
	// unverifiedHandshakeIntervals bounds the life of such a handshake, in
	// initial retransmission intervals: long enough for three of our
	// retransmissions, after which a client that lost them starts over
	// with its own.
	unverifiedHandshakeIntervals = 8
)

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func (c *Config) maxConnections() int { return orDefault(c.MaxConnections, DefaultMaxConnections) }
func (c *Config) maxHandshakes() int  { return orDefault(c.MaxHandshakes, DefaultMaxHandshakes) }
func (c *Config) maxHandshakesPerIP() int {
	return orDefault(c.MaxHandshakesPerIP, DefaultMaxHandshakesPerIP)
}
func (c *Config) maxHandshakeMemory() int {
	return orDefault(c.MaxHandshakeMemory, DefaultMaxHandshakeMemory)
}
func (c *Config) maxInboundBytes() int { return orDefault(c.MaxInboundBytes, DefaultMaxInboundBytes) }
func (c *Config) acceptBacklog() int   { return orDefault(c.AcceptBacklog, DefaultAcceptBacklog) }
func (c *Config) cookieLifetime() time.Duration {
	return orDefault(c.CookieLifetime, DefaultCookieLifetime)
}

// handshakeTimeoutFor is how long a server handshake may take: less for
// one whose peer skipped the cookie exchange (docs/decisions.md 37).
func (c *Config) handshakeTimeoutFor(verified bool) time.Duration {
	if verified {
		return c.handshakeTimeout()
	}
	return min(c.handshakeTimeout(), unverifiedHandshakeIntervals*c.retransmitInterval())
}

// noteLimit reports a limit that was reached: to LimitObserver, and in a
// log line at most once per second per limit, with the count of the ones
// not logged.
func (c *Config) noteLimit(l Limit, peer net.Addr) {
	if c.LimitObserver != nil {
		c.LimitObserver(l)
	}
	if c.limitLog != nil {
		c.limitLog.note(c.logger(), l, peer)
	}
}

// limitLogger rate-limits the log lines of reached limits.
type limitLogger struct {
	mu   sync.Mutex
	last map[Limit]time.Time
	held map[Limit]int
}

func newLimitLogger() *limitLogger {
	return &limitLogger{last: make(map[Limit]time.Time), held: make(map[Limit]int)}
}

func (g *limitLogger) note(log *slog.Logger, l Limit, peer net.Addr) {
	now := time.Now()
	g.mu.Lock()
	if now.Sub(g.last[l]) < time.Second {
		g.held[l]++
		g.mu.Unlock()
		return
	}
	more := g.held[l]
	g.last[l], g.held[l] = now, 0
	g.mu.Unlock()
	p := ""
	if peer != nil {
		p = peer.String()
	}
	log.Warn("dtls: limit reached", "limit", string(l), "peer", p, "not_logged_since_last", more)
}
