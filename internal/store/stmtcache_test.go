package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"strconv"
	"testing"
)

// TestStatementCache: repeated queries reuse their prepared statement; the
// same query while its first rows are still open (a nested query in one
// transaction) gets a statement of its own; scripts of several statements
// still run whole; the cache stays bounded.
func TestStatementCache(t *testing.T) {
	db, err := sql.Open(sqliteDriverName, "file:"+filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1), (2), (3);`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n); err != nil || n != 3 {
		t.Fatalf("the script ran partly: %d rows, %v", n, err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	const q = `SELECT n FROM t WHERE n >= $1 ORDER BY n`
	outer, err := tx.QueryContext(ctx, q, 1)
	if err != nil {
		t.Fatal(err)
	}
	var pairs int
	for outer.Next() {
		var a int
		if err := outer.Scan(&a); err != nil {
			t.Fatal(err)
		}
		inner, err := tx.QueryContext(ctx, q, a)
		if err != nil {
			t.Fatal(err)
		}
		for inner.Next() {
			pairs++
		}
		inner.Close()
	}
	outer.Close()
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if pairs != 6 { // 3 + 2 + 1
		t.Fatalf("nested use of one statement: %d pairs, want 6", pairs)
	}
	for i := range maxCachedStmts + 10 {
		if err := db.QueryRowContext(ctx, `SELECT $1 + `+itoa(i), 1).Scan(&n); err != nil || n != i+1 {
			t.Fatalf("query %d: %d, %v", i, n, err)
		}
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.Raw(func(dc any) error {
		if c := dc.(*cachingConn); len(c.stmts) > maxCachedStmts {
			t.Errorf("%d statements cached", len(c.stmts))
		}
		return nil
	})
}

func itoa(i int) string { return strconv.Itoa(i) }
