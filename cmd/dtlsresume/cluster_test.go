package main

import (
	"fmt"
	"testing"
)

// TestClusterOnTwoAddressesWithoutServerName: two serve processes sharing
// one redis-server, reached at different addresses with the same PSK and no
// --server-name: a session belongs to the server's identity (the PSK), not
// to its address, so a session from the first resumes on the second for
// every type, in one round trip and without an aborted attempt
// (docs/decisions.md 43).
func TestClusterOnTwoAddressesWithoutServerName(t *testing.T) {
	redisPort := freeTCPPort(t)
	startRedisServer(t, redisPort)
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", redisPort)
	a, b := freeUDPAddr(t), freeUDPAddr(t)
	startServeAt(t, a, "--store", url, "--store-key", testStoreKeyHex)
	startServeAt(t, b, "--store", url, "--store-key", testStoreKeyHex)
	for _, c := range resumptionClients(t) {
		if res := coapGet(t, a, c, ""); res.Resumed {
			t.Fatalf("%s: the first handshake resumed", c.typ)
		}
		res := coapGet(t, b, c, "")
		if !res.Resumed || res.DatagramsSent != 2 || res.DatagramsReceived != 1 {
			t.Errorf("%s from %s on %s: resumed=%v in %d/%d datagrams, want 2/1", c.typ, a, b, res.Resumed, res.DatagramsSent, res.DatagramsReceived)
		}
	}
}
