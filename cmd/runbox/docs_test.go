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
// true: every variable runbox reads is there with its default and the
// subcommands that read it.
func TestReadmeDocumentsEveryVariable(t *testing.T) {
	readme := readRepoFile(t, "README.md")
	for _, v := range config.Vars {
		row := "| `" + v.Name + "` | " + v.Default + " |"
		if !strings.Contains(readme, row) {
			t.Errorf("README lacks %s with default %q", v.Name, v.Default)
			continue
		}
		line, _, _ := strings.Cut(readme[strings.Index(readme, row):], "\n")
		if roles := "| " + strings.Join(v.Roles, ", ") + " |"; !strings.HasSuffix(line, roles) {
			t.Errorf("README: %s is read by %s", v.Name, roles)
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
