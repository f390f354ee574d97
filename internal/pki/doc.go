// Package pki makes a throwaway ECDSA P-256 CA and a leaf it signed for
// 127.0.0.1 and localhost, as PEM files and Go values, for the `dtlsresume
// interop` matrix and (through internal/testpki) for tests that drive real
// peers with certificates.
package pki
