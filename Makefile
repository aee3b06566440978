# Shortcuts for the README's commands.
.PHONY: serve test bench

serve:
	go run ./cmd/runbox serve

test:
	go vet ./...
	go test -race -count=1 ./...

bench:
	go run ./cmd/runbox-bench
