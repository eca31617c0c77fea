package api_test

import (
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/store/redis/redistest"
)

// redisDB is this package's own database on the shared test Redis.
const redisDB = 5

func openRedis(t *testing.T) store.Store { return redistest.Open(t, redisDB) }

func TestAPIRedisIntegration(t *testing.T) { runSuite(t, openRedis) }
