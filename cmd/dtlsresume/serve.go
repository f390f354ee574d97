package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/dtlsresume/dtlsresume/coapserver"
	"github.com/dtlsresume/dtlsresume/dtls"
)

// cmdServe runs the CoAP-over-DTLS server with the default resources
// (/.well-known/core, /time, /echo, /large) until SIGINT or SIGTERM.
func cmdServe(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sec securityFlags
	sec.registerAddr(fs, false, ":5684")
	sec.registerSecurity(fs, false)
	sec.registerServer(fs)
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	logger, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	cfg, err := sec.config(false)
	if err != nil {
		return err
	}
	if err := demoCredentials(cfg, stdout); err != nil {
		return err
	}
	cfg.Logger = logger
	cleanup, err := sec.setupServer(cfg, logger, stdout)
	if err != nil {
		return err
	}
	defer cleanup()
	laddr, err := net.ResolveUDPAddr("udp", sec.addr)
	if err != nil {
		return usagef("--addr %q: %v", sec.addr, err)
	}
	srv, err := coapserver.New(coapserver.Options{DTLS: cfg, Logger: logger})
	if err != nil {
		return err
	}
	l, err := dtls.Listen("udp", laddr, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "serving CoAP over DTLS on udp %s (resources: /.well-known/core /time /echo /large)\n", l.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Stop()
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}
