// Package pionstore is a pion/dtls v3 SessionStore in memory, for the
// pion peers that the benchmarks, the load generator and the interop
// matrix run beside this module's stack. A miss is (zero Session, nil), as
// pion expects.
package pionstore

import (
	"sync"

	piondtls "github.com/pion/dtls/v3"
)

// Store keeps pion sessions in a map, bounded when max > 0: when full it
// drops an arbitrary session to make room.
type Store struct {
	max int
	mu  sync.Mutex
	m   map[string]piondtls.Session
}

// New returns an empty Store holding at most max sessions (0: no bound).
func New(max int) *Store { return &Store{max: max, m: make(map[string]piondtls.Session)} }

// Set keeps v under k.
func (s *Store) Set(k []byte, v piondtls.Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[string(k)]; !ok && s.max > 0 && len(s.m) >= s.max {
		for old := range s.m {
			delete(s.m, old)
			break
		}
	}
	s.m[string(k)] = v
	return nil
}

// Get returns the session under k, or the zero Session.
func (s *Store) Get(k []byte) (piondtls.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[string(k)], nil
}

// Del forgets the session under k.
func (s *Store) Del(k []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, string(k))
	return nil
}

// Len reports how many sessions the Store holds.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// Each calls f for every session the Store holds, under its lock.
func (s *Store) Each(f func(key []byte, v piondtls.Session)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.m {
		f([]byte(k), v)
	}
}
