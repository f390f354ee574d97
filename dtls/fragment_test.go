package dtls

import (
	"bytes"
	"fmt"
	"testing"
)

// TestPackFlightFitsAndReassembles packs flights of various message sizes
// at various MTUs, checks every datagram fits, and reassembles the messages
// from the records on the other side.
func TestPackFlightFitsAndReassembles(t *testing.T) {
	sizes := [][]int{{70}, {70, 900, 120, 0}, {3000}, {0, 0, 1}, {400, 400, 400}}
	for _, mtu := range []int{256, 300, 576, 1232, 1500} {
		for _, sz := range sizes {
			t.Run(fmt.Sprint(mtu, sz), func(t *testing.T) {
				rl := newRecordLayer(64)
				var items []outItem
				for i, n := range sz {
					body := bytes.Repeat([]byte{byte(i + 1)}, n)
					items = append(items, outItem{msgType: typeCertificate, seq: uint16(i), body: body})
				}
				datagrams, err := packFlight(rl, items, mtu)
				if err != nil {
					t.Fatal(err)
				}
				r := reassembler{budget: DefaultMaxHandshakeMemory}
				for _, d := range datagrams {
					if len(d) > mtu {
						t.Fatalf("datagram of %d bytes over MTU %d", len(d), mtu)
					}
					recs, err := parseRecords(d)
					if err != nil {
						t.Fatal(err)
					}
					for _, rec := range recs {
						frags, err := parseHandshakeFragments(rec.fragment)
						if err != nil {
							t.Fatal(err)
						}
						for _, f := range frags {
							if err := r.add(f, rec.epoch); err != nil {
								t.Fatal(err)
							}
						}
					}
				}
				for i, n := range sz {
					m, ok := r.pop()
					if !ok {
						t.Fatalf("message %d not reassembled", i)
					}
					if m.seq != uint16(i) || len(m.body) != n || (n > 0 && m.body[n-1] != byte(i+1)) {
						t.Fatalf("message %d: seq %d len %d", i, m.seq, len(m.body))
					}
				}
				if _, ok := r.pop(); ok {
					t.Fatal("extra message")
				}
			})
		}
	}
}
