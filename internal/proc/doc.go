// Package proc runs external programs for the interop tools and tests:
// each in a process group of its own, with its standard input a pipe and its
// output in a buffer that can be waited on, plus free UDP ports and a check
// that a port is bound. It does not import package testing, so the
// dtlsresume binary can use it; package internal/peers wraps it for tests.
package proc
