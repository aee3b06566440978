package store

import (
	"context"
	"database/sql"
	"database/sql/driver"

	"modernc.org/sqlite"
)

// sqliteDriverName is modernc's SQLite driver with a prepared-statement
// cache per connection. database/sql prepares a statement for every call
// made with a query string, and parsing and planning SQL was a quarter of
// the server's CPU on SQLite in profiles (River's fetch poll alone re-parses
// a large statement 200 times a second). The cache keeps each distinct query
// prepared on its connection; SQLite re-prepares a cached statement by
// itself when the schema changes.
const sqliteDriverName = "runbox-sqlite"

func init() { sql.Register(sqliteDriverName, cachingDriver{base: &sqlite.Driver{}}) }

// maxCachedStmts bounds the statements kept per connection; the store and
// River issue a few dozen distinct queries, dynamic ones included.
const maxCachedStmts = 256

type cachingDriver struct{ base driver.Driver }

func (d cachingDriver) Open(name string) (driver.Conn, error) {
	c, err := d.base.Open(name)
	if err != nil {
		return nil, err
	}
	return &cachingConn{base: c, stmts: map[string]*cachedStmt{}}, nil
}

// baseConn is what modernc's connection implements and the cache relies on.
type baseConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
}

type cachingConn struct {
	base  driver.Conn
	stmts map[string]*cachedStmt
}

// cachedStmt is busy while rows read from it are open: a second use of the
// same query meanwhile (a nested query in one transaction) gets a statement
// of its own instead of resetting the first one's rows.
type cachedStmt struct {
	stmt driver.Stmt
	busy bool
}

func (c *cachingConn) conn() baseConn { return c.base.(baseConn) }

func (c *cachingConn) Prepare(query string) (driver.Stmt, error) { return c.base.Prepare(query) }
func (c *cachingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return c.conn().PrepareContext(ctx, query)
}
func (c *cachingConn) Begin() (driver.Tx, error) {
	return c.conn().BeginTx(context.Background(), driver.TxOptions{})
}
func (c *cachingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.conn().BeginTx(ctx, opts)
}
func (c *cachingConn) Ping(ctx context.Context) error         { return c.conn().Ping(ctx) }
func (c *cachingConn) ResetSession(ctx context.Context) error { return c.conn().ResetSession(ctx) }
func (c *cachingConn) IsValid() bool                          { return c.conn().IsValid() }

func (c *cachingConn) Close() error {
	for _, s := range c.stmts {
		_ = s.stmt.Close()
	}
	c.stmts = nil
	return c.base.Close()
}

// statement returns the cached statement of query, marked busy, or a fresh
// one when it is busy; release must be called when the caller is done.
func (c *cachingConn) statement(ctx context.Context, query string) (driver.Stmt, func(), error) {
	if s, ok := c.stmts[query]; ok && !s.busy {
		s.busy = true
		return s.stmt, func() { s.busy = false }, nil
	}
	st, err := c.conn().PrepareContext(ctx, query)
	if err != nil {
		return nil, nil, err
	}
	if _, ok := c.stmts[query]; ok {
		return st, func() { _ = st.Close() }, nil
	}
	if len(c.stmts) >= maxCachedStmts {
		for q, s := range c.stmts {
			if !s.busy {
				_ = s.stmt.Close()
				delete(c.stmts, q)
			}
		}
	}
	s := &cachedStmt{stmt: st, busy: true}
	c.stmts[query] = s
	return st, func() { s.busy = false }, nil
}

func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	st, release, err := c.statement(ctx, query)
	if err != nil {
		return nil, err
	}
	defer release()
	return st.(driver.StmtExecContext).ExecContext(ctx, args)
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	st, release, err := c.statement(ctx, query)
	if err != nil {
		return nil, err
	}
	rows, err := st.(driver.StmtQueryContext).QueryContext(ctx, args)
	if err != nil {
		release()
		return nil, err
	}
	return &releasingRows{Rows: rows, release: release}, nil
}

// releasingRows frees its statement for reuse when closed.
type releasingRows struct {
	driver.Rows
	release func()
}

func (r *releasingRows) Close() error {
	err := r.Rows.Close()
	if r.release != nil {
		r.release()
		r.release = nil
	}
	return err
}
