package buildcache

import (
	"testing"

	"github.com/runbox/runbox/internal/sandbox"
)

func request() sandbox.Request {
	return sandbox.Request{
		Files:         []sandbox.File{{Name: "main.c", Content: []byte("int main(){}"), Mode: 0o644}},
		Compile:       &sandbox.Step{Argv: []string{"/usr/bin/gcc", "-o", "main", "main.c"}},
		Run:           sandbox.Step{Argv: []string{"/box/main"}, Stdin: []byte("in")},
		ReadOnlyPaths: []string{"/opt/lib"},
		Env:           []string{"PATH=/usr/bin", "LANG=C.UTF-8"},
	}
}

// TestKeyOf: everything a compile depends on changes the key; what only
// the run depends on does not.
func TestKeyOf(t *testing.T) {
	base := KeyOf("session-1", "gcc 12", ptr(request()))
	for _, tc := range []struct {
		name    string
		scope   string
		version string
		edit    func(*sandbox.Request)
		same    bool
	}{
		{name: "identical", same: true},
		{name: "stdin", edit: func(r *sandbox.Request) { r.Run.Stdin = []byte("other") }, same: true},
		{name: "run argv", edit: func(r *sandbox.Request) { r.Run.Argv = []string{"/box/main", "x"} }, same: true},
		{name: "another session", scope: "session-2"},
		{name: "another compiler version", version: "gcc 13"},
		{name: "source", edit: func(r *sandbox.Request) { r.Files[0].Content = []byte("int main(){ }") }},
		{name: "file name", edit: func(r *sandbox.Request) { r.Files[0].Name = "other.c" }},
		{name: "file mode", edit: func(r *sandbox.Request) { r.Files[0].Mode = 0o755 }},
		{name: "another file", edit: func(r *sandbox.Request) {
			r.Files = append(r.Files, sandbox.File{Name: "x.h", Mode: 0o644})
		}},
		{name: "compile argv", edit: func(r *sandbox.Request) { r.Compile.Argv[1] = "-O2" }},
		{name: "compile argv split differently", edit: func(r *sandbox.Request) {
			r.Compile.Argv = []string{"/usr/bin/gcc", "-o", "mainmain.c"}
		}},
		{name: "environment", edit: func(r *sandbox.Request) { r.Env[1] = "LANG=C" }},
		{name: "read-only paths", edit: func(r *sandbox.Request) { r.ReadOnlyPaths = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := request()
			if tc.edit != nil {
				tc.edit(&r)
			}
			scope, version := "session-1", "gcc 12"
			if tc.scope != "" {
				scope = tc.scope
			}
			if tc.version != "" {
				version = tc.version
			}
			if got := KeyOf(scope, version, &r) == base; got != tc.same {
				t.Errorf("same key = %v, want %v", got, tc.same)
			}
		})
	}
	// Fields are length-prefixed: moving bytes between scope and version
	// is another key.
	if KeyOf("ab", "c", ptr(request())) == KeyOf("a", "bc", ptr(request())) {
		t.Error("scope and version run together")
	}
}

func ptr[T any](v T) *T { return &v }

func build(n int) *Build {
	return &Build{Files: []sandbox.File{{Name: "main", Content: make([]byte, n-len("main"))}}}
}

// TestCacheEvictsLeastRecentlyUsed: within its bound, a cache keeps the
// builds used last.
func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	c := New(300)
	k := func(i byte) Key { return Key{i} }
	c.Put(k(1), build(100))
	c.Put(k(2), build(100))
	c.Put(k(3), build(100))
	if _, ok := c.Get(k(1)); !ok { // 1 is now the most recently used
		t.Fatal("build 1 missing")
	}
	c.Put(k(4), build(100)) // evicts 2
	for i, want := range map[byte]bool{1: true, 2: false, 3: true, 4: true} {
		if _, ok := c.Get(k(i)); ok != want {
			t.Errorf("build %d cached = %v, want %v", i, ok, want)
		}
	}
	if c.Bytes() != 300 {
		t.Errorf("Bytes = %d, want 300", c.Bytes())
	}

	c.Put(k(5), build(250)) // evicts all but room for 50: 1, 3 and 4 go
	if c.Bytes() != 250 {
		t.Errorf("Bytes = %d, want 250", c.Bytes())
	}
	c.Put(k(5), build(50)) // replacing a build frees its old size
	if c.Bytes() != 50 {
		t.Errorf("Bytes after replacing = %d, want 50", c.Bytes())
	}
	c.Put(k(6), build(301)) // larger than the whole cache: not kept
	if _, ok := c.Get(k(6)); ok || c.Bytes() != 50 {
		t.Errorf("oversized build kept (Bytes = %d)", c.Bytes())
	}
}
