// Package coaptune holds the go-coap settings that coapserver and coapclient
// share so that go-coap fits DTLS records of this project's dtls package.
package coaptune
