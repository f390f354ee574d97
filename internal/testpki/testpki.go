package testpki

import (
	"testing"

	"github.com/dtlsresume/dtlsresume/internal/pki"
)

// PKI is a CA and one leaf valid for server and client authentication.
type PKI = pki.PKI

// New writes the CA, the leaf and its key into a temporary directory of t.
func New(t testing.TB) *PKI {
	t.Helper()
	p, err := pki.Generate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
