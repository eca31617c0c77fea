#!/usr/bin/env bash
# Prints the benchmark figures the issues name. Each comparison runs its
# baseline in the same run (the machines are shared and noisy), so read
# ratios before absolute numbers. Set QUICK=1 for a smaller, faster pass.
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/lwm2m-echo ./core/cmd/lwm2m-echo
go build -o bin/lwm2m-bench ./core/cmd/lwm2m-bench

devices=10000 memdevices=100000 bulk=1x
if [ "${QUICK:-}" = 1 ]; then devices=2000 memdevices=20000; fi

section() { printf '\n=== %s\n' "$1"; }

section "CoAP transport: 64 busy peers, stock go-coap UDP server vs ours (req/s and CheckExpirations share of CPU)"
go test -run '^$' -bench 'BenchmarkServe64Peers' -benchtime=200000x ./core/internal/transport/ | grep -E '^Benchmark|ok'

section "Registrations/s: simulator vs bare go-coap server, lwm2md on bolt, lwm2md on Redis (same run)"
bin/lwm2m-bench registrations -devices "$devices" 2>/dev/null

section "Memory per idle registered device"
bin/lwm2m-bench memory -devices "$memdevices" 2>/dev/null

section "DTLS-PSK: full handshakes/s against the server vs a bare pion/dtls loop (same run), memory per session"
go test -run '^$' -bench 'BenchmarkDTLSHandshake|BenchmarkDTLSSessionMemory' -benchtime=5000x ./core/internal/transport/ | grep -E '^Benchmark|ok'

section "Store commits (3 writes + 1 read per transaction, parallel)"
go test -run '^$' -bench 'BenchmarkUpdateParallel' ./core/internal/store/bolt/ ./core/internal/store/redis/ | grep -E '^Benchmark|ok'

section "Bulk CSV import of 100,000 PSK rows (time and peak heap)"
go test -run '^$' -bench 'BenchmarkBulkImport100k' -benchtime="$bulk" ./core/internal/platform/ | grep -E '^Benchmark|ok'

section "Content formats"
go test -run '^$' -bench . -benchmem ./core/internal/codec/ | grep -E '^Benchmark|ok'
