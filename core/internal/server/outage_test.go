package server

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/sim"
)

// TestStoreOutageIntegration stops the Redis server under a running lwm2md:
// REST answers 503 and a Register 5.00, nothing is half-written, and both
// work again once Redis is back.
func TestStoreOutageIntegration(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed (make test installs it)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	var cmd *exec.Cmd
	startRedis := func() {
		// appendonly, so what was committed before the outage survives it
		cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "yes", "--dir", dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 100; i++ {
			if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
				c.Close()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal("private redis-server did not start")
	}
	stopRedis := func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	startRedis()
	t.Cleanup(stopRedis)

	ts := startServer(t, fmt.Sprintf("redis://127.0.0.1:%d/0", port), "")
	ts.registerDevice(t, "outage-1")
	ts.registerDevice(t, "outage-2")

	stopRedis()
	if code := ts.call(t, "GET", "/inventory/managedObjects?pageSize=10", nil, nil); code != 503 {
		t.Errorf("REST with the store down: %d, want 503", code)
	}
	var body map[string]any
	if code := ts.call(t, "POST", "/service/lwm2m-agent/deviceRegistration",
		map[string]string{"endpoint": "outage-3", "securityMode": "NO_SEC"}, &body); code != 503 || body["error"] == nil {
		t.Errorf("device registration with the store down: %d %v, want 503 with a JSON error", code, body)
	}
	d, err := sim.NewDevice(sim.DeviceConfig{Endpoint: "outage-1", Server: "coap://" + ts.CoAPAddr(), RequestTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "InternalServerError") {
		t.Errorf("register with the store down: %v, want 5.00 Internal Server Error", err)
	}

	startRedis()
	if err := d.Start(context.Background()); err != nil {
		t.Fatalf("register after the store came back: %v", err)
	}
	if code := ts.call(t, "GET", "/lwm2m/registrations/outage-1", nil, nil); code != 200 {
		t.Errorf("registration after recovery: %d", code)
	}
	var page map[string]any
	ts.call(t, "GET", "/inventory/managedObjects?pageSize=10&withTotalPages=true", nil, &page)
	if mos, _ := page["managedObjects"].([]any); len(mos) != 2 {
		t.Errorf("after the outage %d managed objects, want the 2 made before it (nothing half-written)", len(mos))
	}
}
