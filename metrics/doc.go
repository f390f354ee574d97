// Package metrics counts what a DTLS server (or client) does: handshakes by
// kind, resumption type and outcome, the datagrams and bytes they cost,
// resumption lookups and their hits per type, ticket opens, and session
// store operations and errors. The counts are exported in the Prometheus
// text format (client_golang) and readable from Go ([Metrics.Snapshot]).
//
// Wiring, on a server:
//
//	m := metrics.New(nil)                        // or a prometheus.Registerer
//	cfg.HandshakeObserver = m.Observe            // handshakes, traffic, durations
//	cfg.SessionStore = m.WrapStore(st, "redis")  // store operations, lookups by type
//	m.WatchKeyRing(cfg.TicketKeys)               // ticket opens (session_ticket lookups)
//	http.Handle("/metrics", m.Handler())         // or m.Serve(addr, logger)
//
// # What is counted
//
// dtlsresume_handshakes_total{kind, resumption, outcome} counts handshakes
// as the observer sees them: kind is "resumed" for an abbreviated handshake
// and "full" otherwise; resumption is the type the session was set up with
// (or resumed by): none, session_id, session_ticket or client_state; outcome
// is ok or error. dtlsresume_resumption_attempts_total{resumption,
// result=hit|miss} counts the handshakes whose ClientHello tried to resume
// (dtls.ConnectionState.ResumptionAttempted) by whether they did:
// [Snapshot.HitRatio] is exact per handshake.
//
// Below that, per store call: for session_id and
// client_state every store Get of a session ID or a client_state handle
// (dtls's "sid/" and "csh/" keys) is counted in
// dtlsresume_resumption_lookups_total{backend, resumption, result=hit|miss|error};
// for session_ticket every ticket the watched key rings open, or fail to
// (unknown or retired key, forged or damaged ticket), is counted in
// dtlsresume_ticket_opens_total{result=opened|unknown_key|rejected}.
// [Snapshot.HitRatio] divides hits by lookups. A hit is a session found;
// the engine may still refuse it (expired, another suite, a server name
// that differs) and do a full handshake. The ratio is per lookup, not per
// handshake: a handshake whose session is not found may look it up twice
// (before the cookie exchange, to decide whether to skip it, and after),
// and a client_state client, which asks to resume on every handshake, adds
// a third miss when the server checks the handle is not bound to another
// client before storing its first ticket. So misses are overcounted up to
// threefold; the handshake counters are exact.
//
// dtlsresume_handshake_datagrams_total and dtlsresume_handshake_bytes_total
// {kind, resumption, direction=sent|received} add up the handshake cost
// each side reports (a server counts from the ClientHello that carried a
// valid cookie), for failed handshakes too; dtlsresume_handshake_duration_seconds{kind}
// is a histogram of completed handshakes.
//
// dtlsresume_store_operations_total{backend, op, result=ok|not_found|error}
// and dtlsresume_store_errors_total{backend, op} count the wrapped store's
// calls; a miss is not an error, a timeout is.
package metrics
