// Package pgtest gives each test a fresh PostgreSQL database on the server
// named by RUNBOX_TEST_DATABASE_URL (default: the local server, database
// test). Without a reachable server the test is skipped, except in CI
// (CI=true), where a missing prerequisite is a failure.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"github.com/runbox/runbox/internal/testenv"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// AdminURL is the server the test databases are created on.
func AdminURL() string {
	if u := os.Getenv("RUNBOX_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://root@127.0.0.1:5432/test?sslmode=disable"
}

// Database creates an empty database for t, drops it when t ends, and
// returns its URL.
func Database(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, AdminURL())
	testenv.Require(t, err == nil, fmt.Sprintf("PostgreSQL at RUNBOX_TEST_DATABASE_URL (%v)", err))
	defer admin.Close(context.Background())
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "runbox_test_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, AdminURL())
		if err != nil {
			t.Logf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(AdminURL())
	if err != nil {
		t.Fatalf("RUNBOX_TEST_DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}
