package main

// FerretDB v1 applies each update as a read followed by a write, with nothing stopping
// another command from writing the same document in between: two concurrent
// `$inc: {n: 1}` on one document from two clients lost three increments out of four in
// a measurement here, and a `$pull` by one process could write back a document another
// process had just changed. MongoDB makes every single-document write atomic, and the
// services rely on that once more than one process writes.
//
// The write proxy restores it: clients talk to the proxy's TCP address, the proxy talks
// to FerretDB over a private Unix socket, and each write command is forwarded while
// holding its collection's lock (database and name) until FerretDB has answered (see
// collectionLock for which command holds what). Reads pass straight through. Only the
// message framing, the command's first element (its name and collection), its `$db` and
// whether it may upsert are read; everything else is forwarded byte for byte.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

const (
	opMsg        = 2013
	opCompressed = 2012
	moreToCome   = 1 << 1
	headerSize   = 16
	maxMessage   = 48 * 1024 * 1024 // MongoDB's maxMessageSizeBytes
)

// commandKind is what a command may do to a collection's documents.
type commandKind int

const (
	readCommand   commandKind = iota // changes nothing
	insertCommand                    // adds documents, changes none
	changeCommand                    // reads documents and writes them back
	upsertCommand                    // a change that may also add a document
)

// kindOf classifies a command by its name and, for updates, whether any statement upserts.
func kindOf(name string, message []byte) commandKind {
	switch name {
	case "insert":
		return insertCommand
	case "update", "findAndModify", "findandmodify":
		if mayUpsert(message) {
			return upsertCommand
		}

		return changeCommand
	case "delete":
		return changeCommand
	}

	return readCommand
}

// mayUpsert tells whether the message holds an `upsert` element that is true (or a
// number, left to FerretDB to judge). It looks at the raw bytes, statements in document
// sequences included; a document of the client's that has a field named `upsert` only
// makes the command wait for more than it needs.
func mayUpsert(message []byte) bool {
	key := []byte("upsert\x00")
	for i := 1; i+len(key) < len(message); i++ {
		if message[i] != 'u' || string(message[i:i+len(key)]) != string(key) {
			continue
		}

		switch message[i-1] {
		case 0x08: // boolean
			if message[i+len(key)] != 0 {
				return true
			}
		case 0x01, 0x10, 0x12: // double, int32, int64
			return true
		}
	}

	return false
}

// collectionLock is one collection's. FerretDB applies a change as a read, then a write,
// so a command that changes documents (update, delete, findAndModify) holds `changes`:
// one at a time. An insert changes no stored document, and SQLite's unique indexes settle
// two inserts of one `_id`, so inserts share `inserts` and run beside the changes (a
// 2,000-row import: 457 and 506 rows/s against 281-304 when inserts waited for the relays'
// removals). Only a command that may itself insert, an upsert, must not race them:
// MongoDB applies an upsert that loses the insert race to the winner's document, where
// FerretDB would answer "duplicate key"; so an upsert holds `inserts` alone as well.
type collectionLock struct {
	changes sync.Mutex
	inserts sync.RWMutex
}

// acquire takes what a command of this kind holds and returns how to release it.
func (c *collectionLock) acquire(kind commandKind) func() {
	switch kind {
	case readCommand:
		return func() {}
	case insertCommand:
		c.inserts.RLock()
		return c.inserts.RUnlock
	case changeCommand:
		c.changes.Lock()
		return c.changes.Unlock
	default:
		c.changes.Lock()
		c.inserts.Lock()

		return func() {
			c.inserts.Unlock()
			c.changes.Unlock()
		}
	}
}

// collectionLocks hands out one lock per collection.
type collectionLocks struct {
	mu    sync.Mutex
	locks map[string]*collectionLock
}

func (c *collectionLocks) get(name string) *collectionLock {
	c.mu.Lock()
	defer c.mu.Unlock()

	l, ok := c.locks[name]
	if !ok {
		l = &collectionLock{}
		c.locks[name] = l
	}

	return l
}

