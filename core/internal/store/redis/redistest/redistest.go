// Package redistest gives tests a Redis-backed store.Store on the shared
// test server (127.0.0.1:6379, started by `make test`), in a database of
// the test's own that is flushed before and after.
//
// Each package that runs Redis tests uses its own database numbers, because
// `go test ./...` runs packages in parallel: 0 api provisioning, 2 server
// DTLS, 3 registry, 4 platform provisioning, 5 api, 6 platform, 7-8 server
// end-to-end, 1 and 9-14 store/redis, 15 `make bench`; none is free.
package redistest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/store/redis"
)

// Addr is the shared test server.
const Addr = "127.0.0.1:6379"

// Spec flushes database db now and when t ends, and returns its store spec
// ("redis://127.0.0.1:6379/db").
func Spec(t testing.TB, db int) string {
	t.Helper()
	raw := goredis.NewClient(&goredis.Options{Addr: Addr, DB: db})
	if err := raw.FlushDB(context.Background()).Err(); err != nil {
		raw.Close()
		t.Fatalf("redis on %s (run make test, which starts it): %v", Addr, err)
	}
	t.Cleanup(func() {
		_ = raw.FlushDB(context.Background()).Err()
		_ = raw.Close()
	})
	return fmt.Sprintf("redis://%s/%d", Addr, db)
}

// Open returns a store on database db, flushed before and after t.
func Open(t testing.TB, db int, opts ...redis.Option) store.Store {
	t.Helper()
	spec := Spec(t, db)
	st, err := redis.Open(spec, opts...)
	if err != nil {
		t.Fatal(err)
	}
	// registered after Spec's cleanup, so it runs first: close, then flush
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// UsedCPU is the CPU time the Redis server of c has used so far (INFO cpu),
// for benchmarks to report Redis's share of the work.
func UsedCPU(tb testing.TB, c *goredis.Client) time.Duration {
	tb.Helper()
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var total float64
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatalf("INFO cpu: %s: %v", line, err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}
