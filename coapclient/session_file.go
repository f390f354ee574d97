package coapclient

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/internal/atomicfile"
)

// FileSessionCache is a dtls.ClientSessionCache that keeps one session in a
// file, so that a client process started again resumes with the server it
// last talked to (session_id and session_ticket need this; client_state
// needs nothing). The file holds the master secret: it is written with mode
// 0600 through a fresh temporary file in the same directory (never through
// a file or link someone left at a predictable name), fsynced and renamed
// over it, so a crash never leaves half a file (internal/atomicfile).
//
// Format: the cache key on the first line, then the encoded session
// (dtls.ClientSession.Marshal) in base64.
type FileSessionCache struct {
	path string

	mu      sync.Mutex
	key     string
	session *dtls.ClientSession
	err     error
}

// NewFileSessionCache loads path if it exists; a missing file is an empty
// cache.
func NewFileSessionCache(path string) (*FileSessionCache, error) {
	f := &FileSessionCache{path: path}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return f, nil
	case err != nil:
		return nil, fmt.Errorf("coapclient: session file: %w", err)
	}
	key, rest, ok := bytes.Cut(data, []byte{'\n'})
	if !ok {
		return nil, fmt.Errorf("coapclient: session file %s: no key line", path)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(rest)))
	if err != nil {
		return nil, fmt.Errorf("coapclient: session file %s: %w", path, err)
	}
	if f.session, err = dtls.ParseClientSession(raw); err != nil {
		return nil, fmt.Errorf("coapclient: session file %s: %w", path, err)
	}
	f.key = string(key)
	return f, nil
}

// Get returns the session kept for key.
func (f *FileSessionCache) Get(key string) (*dtls.ClientSession, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.session == nil || key != f.key {
		return nil, false
	}
	return f.session, true
}

// Put keeps s for key and writes the file (a nil s removes it). A write
// error is kept for Err, since the engine that calls Put cannot act on it.
func (f *FileSessionCache) Put(key string, s *dtls.ClientSession) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.key, f.session = key, s
	f.err = f.writeLocked()
}

// Err reports the last write's error.
func (f *FileSessionCache) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *FileSessionCache) writeLocked() error {
	if f.session == nil {
		if err := os.Remove(f.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("coapclient: session file: %w", err)
		}
		return nil
	}
	raw, err := f.session.Marshal()
	if err != nil {
		return err
	}
	data := f.key + "\n" + base64.StdEncoding.EncodeToString(raw) + "\n"
	if err := atomicfile.WriteFile(f.path, []byte(data)); err != nil {
		return fmt.Errorf("coapclient: session file: %w", err)
	}
	return nil
}
