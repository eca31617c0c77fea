package sim

import (
	"strconv"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/model"
)

// TestObjectsMatchModel checks the simulator's resources against the object
// model the server loads (ddf.FS, 33000.xml included): a type or operation
// that differs would make the server decode the device's TLV wrongly or
// send requests the device refuses.
func TestObjectsMatchModel(t *testing.T) {
	reg, err := model.Builtin()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objects {
		t.Run(strconv.Itoa(int(o.id)), func(t *testing.T) {
			def, found := reg.Object(o.id)
			if !found {
				t.Fatalf("object %d is not in the server's model", o.id)
			}
			if o.creatable && !def.Multiple {
				t.Errorf("simulator creates instances of a single-instance object")
			}
			for _, r := range o.res {
				dr, found := def.Resources[r.id]
				if !found {
					t.Errorf("resource %d is not in the model", r.id)
					continue
				}
				if dr.Type != r.typ {
					t.Errorf("resource %d: type %v, model %v", r.id, r.typ, dr.Type)
				}
				var ops uint8
				for _, c := range dr.Operations {
					ops |= map[rune]uint8{'R': opR, 'W': opW, 'E': opE}[c]
				}
				if ops != r.ops {
					t.Errorf("resource %d: operations %b, model %q", r.id, r.ops, dr.Operations)
				}
				if dr.Multiple != r.multiple {
					t.Errorf("resource %d: multiple %v, model %v", r.id, r.multiple, dr.Multiple)
				}
			}
		})
	}
}
