package pgtest

import (
	"fmt"
	"github.com/runbox/runbox/internal/testenv"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// Instance is a PostgreSQL server of the test's own: initdb into a temporary
// directory, listening on its own loopback port, so a test can stop and
// start it without disturbing anything else.
type Instance struct {
	t       testing.TB
	bin     string
	dataDir string
	cred    *syscall.Credential
	URL     string
}

// Private starts a private PostgreSQL server for t and stops it when t ends.
// initdb refuses to run as root, so the server runs as the postgres user.
func Private(t testing.TB) *Instance {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	testenv.Require(t, len(bins) > 0, "initdb (Debian's postgresql package)")
	pg, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("postgres user: %v", err)
	}
	uid, _ := strconv.Atoi(pg.Uid)
	gid, _ := strconv.Atoi(pg.Gid)
	dir, err := os.MkdirTemp("", "runbox-pg-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	in := &Instance{t: t, bin: filepath.Dir(bins[len(bins)-1]), dataDir: filepath.Join(dir, "data"),
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)},
		URL:  fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)}
	in.run("initdb", "-D", in.dataDir, "-A", "trust", "-U", "postgres", "--no-sync")
	conf := fmt.Sprintf("port=%d\nlisten_addresses='127.0.0.1'\nunix_socket_directories='%s'\nfsync=off\n", port, dir)
	if err := os.WriteFile(filepath.Join(in.dataDir, "postgresql.auto.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	in.Start()
	t.Cleanup(func() {
		_ = in.ctl("stop", "-m", "immediate")
		os.RemoveAll(dir)
	})
	return in
}

// Start starts the server and waits until it accepts connections.
func (in *Instance) Start() {
	in.t.Helper()
	if err := in.ctl("start", "-w", "-l", filepath.Join(in.dataDir, "log")); err != nil {
		in.t.Fatalf("pg_ctl start: %v", err)
	}
}

// Stop stops the server at once (connections are cut, as in a crash).
func (in *Instance) Stop() {
	in.t.Helper()
	if err := in.ctl("stop", "-w", "-m", "immediate"); err != nil {
		in.t.Fatalf("pg_ctl stop: %v", err)
	}
}

func (in *Instance) ctl(args ...string) error {
	cmd := exec.Command(filepath.Join(in.bin, "pg_ctl"), append(args, "-D", in.dataDir)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: in.cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

func (in *Instance) run(name string, args ...string) {
	in.t.Helper()
	cmd := exec.Command(filepath.Join(in.bin, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: in.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		in.t.Fatalf("%s: %v\n%s", name, err, out)
	}
}
