package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/internal/peers"
)

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestCluster runs the example against a fresh redis-server: a device
// resumes on server B the session it made with server A, by every type.
func TestCluster(t *testing.T) {
	redis := peers.Require(t, "redis-server")
	port := freeTCPPort(t)
	p := peers.Start(t, redis, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := p.WaitFor("Ready to accept connections", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out strings.Builder
	args := []string{"-redis", fmt.Sprintf("redis://127.0.0.1:%d/0", port), "-store-key", strings.Repeat("ab", 32)}
	if err := run(ctx, args, &out); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"session_id", "session_ticket", "client_state"} {
		var line string
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(l, typ+":") {
				line = l
			}
		}
		if !strings.Contains(line, "server A resumed=false") || !strings.Contains(line, "server B resumed=true") {
			t.Errorf("%s: %q\n%s", typ, line, out.String())
		}
	}
}

// TestNoRedis: without a Redis the example says so at once.
func TestNoRedis(t *testing.T) {
	start := time.Now()
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", freeTCPPort(t))
	err := run(context.Background(), []string{"-redis", url}, new(strings.Builder))
	if err == nil || !strings.Contains(err.Error(), "no Redis answers at "+url) {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
}
