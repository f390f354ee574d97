// Package testpki gives tests a throwaway CA and leaf (see internal/pki)
// in a temporary directory of the test.
package testpki
