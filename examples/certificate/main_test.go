package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOneProcess(t *testing.T) {
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := run(ctx, []string{"-addr", "127.0.0.1:0"}, &out); err != nil {
		t.Fatal(err)
	}
	want := `client: verified "gateway.example", replied "hello over DTLS" (TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8)`
	if !strings.Contains(out.String(), want) {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
}

// TestClientRefusesOtherName: the client checks the server's name.
func TestClientRefusesOtherName(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	serverOut := new(strings.Builder)
	ca := filepath.Join(t.TempDir(), "server.pem")
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		done <- run(ctx, []string{"-mode", "server", "-addr", "127.0.0.1:0", "-ca-out", ca}, writerFunc(func(p []byte) (int, error) {
			serverOut.Write(p)
			close(started)
			return len(p), nil
		}))
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatal(err)
	}
	addr := strings.Fields(serverOut.String())[3]
	if err := run(ctx, []string{"-mode", "client", "-addr", addr, "-ca", ca}, io.Discard); err != nil {
		t.Fatalf("client: %v", err)
	}
	if err := run(ctx, []string{"-mode", "client", "-addr", addr, "-ca", ca, "-name", "other.example"}, io.Discard); err == nil {
		t.Fatal("client accepted a certificate for another name")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("server: %v", err)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
