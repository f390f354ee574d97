package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/dtlsresume/dtlsresume/internal/handshakebench"
)

// cmdBench measures each handshake kind with our stack and pion/dtls v3 in
// the same run and prints the averages with our/pion ratios.
func cmdBench(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 200, "handshakes per kind and stack")
	asJSON := fs.Bool("json", false, "one JSON object per row instead of a table")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	if *n < 1 {
		return usagef("-n %d: at least 1", *n)
	}
	var rows []handshakebench.Result
	for _, kind := range handshakebench.Kinds {
		fmt.Fprintf(stderr, "bench: %s, %d handshakes per stack...\n", kind.Name, *n)
		b, err := handshakebench.New(kind)
		if err != nil {
			return err
		}
		res, err := b.Run(*n)
		b.Close()
		if err != nil {
			return err
		}
		rows = append(rows, res[0], res[1])
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\tstack\ttime (ms)\tdatagrams out/in\tbytes out/in\tround trips\tclient keeps (B)\tserver keeps (B)\ttime ours/pion\tbytes ours/pion\t")
	for i := 0; i < len(rows); i += 2 {
		ours, pion := rows[i], rows[i+1]
		for j, r := range []handshakebench.Result{ours, pion} {
			ratioT, ratioB := "", ""
			if j == 0 {
				ratioT = fmt.Sprintf("%.2f", ours.TimeMS/pion.TimeMS)
				ratioB = fmt.Sprintf("%.2f", (ours.BytesSent+ours.BytesReceived)/(pion.BytesSent+pion.BytesReceived))
			}
			fmt.Fprintf(tw, "%s\t%s\t%.3f\t%.1f/%.1f\t%.0f/%.0f\t%.1f\t%.0f\t%.0f\t%s\t%s\t\n", r.Kind, r.Stack, r.TimeMS,
				r.DatagramsSent, r.DatagramsReceived, r.BytesSent, r.BytesReceived, r.RoundTrips, r.ClientKeeps, r.ServerKeeps, ratioT, ratioB)
		}
	}
	return tw.Flush()
}
