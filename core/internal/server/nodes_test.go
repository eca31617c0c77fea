package server

import (
	"net/http"
	"testing"
)

// TestTwoNodesShareRedisIntegration: two server nodes on one Redis serve
// one fleet's REST API. A device provisioned through one node and
// registered with it is seen connected through the other; an operation
// run by its node, and the value it read, are seen through the other; the
// device's De-register shows on both. (Requests to a device go out from
// the node it talks to: its socket may take datagrams from that address
// only, so operations are posted there.)
func TestTwoNodesShareRedisIntegration(t *testing.T) {
	spec := redisSpec(t, 7)
	a := startServer(t, spec, "")
	b := startServer(t, spec, "")
	id := a.registerDevice(t, "pair-1")
	dev := startDevice(t, "pair-1", a.CoAPAddr(), false)

	if code := b.call(t, "GET", "/lwm2m/registrations/pair-1", nil, nil); code != http.StatusOK {
		t.Fatalf("registration made on one node, through the other: %d", code)
	}
	if got := b.connected(t, id); got != "CONNECTED" {
		t.Fatalf("status through the other node: %s", got)
	}

	op := a.operation(t, id, "read /3/0/0")
	if op["status"] != "SUCCESSFUL" {
		t.Fatalf("operation: %v", op)
	}
	got := b.waitOp(t, op["id"].(string), "SUCCESSFUL")
	if cmd, _ := got["c8y_Command"].(map[string]any); cmd["result"] != op["c8y_Command"].(map[string]any)["result"] || cmd["result"] == nil {
		t.Fatalf("the operation through the other node: %v, through its own: %v", got, op)
	}
	if latestTime(t, b, id, "/3/0/0") == "" {
		t.Error("the value read through one node is missing from the device seen through the other")
	}

	dev.Close() // de-registers
	waitFor(t, "de-registration on both nodes", func() bool {
		return a.call(t, "GET", "/lwm2m/registrations/pair-1", nil, nil) == http.StatusNotFound &&
			b.call(t, "GET", "/lwm2m/registrations/pair-1", nil, nil) == http.StatusNotFound
	})
	if got := b.connected(t, id); got != "DISCONNECTED" {
		t.Errorf("status after the De-register: %s", got)
	}
}
