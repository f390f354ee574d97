// Package lossyproxy is a UDP proxy on 127.0.0.1 for loss tests: it sits
// between a DTLS client and a DTLS server on real loopback sockets and drops,
// duplicates or reorders datagrams in either direction.
//
// The client sends to [Proxy.Addr] instead of the server. The proxy learns
// the client's address from the first datagram that reaches its listening
// socket and relays it to the server from a separate socket of its own, so the
// server sees the proxy's upstream socket as the client. Replies from the
// server are relayed back to the client's address.
//
// A datagram from a second client address (for example a new client process
// in a session resumption test) gets a second upstream socket of its own, so
// the server sees it as a different peer, as it would without the proxy. With
// a single client, which is the intended use, there is exactly one upstream
// socket. Datagrams arriving on an upstream socket from anywhere but the
// server address are ignored.
//
// # Impairments
//
// For each datagram, in each direction, the proxy first asks the optional
// [Config.Filter]. [Pass] forwards the datagram once, unchanged and
// immediately; [Drop] drops it; [Default] applies the probabilities: the
// datagram is dropped with probability Drop; otherwise it is sent twice with
// probability Duplicate, and held back for ReorderDelay with probability
// Reorder (so that datagrams sent after it overtake it). A held duplicated
// datagram is sent twice when released.
//
// The random draws come from math/rand/v2 PCG sources seeded from
// [Config.Seed], one source per direction, and three draws are made for every
// Default datagram whatever their outcome. So for a given Seed, the k-th
// datagram in a direction always gets the same decision, however the two
// directions interleave in time.
//
// Datagrams still held for reordering when the proxy is closed are discarded.
package lossyproxy
