# The two commands of the README.
.PHONY: serve test bench

# Start runbox on the embedded SQLite default (sandbox needs root).
serve:
	go run ./cmd/runbox serve

# Every test, with the race detector. The sandbox and end-to-end suites need
# root; the PostgreSQL suites need the server of RUNBOX_TEST_DATABASE_URL
# (default: postgres://root@127.0.0.1:5432/test).
test:
	go vet ./...
	go test -race -count=1 -timeout 14m ./...
