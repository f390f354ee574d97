package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/dtlsresume/dtlsresume/internal/interopmatrix"
)

// cmdInterop runs the peer matrix against the installed third-party peers
// (OpenSSL, GnuTLS, libcoap as processes, pion/dtls v3 in process) and
// prints a row per case. Progress goes to stderr as the cases run.
func cmdInterop(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("interop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "one JSON object per case instead of a table")
	only := fs.String("only", "", "run only the cases whose peer (openssl, gnutls, libcoap, pion/dtls), program, direction or case contains this, ignoring case")
	timeout := fs.Duration("timeout", interopmatrix.DefaultTimeout, "time limit of each case")
	verbose := fs.Bool("v", false, "print the peers' output of a failed case to stderr")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if *timeout <= 0 {
		return usagef("--timeout %v: want a positive duration", *timeout)
	}
	cases := interopmatrix.Select(interopmatrix.Cases(), *only)
	if len(cases) == 0 {
		return usagef("--only %q: no case matches", *only)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rows, err := interopmatrix.Run(ctx, cases, interopmatrix.Options{
		Timeout: *timeout,
		OnStart: func(c interopmatrix.Case) {
			fmt.Fprintf(stderr, "interop: %s: %s ... ", c.Label(), c.Name)
		},
		OnDone: func(c interopmatrix.Case, r interopmatrix.Row) {
			switch {
			case r.Skipped:
				fmt.Fprintln(stderr, r.Status)
			case r.OK:
				fmt.Fprintf(stderr, "ok (%.0f ms)\n", r.Millis)
			default:
				fmt.Fprintf(stderr, "FAILED (%.0f ms): %s\n", r.Millis, r.Detail)
				if *verbose && r.PeerOutput != "" {
					fmt.Fprintf(stderr, "%s\n", indent(r.PeerOutput))
				}
			}
		},
	})
	if err != nil && len(rows) == 0 {
		return err
	}
	passed, failed, skipped := 0, 0, 0
	for _, r := range rows {
		switch {
		case r.Skipped:
			skipped++
		case r.OK:
			passed++
		default:
			failed++
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "peer\tprogram\tdirection\tcase\tresult\tour datagrams out/in\tour bytes out/in\tms\tdetail")
		for _, r := range rows {
			result := "ok"
			if r.Skipped {
				result = "skipped"
			} else if !r.OK {
				result = "FAILED"
			}
			dgrams, bytes := "-", "-"
			if r.Measured() {
				dgrams = fmt.Sprintf("%d/%d", r.DatagramsSent, r.DatagramsReceived)
				bytes = fmt.Sprintf("%d/%d", r.BytesSent, r.BytesReceived)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%s\n", r.Peer, r.Program, r.Direction, r.Case, result, dgrams, bytes, r.Millis, r.Detail)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	summary := fmt.Sprintf("%d passed, %d failed, %d skipped", passed, failed, skipped)
	if *asJSON {
		fmt.Fprintln(stderr, "interop: "+summary)
	} else {
		fmt.Fprintln(stdout, summary)
	}
	if err != nil { // interrupted
		return fmt.Errorf("interrupted after %d of %d cases", len(rows), len(cases))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d cases failed", failed, len(rows))
	}
	return nil
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}
