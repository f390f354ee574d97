package loadgen

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
)

// Failure reasons besides "alert <name>".
const (
	ReasonTimeout   = "timeout"   // no answer in time
	ReasonRefused   = "refused"   // ICMP port unreachable: nothing listens
	ReasonBadReply  = "bad_reply" // the echo or the CoAP response was wrong
	ReasonCancelled = "cancelled" // the run ended (--max-time, a signal) first
	ReasonOther     = "other"
)

// errBadReply marks a device whose handshake worked but whose echo or CoAP
// response did not.
var errBadReply = errors.New("loadgen: wrong reply")

// errRefused is the cause of a device context cancelled because its socket
// reported ECONNREFUSED.
var errRefused = errors.New("loadgen: connection refused")

// alertNames are the RFC 5246 and RFC 4279 alert descriptions, so that the
// set of failure reasons stays small and named.
var alertNames = map[uint8]string{
	0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
	40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate",
	45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
	49: "access_denied", 50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
	71: "insufficient_security", 80: "internal_error", 100: "no_renegotiation",
	110: "unsupported_extension", 115: "unknown_psk_identity",
}

// Reason classifies a device's error into one of a small set of names:
// timeout, refused, bad_reply, cancelled, "alert NAME" (sent or received),
// or other.
// ctx is the device's context, whose cause tells a refused socket apart.
func Reason(ctx context.Context, err error) string {
	if ctx != nil && errors.Is(context.Cause(ctx), errRefused) || errors.Is(err, errRefused) || errors.Is(err, syscall.ECONNREFUSED) {
		return ReasonRefused
	}
	var ae *dtls.AlertError
	if errors.As(err, &ae) {
		if name, ok := alertNames[ae.Description]; ok {
			return "alert " + name
		}
		return fmt.Sprintf("alert %d", ae.Description)
	}
	if errors.Is(err, errBadReply) {
		return ReasonBadReply
	}
	if errors.Is(err, context.Canceled) {
		return ReasonCancelled
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() ||
		strings.Contains(err.Error(), "timed out") || strings.Contains(err.Error(), "timeout") {
		return ReasonTimeout
	}
	return ReasonOther
}

// Latency summarises handshake durations.
type Latency struct {
	P50, P99, Max time.Duration
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, or 0 when it is empty.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}

// stats collects what the devices of one phase report; safe for
// concurrent use.
type stats struct {
	mu        sync.Mutex
	latencies []time.Duration
	resumed   int
	failures  map[string]int
	failed    int
}

func newStats(n int) *stats {
	return &stats{latencies: make([]time.Duration, 0, n), failures: make(map[string]int)}
}

func (s *stats) success(d time.Duration, resumed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latencies = append(s.latencies, d)
	if resumed {
		s.resumed++
	}
}

func (s *stats) failure(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[reason]++
	s.failed++
}

// counts returns the successes and failures so far.
func (s *stats) counts() (ok, failed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.latencies), s.failed
}

// phase returns what the devices reported, for a phase that ran from
// start to end.
func (s *stats) phase(start, end time.Time) *phase {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &phase{
		Start: start, End: end, Failed: s.failed, Resumed: s.resumed,
		Failures: maps.Clone(s.failures), Latencies: slices.Clone(s.latencies),
	}
}

// phase is what the devices of a measured phase did: those of one process,
// or every shard's merged. A shard sends its own to Run as JSON.
type phase struct {
	// Start is when the first device started, End when the last ended.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Latencies has one handshake duration per success.
	Latencies []time.Duration `json:"latencies_ns"`
	Failed    int             `json:"failed"`
	Resumed   int             `json:"resumed"`
	Failures  map[string]int  `json:"failures,omitempty"`
	Held      int             `json:"held"`
	Addresses int             `json:"source_addresses"`
}

// merge adds q's devices to p's: p then spans both windows.
func (p *phase) merge(q *phase) {
	if p.Start.IsZero() || q.Start.Before(p.Start) {
		p.Start = q.Start
	}
	if q.End.After(p.End) {
		p.End = q.End
	}
	p.Latencies = append(p.Latencies, q.Latencies...)
	p.Failed += q.Failed
	p.Resumed += q.Resumed
	for reason, n := range q.Failures {
		if p.Failures == nil {
			p.Failures = make(map[string]int)
		}
		p.Failures[reason] += n
	}
	p.Held += q.Held
	p.Addresses += q.Addresses
}

// latencyOf sorts samples and returns their percentiles.
func latencyOf(samples []time.Duration) Latency {
	if len(samples) == 0 {
		return Latency{}
	}
	slices.Sort(samples)
	return Latency{
		P50: Percentile(samples, 50),
		P99: Percentile(samples, 99),
		Max: samples[len(samples)-1],
	}
}
