// Package interopmatrix runs this module's DTLS stack and CoAP layer
// against the third-party peers installed on the machine and reports one
// row per case: the command `dtlsresume interop`.
//
// The peers are OpenSSL (s_client, s_server), GnuTLS (gnutls-cli,
// gnutls-serv) and libcoap (coap-client-openssl/-gnutls,
// coap-server-openssl/-gnutls), run as processes found on PATH, and
// pion/dtls v3, in process. Each case runs one direction (a peer client
// against our server, or our client against a peer server) for one suite
// and scenario: a full handshake with data both ways, a resumption by
// session ticket or session ID, or a CoAP request. Our side runs in
// process, so the rows carry the datagrams and bytes our side counted.
//
// A case whose peer binary is missing is skipped, not failed. Every case is
// bounded by a timeout; its peer processes run in their own process groups
// on free 127.0.0.1 ports and are killed when it ends. Certificate cases use
// a throwaway CA and a leaf for 127.0.0.1 and localhost, generated in a
// temporary directory for the run.
//
// The command lines and the output strings the cases wait for are the ones
// the tests in interop/, coapserver/ and coapclient/ rely on.
package interopmatrix
