package loadgen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/dtlstest"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and parentheses, then fields 3 to 17:
	// utime (14) is 250 ticks and stime (15) 50.
	stat := "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 123 456789 1234\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil {
		t.Fatal(err)
	}
	if want := 3 * time.Second; got != want {
		t.Fatalf("CPU %v, want %v", got, want)
	}
	for _, bad := range []string{"", "4242 (x", "4242 (x) S 1 2", "4242 (x) S 1 2 3 4 5 6 7 8 9 10 ten 11 12"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tdtlsresume\nVmPeak:\t  99999 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 100 kB\n"
	got, err := parseVmRSS([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if got != 12345*1024 {
		t.Fatalf("RSS %d, want %d", got, 12345*1024)
	}
	for _, bad := range []string{"Name:\tzombie\n", "VmRSS:\t12 MB\n", "VmRSS:\tlots kB\n"} {
		if _, err := parseVmRSS([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestReadUsageOfThisProcess(t *testing.T) {
	u, err := ReadUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.RSS <= 0 || u.CPU < 0 {
		t.Fatalf("usage %+v", u)
	}
	if _, err := ReadUsage(1 << 30); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {99, 99}, {100, 100}, {1, 1}, {0.1, 1}} {
		if got := Percentile(s, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if got := Percentile(s[:1], 99); got != 1 {
		t.Errorf("p99 of one sample = %v", got)
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v", got)
	}
}

func TestReason(t *testing.T) {
	refused, cancel := context.WithCancelCause(context.Background())
	cancel(errRefused)
	for _, c := range []struct {
		ctx  context.Context
		err  error
		want string
	}{
		{nil, &dtls.AlertError{Description: 20, Remote: true}, "alert bad_record_mac"},
		{nil, fmt.Errorf("x: %w", &dtls.AlertError{Description: 115}), "alert unknown_psk_identity"},
		{nil, &dtls.AlertError{Description: 201}, "alert 201"},
		{nil, context.DeadlineExceeded, ReasonTimeout},
		{nil, errors.New("dtls: handshake timed out"), ReasonTimeout},
		{refused, context.Canceled, ReasonRefused},
		{nil, fmt.Errorf("%w: echo", errBadReply), ReasonBadReply},
		{nil, fmt.Errorf("handshake: %w", context.Canceled), ReasonCancelled},
		{nil, io.EOF, ReasonOther},
	} {
		if got := Reason(c.ctx, c.err); got != c.want {
			t.Errorf("Reason(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

func TestSourceIP(t *testing.T) {
	if got := SourceIP(0, 20000).String(); got != "127.1.0.1" {
		t.Errorf("device 0 from %s", got)
	}
	if got := SourceIP(19999, 20000).String(); got != "127.1.0.1" {
		t.Errorf("device 19999 from %s", got)
	}
	if got := SourceIP(20000, 20000).String(); got != "127.1.0.2" {
		t.Errorf("device 20000 from %s", got)
	}
	// Far more devices than one address has ports, each address in
	// 127.1.0.0/16 and below the hostile sources' 127.128.0.0/9.
	seen := map[string]bool{}
	for i := 0; i < MaxDevices; i += 997 {
		ip := SourceIP(i, 10).To4()
		if ip[0] != 127 || ip[1] == 0 || ip[1] >= 128 || ip[3] == 0 || ip[3] == 255 {
			t.Fatalf("device %d from %s", i, ip)
		}
		seen[ip.String()] = true
	}
	if len(seen) < 1000 {
		t.Errorf("only %d addresses", len(seen))
	}
}

func TestFragmentBomb(t *testing.T) {
	hello := make([]byte, 100)
	hello[0], hello[1], hello[2] = 22, 0xfe, 0xfd
	binary.BigEndian.PutUint16(hello[9:11], 7) // record sequence number 7
	d := FragmentBomb(hello)
	if len(d) != 16*26 {
		t.Fatalf("%d bytes, want 416", len(d))
	}
	for k := range 16 {
		r := d[k*26 : (k+1)*26]
		if r[0] != 22 || r[1] != 0xfe || r[2] != 0xfd || r[3] != 0 || r[4] != 0 {
			t.Fatalf("record %d header % x", k, r[:5])
		}
		if seq := uint64(binary.BigEndian.Uint16(r[9:11])); seq != uint64(8+k) {
			t.Errorf("record %d: sequence number %d", k, seq)
		}
		if n := binary.BigEndian.Uint16(r[11:13]); n != 13 {
			t.Errorf("record %d: length %d", k, n)
		}
		h := r[13:]
		length := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
		msgSeq := binary.BigEndian.Uint16(h[4:6])
		offset := int(h[6])<<16 | int(h[7])<<8 | int(h[8])
		fragLen := int(h[9])<<16 | int(h[10])<<8 | int(h[11])
		if length != 65536 || msgSeq != uint16(k+1) || offset != 0 || fragLen != 1 {
			t.Errorf("record %d: length %d, message_seq %d, offset %d, fragment_length %d", k, length, msgSeq, offset, fragLen)
		}
	}
}

var testPSK = []byte("loadgen test psk")

// echoServer runs our listener with an echo on 127.0.0.1 and records the
// source addresses of the connections it accepts.
func echoServer(t *testing.T) (*net.UDPAddr, func() map[string]bool) {
	t.Helper()
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, &dtls.Config{
		PSK: func(id []byte) ([]byte, error) {
			if string(id) != "device" {
				return nil, errors.New("unknown identity")
			}
			return testPSK, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	sources := make(chan string, 1024)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			select {
			case sources <- c.RemoteAddr().(*net.UDPAddr).IP.String():
			default:
			}
			go dtlstest.Echo(c)
		}
	}()
	return l.Addr().(*net.UDPAddr), func() map[string]bool {
		seen := map[string]bool{}
		for {
			select {
			case ip := <-sources:
				seen[ip] = true
			default:
				return seen
			}
		}
	}
}

func TestRunFromManySourceAddresses(t *testing.T) {
	addr, sources := echoServer(t)
	res, err := Run(context.Background(), Config{
		Target: addr, Devices: 40, Concurrency: 8, PSKIdentity: "device", PSK: testPSK, PortsPerAddress: 10, Hold: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Succeeded != 40 || res.Failed != 0 || res.Held != 40 || res.SourceAddresses != 4 {
		t.Fatalf("result %+v", res)
	}
	seen := sources()
	for i := range 4 {
		if ip := SourceIP(i*10, 10).String(); !seen[ip] {
			t.Errorf("no connection from %s (saw %v)", ip, seen)
		}
	}
}

func TestRunCountsRefusedDevices(t *testing.T) {
	// A port nobody listens on: the connected sockets hear ICMP port
	// unreachable, so the devices fail as refused, not after the timeout.
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().(*net.UDPAddr)
	pc.Close()
	res, err := Run(context.Background(), Config{Target: addr, Devices: 3, PSKIdentity: "device", PSK: testPSK, HandshakeTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 3 || res.Failures[ReasonRefused] != 3 {
		t.Fatalf("failures %v", res.Failures)
	}
}

func TestRunRefusesOtherTargets(t *testing.T) {
	for _, ip := range []net.IP{net.IPv4(10, 0, 0, 1), net.IPv4(192, 168, 1, 1), net.IPv6loopback} {
		_, err := Run(context.Background(), Config{Target: &net.UDPAddr{IP: ip, Port: 5684}, Devices: 1, PSKIdentity: "d", PSK: testPSK})
		if err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("%s: %v", ip, err)
		}
	}
}

// TestPionEchoPeer runs the pion/dtls v3 echo in process and puts a few
// devices through it, resuming by session ID.
func TestPionEchoPeer(t *testing.T) {
	port, err := FreeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready, readyW := io.Pipe()
	go func() {
		done <- ServePionEcho(ctx, PeerConfig{Addr: addr, PSKIdentity: "device", PSK: testPSK, SessionStore: true}, readyW)
	}()
	line := make([]byte, 200)
	n, err := ready.Read(line)
	if err != nil || !strings.Contains(string(line[:n]), "listening on udp") {
		t.Fatalf("ready line %q, %v", line[:n], err)
	}
	res, err := Run(context.Background(), Config{Target: addr, Devices: 10, Mode: SessionID, PSKIdentity: "device", PSK: testPSK})
	if err != nil {
		t.Fatal(err)
	}
	if res.Succeeded != 10 || res.Resumed != 10 || res.Primed != 10 {
		t.Errorf("result %+v", res)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServePionEcho did not return after its context ended")
	}
}
