package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/runbox/runbox/internal/session"
)

// Autosaves on PostgreSQL are written in batches: one UPDATE for every
// save waiting when the writer comes free. An editor saves every few
// keystrokes, so many small saves of different sessions arrive together,
// and on a 2-core host the per-statement cost (a round trip, the
// executor's start-up, a separate WAL record and commit) was what bounded
// saves per second, not the rows. There is no timer: a save that arrives
// while the writer is idle goes out at once, alone; the batches grow
// only while the writer is busy, so batching adds no latency of its own.
// One writer: while its statement runs, the next batch collects. Two
// writers made batches half as large and cost PostgreSQL more than they
// saved (16 editors saving back to back on 2 cores: 4,900-5,250 saves/s
// against 5,350-6,500 with one). SQLite has one writer and no round trip,
// and keeps one statement a save.

// maxSaveBatch bounds one statement: 64 saves of up to 64 KiB each.
const maxSaveBatch = 64

type saveRequest struct {
	ctx    context.Context
	tenant string
	id     uuid.UUID
	patch  session.Patch
	now    time.Time
	done   chan saveResult // buffered: the writer never waits for the caller
}

type saveResult struct {
	s   *session.Session // nil: the session was not updated (see sqlStore.whyNotSaved)
	err error
}

// saveBatcher feeds the writer.
type saveBatcher struct {
	db       *sql.DB
	requests chan *saveRequest
	quit     chan struct{}
	stopped  chan struct{}
}

func startSaveBatcher(db *sql.DB) *saveBatcher {
	b := &saveBatcher{db: db, requests: make(chan *saveRequest, maxSaveBatch),
		quit: make(chan struct{}), stopped: make(chan struct{})}
	go b.write()
	return b
}

func (b *saveBatcher) close() {
	close(b.quit)
	<-b.stopped
}

// save queues one autosave and waits for its batch.
func (b *saveBatcher) save(ctx context.Context, r *saveRequest) saveResult {
	r.ctx, r.done = ctx, make(chan saveResult, 1)
	select {
	case b.requests <- r:
	case <-ctx.Done():
		return saveResult{err: ctx.Err()}
	case <-b.quit:
		return saveResult{err: errStoreClosed}
	}
	select {
	case res := <-r.done:
		return res
	case <-ctx.Done():
		// The batch may still apply the save, as a cancelled single
		// statement may have.
		return saveResult{err: ctx.Err()}
	}
}

var errStoreClosed = errors.New("store: closed")

// write is the writer: it takes what is waiting, up to maxSaveBatch saves
// of distinct sessions, and writes them in one statement. A second save of
// a session already in the batch waits for the next one, so that each
// save is its own version, in arrival order.
func (b *saveBatcher) write() {
	defer close(b.stopped)
	var held *saveRequest // the save that ended the last batch, if any
	for {
		first := held
		if first == nil {
			select {
			case first = <-b.requests:
			case <-b.quit:
				return
			}
		}
		held = nil
		batch := []*saveRequest{first}
		in := map[uuid.UUID]bool{first.id: true}
	collect:
		for len(batch) < maxSaveBatch {
			select {
			case r := <-b.requests:
				if in[r.id] {
					held = r
					break collect
				}
				in[r.id] = true
				batch = append(batch, r)
			default:
				break collect
			}
		}
		b.apply(batch)
	}
}

// apply writes one batch and answers each of its saves. Saves whose
// caller has gone are left out.
func (b *saveBatcher) apply(batch []*saveRequest) {
	live := batch[:0:0]
	for _, r := range batch {
		if r.ctx.Err() == nil {
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return
	}
	n := len(live)
	ids, tenants := make([]string, n), make([]string, n)
	nows := make([]int64, n)
	sources, languages, ifMatch := make([]*string, n), make([]*string, n), make([]*string, n)
	for i, r := range live {
		ids[i], tenants[i], nows[i] = r.id.String(), r.tenant, toDB(r.now)
		if r.patch.SourceCode != nil {
			sources[i] = ptr(clean(*r.patch.SourceCode))
		}
		languages[i] = r.patch.Language
		if r.patch.IfMatch != nil {
			vs := make([]string, len(r.patch.IfMatch))
			for j, v := range r.patch.IfMatch {
				vs[j] = strconv.FormatInt(v, 10)
			}
			ifMatch[i] = ptr(strings.Join(vs, ","))
		}
	}
	// The statement runs on its own: a caller that goes away must not
	// cancel the other callers' saves.
	ctx, cancel := context.WithTimeout(context.Background(), saveBatchTimeout)
	defer cancel()
	rows, err := b.db.QueryContext(ctx, batchSaveSQL, ids, tenants, nows, sources, languages, ifMatch)
	saved := make(map[uuid.UUID]*session.Session, n)
	if err == nil {
		for rows.Next() {
			var s *session.Session
			if s, err = scanSession(rows); err != nil {
				break
			}
			saved[s.ID] = s
		}
		if err == nil {
			err = rows.Err()
		}
		rows.Close()
	}
	err = wrapErr(ctx, err)
	for _, r := range live {
		if err != nil {
			r.done <- saveResult{err: err}
		} else {
			r.done <- saveResult{s: saved[r.id]}
		}
	}
}

// saveBatchTimeout bounds one batch statement; the request timeout of the
// API is far longer.
const saveBatchTimeout = 10 * time.Second

// batchSaveSQL applies the saves given as parallel arrays: ids, tenants,
// times, new source (NULL: unchanged), new language (NULL: unchanged) and
// the If-Match versions as a comma-separated list (NULL: no condition; "":
// matches nothing). A session that is not ACTIVE, not the tenant's, or at
// another version is not updated and not returned.
//
// Each save must be one lookup by primary key, however many sessions there
// are and whatever PostgreSQL's statistics say: the status test is a CASE
// so that it cannot select the partial index of ACTIVE sessions, and the
// pool it runs on (sqlStore.saves) has every other scan and join turned
// off. Written plainly, on a table never analyzed (autovacuum is off on
// some hosts, this one included), the planner took the 1,200 sessions of a
// benchmark for 3 and read all of them for every batch: PostgreSQL spent
// 0.14 ms a save instead of 0.06, and autosaves fell from 5,300 to
// 4,100/s. TestBatchSavePlan checks the plan.
var batchSaveSQL = `UPDATE sessions AS s SET
	version = s.version + 1,
	updated_at = v.now,
	` + touch("touched_at", "v.now") + `,
	source_code = COALESCE(v.source_code, s.source_code),
	language = COALESCE(v.language, s.language)
FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[])
	AS v(id, tenant, now, source_code, language, if_match)
WHERE s.id = v.id AND s.tenant = v.tenant AND CASE WHEN s.status = 'ACTIVE' THEN true END
	AND (v.if_match IS NULL OR s.version = ANY (string_to_array(NULLIF(v.if_match, ''), ',')::bigint[]))
RETURNING ` + prefixed("s.", sessionCols)

// prefixed qualifies each column of a comma-separated list.
func prefixed(prefix, cols string) string {
	parts := strings.Split(cols, ", ")
	for i, c := range parts {
		parts[i] = prefix + c
	}
	return strings.Join(parts, ", ")
}

func ptr[T any](v T) *T { return &v }
