package coaptune

import (
	"time"

	"github.com/plgd-dev/go-coap/v3/net/blockwise"
)

const (
	// recordOverhead is a DTLS record header, explicit nonce and the
	// largest tag (GCM); coapOverhead bounds a CoAP header with options.
	recordOverhead = 13 + 8 + 16
	coapOverhead   = 128
	defaultDTLSMTU = 1232
	// MaxPlaintext is go-coap's read buffer: the largest DTLS plaintext.
	MaxPlaintext = 1 << 14
	// PeriodicTick drives go-coap's retransmissions and inactivity checks
	// (its default is 4 s).
	PeriodicTick = 500 * time.Millisecond
	// BlockwiseTimeout bounds one block-wise transfer.
	BlockwiseTimeout = 10 * time.Second
)

// BlockSZX returns the largest block-wise size whose blocks fit one record
// of a DTLS connection with the given MTU (0 means the dtls default): a
// DTLS Write never splits a datagram.
func BlockSZX(mtu int) blockwise.SZX {
	if mtu <= 0 {
		mtu = defaultDTLSMTU
	}
	szx := blockwise.SZX1024
	for szx > blockwise.SZX16 && int(szx.Size())+recordOverhead+coapOverhead > mtu {
		szx--
	}
	return szx
}

// PeriodicRunner is a go-coap periodic runner that calls f every tick
// until f returns false.
func PeriodicRunner(tick time.Duration) func(f func(now time.Time) bool) {
	return func(f func(now time.Time) bool) {
		go func() {
			t := time.NewTicker(tick)
			defer t.Stop()
			for now := range t.C {
				if !f(now) {
					return
				}
			}
		}()
	}
}
