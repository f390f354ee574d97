package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dtlsresume/dtlsresume/internal/peers"
)

// opensslKeys makes an ECDSA key pair with openssl, the way a user would:
// the private key in the given format ("ec" for SEC 1 EC PRIVATE KEY,
// "pkcs8" for PRIVATE KEY) and the public key as PEM PUBLIC KEY. It returns
// both files and the key's SHA-256 SPKI fingerprint.
func opensslKeys(t *testing.T, openssl, dir, name, format string) (keyFile, pubFile, fingerprint string) {
	t.Helper()
	keyFile, pubFile = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pub")
	gen := []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", keyFile}
	if format == "ec" {
		gen = []string{"ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", keyFile}
	}
	for _, args := range [][]string{gen, {"pkey", "-in", keyFile, "-pubout", "-out", pubFile}} {
		if out, err := exec.Command(openssl, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	data, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PUBLIC KEY" {
		t.Fatalf("%s: no PUBLIC KEY", pubFile)
	}
	sum := sha256.Sum256(block.Bytes)
	return keyFile, pubFile, hex.EncodeToString(sum[:])
}

// TestListenAndDialWithRawPublicKeys: `listen --rpk --key K --peer-key P`
// and `dial --rpk --key K --peer-key P`, with keys made by openssl and no
// certificate anywhere, authenticate each other by raw public key (RFC
// 7250); the server logs the client's key fingerprint; a client whose key
// the server does not pin, or that pins another server key, is refused.
func TestListenAndDialWithRawPublicKeys(t *testing.T) {
	openssl := peers.Require(t, "openssl")
	dir := t.TempDir()
	srvKey, srvPub, _ := opensslKeys(t, openssl, dir, "server", "ec")
	cliKey, cliPub, cliFP := opensslKeys(t, openssl, dir, "client", "pkcs8")
	strangerKey, strangerPub, _ := opensslKeys(t, openssl, dir, "stranger", "pkcs8")

	srv, addr := startListen(t, "--rpk", "--key", srvKey, "--peer-key", cliPub)
	dial := func(key, peerKey string) (string, error) {
		out, err := exec.Command(binary, "dial", "--addr", addr, "--rpk", "--key", key, "--peer-key", peerKey,
			"--message", "raw keys", "--timeout", "3s", "-v").CombinedOutput()
		return string(out), err
	}
	out, err := dial(cliKey, srvPub)
	if err != nil {
		t.Fatalf("dial: %v\n%s", err, out)
	}
	if !strings.Contains(out, "raw keys\n") || !strings.Contains(out, "suite=TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 resumed=false") {
		t.Fatalf("dial output %q", out)
	}
	if err := srv.WaitFor("peer_key="+cliFP, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	// The server does not pin the stranger's key: bad_certificate.
	if out, err := dial(strangerKey, srvPub); err == nil || !strings.Contains(out, "bad_certificate") {
		t.Fatalf("unpinned client key: err %v\n%s", err, out)
	}
	// The client pins the stranger's key, not the server's: refused before
	// it sends its own.
	if out, err := dial(cliKey, strangerPub); err == nil || !strings.Contains(out, "raw public key") {
		t.Fatalf("wrong pinned server key: err %v\n%s", err, out)
	}
}

// TestRawPublicKeysWithLibcoap: libcoap's GnuTLS build (the one with RPK
// support) with -M KEY, both ways: coap-client against `serve --rpk
// --peer-key`, and `get --rpk --peer-key` against coap-server. Each side
// authenticates the other by its raw public key alone.
func TestRawPublicKeysWithLibcoap(t *testing.T) {
	client := peers.Require(t, "coap-client-gnutls")
	server := peers.Require(t, "coap-server-gnutls")
	openssl := peers.Require(t, "openssl")
	dir := t.TempDir()
	srvKey, srvPub, _ := opensslKeys(t, openssl, dir, "server", "ec")
	cliKey, cliPub, cliFP := opensslKeys(t, openssl, dir, "client", "ec")

	t.Run("coap-client to serve", func(t *testing.T) {
		srv, addr := startServe(t, "--rpk", "--key", srvKey, "--peer-key", cliPub)
		out, err := exec.Command(client, "-B", "10", "-M", cliKey, "-m", "put", "-e", "raw key device",
			"coaps://"+addr+"/echo").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "raw key device") {
			t.Fatalf("coap-client: %v\n%s", err, out)
		}
		if err := srv.WaitFor("peer_key="+cliFP, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("get to coap-server", func(t *testing.T) {
		port := peers.FreeUDPPorts(t, 2)
		peers.Start(t, server, "-A", "127.0.0.1", "-p", strconv.Itoa(port), "-M", srvKey)
		peers.WaitUDPListening(t, port+1, 10*time.Second)
		uri := "coaps://127.0.0.1:" + strconv.Itoa(port+1) + "/"
		out, err := exec.Command(binary, "get", "--rpk", "--key", cliKey, "--peer-key", srvPub, "--timeout", "5s", "-v", uri).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "This is a test server made with libcoap") ||
			!strings.Contains(string(out), "suite=TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8") {
			t.Fatalf("get: %v\n%s", err, out)
		}
		// Pinning another key refuses coap-server's.
		out, err = exec.Command(binary, "get", "--rpk", "--key", cliKey, "--peer-key", cliPub, "--timeout", "5s", uri).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "raw public key") {
			t.Fatalf("get with the wrong pinned key: %v\n%s", err, out)
		}
	})
}
