package platform

import (
	"github.com/lwm2md/lwm2md/core/internal/jsonrec"
	"github.com/lwm2md/lwm2md/core/internal/store"
)

// getBinding reads endpoint's binding; the error wraps store.ErrNotFound
// when there is none. Every Register reads one, and encoding/json took
// about 2 µs of the server's CPU for it, a twentieth of a Register, so
// bindings as putJSON writes them are read by hand (parseBinding) and
// anything else by encoding/json.
func getBinding(tx store.Tx, endpoint string, b *binding) error {
	data, err := tx.Get(bucketEndpoint, endpoint)
	if err != nil {
		return err
	}
	if parseBinding(data, b) {
		return nil
	}
	*b = binding{}
	return unmarshal(bucketEndpoint, endpoint, data, b)
}

// parseBinding reads a binding in the one form json.Marshal gives it (see
// jsonrec) and reports false for anything else, leaving b in any state.
// FuzzParseBinding checks that what it accepts, encoding/json reads the
// same.
func parseBinding(data []byte, b *binding) bool {
	p := jsonrec.NewReader(data)
	var ok bool
	if !p.Lit(`{"tenant":`) {
		return false
	}
	if b.Tenant, ok = p.Str(); !ok || !p.Lit(`,"deviceId":`) {
		return false
	}
	if b.DeviceID, ok = p.Str(); !ok {
		return false
	}
	b.Ref = nil
	if p.Lit(`}`) {
		return p.Done()
	}
	ref := new(endpointRef)
	if !p.Lit(`,"ref":{"sm":`) {
		return false
	}
	if ref.SecurityMode, ok = p.Str(); !ok {
		return false
	}
	if p.Lit(`,"psk":`) {
		if ref.PSKIdentity, ok = p.Str(); !ok {
			return false
		}
	}
	if p.Lit(`,"at":`) {
		n, ok := p.Int()
		if !ok {
			return false
		}
		ref.AwakeMs = &n
	}
	b.Ref = ref
	return p.Lit(`}}`) && p.Done()
}
