# Shortcuts for the README's commands.
.PHONY: serve test bench

serve:
	go run ./cmd/runbox serve

test:
	go vet ./...
	go test -race -count=1 ./...

# The benchmark (root; SQLite and, when reachable, PostgreSQL; ~6 min):
# the table on stdout and, with every figure in JSON, under bench/results/.
BENCH_OUT := bench/results/bench-$(shell date -u +%Y%m%d-%H%M)
bench:
	mkdir -p bench/results
	go run ./cmd/runbox-bench -json $(BENCH_OUT).json | tee $(BENCH_OUT).txt
