package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/dtlsresume/dtlsresume/coapserver"
)

// cmdServe runs the CoAP-over-DTLS server with the default resources
// (/.well-known/core, /time, /echo, /large) until SIGINT or SIGTERM.
func cmdServe(args []string, stdout, stderr io.Writer) error {
	// Loopback unless an address is given: the demo credentials are public.
	l, cfg, logger, cleanup, err := startServer("serve", defaultAddr, args, stdout, stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	srv, err := coapserver.New(coapserver.Options{DTLS: cfg, Logger: logger})
	if err != nil {
		l.Close()
		return err
	}
	fmt.Fprintf(stdout, "serving CoAP over DTLS on udp %s (resources: /.well-known/core /time /echo /large)\n", l.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		saveConnections(l, logger, stdout)
		srv.Stop()
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}
