package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/sim"
	"github.com/lwm2md/lwm2md/core/internal/store/redis/redistest"
)

const adminPass = "Admin-Pass-123"

// testServer is a running lwm2md on loopback ports.
type testServer struct {
	*Server
	cancel context.CancelFunc
	done   chan error
}

func startServer(t *testing.T, spec, coapAddr string) *testServer {
	t.Helper()
	if coapAddr == "" {
		coapAddr = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Open(ctx, Config{
		HTTPAddr: "127.0.0.1:0", CoAPAddr: coapAddr, Store: spec,
		AdminPassword: adminPass, RequestTimeout: 3 * time.Second, AwakeTime: 2 * time.Second,
		ExpiryGrace: 500 * time.Millisecond, ExpiryInterval: 100 * time.Millisecond,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		PlatformOptions: platform.Options{BcryptCost: 4},
	})
	if err != nil {
		cancel()
		t.Fatalf("open server: %v", err)
	}
	ts := &testServer{Server: s, cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.Run(ctx) }()
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) stop() {
	if ts.cancel == nil {
		return
	}
	ts.cancel()
	<-ts.done
	ts.Close()
	ts.cancel = nil
}

// call does one REST request as management/admin and decodes the answer.
func (ts *testServer) call(t *testing.T, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+ts.HTTPAddr()+path, rd)
	req.SetBasicAuth("management/admin", adminPass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
	return resp.StatusCode
}

func (ts *testServer) registerDevice(t *testing.T, ep string) string {
	t.Helper()
	var mo map[string]any
	if code := ts.call(t, "POST", "/service/lwm2m-agent/deviceRegistration",
		map[string]string{"endpoint": ep, "securityMode": "NO_SEC", "name": ep}, &mo); code != http.StatusCreated {
		t.Fatalf("deviceRegistration: %d %v", code, mo)
	}
	return mo["id"].(string)
}

// operation posts a shell command and waits for it to finish.
func (ts *testServer) operation(t *testing.T, deviceID, text string) map[string]any {
	t.Helper()
	id := ts.submit(t, deviceID, text)
	return ts.waitOp(t, id, "SUCCESSFUL", "FAILED")
}

func (ts *testServer) submit(t *testing.T, deviceID, text string) string {
	t.Helper()
	var op map[string]any
	if code := ts.call(t, "POST", "/devicecontrol/operations",
		map[string]any{"deviceId": deviceID, "c8y_Command": map[string]string{"text": text}}, &op); code != http.StatusCreated {
		t.Fatalf("post operation %q: %d %v", text, code, op)
	}
	return op["id"].(string)
}

func (ts *testServer) waitOp(t *testing.T, id string, states ...string) map[string]any {
	t.Helper()
	var op map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ts.call(t, "GET", "/devicecontrol/operations/"+id, nil, &op)
		for _, s := range states {
			if op["status"] == s {
				return op
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("operation %s stayed %v, want %v", id, op["status"], states)
	return nil
}

func startDevice(t *testing.T, ep, server string, queue bool) *sim.Device {
	t.Helper()
	d, err := newDevice(ep, server, queue, 20*time.Second)
	if err != nil {
		t.Fatalf("device %s register: %v", ep, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func newDevice(ep, server string, queue bool, lifetime time.Duration) (*sim.Device, error) {
	d, err := sim.NewDevice(sim.DeviceConfig{Endpoint: ep, Server: "coap://" + server, Version: "1.1", Lifetime: lifetime, QueueMode: queue})
	if err != nil {
		return nil, err
	}
	if err := d.Start(context.Background()); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func boltSpec(t *testing.T) string { return "bolt:" + filepath.Join(t.TempDir(), "lwm2md.db") }

// redisSpec returns a spec for this test's own database, flushed before
// and after.
func redisSpec(t *testing.T, db int) string { return redistest.Spec(t, db) }

func freeUDPPort(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	return addr
}

func TestShellCommands(t *testing.T) {
	runShellCommands(t, boltSpec(t))
}

func TestShellCommandsRedisIntegration(t *testing.T) {
	runShellCommands(t, redisSpec(t, 7))
}

func runShellCommands(t *testing.T, spec string) {
	ts := startServer(t, spec, "")
	id := ts.registerDevice(t, "shell-1")
	dev := startDevice(t, "shell-1", ts.CoAPAddr(), false)

	var reg map[string]any
	if code := ts.call(t, "GET", "/lwm2m/registrations/shell-1", nil, &reg); code != 200 {
		t.Fatalf("registration not visible: %d %v", code, reg)
	}
	if reg["lwm2mVersion"] != "1.1" || reg["registrationId"] == "" {
		t.Fatalf("registration = %v", reg)
	}

	tests := []struct {
		cmd    string
		result string // substring of c8y_Command.result; "" = any
		fail   string // substring of failureReason when it must fail
	}{
		{cmd: "read /3/0/0", result: "lwm2md"},
		{cmd: "read /3/0", result: "/3/0/0="},
		{cmd: "write /3/0/14 +02:00", result: "written"},
		{cmd: "read /3/0/14", result: "+02:00"},
		{cmd: "execute /3/0/4", result: "executed"},
		{cmd: `create /3303 {"5700": 42.5}`, result: "created /3303/"},
		{cmd: "discover /3303", result: "</3303/0>"},
		{cmd: "writeattr /3303/0/5700 pmin=1&pmax=5", result: "attributes written"},
		{cmd: "observe /3303/0/5700"},
		{cmd: "cancelobservation /3303/0/5700", result: "cancelled"},
		{cmd: "delete /3303/1", result: "deleted"},
		{cmd: "read /3303/1", fail: "4.04"},
		{cmd: "read /4242/0/0", fail: "4.04"},
	}
	for _, tc := range tests {
		t.Run(tc.cmd, func(t *testing.T) {
			op := ts.operation(t, id, tc.cmd)
			cmd, _ := op["c8y_Command"].(map[string]any)
			if tc.fail != "" {
				if op["status"] != "FAILED" || !strings.Contains(fmt.Sprint(op["failureReason"]), tc.fail) {
					t.Fatalf("want FAILED with %q, got %v", tc.fail, op)
				}
				return
			}
			if op["status"] != "SUCCESSFUL" {
				t.Fatalf("status %v: %v", op["status"], op["failureReason"])
			}
			if !strings.Contains(fmt.Sprint(cmd["result"]), tc.result) {
				t.Fatalf("result %q does not contain %q", cmd["result"], tc.result)
			}
		})
	}
	if dev.Reboots() != 1 {
		t.Errorf("device saw %d reboots, want 1", dev.Reboots())
	}

	// the device's failed operations, newest first, a page at a time
	var list struct {
		Operations []map[string]any `json:"operations"`
		Statistics map[string]any   `json:"statistics"`
	}
	if code := ts.call(t, "GET", "/devicecontrol/operations?deviceId="+id+"&status=FAILED&pageSize=1&withTotalPages=true", nil, &list); code != 200 ||
		len(list.Operations) != 1 || list.Statistics["totalPages"] != float64(2) {
		t.Fatalf("list of failed operations: %d %+v", code, list)
	}
	if cmd, _ := list.Operations[0]["c8y_Command"].(map[string]any); cmd["text"] != "read /4242/0/0" {
		t.Errorf("newest failed operation: %v", list.Operations[0])
	}

	// values read and observed reach the managed object
	var mo map[string]any
	ts.call(t, "GET", "/inventory/managedObjects/"+id, nil, &mo)
	latest, _ := mo["lwm2m_LatestValues"].(map[string]any)
	if _, ok := latest["/3/0/0"]; !ok {
		t.Errorf("latest values lack /3/0/0: %v", mo["lwm2m_LatestValues"])
	}
	if conn, _ := mo["c8y_Connection"].(map[string]any); conn["status"] != "CONNECTED" {
		t.Errorf("c8y_Connection = %v", mo["c8y_Connection"])
	}
	// a page of devices reads their status and values together
	offline := ts.registerDevice(t, "shell-off")
	var page struct {
		ManagedObjects []map[string]any `json:"managedObjects"`
	}
	ts.call(t, "GET", "/inventory/managedObjects?type=c8y_lwm2m&pageSize=100", nil, &page)
	statuses := map[string]any{}
	for _, o := range page.ManagedObjects {
		conn, _ := o["c8y_Connection"].(map[string]any)
		statuses[o["id"].(string)] = conn["status"]
		if _, ok := o["lwm2m_LatestValues"]; o["id"] == id && !ok {
			t.Errorf("listed device lacks its latest values: %v", o)
		}
	}
	if statuses[id] != "CONNECTED" || statuses[offline] != "DISCONNECTED" {
		t.Errorf("statuses in the device list: %v; want %s CONNECTED, %s DISCONNECTED", statuses, id, offline)
	}

	// an unregistered endpoint is refused and nothing is stored
	if _, err := func() (*sim.Device, error) {
		d, err := sim.NewDevice(sim.DeviceConfig{Endpoint: "stranger", Server: "coap://" + ts.CoAPAddr(), RequestTimeout: 2 * time.Second})
		if err != nil {
			return nil, err
		}
		defer d.Close()
		return d, d.Start(context.Background())
	}(); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("stranger register: err = %v, want 4.03 Forbidden", err)
	}
	if code := ts.call(t, "GET", "/lwm2m/registrations/stranger", nil, nil); code != 404 {
		t.Errorf("stranger registration: %d, want 404", code)
	}

	// an operation for a device that is offline stays PENDING until it registers
	dev.Close()
	waitFor(t, "de-registration", func() bool { return ts.call(t, "GET", "/lwm2m/registrations/shell-1", nil, nil) == 404 })
	opID := ts.submit(t, id, "read /3/0/1")
	time.Sleep(200 * time.Millisecond)
	if op := ts.waitOp(t, opID, "PENDING", "EXECUTING", "SUCCESSFUL", "FAILED"); op["status"] != "PENDING" {
		t.Fatalf("offline device's operation = %v, want PENDING", op["status"])
	}
	startDevice(t, "shell-1", ts.CoAPAddr(), false)
	if op := ts.waitOp(t, opID, "SUCCESSFUL", "FAILED"); op["status"] != "SUCCESSFUL" {
		t.Fatalf("queued operation after register: %v", op)
	}
}
