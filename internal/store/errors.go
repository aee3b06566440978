package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

var (
	// ErrInvalidCursor means a ListExecutions cursor was not one this store issued.
	ErrInvalidCursor = errors.New("invalid cursor")
	// ErrInvalidLimit means a ListExecutions limit outside 1..MaxListLimit.
	ErrInvalidLimit = errors.New("invalid limit")
)

// MaxListLimit is the largest page ListExecutions returns.
const MaxListLimit = 100

// isUnavailable reports whether err means the database could not be reached
// at all (as opposed to a query failing).
func isUnavailable(ctx context.Context, err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, pgconn.ErrConnClosed) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08: connection exception; 57P01..03: admin shutdown, crash
		// shutdown, cannot connect now.
		return len(pe.Code) >= 2 && pe.Code[:2] == "08" ||
			pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var ne *net.OpError
	if errors.As(err, &ne) {
		return true
	}
	// A deadline that is not the caller's own comes from dialing.
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return true
	}
	return false
}

// wrapErr maps connection failures to ErrUnavailable and leaves other errors
// (including the store's own sentinels) as they are.
func wrapErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if isUnavailable(ctx, err) && !errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return err
}

// isMissingTable reports whether err says a table does not exist: a
// database no `runbox migrate` has run on.
func isMissingTable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "42P01" // undefined_table
	}
	return strings.Contains(err.Error(), "no such table")
}
