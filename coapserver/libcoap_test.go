package coapserver_test

import (
	"bytes"
	"github.com/dtlsresume/dtlsresume/internal/coaptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/coapserver"
	"github.com/dtlsresume/dtlsresume/internal/peers"
)

// libcoap's coap-client against our coapserver, built with OpenSSL and with
// GnuTLS (libcoap 4.3.1, package libcoap3-bin). Its -k is the key itself,
// not hex, hence the printable coaptest.Key.

var libcoapClients = []string{"coap-client-openssl", "coap-client-gnutls"}

// runCoapClient runs one coap-client request against addr and returns its
// output, failing the test unless it exits 0.
func runCoapClient(t *testing.T, bin, addr string, args ...string) string {
	t.Helper()
	path := peers.Require(t, bin)
	uri := args[len(args)-1]
	args = append([]string{"-u", coaptest.Identity, "-k", coaptest.Key, "-B", "10"}, args[:len(args)-1]...)
	args = append(args, "coaps://"+addr+uri)
	p := peers.Start(t, path, args...)
	code, err := p.Wait(coaptest.Timeout)
	if err != nil || code != 0 {
		t.Fatalf("%s %s: exit %d, %v; output:\n%s", bin, strings.Join(args, " "), code, err, p.Output())
	}
	return p.Output()
}

func TestLibcoapClient(t *testing.T) {
	for _, bin := range libcoapClients {
		t.Run(bin, func(t *testing.T) {
			_, addr := startServer(t, coapserver.Options{})

			if out := runCoapClient(t, bin, addr, "-m", "get", "/echo"); strings.TrimSpace(out) != "echo" {
				t.Errorf("GET /echo printed %q, want \"echo\"", out)
			}

			const payload = "hello from libcoap"
			for _, method := range []string{"put", "post"} {
				out := runCoapClient(t, bin, addr, "-m", method, "-t", "text/plain", "-e", payload, "/echo")
				if strings.TrimSpace(out) != payload {
					t.Errorf("%s /echo printed %q, want %q", method, out, payload)
				}
			}

			// NON request.
			if out := runCoapClient(t, bin, addr, "-N", "-m", "get", "/echo"); strings.TrimSpace(out) != "echo" {
				t.Errorf("NON GET /echo printed %q, want \"echo\"", out)
			}

			// Block2: 4 KiB in 1024-byte blocks, written to a file (on
			// stdout coap-client adds a newline).
			file := filepath.Join(t.TempDir(), "large")
			runCoapClient(t, bin, addr, "-m", "get", "-o", file, "/large")
			if got, err := os.ReadFile(file); err != nil || !bytes.Equal(got, coapserver.Large()) {
				t.Errorf("GET /large wrote %d bytes (%v), want the %d of Large()", len(got), err, coapserver.LargeSize)
			}

			if out := runCoapClient(t, bin, addr, "-m", "get", "/.well-known/core"); !strings.Contains(out, "</time>") || !strings.Contains(out, "</large>") {
				t.Errorf("GET /.well-known/core printed %q", out)
			}

			if out := runCoapClient(t, bin, addr, "-m", "get", "/nonexistent"); !strings.Contains(out, "4.04") {
				t.Errorf("GET /nonexistent printed %q, want a 4.04", out)
			}
		})
	}
}

// TestLibcoapObserve subscribes to /time with coap-client -s and counts the
// notifications it prints.
func TestLibcoapObserve(t *testing.T) {
	stamp := regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)
	for _, bin := range libcoapClients {
		t.Run(bin, func(t *testing.T) {
			_, addr := startServer(t, coapserver.Options{})
			start := time.Now()
			out := runCoapClient(t, bin, addr, "-m", "get", "-s", "4", "/time")
			if n := len(stamp.FindAllString(out, -1)); n < 3 {
				t.Errorf("%d time stamps in %v of observing (want the response and 2 notifications at least):\n%s",
					n, time.Since(start).Round(time.Millisecond), out)
			}
		})
	}
}

// TestLibcoapBlockwiseUpload: coap-client uploads 3,000 bytes to /echo in
// 64-byte blocks (-b 64), each block with a token of its own and a
// Request-Tag, with PUT and with FETCH; the handler sees them whole and the
// answer, in blocks of ours, is all 3,000 bytes.
func TestLibcoapBlockwiseUpload(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz\n"), 82)[:3000]
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, addr := startServer(t, coapserver.Options{})
	for _, bin := range libcoapClients {
		for _, method := range []string{"put", "fetch"} {
			t.Run(bin+"/"+method, func(t *testing.T) {
				out := filepath.Join(dir, bin+method)
				runCoapClient(t, bin, addr, "-m", method, "-b", "64", "-f", in, "-o", out, "/echo")
				if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, data) {
					t.Errorf("%s /echo of %d bytes in 64-byte blocks wrote %d bytes back (%v)", method, len(data), len(got), err)
				}
			})
		}
	}
}
