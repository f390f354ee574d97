package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/dtlsresume/dtlsresume/dtls"
	"github.com/dtlsresume/dtlsresume/store"
)

// The in-memory store: records are opaque bytes under opaque keys, each
// with a lifetime. A server passes the store as Config.SessionStore and the
// engine chooses keys and lifetimes; here they are set by hand.
func ExampleNewMemory() {
	ctx := context.Background()
	m := store.NewMemory(store.MemoryConfig{Capacity: 100_000}) // at most 100,000 records

	if err := m.Put(ctx, []byte("sid/1234"), []byte("session state"), time.Hour); err != nil {
		log.Fatal(err)
	}
	v, err := m.Get(ctx, []byte("sid/1234"))
	fmt.Printf("%q %v\n", v, err)

	_ = m.Delete(ctx, []byte("sid/1234"))
	_, err = m.Get(ctx, []byte("sid/1234"))
	fmt.Println(errors.Is(err, store.ErrNotFound)) // a miss costs a full handshake

	var _ dtls.SessionStore = m // what Config.SessionStore takes
	// Output:
	// "session state" <nil>
	// true
}

// The file store keeps records across restarts, encrypted under the
// operator's 32-byte key; opening the file again with the same key finds
// them.
func ExampleNewFile() {
	dir, err := os.MkdirTemp("", "store-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "sessions")
	// In production the key comes from a secret store (dtlsresume serve reads
	// --store-key or $DTLSRESUME_STORE_KEY).
	key := bytes.Repeat([]byte{0x42}, store.KeySize)
	ctx := context.Background()

	f, err := store.NewFile(path, key, store.FileConfig{})
	if err != nil {
		log.Fatal(err)
	}
	if err := f.Put(ctx, []byte("csh/device-7"), []byte("client_state record"), 24*time.Hour); err != nil {
		log.Fatal(err)
	}
	f.Close() // or a crash: every acknowledged Put is on disk

	f, err = store.NewFile(path, key, store.FileConfig{})
	if err != nil {
		log.Fatal(err)
	}
	v, err := f.Get(ctx, []byte("csh/device-7"))
	fmt.Printf("%q %v\n", v, err)
	f.Close()

	_, err = store.NewFile(path, bytes.Repeat([]byte{0x43}, store.KeySize), store.FileConfig{})
	fmt.Println("another key opens it:", err == nil)
	// Output:
	// "client_state record" <nil>
	// another key opens it: false
}
