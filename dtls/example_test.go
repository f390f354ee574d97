package dtls_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log"
	"net"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/negotiation"
	"github.com/dtlsresume/dtlsresume/store"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
)

// echoOnce answers the first message of the first connection l accepts
// with "echo: " and the message, then closes that connection.
func echoOnce(l *dtls.Listener) {
	conn, err := l.Accept() // the handshake is already complete
	if err != nil {
		return
	}
	defer conn.Close()
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		return
	}
	_, _ = conn.Write(append([]byte("echo: "), buf[:n]...))
}

// A server that knows its clients by PSK identity, and a client with a
// pre-shared key, exchange one message on 127.0.0.1.
func ExampleListen() {
	// The server looks each client's key up by the identity it sends.
	keys := map[string][]byte{"sensor-17": []byte("the key of sensor-17")}
	serverConfig := &dtls.Config{
		PSK: func(identity []byte) ([]byte, error) {
			key, ok := keys[string(identity)]
			if !ok {
				return nil, fmt.Errorf("unknown PSK identity %q", identity)
			}
			return key, nil
		},
	}
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, serverConfig) // port 0: any free port
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	go echoOnce(l)

	clientConfig := &dtls.Config{
		PSK:             func([]byte) ([]byte, error) { return []byte("the key of sensor-17"), nil },
		PSKIdentityHint: []byte("sensor-17"), // on a client: the identity it sends
	}
	conn, err := dtls.Dial("udp", l.Addr().(*net.UDPAddr), clientConfig)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("hello")); err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", buf[:n])
	fmt.Println(conn.ConnectionState().CipherSuite)
	// Output:
	// echo: hello
	// TLS_PSK_WITH_AES_128_CCM_8
}

// A server with an ECDSA certificate, and a client that verifies it against
// its own pool of roots: here the self-signed certificate itself.
func ExampleDial_certificate() {
	cert, err := selfsign.GenerateSelfSignedWithDNS("gateway.example")
	if err != nil {
		log.Fatal(err)
	}
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, &dtls.Config{
		Certificates: []tls.Certificate{cert},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	go echoOnce(l)

	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	conn, err := dtls.Dial("udp", l.Addr().(*net.UDPAddr), &dtls.Config{
		RootCAs:    roots,
		ServerName: "gateway.example", // checked against the certificate
	})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("hello")); err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		log.Fatal(err)
	}
	state := conn.ConnectionState()
	fmt.Printf("%s\n", buf[:n])
	fmt.Println(state.CipherSuite)
	fmt.Println("server:", state.PeerCertificates[0].Subject.CommonName)
	// Output:
	// echo: hello
	// TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8
	// server: gateway.example
}

// A client that keeps nothing between connections (client_state): each
// Dial starts from a fresh Config with no session cache, yet the second one
// resumes, because the server kept the ticket the client sealed during the
// first handshake and hands it back.
func ExampleConfig_clientState() {
	psk := []byte("the key of sensor-17")
	l, err := dtls.Listen("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, &dtls.Config{
		PSK:          func([]byte) ([]byte, error) { return psk, nil },
		SessionStore: store.NewMemory(store.MemoryConfig{}), // holds the client_state records
	})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()

	for i := 0; i < 2; i++ {
		conn, err := dtls.Dial("udp", l.Addr().(*net.UDPAddr), &dtls.Config{
			PSK:             func([]byte) ([]byte, error) { return psk, nil },
			PSKIdentityHint: []byte("sensor-17"),
			Resumption:      []negotiation.Type{negotiation.ClientState},
		})
		if err != nil {
			log.Fatal(err)
		}
		s := conn.ConnectionState()
		fmt.Printf("handshake %d: resumption=%s resumed=%v client keeps %d bytes\n", i+1, s.Resumption, s.Resumed, s.ResumptionStateBytes)
		conn.Close()
	}
	// Output:
	// handshake 1: resumption=client_state resumed=false client keeps 0 bytes
	// handshake 2: resumption=client_state resumed=true client keeps 0 bytes
}
