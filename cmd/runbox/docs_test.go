package main

import (
	"os"
	"strings"
	"testing"

	"github.com/runbox/runbox/internal/config"
)

func readRepoFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReadmeDocumentsEveryVariable keeps the README's configuration table
// true: every variable runbox reads is there with its default.
func TestReadmeDocumentsEveryVariable(t *testing.T) {
	readme := readRepoFile(t, "README.md")
	for _, v := range config.Vars {
		if !strings.Contains(readme, "| `"+v.Name+"` | "+v.Default+" |") {
			t.Errorf("README lacks %s with default %q", v.Name, v.Default)
		}
	}
}

// TestCIRunsTheReadmeTestCommand: .ci/run must call exactly the command the
// README gives a newcomer.
func TestCIRunsTheReadmeTestCommand(t *testing.T) {
	readme, ci := readRepoFile(t, "README.md"), readRepoFile(t, ".ci/run")
	const cmd = "go test -race -count=1 ./..."
	if !strings.Contains(readme, cmd) {
		t.Fatalf("README does not give %q", cmd)
	}
	if !strings.Contains(ci, cmd) {
		t.Fatalf(".ci/run does not run %q", cmd)
	}
}
