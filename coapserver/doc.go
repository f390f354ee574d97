// Package coapserver serves CoAP (github.com/plgd-dev/go-coap/v3) over this
// module's DTLS stack: a go-coap DTLS server whose connections come from a
// *dtls.Listener instead of pion/dtls.
//
// # How go-coap is wired to package dtls (go-coap v3.5.5)
//
// Server. go-coap's dtls/server.Server.Serve takes its own interface
//
//	type Listener interface {
//		Close() error
//		AcceptWithContext(ctx context.Context) (net.Conn, error)
//	}
//
// and *dtls.Listener satisfies it as it is. For each accepted net.Conn the
// server calls HandshakeContext when the conn has it (ours does, and it
// returns at once: Accept hands out finished handshakes), wraps it with
// go-coap's net.NewConn, and runs a udp/client.Conn over a dtls/server.Session,
// reading one datagram per Read. No pion type carries our traffic (go-coap's
// net package still imports pion/dtls v3 for its own DTLSListener, so pion
// stays linked in), and every go-coap server feature (mux, observe, CON/NON
// retransmission, inactivity monitor and keep-alive, OnNewConn, request
// monitor) runs unchanged but block-wise transfers, which Server does
// itself (see [Server]: go-coap ties the blocks of an upload by token and
// only for PUT and POST, so libcoap's uploads, a token per block, reached
// handlers cut to their last block). Two more adjustments are made here:
//   - go-coap stops Serve only on io.EOF (its net.ErrListenerIsClosed); our
//     Listener reports net.ErrClosed, on which go-coap's accept loop would spin.
//     Serve wraps the Listener to translate that error.
//   - go-coap's read buffer (its "MTU" option, default 1472) must hold a whole
//     record's plaintext or our Conn.Read fails and go-coap drops the
//     connection; it is set to 16384, the largest DTLS plaintext (RFC 6347).
//     The block-wise block size is derived from Options.DTLS.MTU so that every
//     block fits one record (1024-byte blocks at the default MTU of 1232),
//     since dtls.Conn.Write does not split a datagram.
//
// Client. go-coap's dtls.Client and dtls.Dial insist on *piondtls.Conn, but
// their body only uses it as a net.Conn. The lowest public layer that takes a
// net.Conn is the same one the server uses: net.NewConn(conn), then
// dtls/server.NewSession, then udp/client.NewConnWithOpts, then Run. Package
// coapclient repeats dtls.Client's dozen lines on those public constructors,
// and does block-wise transfers itself too (go-coap's client sends Block1
// only for PUT and POST).
//
// Handlers can reach the DTLS state of their peer with [ConnectionState].
package coapserver
