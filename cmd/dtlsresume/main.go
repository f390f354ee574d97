package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `usage: dtlsresume <command> [flags]

commands:
  serve    CoAP over DTLS server (udp/5684) with /.well-known/core, /time, /echo, /large
  get      CoAP GET of a coaps:// URI (put, post, delete, fetch, patch, ipatch and observe likewise)
  listen   DTLS echo server
  dial     DTLS client: sends a message (or stdin) and prints the echoed reply
  demo     runs a server and a client in one process and prints a table of handshakes
  bench    handshake cost per kind beside pion/dtls v3, as a table
  interop  the peer matrix against the installed third-party peers (OpenSSL, GnuTLS, libcoap, pion)
  loadtest many simulated devices against a server on loopback; ours beside pion with --spawn both

Run "dtlsresume <command> -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes a command and returns the process exit code: 0 on success,
// 2 for bad usage, 1 for a failure while running.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "listen":
		err = cmdListen(args[1:], stdout, stderr)
	case "dial":
		err = cmdDial(args[1:], stdin, stdout, stderr)
	case "demo":
		err = cmdDemo(args[1:], stdout, stderr)
	case "bench":
		err = cmdBench(args[1:], stdout, stderr)
	case "interop":
		err = cmdInterop(args[1:], stdout, stderr)
	case "serve":
		err = cmdServe(args[1:], stdout, stderr)
	case "loadtest":
		err = cmdLoadtest(args[1:], stdout, stderr)
	case "loadtest-peer": // hidden: the pion server that loadtest --spawn runs
		err = cmdLoadtestPeer(args[1:], stdin, stdout, stderr)
	case "loadtest-shard": // hidden: a child process that runs some of loadtest's devices
		err = cmdLoadtestShard(args[1:], stdin, stdout)
	case "get", "put", "post", "delete", "fetch", "patch", "ipatch", "observe":
		err = cmdCoAP(args[0], args[1:], stdin, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "dtlsresume: unknown command %q\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "dtlsresume %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "dtlsresume %s: %v\n", args[0], err)
		return 1
	}
}

// usageError is a bad flag, file or argument.
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// parseFlags parses a command's flags; a bad flag is a usage error (exit
// status 2), -h is not an error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	// The flag package prints its usage on every error; keep a bad flag to
	// the one line run prints, and show the usage only for -h.
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(out, "usage: dtlsresume %s [flags]\n", fs.Name())
		fs.PrintDefaults()
		return err
	}
	return usageError{err}
}
