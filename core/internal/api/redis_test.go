package api_test

import (
	"context"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/store/redis"
)

// redisDB is this package's own database on the shared test Redis.
const redisDB = 5

func openRedis(t *testing.T) store.Store {
	t.Helper()
	ctx := context.Background()
	raw := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379", DB: redisDB})
	if err := raw.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("redis on 127.0.0.1:6379 (run make test, which starts it): %v", err)
	}
	st, err := redis.Open("redis://127.0.0.1:6379/5")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = st.Close()
		_ = raw.FlushDB(ctx).Err()
		_ = raw.Close()
	})
	return st
}

func TestAPIRedisIntegration(t *testing.T) { runSuite(t, openRedis) }