// writeProxy accepts clients on a TCP listener and forwards them to FerretDB.
type writeProxy struct {
	backend string // FerretDB's Unix socket
	logger  *slog.Logger
	locks   collectionLocks
	slow    time.Duration // log commands that take at least this long (0: never)
}

func newWriteProxy(backend string, logger *slog.Logger, slow time.Duration) *writeProxy {
	return &writeProxy{
		backend: backend,
		logger:  logger,
		locks:   collectionLocks{locks: map[string]*collectionLock{}},
		slow:    slow,
	}
}

// serve accepts connections until the listener is closed.
func (p *writeProxy) serve(l net.Listener) {
	for {
		client, err := l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.logger.Error("write proxy: accept failed", "error", err)
			}
			return
		}

		go p.handle(client)
	}
}

func (p *writeProxy) handle(client net.Conn) {
	defer client.Close()

	backend, err := net.Dial("unix", p.backend)
	if err != nil {
		p.logger.Error("write proxy: cannot reach FerretDB", "error", err)
		return
	}
	defer backend.Close()

	for {
		request, err := readMessage(client)
		if err != nil {
			return // the client went away (or sent garbage: FerretDB would refuse it too)
		}

		if err := p.exchange(request, client, backend); err != nil {
			return
		}
	}
}

// exchange forwards one request and every reply to it, holding its collection's lock
// as its kind requires.
func (p *writeProxy) exchange(request []byte, client, backend net.Conn) error {
	start := time.Now()
	release := p.lock(request)
	locked := time.Now()

	defer func() {
		release()
		p.noteSlow(request, start, locked)
	}()

	if _, err := backend.Write(request); err != nil {
		return err
	}

	if msgFlags(request)&moreToCome != 0 {
		return nil // the client expects no reply
	}

	for {
		reply, err := readMessage(backend)
		if err != nil {
			return err
		}

		if _, err := client.Write(reply); err != nil {
			return err
		}

		if msgFlags(reply)&moreToCome == 0 {
			return nil // an exhaust cursor sends several replies, the last without the flag
		}
	}
}

// noteSlow logs a command that took at least `slow`, from its arrival to its last reply:
// its database, command and collection, never its arguments (they may hold personal
// data), and how long it waited for its collection's lock. It is the first place to
// look when the store holds everything up (FerretDB v1 reads whole tables for filters
// it cannot push down, and a long write holds its collection).
func (p *writeProxy) noteSlow(request []byte, start, locked time.Time) {
	took := time.Since(start)
	if p.slow <= 0 || took < p.slow {
		return
	}

	name, collection, _ := firstElement(request)
	p.logger.Info(
		"slow command",
		"db", databaseOf(request),
		"command", name,
		"collection", collection,
		"ms", took.Milliseconds(),
		"lock_wait_ms", locked.Sub(start).Milliseconds(),
	)
}

// lock takes the lock a request must hold and returns how to release it: its
// collection's for a write command, everything of one shared lock for compressed
// messages (their command cannot be read), nothing for the rest.
func (p *writeProxy) lock(request []byte) func() {
	switch binary.LittleEndian.Uint32(request[12:16]) {
	case opCompressed:
		return p.locks.get("").acquire(upsertCommand)
	case opMsg:
		name, collection, ok := firstElement(request)
		if kind := kindOf(name, request); ok && kind != readCommand {
			// Per database and collection: intake's `cases` and notify's `cases` are
			// different collections, and a lock on the name alone made one service's
			// writes wait for the other's.
			return p.locks.get(databaseOf(request) + "." + collection).acquire(kind)
		}
	}

	return func() {}
}

// readMessage reads one length-prefixed wire message.
func readMessage(r io.Reader) ([]byte, error) {
	header := make([]byte, headerSize)
	if _, err := io.ReadFull(r, header); err != nil {
		return nil, err
	}

	size := int(int32(binary.LittleEndian.Uint32(header[:4])))
	if size < headerSize || size > maxMessage {
		return nil, fmt.Errorf("invalid message length %d", size)
	}

	message := make([]byte, size)
	copy(message, header)

	if _, err := io.ReadFull(r, message[headerSize:]); err != nil {
		return nil, err
	}

	return message, nil
}

