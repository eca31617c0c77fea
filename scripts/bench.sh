#!/usr/bin/env bash
# Prints the benchmark figures the issues name. Each comparison runs its
# baseline in the same run (the machines are shared and noisy), so read
# ratios before absolute numbers. Set QUICK=1 for a smaller, faster pass.
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/lwm2m-echo ./core/cmd/lwm2m-echo
go build -o bin/lwm2m-bench ./core/cmd/lwm2m-bench

devices=10000 memdevices=100000 bulk=1x rounds=5
if [ "${QUICK:-}" = 1 ]; then devices=2000 memdevices=20000 rounds=1; fi

section() { printf '\n=== %s\n' "$1"; }

# bench runs go test benchmarks and prints their figures and any failure;
# a failed section is reported and the others still run.
failed=0
bench() {
  if ! go test -run '^$' "$@" > /tmp/lwm2md-bench.$$ 2>&1; then
    failed=1
  fi
  grep -E '^Benchmark|^ok|FAIL|^\s+\S+\.go:[0-9]+' /tmp/lwm2md-bench.$$ || true
  rm -f /tmp/lwm2md-bench.$$
}

section "CoAP transport: 64 busy peers, stock go-coap UDP server vs ours (req/s and CheckExpirations share of CPU)"
bench -bench 'BenchmarkServe64Peers' -benchtime=200000x ./core/internal/transport/

section "Registrations/s: simulator vs bare go-coap server, lwm2md on bolt, lwm2md on Redis (same run, $rounds rounds in turn)"
bin/lwm2m-bench registrations -devices "$devices" -rounds "$rounds" -offered 0 2>/dev/null
section "Registrations/s with 256 Registers in flight (the servers are CPU-bound, not latency-bound)"
bin/lwm2m-bench registrations -devices "$devices" -in-flight 256 -offered 0 2>/dev/null
section "Sustained: $((devices * 3)) devices registering at an offered 10,000/s over 3 s (open loop, after a closed-loop warm-up)"
bin/lwm2m-bench registrations -devices "$((devices * 3))" -offered 10000 2>/dev/null | sed -n '/^Latency at/,$p'

section "Updates of live registrations/s: bolt, Redis, Redis without the node's cache (1,000 devices, 32 in flight; client and server in one process)"
bench -bench 'BenchmarkUpdate$' -benchtime=20000x -count=3 ./core/internal/registry/

section "Reads: an expiry sweep with nothing due on Redis (1,000 tenants of 100 registrations), a tenant's 10,000 registrations, a page of 1,000 devices"
bench -bench 'BenchmarkExpirySweep|BenchmarkList$' -benchtime=20x ./core/internal/registry/
bench -bench 'BenchmarkListManagedObjects' -benchtime=20x ./core/internal/platform/

section "Memory per idle registered device"
bin/lwm2m-bench memory -devices "$memdevices" 2>/dev/null

section "DTLS-PSK: full handshakes/s against the server vs a bare pion/dtls loop (same run), memory per session"
bench -bench 'BenchmarkDTLSHandshake|BenchmarkDTLSSessionMemory' -benchtime=5000x ./core/internal/transport/

section "Store commits (3 writes + 1 read per transaction, parallel)"
bench -bench 'BenchmarkUpdateParallel' ./core/internal/store/bolt/ ./core/internal/store/redis/

section "Bulk CSV import of 100,000 PSK rows (time and peak heap)"
bench -bench 'BenchmarkBulkImport100k' -benchtime="$bulk" ./core/internal/platform/

section "Content formats"
bench -bench . -benchmem ./core/internal/codec/

if [ "$failed" = 1 ]; then
  echo "some benchmarks failed (see FAIL above)" >&2
  exit 1
fi
