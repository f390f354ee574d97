// Package coaptest holds the fixtures the coapserver and coapclient tests
// share: a PSK that libcoap's tools accept, and matching server and client
// configurations.
package coaptest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
)

// Key is printable because libcoap's -k takes the key as a string.
const (
	Key      = "secretPSK"
	Identity = "client1"
	Timeout  = 15 * time.Second
)

// ErrUnknownIdentity is what ServerConfig's PSK callback returns for any
// identity but Identity.
var ErrUnknownIdentity = errors.New("unknown PSK identity")

// ServerConfig accepts Identity with Key.
func ServerConfig() *dtls.Config {
	return &dtls.Config{
		PSK: func(id []byte) ([]byte, error) {
			if string(id) == Identity {
				return []byte(Key), nil
			}
			return nil, ErrUnknownIdentity
		},
		RetransmitInterval: 200 * time.Millisecond,
	}
}

// ClientConfig connects as Identity with Key.
func ClientConfig() *dtls.Config {
	return &dtls.Config{
		PSK:                func([]byte) ([]byte, error) { return []byte(Key), nil },
		PSKIdentityHint:    []byte(Identity),
		RetransmitInterval: 200 * time.Millisecond,
	}
}

// Context is bounded by Timeout and cancelled when the test ends.
func Context(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	t.Cleanup(cancel)
	return ctx
}
