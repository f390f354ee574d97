package loadgen

import (
	"context"
	"net"

	"github.com/dtlsresume/dtlsresume/internal/proc"
)

// Server is a server process started by Spawn, so that its CPU time and
// memory can be read apart from the load generator's.
type Server struct {
	// Addr is the UDP address it serves on.
	Addr *net.UDPAddr
	p    *proc.Process
}

// FreeLoopbackPort returns a UDP port that was free on 127.0.0.1 a moment
// ago.
func FreeLoopbackPort() (int, error) { return proc.FreeUDPPortsErr(1) }

// Spawn starts argv, a server that serves on addr (in 127.0.0.0/8), and
// waits, bounded by ctx, until it has printed ready and bound addr's port.
// The server runs in its own process group; Stop ends it.
func Spawn(ctx context.Context, addr *net.UDPAddr, ready string, argv ...string) (*Server, error) {
	if err := CheckLoopback(addr.IP); err != nil {
		return nil, err
	}
	p, err := proc.Launch(argv[0], argv[1:]...)
	if err != nil {
		return nil, err
	}
	if err := p.WaitForContext(ctx, ready, 1); err != nil {
		p.Stop()
		return nil, err
	}
	if err := proc.WaitUDPBound(ctx, p, addr.Port); err != nil {
		p.Stop()
		return nil, err
	}
	return &Server{Addr: addr, p: p}, nil
}

// PID returns the server's process id.
func (s *Server) PID() int { return s.p.Pid() }

// Name names the process for messages ("dtlsresume listen[1234]").
func (s *Server) Name() string { return s.p.Name() }

// Alive reports whether the server is still running (a process that
// exited has no resident memory to read).
func (s *Server) Alive() bool {
	_, err := ReadUsage(s.p.Pid())
	return err == nil
}

// Output returns what the server printed so far.
func (s *Server) Output() string { return s.p.Output() }

// Stop ends the server (SIGTERM, then SIGKILL after half a second) and
// reaps it.
func (s *Server) Stop() { s.p.Stop() }
