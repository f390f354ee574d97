// Package coapclient is a CoAP client (github.com/plgd-dev/go-coap/v3) over
// this module's DTLS stack.
//
// go-coap's own dtls.Dial and dtls.Client take a *piondtls.Conn; Client
// builds the same go-coap client on a *dtls.Conn from go-coap's public
// layers (net.NewConn, dtls/server.NewSession, udp/client.NewConnWithOpts),
// so observe, block-wise transfers and CON retransmission are go-coap's.
// See package coapserver's documentation for the details.
package coapclient
