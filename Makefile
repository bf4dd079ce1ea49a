# The two commands of the README: `make run` and `make test`.
GO        ?= go
BIN       := bin/gatewayd
DATA_DIR  ?= ./var

.PHONY: build run test lint bench bench-peer fuzz clean airgap-test

build:
	$(GO) build -o $(BIN) ./cmd/gatewayd

# Serve on the embedded SQLite database in $(DATA_DIR). On a fresh data directory it first creates the master
# key and runs demo-setup: the synthetic sample bundles of testdata/sample are imported and one invitation link
# per role (requester, officer, staff, admin) is printed, with a sample patient to file a request for.
# Officers may use software passkeys here (--dev-allow-software-keys; every console page says so).
run: build
	@if [ ! -f $(DATA_DIR)/gateway.key ]; then \
		echo "First run: creating the master key $(DATA_DIR)/gateway.key"; \
		./$(BIN) keys init --data-dir $(DATA_DIR) && \
		./$(BIN) demo-setup --data-dir $(DATA_DIR) --samples testdata/sample; \
	fi
	./$(BIN) serve --data-dir $(DATA_DIR) --dev-allow-software-keys

# All tests, with the race detector. PostgreSQL tests run when GATEWAY_TEST_POSTGRES is set (.ci/run sets it).
# Fuzz targets run their seeds and their corpus (<package>/testdata/fuzz/FuzzXxx) as ordinary tests here.
# The timeout is above go test's 10-minute default: the records package alone nears it under -race on a busy
# 2-core machine.
test:
	$(GO) test -race -count=1 -timeout 25m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# The air gap, proven with real connections (root, Linux; CI runs it): network namespaces for the remote
# segment, the DMZ (nginx with deploy/nginx-intake.conf), the gateway host (deploy/nftables.conf loaded by nft),
# the internal segment and the database host (its own PostgreSQL cluster). Prints the reachability matrix.
airgap-test:
	GATEWAY_AIRGAP_TEST=1 $(GO) test -race -count=1 -v -run TestAirGap ./deploy/airgap/

# Benchmarks, each beside its baseline measured in the same run, with the ratios; on SQLite and on the
# machine's PostgreSQL (override GATEWAY_TEST_POSTGRES to use another server).
bench: export GATEWAY_TEST_POSTGRES ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./... | tee bench.out | $(GO) run ./cmd/benchratio
	@# Import memory against the file's size: a 300 MB bundle, Patient last, peak RSS of the child process.
	GATEWAY_IMPORT_TEST_MB=300 $(GO) test -count=1 -v -timeout 20m -run 'TestImportLargeBundleInBoundedMemory' ./cmd/gatewayd | grep -E 'peak RSS|^(ok|FAIL|---)'

# Every Go fuzz target (func FuzzXxx in a _test.go file) runs for FUZZTIME each, one after the other: the
# parsers of outside input (FHIR import, receipts, the officers' register, filings, WebAuthn answers,
# X-Forwarded-For). A crasher is written under the package's testdata/fuzz/FuzzXxx, so make test replays it.
FUZZTIME ?= 2m
fuzz:
	@set -e; for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for name in $$(grep -h '^func Fuzz' $$dir/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "== $$dir $$name ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$dir; \
		done; \
	done

# One-time retrieval over real HTTP against `gatewayd serve` (a child process) on SQLite and PostgreSQL, at
# concurrency 1, 8 and 32, beside the same bytes served from memory by net/http in the same run (the ceiling),
# each figure the median of 7 interleaved rounds (BENCH_PEER_ROUNDS). BENCH_PEER_PROFILE=<dir> keeps each server's
# CPU and allocation profiles; BENCH_PEER_LEVELS, _N (retrievals a round) and _DB narrow the run.
bench-peer: export GATEWAY_TEST_POSTGRES ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable
bench-peer:
	GATEWAY_BENCH_PEER=1 $(GO) test -count=1 -v -timeout 6m -run TestBenchPeer ./cmd/benchpeer

clean:
	rm -rf bin bench.out
