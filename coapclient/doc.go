// Package coapclient is a CoAP client (github.com/plgd-dev/go-coap/v3) over
// this module's DTLS stack.
//
// go-coap's own dtls.Dial and dtls.Client take a *piondtls.Conn; Client
// builds the same go-coap client on a *dtls.Conn from go-coap's public
// layers (net.NewConn, dtls/server.NewSession, udp/client.NewConnWithOpts),
// so observe and CON retransmission are go-coap's. Block-wise transfers are
// the Client's own (Do): Block1 for every method that carries a payload
// (go-coap's sends it only for PUT and POST), Block2 collected whole.
// See package coapserver's documentation for the details.
package coapclient
