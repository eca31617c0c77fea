package platform_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/registry"
	"github.com/lwm2md/lwm2md/core/internal/store"
)

// TestLookupEndpoint checks what the registry learns about an endpoint:
// tenant, device, security mode with the server PSK identity, and the
// operator's awake time as set on the managed object.
func TestLookupEndpoint(t *testing.T) {
	ctx := context.Background()
	st := openBolt(t)
	p := newPlatform(st)
	nosec, err := p.RegisterDevice(ctx, "t1", platform.DeviceRequest{Endpoint: "dir-nosec"})
	if err != nil {
		t.Fatal(err)
	}
	psk, err := p.RegisterDevice(ctx, "t1", platform.DeviceRequest{Endpoint: "dir-psk", SecurityMode: "PSK", Fields: map[string]json.RawMessage{
		"lwm2m psk_id": json.RawMessage(`"dir-psk-id"`), "lwm2m psk_key": json.RawMessage(`"00112233445566778899aabbccddeeff"`),
		"bootstrap psk_id": json.RawMessage(`"dir-psk-bs"`), "bootstrap psk_key": json.RawMessage(`"ffeeddccbbaa99887766554433221100"`),
		"lwm2m server uri": json.RawMessage(`"coaps://127.0.0.1:5784"`),
	}})
	if err != nil {
		t.Fatal(err)
	}

	ref, err := p.DeviceOf(ctx, "dir-nosec")
	if err != nil {
		t.Fatal(err)
	}
	if ref.Tenant != "t1" || ref.DeviceID != nosec.ID || ref.SecurityMode != registry.SecurityNoSec || ref.PSKIdentity != "" || ref.AwakeTime != nil {
		t.Errorf("NO_SEC device: %+v", ref)
	}
	ref, err = p.DeviceOf(ctx, "dir-psk")
	if err != nil {
		t.Fatal(err)
	}
	if ref.DeviceID != psk.ID || ref.SecurityMode != registry.SecurityPSK || ref.PSKIdentity != "dir-psk-id" {
		t.Errorf("PSK device: %+v", ref)
	}

	// awakeTimeRegistrationParameter (milliseconds) set through the inventory
	if _, err := p.UpdateManagedObject(ctx, "t1", nosec.ID, map[string]json.RawMessage{
		"awakeTimeRegistrationParameter": json.RawMessage(`15000`)}); err != nil {
		t.Fatal(err)
	}
	if ref, err = p.DeviceOf(ctx, "dir-nosec"); err != nil || ref.AwakeTime == nil || *ref.AwakeTime != 15*time.Second {
		t.Errorf("awake time after inventory update: %+v %v", ref, err)
	}

	// bootstrap parameters turn the device into a PSK device
	if _, err := p.SetBootstrapParameters(ctx, "t1", nosec.ID, map[string]json.RawMessage{
		"securityMode": json.RawMessage(`"PSK"`), "lwm2m psk_id": json.RawMessage(`"dir-now-psk"`),
		"lwm2m psk_key": json.RawMessage(`"00112233445566778899aabbccddeeff"`), "bootstrap psk_id": json.RawMessage(`"dir-now-psk-bs"`),
		"bootstrap psk_key": json.RawMessage(`"ffeeddccbbaa99887766554433221100"`)}); err != nil {
		t.Fatal(err)
	}
	if ref, err = p.DeviceOf(ctx, "dir-nosec"); err != nil || ref.SecurityMode != registry.SecurityPSK || ref.PSKIdentity != "dir-now-psk" ||
		ref.AwakeTime == nil || *ref.AwakeTime != 15*time.Second {
		t.Errorf("after bootstrap parameters: %+v %v", ref, err)
	}

	// a binding written before bindings carried the device's settings
	if err := st.Update(ctx, func(tx store.Tx) error {
		return tx.Put(store.UnorderedPrefix+"platform_endpoint", "dir-psk", []byte(`{"tenant":"t1","deviceId":"`+psk.ID+`"}`))
	}); err != nil {
		t.Fatal(err)
	}
	if ref, err = p.DeviceOf(ctx, "dir-psk"); err != nil || ref.SecurityMode != registry.SecurityPSK || ref.PSKIdentity != "dir-psk-id" {
		t.Errorf("PSK device with an old binding: %+v %v", ref, err)
	}

	if _, err := p.DeviceOf(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown endpoint: %v, want store.ErrNotFound", err)
	}
}
