package dtls

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/dtlsresume/dtlsresume/negotiation"
	"golang.org/x/crypto/cryptobyte"
)

// Graceful restart (docs/decisions.md 49): a Listener saves its established
// connections into a SessionStore (which seals them under the operator's
// key: the file and Redis stores) and a new process loads them, so that a
// client, above all one with a connection ID, goes on with no handshake.
//
// A saved connection is
//
//	struct {
//	    uint8  version;                 /* 1 */
//	    uint16 cipher_suite;
//	    opaque key_block[40];           /* client/server write keys, IVs */
//	    uint48 next_write_seq;          /* epoch 1 */
//	    uint48 next_read_seq;           /* one past the newest authenticated */
//	    opaque local_cid<0..2^8-1>;
//	    opaque peer_cid<0..2^8-1>;
//	    opaque peer_address<1..2^8-1>;  /* netip.AddrPort, binary */
//	    uint8  flags;                   /* 1 EMS, 2 resumed, 4 negotiated */
//	    uint8  resumption;              /* negotiation.Type */
//	    opaque psk_identity<0..2^16-1>;
//	    opaque server_name<0..2^8-1>;
//	} SavedConnection;
//
// stored in chunks of savedChunk connections, each a list of
// uint16-length-prefixed SavedConnections, under "conns/<listen address>/<n>",
// with the number of chunks under "conns/<listen address>".
const (
	savedConnVersion = 1
	savedChunk       = 1000
	// restartSeqMargin skips write sequence numbers on restore, so that a
	// record the old process sealed after saving never shares a nonce with
	// one the new process seals.
	restartSeqMargin = 1 << 20
	// savedTTL is how long saved connections wait for the new process.
	savedTTL = time.Hour
)

func (l *Listener) savedKey() []byte { return []byte("conns/" + l.Addr().String()) }

func (l *Listener) savedChunkKey(i int) []byte {
	return append(l.savedKey(), fmt.Sprintf("/%d", i)...)
}

// SaveConnections writes every established connection of l into store, for
// a new process on the same address to load with RestoreConnections, and
// returns how many it saved. Saved connections no longer send from this
// process; close the Listener next (their peers get no close_notify).
func (l *Listener) SaveConnections(ctx context.Context, store SessionStore) (int, error) {
	l.mu.Lock()
	conns := make([]*Conn, 0, len(l.conns))
	for _, c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	var chunks [][]byte
	var chunk cryptobyte.Builder
	n, inChunk := 0, 0
	for _, c := range conns {
		rec, ok := c.exportState()
		if !ok {
			continue
		}
		chunk.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(rec) })
		n++
		if inChunk++; inChunk == savedChunk {
			chunks = append(chunks, chunk.BytesOrPanic())
			chunk, inChunk = cryptobyte.Builder{}, 0
		}
	}
	if inChunk > 0 {
		chunks = append(chunks, chunk.BytesOrPanic())
	}
	for i, v := range chunks {
		if err := store.Put(ctx, l.savedChunkKey(i), v, savedTTL); err != nil {
			return 0, fmt.Errorf("dtls: saving connections: %w", err)
		}
	}
	if err := store.Put(ctx, l.savedKey(), binary.BigEndian.AppendUint32(nil, uint32(len(chunks))), savedTTL); err != nil {
		return 0, fmt.Errorf("dtls: saving connections: %w", err)
	}
	return n, nil
}

// exportState encodes an established connection and marks it saved; false
// for one that is not established.
func (c *Conn) exportState() ([]byte, bool) {
	if !c.hsDone.Load() || c.hsErr != nil || c.keyBlock == nil {
		return nil, false
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.saved.Swap(true) {
		return nil, false
	}
	ap, err := netip.ParseAddrPort(c.remote().String())
	if err != nil {
		return nil, false
	}
	addr, _ := ap.MarshalBinary()
	st := c.state
	var flags uint8
	if st.ExtendedMasterSecret {
		flags |= 1
	}
	if st.Resumed {
		flags |= 2
	}
	if st.Negotiated {
		flags |= 4
	}
	if st.EncryptThenMAC {
		flags |= 8
	}
	var b cryptobyte.Builder
	b.AddUint8(savedConnVersion)
	b.AddUint16(uint16(c.suite.id))
	b.AddBytes(c.keyBlock)
	b.AddUint48(c.rl.write[1].nextSeq)
	b.AddUint48(c.nextPeerSeq)
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(c.rl.readCID) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(c.rl.writeCID) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(addr) })
	b.AddUint8(flags)
	b.AddUint8(uint8(st.Resumption))
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(st.PSKIdentity) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(st.ServerName)) })
	rec, err := b.Bytes()
	if err != nil {
		c.saved.Store(false)
		return nil, false
	}
	return rec, true
}

// errSavedConnection reports a saved connection that does not decode.
var errSavedConnection = errors.New("dtls: malformed saved connection")

