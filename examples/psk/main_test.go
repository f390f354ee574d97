package main

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// lineWriter collects a program's output and signals each write.
type lineWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newLineWriter() *lineWriter { return &lineWriter{changed: make(chan struct{}, 1)} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
	return w.buf.Write(p)
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// waitFor waits until re matches the output and returns its submatches.
func (w *lineWriter) waitFor(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		if m := re.FindStringSubmatch(w.String()); m != nil {
			return m
		}
		select {
		case <-w.changed:
		case <-deadline:
			t.Fatalf("output %q does not match %s", w.String(), re)
		}
	}
}

func TestOneProcess(t *testing.T) {
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := run(ctx, []string{"-addr", "127.0.0.1:0", "-message", "one process"}, &out); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`client: 127\.0\.0\.1:\d+ replied "one process" \(TLS_PSK_WITH_AES_128_CCM_8\)`).MatchString(out.String()) {
		t.Fatalf("output %q", out.String())
	}
}

// TestServerAndClient runs the two modes as a user runs two processes.
func TestServerAndClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	serverOut := newLineWriter()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-mode", "server", "-addr", "127.0.0.1:0"}, serverOut) }()
	addr := serverOut.waitFor(t, regexp.MustCompile(`listening on (\S+)`))[1]

	for _, msg := range []string{"first", "second"} {
		var out strings.Builder
		if err := run(ctx, []string{"-mode", "client", "-addr", addr, "-message", msg}, &out); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), `replied "`+msg+`"`) {
			t.Fatalf("client output %q", out.String())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("server: %v", err)
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"-mode", "both-ways"}, {"-key", "zz"}, {"-bogus"}} {
		if err := run(context.Background(), args, io.Discard); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}
