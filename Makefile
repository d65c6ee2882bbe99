# shipbot — `make test` is the one test command (README, .ci/run). On a fresh
# machine with only Go, node, python3 and apt it installs what the tests need
# (tools/deps.sh), then vets, lints and runs every test with the race detector.
GO    ?= go
VENV  ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/shipbot/venv
# moto_server lives in the virtualenv tools/deps.sh makes when the machine has none.
export PATH := $(VENV)/bin:$(PATH)
export SHIPBOT_VENV := $(VENV)

.PHONY: all build test deps vet staticcheck unit bench clean

all: build

build:
	$(GO) build -trimpath -o bin/bot ./cmd/bot

# On a fresh machine the installs (apt, pip: mostly network and disk) run
# while vet and staticcheck compile (CPU), then the tests run once both are
# done. A failed install fails the run after its output is shown.
test:
	@log=$$(mktemp); bash tools/deps.sh >"$$log" 2>&1 & deps=$$!; \
	$(MAKE) --no-print-directory vet staticcheck; checks=$$?; \
	wait $$deps; installed=$$?; cat "$$log"; rm -f "$$log"; \
	if [ $$installed -ne 0 ]; then echo "make test: installing what the tests need failed (above)" >&2; exit $$installed; fi; \
	if [ $$checks -ne 0 ]; then exit $$checks; fi; \
	$(MAKE) --no-print-directory unit

deps:
	@bash tools/deps.sh

# vet and staticcheck build the packages they check as `go test -race`
# will (GOFLAGS=-race), so the tests reuse those compiled packages instead
# of compiling every dependency a second time: about 3 of a fresh machine's
# minutes (README, "Development").
vet:
	GOFLAGS="$(GOFLAGS) -race" $(GO) vet ./...

# staticcheck is pinned in go.mod as a tool directive. The tool itself is
# built without the race detector (it would run several times slower); only
# the packages it loads are built with it.
staticcheck:
	@sc=$$($(GO) tool -n staticcheck) && echo "staticcheck ./..." && GOFLAGS="$(GOFLAGS) -race" $$sc ./...

# -parallel 6: cmd/bot's end-to-end tests mostly wait (bakes, health
# checks, a demo), so more of them at once than the 2 cores shortens the run.
unit:
	$(GO) test -race -count=1 -timeout 10m -parallel 6 ./...

# Benchmarks: Go testing.B plus the load generator under bench/ (see README).
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./webhooks/ ./queue/
	bash bench/intake.sh

clean:
	rm -rf bin
