// Package loadgen simulates many DTLS devices against one server on
// loopback and measures what they cost it: the engine of `dtlsresume
// loadtest`.
//
// [Run] drives Config.Devices devices, each a UDP socket of its own bound
// to a source address in 127.0.0.0/8 (PortsPerAddress devices per address,
// then the next address, so that more than 65,535 devices fit), through a
// full handshake or, after one full handshake each, a resumption by
// session_id, session_ticket or client_state, followed by one echoed
// message or one CoAP GET. Devices start from a fixed number of workers or
// at a fixed rate; with Hold every connection stays open until all are up.
// The result counts successes, resumptions and failures by a small set of
// reasons (timeout, refused, an alert's name, bad_reply, cancelled, other)
// and gives handshake latency percentiles.
//
// With Config.Hostile, traffic from unverified source addresses runs
// alongside: cookie-less ClientHellos from random source addresses, the
// captured datagram of a real resumption ClientHello replayed from many
// addresses, and after each replay a datagram of epoch-0 handshake
// fragments that each declare a 64 KiB message. Every hostile source counts
// the bytes it sent and received, so the result shows the largest
// amplification any of them got.
//
// A process may open only so many sockets, and every device holds one:
// with Config.Procs, Run shares the devices among child processes started
// from Config.ShardCommand, each running [RunShard] with a consecutive slice
// of the devices, source addresses of its own and its share of the
// concurrency or rate. The shards prime their devices, wait until all are
// ready, run the measured phase together and report their counts and
// every handshake's latency as JSON, so that Run's result is the one a
// single process would give; with Hold they keep their connections until
// Run is done. Run itself runs the hostile traffic and reads the server's
// usage. A shard exits when its standard input ends, so none outlives Run.
//
// When the server is a process of its own ([Spawn]), Run reads its CPU time
// and resident memory from /proc ([ReadUsage]) around the measured phase:
// CPU per handshake, memory per held connection, memory per hostile source.
// [ServePionEcho] and [ServePionCoAP] are pion/dtls v3 and go-coap servers
// with the same PSK, run as such a process for comparison.
//
// Everything is bounded: Run refuses targets outside 127.0.0.0/8, every
// handshake has a timeout, and Run ends when its context does.
package loadgen
