package interopmatrix

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// The peer processes, free ports, waiting for a port to be bound and the
// throwaway PKI come from packages internal/peers and internal/testpki,
// which the tests use too. This file asks the peers for their versions.

// runQuick runs a short command (a version query) and returns its output.
func runQuick(ctx context.Context, path string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	out, _ := cmd.CombinedOutput() // usage messages exit non-zero
	return string(out)
}

var versionRe = regexp.MustCompile(`\b[v]?(\d+\.\d+(?:\.\d+)?)\b`)

// peerVersion asks an installed peer binary for its version: "3.0.22", or
// "" when it cannot tell.
func peerVersion(ctx context.Context, bin string) string {
	path, err := exec.LookPath(bin)
	if err != nil {
		return ""
	}
	var out string
	switch {
	case bin == "openssl":
		out = runQuick(ctx, path, "version") // OpenSSL 3.0.22 25 Aug 2026 (...)
	case strings.HasPrefix(bin, "gnutls-"):
		out = runQuick(ctx, path, "--version") // gnutls-cli 3.7.9
	case strings.HasPrefix(bin, "coap-"):
		// libcoap has no version flag; an unknown option prints the
		// usage, whose first line carries it: "coap-client-openssl v4.3.1 -- ...".
		out = runQuick(ctx, path, "--version")
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(strings.ToLower(line), "usage") {
			continue
		}
		if m := versionRe.FindStringSubmatch(line); m != nil {
			return m[1]
		}
	}
	return ""
}
