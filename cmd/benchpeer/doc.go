// Package benchpeer is `make bench-peer`: one-time retrieval over real HTTP against a running `gatewayd serve`
// (a child process) on SQLite and on PostgreSQL, beside the memory ceiling (the same bytes served from memory
// by net/http) measured in the same run, at concurrency 1, 8 and 32; each figure is the median of rounds that
// alternate the two (defaultRounds). It is a test (it reuses the test fixtures: software passkeys and a
// software officer signer) that runs only when GATEWAY_BENCH_PEER=1, so it is not part of `make test`.
package benchpeer
