package handshakebench

import (
	"testing"

	"github.com/dtlsresume/dtlsresume/negotiation"
)

// BenchmarkHandshake runs full handshakes of each kind with both stacks in
// the same run; compare the ns/op of the Ours and Pion sub-benchmarks, and
// the bytes/op and datagrams/op metrics.
func BenchmarkHandshake(b *testing.B) {
	for _, kind := range Kinds {
		bench, err := New(kind)
		if err != nil {
			b.Fatal(err)
		}
		for _, stack := range []Stack{Ours, Pion} {
			b.Run(kind.Name+"/"+string(stack), func(b *testing.B) {
				var bytes, datagrams float64
				for i := 0; i < b.N; i++ {
					r, err := bench.One(stack)
					if err != nil {
						b.Fatal(err)
					}
					bytes += r.BytesSent + r.BytesReceived
					datagrams += r.DatagramsSent + r.DatagramsReceived
				}
				b.ReportMetric(bytes/float64(b.N), "wire-bytes/op")
				b.ReportMetric(datagrams/float64(b.N), "datagrams/op")
			})
		}
		bench.Close()
	}
}

// TestRunMeasuresBothStacks checks that a short run completes and that the
// counts are those of a full handshake with a cookie exchange.
func TestRunMeasuresBothStacks(t *testing.T) {
	for _, kind := range Kinds {
		bench, err := New(kind)
		if err != nil {
			t.Fatal(err)
		}
		res, err := bench.Run(2)
		bench.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Handshakes != 2 || r.DatagramsSent < 2 || r.DatagramsReceived < 1 || r.BytesSent < 100 || r.BytesReceived < 100 || r.RoundTrips < 1 {
				t.Errorf("%s %s: implausible result %+v", kind.Name, r.Stack, r)
			}
		}
		want, wantRTT := 3.0, 3.0 // CH, CH+cookie, flight 5; each waits for an answer
		if kind.Resume != 0 {
			want, wantRTT = 2, 1 // CH, then CCS+Finished: the cookie exchange is skipped
		}
		ours := res[0]
		switch kind.Resume {
		case negotiation.ClientState:
			if ours.ClientKeeps != 0 || ours.ServerKeeps == 0 {
				t.Errorf("%s: client/server keep %.0f/%.0f bytes", kind.Name, ours.ClientKeeps, ours.ServerKeeps)
			}
		case negotiation.SessionTicket:
			if ours.ClientKeeps == 0 || ours.ServerKeeps != 0 {
				t.Errorf("%s: client/server keep %.0f/%.0f bytes", kind.Name, ours.ClientKeeps, ours.ServerKeeps)
			}
		case negotiation.SessionID:
			if ours.ClientKeeps == 0 || ours.ServerKeeps == 0 {
				t.Errorf("%s: client/server keep %.0f/%.0f bytes", kind.Name, ours.ClientKeeps, ours.ServerKeeps)
			}
		}
		if res[0].RoundTrips != wantRTT {
			t.Errorf("%s: %.1f round trips, want %.0f", kind.Name, res[0].RoundTrips, wantRTT)
		}
		if res[0].DatagramsSent != want {
			t.Errorf("%s: our client sent %.1f datagrams per handshake, want %.0f", kind.Name, res[0].DatagramsSent, want)
		}
	}
}
