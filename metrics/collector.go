package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	descHandshakes = prometheus.NewDesc("dtlsresume_handshakes_total",
		"DTLS handshakes by kind (full, resumed), resumption type and outcome (ok, error).",
		[]string{"kind", "resumption", "outcome"}, nil)
	descDatagrams = prometheus.NewDesc("dtlsresume_handshake_datagrams_total",
		"Datagrams of handshakes by kind, resumption type and direction (sent, received).",
		[]string{"kind", "resumption", "direction"}, nil)
	descBytes = prometheus.NewDesc("dtlsresume_handshake_bytes_total",
		"Bytes (UDP payload) of handshakes by kind, resumption type and direction (sent, received).",
		[]string{"kind", "resumption", "direction"}, nil)
	descDuration = prometheus.NewDesc("dtlsresume_handshake_duration_seconds",
		"Duration of completed handshakes by kind.",
		[]string{"kind"}, nil)
	descStoreOps = prometheus.NewDesc("dtlsresume_store_operations_total",
		"Session store calls by backend, operation (get, put, delete) and result (ok, not_found, error).",
		[]string{"backend", "op", "result"}, nil)
	descStoreErrors = prometheus.NewDesc("dtlsresume_store_errors_total",
		"Session store calls that failed (errors and timeouts; a miss is not an error) by backend and operation.",
		[]string{"backend", "op"}, nil)
	descAttempts = prometheus.NewDesc("dtlsresume_resumption_attempts_total",
		"Handshakes whose ClientHello tried to resume, by the resumption type tried and result (hit: resumed, miss: full handshake or failure).",
		[]string{"resumption", "result"}, nil)
	descLookups = prometheus.NewDesc("dtlsresume_resumption_lookups_total",
		"Store lookups of resumable sessions by backend, resumption type (session_id, client_state) and result (hit, miss, error).",
		[]string{"backend", "resumption", "result"}, nil)
	descTicketOpens = prometheus.NewDesc("dtlsresume_ticket_opens_total",
		"Session tickets the server's key rings opened (opened) or could not (unknown_key, rejected).",
		[]string{"result"}, nil)
	descTicketsSealed = prometheus.NewDesc("dtlsresume_tickets_sealed_total",
		"Session tickets the server's key rings sealed.", nil, nil)
	descFailures = prometheus.NewDesc("dtlsresume_handshake_failures_total",
		"Failed handshakes by reason (timeout, refused, network, bad_key, unknown_identity, bad_certificate, no_common_suite, protocol, peer_alert, closed, canceled, internal) and, for peer_alert, the alert's name.", []string{"reason", "alert"}, nil)
	descLimits = prometheus.NewDesc("dtlsresume_limits_reached_total",
		"Times a server's resource limit (connections, handshakes, handshakes_per_ip, accept_backlog, handshake_memory, inbound_bytes, amplification) turned a newcomer away or dropped a datagram, by limit.", []string{"limit"}, nil)
)

// collector exports a Metrics' counters.
type collector struct{ m *Metrics }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHandshakes, descDatagrams, descBytes, descDuration, descStoreOps,
		descStoreErrors, descAttempts, descLookups, descTicketOpens, descTicketsSealed, descLimits, descFailures} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.Snapshot()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for k, v := range s.Handshakes {
		counter(descHandshakes, v, k.Kind, k.Resumption, k.Outcome)
	}
	for k, a := range s.Attempts {
		counter(descAttempts, a.Hits, k, "hit")
		counter(descAttempts, a.Misses, k, "miss")
	}
	for k, t := range s.Traffic {
		counter(descDatagrams, t.DatagramsSent, k.Kind, k.Resumption, "sent")
		counter(descDatagrams, t.DatagramsReceived, k.Kind, k.Resumption, "received")
		counter(descBytes, t.BytesSent, k.Kind, k.Resumption, "sent")
		counter(descBytes, t.BytesReceived, k.Kind, k.Resumption, "received")
	}
	c.m.mu.Lock()
	for kind, h := range c.m.durations {
		buckets := make(map[float64]uint64, len(durationBuckets))
		var cum uint64
		for i, ub := range durationBuckets {
			cum += h.counts[i]
			buckets[ub] = cum
		}
		ch <- prometheus.MustNewConstHistogram(descDuration, h.count, h.sum, buckets, kind)
	}
	c.m.mu.Unlock()
	for k, o := range s.Store {
		counter(descStoreOps, o.OK, k.Backend, k.Op, ResultOK)
		if k.Op == "get" {
			counter(descStoreOps, o.NotFound, k.Backend, k.Op, ResultNotFound)
		}
		counter(descStoreOps, o.Errors, k.Backend, k.Op, ResultError)
		counter(descStoreErrors, o.Errors, k.Backend, k.Op)
	}
	for k, l := range s.Lookups {
		counter(descLookups, l.Hits, k.Backend, k.Resumption, ResultHit)
		counter(descLookups, l.Misses, k.Backend, k.Resumption, ResultMiss)
		counter(descLookups, l.Errors, k.Backend, k.Resumption, ResultError)
	}
	counter(descTicketOpens, s.Tickets.Opened, "opened")
	counter(descTicketOpens, s.Tickets.UnknownKey, "unknown_key")
	counter(descTicketOpens, s.Tickets.Rejected, "rejected")
	counter(descTicketsSealed, s.Tickets.Sealed)
	for l, n := range s.Limits {
		counter(descLimits, n, l)
	}
	for k, n := range s.Failures {
		counter(descFailures, n, k.Reason, k.Alert)
	}
}
