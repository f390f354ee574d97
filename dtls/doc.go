// Package dtls is a DTLS 1.2 client and server (RFC 6347) for constrained CoAP
// deployments. It runs its own handshake state machine on the exported parts
// of pion/dtls (PRF, record ciphers, elliptic curves) so that hello extensions,
// NewSessionTicket and the resumption-type negotiation of this project can be
// carried in its flights.
//
// The API mirrors pion/dtls: a Config, Dial/Client for clients, Listen/Server
// for servers, and a Conn that is a net.Conn with HandshakeContext and
// ConnectionState.
package dtls
