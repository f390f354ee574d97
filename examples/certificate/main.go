// Command certificate is a DTLS 1.2 echo server with an ECDSA P-256
// certificate and a client that verifies it against its own roots
// (TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, RFC 7925).
//
//	go run ./examples/certificate                                      # server and client in one process
//	go run ./examples/certificate -mode server -ca-out server.pem      # or in two: the server writes
//	go run ./examples/certificate -mode client -ca server.pem          # the certificate the client trusts
//
// The server makes a self-signed certificate for -name at start (with
// -cert and -key it uses a PEM certificate and key instead); the client
// checks the server's chain against -ca and its name against -name.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "certificate:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("certificate", flag.ContinueOnError)
	mode := fs.String("mode", "both", "server, client, or both (server and client in one process)")
	addr := fs.String("addr", "127.0.0.1:5684", "server address (with -mode both, port 0 picks a free one)")
	name := fs.String("name", "gateway.example", "the server's DNS name, in its certificate and checked by the client")
	certFile := fs.String("cert", "", "server: certificate chain, PEM (default: a fresh self-signed one)")
	keyFile := fs.String("key", "", "server: private key of -cert, PEM")
	caOut := fs.String("ca-out", "", "server: write the self-signed certificate here, for the client's -ca")
	caFile := fs.String("ca", "", "client: the certificates it trusts, PEM")
	message := fs.String("message", "hello over DTLS", "what the client sends")
	if err := fs.Parse(args); err != nil {
		return err
	}
	udpAddr, err := net.ResolveUDPAddr("udp", *addr)
	if err != nil {
		return err
	}

	switch *mode {
	case "server":
		cert, err := serverCertificate(*name, *certFile, *keyFile)
		if err != nil {
			return err
		}
		if *caOut != "" {
			pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
			if err := os.WriteFile(*caOut, pemCert, 0o644); err != nil {
				return err
			}
		}
		l, err := listen(udpAddr, cert, out)
		if err != nil {
			return err
		}
		return serve(ctx, l)
	case "client":
		if *caFile == "" {
			return errors.New("-mode client needs -ca FILE")
		}
		pemCerts, err := os.ReadFile(*caFile)
		if err != nil {
			return err
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pemCerts) {
			return fmt.Errorf("%s: no PEM certificate", *caFile)
		}
		return dial(ctx, udpAddr, roots, *name, *message, out)
	case "both":
		cert, err := serverCertificate(*name, *certFile, *keyFile)
		if err != nil {
			return err
		}
		l, err := listen(udpAddr, cert, out)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- serve(ctx, l) }()
		roots := x509.NewCertPool()
		roots.AddCert(cert.Leaf) // the client trusts exactly this certificate
		err = dial(ctx, l.Addr().(*net.UDPAddr), roots, *name, *message, out)
		cancel()
		return errors.Join(err, <-done)
	}
	return fmt.Errorf("-mode %q: want server, client or both", *mode)
}

// serverCertificate loads -cert and -key, or makes a self-signed ECDSA
// P-256 certificate for name.
func serverCertificate(name, certFile, keyFile string) (tls.Certificate, error) {
	if certFile == "" && keyFile == "" {
		return selfsign.GenerateSelfSignedWithDNS(name)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, err
		}
	}
	return cert, nil
}

func listen(addr *net.UDPAddr, cert tls.Certificate, out io.Writer) (*dtls.Listener, error) {
	l, err := dtls.Listen("udp", addr, &dtls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "server: listening on %s as %q\n", l.Addr(), cert.Leaf.Subject.CommonName)
	return l, nil
}

// serve echoes every datagram of every connection until ctx ends.
func serve(ctx context.Context, l *dtls.Listener) error {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			defer conn.Close()
			buf := make([]byte, 1500)
			for {
				n, err := conn.Read(buf)
				if err != nil {
					return
				}
				if _, err := conn.Write(buf[:n]); err != nil {
					return
				}
			}
		}()
	}
}

// dial connects, verifying the server's certificate, sends message and
// prints the echo.
func dial(ctx context.Context, addr *net.UDPAddr, roots *x509.CertPool, name, message string, out io.Writer) error {
	conn, err := dtls.DialContext(ctx, "udp", addr, &dtls.Config{
		RootCAs:    roots,
		ServerName: name, // checked against the certificate, and sent as SNI
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(message)); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second)) // UDP: the reply may never come
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		return err
	}
	state := conn.ConnectionState()
	fmt.Fprintf(out, "client: verified %q, replied %q (%s)\n",
		state.PeerCertificates[0].Subject.CommonName, buf[:n], state.CipherSuite)
	return nil
}
