package server

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/lwm2md/lwm2md/core/internal/operation"
	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/registry"
)

func TestRestartKeepsState(t *testing.T) { runRestart(t, boltSpec(t)) }

func TestRestartKeepsStateRedisIntegration(t *testing.T) { runRestart(t, redisSpec(t, 8)) }

// runRestart checks that devices, registrations, observations and pending
// operations survive a server restart on the same store.
func runRestart(t *testing.T, spec string) {
	addr := freeUDPPort(t)
	ts := startServer(t, spec, addr)
	id := ts.registerDevice(t, "restart-1")
	offlineID := ts.registerDevice(t, "restart-2")
	dev := startDevice(t, "restart-1", addr, false)

	if op := ts.operation(t, id, "observe /3303/0/5700"); op["status"] != "SUCCESSFUL" {
		t.Fatalf("observe: %v", op)
	}
	pending := ts.submit(t, offlineID, "read /3/0/0")
	ts.stop()

	ts2 := startServer(t, spec, addr)
	var reg map[string]any
	if code := ts2.call(t, "GET", "/lwm2m/registrations/restart-1", nil, &reg); code != 200 {
		t.Fatalf("registration lost in restart: %d", code)
	}
	if op := ts2.waitOp(t, pending, "PENDING", "EXECUTING", "SUCCESSFUL", "FAILED"); op["status"] != "PENDING" {
		t.Fatalf("pending operation after restart: %v", op["status"])
	}

	// a notification of the observation made before the restart is accepted
	before := latestTime(t, ts2, id, "/3303/0/5700")
	time.Sleep(1100 * time.Millisecond) // notifications carry second-resolution times in places
	dev.Tick()
	waitFor(t, "notification after restart", func() bool {
		return latestTime(t, ts2, id, "/3303/0/5700") != before
	})
	if dev.ObservationCount() != 1 {
		t.Errorf("device holds %d observations, want 1 (the server must not reset it)", dev.ObservationCount())
	}

	// the queued operation runs when its device registers
	startDevice(t, "restart-2", addr, false)
	if op := ts2.waitOp(t, pending, "SUCCESSFUL", "FAILED"); op["status"] != "SUCCESSFUL" {
		t.Fatalf("queued operation after restart: %v", op)
	}
}

func latestTime(t *testing.T, ts *testServer, id, path string) string {
	var mo map[string]any
	ts.call(t, "GET", "/inventory/managedObjects/"+id, nil, &mo)
	latest, _ := mo["lwm2m_LatestValues"].(map[string]any)
	v, _ := latest[path].(map[string]any)
	s, _ := v["time"].(string)
	return s
}

func TestQueueModeOperationWaitsForUpdate(t *testing.T) {
	ts := startServer(t, boltSpec(t), "")
	id := ts.registerDevice(t, "queue-1")
	dev, err := newDevice("queue-1", ts.CoAPAddr(), true, 6*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	// awake window is 2 s; the device updates after ~5 s
	time.Sleep(2500 * time.Millisecond)
	op := ts.submit(t, id, "read /3/0/0")
	time.Sleep(300 * time.Millisecond)
	if got := ts.waitOp(t, op, "PENDING", "EXECUTING", "SUCCESSFUL", "FAILED"); got["status"] != "PENDING" {
		t.Fatalf("asleep device's operation = %v, want PENDING", got["status"])
	}
	if got := ts.waitOp(t, op, "SUCCESSFUL", "FAILED"); got["status"] != "SUCCESSFUL" {
		t.Fatalf("operation after the device's update: %v", got)
	}
}

// TestStoreOfEarlierVersion starts on an embedded store laid out as
// before the bucket renames (the buckets moved back with bbolt itself):
// devices, registrations and the id counter carry over.
func TestStoreOfEarlierVersion(t *testing.T) {
	spec := boltSpec(t)
	addr := freeUDPPort(t)
	ts := startServer(t, spec, addr)
	id := ts.registerDevice(t, "early-1")
	startDevice(t, "early-1", addr, false)
	offline := ts.registerDevice(t, "early-off")
	queued := ts.submit(t, offline, "read /3/0/0") // pending: the device is offline
	ts.stop()

	db, err := bbolt.Open(strings.TrimPrefix(spec, "bolt:"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, r := range slices.Concat(platform.Renamed, registry.Renamed, operation.Renamed) {
			cur := tx.Bucket([]byte(r.To))
			if r.To == "" || cur == nil {
				continue
			}
			old, err := tx.CreateBucket([]byte(r.From))
			if err != nil {
				return err
			}
			err = cur.ForEach(func(k, v []byte) error {
				if r.From == "reg_exp" { // keyed ms/id, without the tenant; the value named the id too
					_, key, _ := strings.Cut(string(k), "/")
					_, id, _ := strings.Cut(key, "/")
					k, v = []byte(key), []byte(id)
				}
				return old.Put(k, v)
			})
			if err != nil {
				return err
			}
			if err := tx.DeleteBucket([]byte(r.To)); err != nil {
				return err
			}
		}
		// and there was a tenant index, keyed tenant/endpoint
		old, err := tx.CreateBucket([]byte("reg_tn"))
		if err != nil {
			return err
		}
		return tx.Bucket([]byte("reg")).ForEach(func(k, v []byte) error {
			var reg struct{ Endpoint, Tenant string }
			if err := json.Unmarshal(v, &reg); err != nil {
				return err
			}
			return old.Put([]byte(reg.Tenant+"/"+reg.Endpoint), k)
		})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	ts2 := startServer(t, spec, addr)
	var reg map[string]any
	if code := ts2.call(t, "GET", "/lwm2m/registrations/early-1", nil, &reg); code != 200 || reg["deviceId"] != id {
		t.Fatalf("registration after the upgrade: %d %v", code, reg)
	}
	var list struct {
		Registrations []map[string]any `json:"registrations"`
	}
	if code := ts2.call(t, "GET", "/lwm2m/registrations", nil, &list); code != 200 || len(list.Registrations) != 1 || list.Registrations[0]["endpoint"] != "early-1" {
		t.Fatalf("registrations listed after the upgrade: %d %v", code, list.Registrations)
	}
	var mo map[string]any
	if code := ts2.call(t, "GET", "/inventory/managedObjects/"+id, nil, &mo); code != 200 {
		t.Fatalf("device after the upgrade: %d", code)
	}
	if c, _ := mo["c8y_Connection"].(map[string]any); c["status"] != "CONNECTED" {
		t.Errorf("c8y_Connection after the upgrade: %v", mo["c8y_Connection"])
	}
	if next := ts2.registerDevice(t, "early-2"); next == id {
		t.Fatalf("a new device got id %s, the id counter restarted (first device %s)", next, id)
	}
	startDevice(t, "early-1", addr, false) // the binding carried over: it may register again

	// the operation indexes carried over: the queued operation is listed
	// and runs when its device comes
	var ops struct {
		Operations []map[string]any `json:"operations"`
	}
	if code := ts2.call(t, "GET", "/devicecontrol/operations?deviceId="+offline, nil, &ops); code != 200 || len(ops.Operations) != 1 || ops.Operations[0]["id"] != queued {
		t.Fatalf("operations of the offline device after the upgrade: %d %v", code, ops.Operations)
	}
	startDevice(t, "early-off", addr, false)
	if got := ts2.waitOp(t, queued, "SUCCESSFUL", "FAILED"); got["status"] != "SUCCESSFUL" {
		t.Fatalf("queued operation after the upgrade: %v", got)
	}
}
