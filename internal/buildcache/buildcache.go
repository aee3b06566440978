// Package buildcache keeps compiled programs in a worker's memory, so that
// running unchanged source again skips its compile step. Learners press
// Run again without editing (to read the output once more, to try other
// input); the compile is most of such a run: ~30 ms of a C hello world's
// ~35, most of a second for Java or Rust.
//
// A build is only ever served to the session that compiled it (the scope
// in KeyOf): a program compiled from one learner's source never runs for
// another, whatever a compiler might let source do at compile time. The
// cache is bounded in bytes and evicts the least recently used build; it
// dies with the process, which only costs the next run a compile.
package buildcache

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"sync"

	"github.com/runbox/runbox/internal/sandbox"
)

// Key identifies a build: everything its compile step depends on.
type Key [sha256.Size]byte

// KeyOf is the key of req's compile step, in scope (the session) with the
// compiler that reported version.
func KeyOf(scope, version string, req *sandbox.Request) Key {
	h := sha256.New()
	field := func(b []byte) { // length-prefixed, so no two inputs collide by concatenation
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	strs := func(ss []string) {
		field(binary.BigEndian.AppendUint64(nil, uint64(len(ss))))
		for _, s := range ss {
			field([]byte(s))
		}
	}
	field([]byte(scope))
	field([]byte(version))
	if req.Compile != nil {
		strs(req.Compile.Argv)
	}
	strs(req.Env)
	strs(req.ReadOnlyPaths)
	field(binary.BigEndian.AppendUint64(nil, uint64(len(req.Files))))
	for _, f := range req.Files {
		field([]byte(f.Name))
		field(binary.BigEndian.AppendUint32(nil, f.Mode))
		field(f.Content)
	}
	var k Key
	h.Sum(k[:0])
	return k
}

// Build is what a successful compile step left: the working directory's
// files and the compiler's report, whose output every run shows.
type Build struct {
	Files   []sandbox.File
	Compile sandbox.StepReport
}

func (b *Build) size() int64 {
	n := int64(len(b.Compile.Stdout) + len(b.Compile.Stderr))
	for _, f := range b.Files {
		n += int64(len(f.Name) + len(f.Content))
	}
	return n
}

// Cache is a bounded, least-recently-used set of builds, safe for
// concurrent use.
type Cache struct {
	max int64

	mu    sync.Mutex
	size  int64
	order *list.List // of *entry, most recently used first
	byKey map[Key]*list.Element
}

type entry struct {
	key   Key
	build *Build
	size  int64
}

// New returns a cache holding at most maxBytes of files and output.
func New(maxBytes int64) *Cache {
	return &Cache{max: maxBytes, order: list.New(), byKey: map[Key]*list.Element{}}
}

// Get returns the build of k. The caller must not modify it.
func (c *Cache) Get(k Key) (*Build, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[k]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*entry).build, true
}

// Put keeps b under k, evicting the least recently used builds to make
// room; a build larger than the whole cache is not kept.
func (c *Cache) Put(k Key, b *Build) {
	size := b.size()
	if size > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[k]; ok {
		c.remove(el)
	}
	for c.size+size > c.max {
		c.remove(c.order.Back())
	}
	c.byKey[k] = c.order.PushFront(&entry{key: k, build: b, size: size})
	c.size += size
}

func (c *Cache) remove(el *list.Element) {
	e := c.order.Remove(el).(*entry)
	delete(c.byKey, e.key)
	c.size -= e.size
}

// Bytes is what the cache holds now.
func (c *Cache) Bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}