// msgFlags returns an OP_MSG's flag bits (0 for any other message).
func msgFlags(message []byte) uint32 {
	if len(message) < headerSize+4 || binary.LittleEndian.Uint32(message[12:16]) != opMsg {
		return 0
	}

	return binary.LittleEndian.Uint32(message[headerSize : headerSize+4])
}

// firstElement reads the command name and its string value (the collection) from an
// OP_MSG's body section: flags, then kind 0, then a BSON document whose first element
// is e.g. {"update": "routings"}.
func firstElement(message []byte) (name, value string, ok bool) {
	doc, ok := bodyDocument(message)
	if !ok {
		return "", "", false
	}

	elementType := doc[4]
	rest := doc[5:]

	end := indexByte(rest, 0)
	if end < 0 {
		return "", "", false
	}

	name = string(rest[:end])
	rest = rest[end+1:]

	if elementType != 0x02 || len(rest) < 4 { // not a string: no collection to name
		return name, "", true
	}

	size := int(int32(binary.LittleEndian.Uint32(rest[:4])))
	if size < 1 || 4+size > len(rest) {
		return name, "", true
	}

	return name, string(rest[4 : 4+size-1]), true
}

// bodyDocument returns the bytes from an OP_MSG's body document on (after its flags
// and the section kind 0), if it has one of at least one element.
func bodyDocument(message []byte) ([]byte, bool) {
	body := message[headerSize:]
	if len(body) < 4+1+4+1 || body[4] != 0 {
		return nil, false
	}

	return body[5:], true
}

// databaseOf returns the `$db` of an OP_MSG's body document ("" if it cannot be read:
// the lock is then shared by every database's collection of that name, which is safe).
func databaseOf(message []byte) string {
	doc, ok := bodyDocument(message)
	if !ok {
		return ""
	}

	size := int(int32(binary.LittleEndian.Uint32(doc[:4])))
	if size < 5 || size > len(doc) {
		return ""
	}

	rest := doc[4 : size-1]
	for len(rest) > 0 {
		elementType := rest[0]
		end := indexByte(rest[1:], 0)
		if end < 0 {
			return ""
		}

		key := string(rest[1 : 1+end])
		rest = rest[2+end:]

		n := valueSize(elementType, rest)
		if n < 0 || n > len(rest) {
			return ""
		}

		if key == "$db" && elementType == 0x02 && n >= 5 {
			return string(rest[4 : n-1])
		}

		rest = rest[n:]
	}

	return ""
}

// valueSize returns how many bytes a BSON value of this type takes at the start of b
// (-1 for a type it does not know or a value cut short).
func valueSize(elementType byte, b []byte) int {
	int32At := func(i int) int {
		if len(b) < i+4 {
			return -1
		}

		return int(int32(binary.LittleEndian.Uint32(b[i : i+4])))
	}

	switch elementType {
	case 0x01, 0x09, 0x11, 0x12: // double, UTC datetime, timestamp, int64
		return 8
	case 0x02, 0x0D, 0x0E: // string, JavaScript code, symbol: int32 length, then bytes
		if n := int32At(0); n >= 1 {
			return 4 + n
		}
	case 0x03, 0x04, 0x0F: // document, array, code with scope: int32 total size
		if n := int32At(0); n >= 5 {
			return n
		}
	case 0x05: // binary: int32 length, subtype, bytes
		if n := int32At(0); n >= 0 {
			return 4 + 1 + n
		}
	case 0x06, 0x0A, 0x7F, 0xFF: // undefined, null, max key, min key
		return 0
	case 0x07: // ObjectId
		return 12
	case 0x08: // boolean
		return 1
	case 0x0B: // regex: two C strings
		first := indexByte(b, 0)
		if first < 0 {
			return -1
		}

		if second := indexByte(b[first+1:], 0); second >= 0 {
			return first + 1 + second + 1
		}
	case 0x0C: // DBPointer: string, then ObjectId
		if n := int32At(0); n >= 1 {
			return 4 + n + 12
		}
	case 0x10: // int32
		return 4
	case 0x13: // decimal128
		return 16
	}

	return -1
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}

	return -1
}
