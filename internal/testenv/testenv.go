// Package testenv decides what a test does when something it needs from the
// machine (root, PostgreSQL, a tool) is missing: skip on a developer's
// machine, fail in CI (CI=true), where a silent skip would hide a broken
// set-up.
package testenv

import (
	"os"
	"testing"
)

// Require stops t unless ok: a skip outside CI, a failure in CI.
func Require(t testing.TB, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI requires %s", what)
	}
	t.Skipf("needs %s", what)
}

// RequireRoot stops t unless the test runs as root (the sandbox needs it).
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "root (the sandbox uses namespaces and cgroups)")
}