// RestoreConnections loads the connections a previous process on the same
// address saved into store, at most once (the records are deleted before
// use), and hands them to Accept as established connections. It returns how
// many it restored.
func (l *Listener) RestoreConnections(ctx context.Context, store SessionStore) (int, error) {
	head, err := store.Get(ctx, l.savedKey())
	if err != nil {
		return 0, nil // nothing saved
	}
	if err := store.Delete(ctx, l.savedKey()); err != nil {
		return 0, fmt.Errorf("dtls: claiming saved connections: %w", err)
	}
	if len(head) != 4 {
		return 0, errSavedConnection
	}
	var restored []*Conn
	for i := 0; i < int(binary.BigEndian.Uint32(head)); i++ {
		v, err := store.Get(ctx, l.savedChunkKey(i))
		if err != nil {
			continue // expired or lost: those clients handshake again
		}
		if err := store.Delete(ctx, l.savedChunkKey(i)); err != nil {
			return len(restored), fmt.Errorf("dtls: claiming saved connections: %w", err)
		}
		s := cryptobyte.String(v)
		for !s.Empty() {
			var rec cryptobyte.String
			if !s.ReadUint16LengthPrefixed(&rec) {
				return len(restored), errSavedConnection
			}
			c, err := l.importState(rec)
			if err != nil {
				l.cfg.logger().Warn("dtls: a saved connection could not be restored", "err", err)
				continue
			}
			restored = append(restored, c)
		}
	}
	// Accept hands them out as the application asks; one goroutine waits
	// for it, however many there are.
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for _, c := range restored {
			select {
			case l.accept <- c:
			case <-l.closed:
				return
			}
		}
	}()
	return len(restored), nil
}

// importState rebuilds a saved connection and registers it.
func (l *Listener) importState(rec []byte) (*Conn, error) {
	s := cryptobyte.String(rec)
	var version, flags, resumption uint8
	var suiteID uint16
	var block []byte
	var writeSeq, readSeq uint64
	var localCID, peerCID, addrBytes, identity, serverName cryptobyte.String
	if !s.ReadUint8(&version) || version != savedConnVersion || !s.ReadUint16(&suiteID) {
		return nil, errSavedConnection
	}
	suite := cipherSuiteByID(suiteID)
	if suite == nil || !s.ReadBytes(&block, suite.keyBlockLen()) ||
		!s.ReadUint48(&writeSeq) || !s.ReadUint48(&readSeq) ||
		!s.ReadUint8LengthPrefixed(&localCID) || !s.ReadUint8LengthPrefixed(&peerCID) || !s.ReadUint8LengthPrefixed(&addrBytes) ||
		!s.ReadUint8(&flags) || !s.ReadUint8(&resumption) ||
		!s.ReadUint16LengthPrefixed(&identity) || !s.ReadUint8LengthPrefixed(&serverName) || !s.Empty() {
		return nil, errSavedConnection
	}
	var ap netip.AddrPort
	if ap.UnmarshalBinary(addrBytes) != nil || (len(localCID) > 0 && len(localCID) != l.cidLen) {
		return nil, errSavedConnection
	}
	rc, err := suite.cipherFromKeys(block, false, flags&8 != 0)
	if err != nil {
		return nil, err
	}
	addr := net.UDPAddrFromAddrPort(ap)
	c := newConn(l.pconn, addr, l.cfg, false)
	c.rl.setKeys(rc, suite.overhead)
	c.rl.startWriteEpoch1()
	c.rl.write[1].nextSeq = writeSeq + restartSeqMargin
	c.rl.readFloor, c.nextPeerSeq = readSeq, readSeq
	c.keyBlock, c.suite = append([]byte(nil), block...), suite
	c.useCIDs(append([]byte(nil), localCID...), append([]byte(nil), peerCID...))
	c.state.CipherSuite = suite.id
	c.state.ExtendedMasterSecret = flags&1 != 0
	c.state.Resumed = flags&2 != 0
	c.state.Negotiated = flags&4 != 0
	c.state.EncryptThenMAC = flags&8 != 0
	c.state.Resumption = negotiation.Type(resumption)
	c.state.PSKIdentity = append([]byte(nil), identity...)
	c.state.ServerName = string(serverName)
	c.hsDone.Store(true)
	key := addr.String()
	c.onClose = func() { l.forget(key, c) }
	if l.cidLen > 0 {
		c.reserveCID = func(cid []byte) bool { return l.reserveCID(c, cid) }
		c.onMigrate = func(from, to net.Addr) bool { return l.migrate(c, from, to) }
		if len(localCID) > 0 && !l.reserveCID(c, localCID) {
			return nil, errors.New("dtls: a saved connection's CID is taken")
		}
	}
	l.mu.Lock()
	if l.conns[key] != nil {
		l.mu.Unlock()
		return nil, errors.New("dtls: a saved connection's address is taken")
	}
	l.conns[key] = c
	l.mu.Unlock()
	return c, nil
}
