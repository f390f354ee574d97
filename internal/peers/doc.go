// Package peers lets Go tests drive external DTLS peers (OpenSSL's s_server
// and s_client, GnuTLS's gnutls-serv and gnutls-cli, libcoap's coap-server and
// coap-client) as processes on 127.0.0.1.
//
// [Require] finds a peer's binary. scripts/test.sh installs every peer before
// it runs the tests, so a missing binary fails the test; set
// DTLSRESUME_ALLOW_MISSING_PEERS=1 to skip instead (for a quick run on a
// machine without them).
//
// [Start] runs a process with its standard input kept open (OpenSSL's
// s_server and s_client exit when their stdin closes) and its stdout and
// stderr merged into one buffer that [Process.WaitFor] searches. The process
// runs in its own process group; when the test ends the group is killed and
// the process reaped, and on a failed test its output is logged.
//
// [FreeUDPPort] picks a port and [WaitUDPListening] waits until a server
// process has bound it (by reading /proc/net/udp and /proc/net/udp6), so a
// client is not started before its server listens.
//
// Typical use:
//
//	openssl := peers.Require(t, "openssl")
//	port := peers.FreeUDPPort(t)
//	srv := peers.Start(t, openssl, "s_server", "-dtls1_2", "-accept", fmt.Sprintf("127.0.0.1:%d", port), ...)
//	peers.WaitUDPListening(t, port, 5*time.Second)
//	...
//	if err := srv.WaitFor("Reused session-id", 5*time.Second); err != nil {
//		t.Fatal(err)
//	}
//
// The machinery itself is package internal/proc, which does not import
// package testing: code without a testing.TB (the `dtlsresume interop`
// matrix) uses it directly, with errors instead of failed tests.
//
// What the peers print, as observed on Debian 12 (OpenSSL 3.0.22, GnuTLS
// 3.7.9), is written down in peers_test.go, whose smoke tests check it.
package peers
