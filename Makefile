# shipbot — `make test` is the one test command (README, .ci/run).
GO        ?= go
STATICCHECK_VERSION := 2026.2.2
GOBIN     := $(shell $(GO) env GOPATH)/bin
STATICCHECK := $(GOBIN)/staticcheck

.PHONY: all build test deps vet staticcheck unit bench clean

all: build

build:
	$(GO) build -trimpath -o bin/bot ./cmd/bot

# test installs (or finds) what the tests need, then vets, lints and runs every
# test with the race detector. Tests start their own redis-server on a free
# port; a missing tool skips a test locally and fails it when CI is set.
test: deps vet staticcheck unit

deps: node_modules/.package-lock.json $(STATICCHECK)
	@command -v redis-server >/dev/null || echo "note: redis-server is not installed (apt-get install redis-server); Redis tests will skip locally and fail in CI"

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

$(STATICCHECK):
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

vet:
	$(GO) vet ./...

staticcheck: $(STATICCHECK)
	$(STATICCHECK) ./...

unit:
	$(GO) test -race -count=1 -timeout 10m ./...

# Benchmarks: Go testing.B plus the load generator under bench/ (see README).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./webhooks/ ./queue/
	bash bench/intake.sh

clean:
	rm -rf bin
