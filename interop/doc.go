// Package interop holds the tests that run this project's DTLS client and
// server against real third-party peers: pion/dtls v3 (and v2) in process,
// and OpenSSL, GnuTLS and libcoap's tools as processes. It has no non-test
// code beyond shared helpers.
package interop
