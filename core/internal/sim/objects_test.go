package sim

import (
	"encoding/xml"
	"strconv"
	"strings"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/ddf"
)

type ddfObject struct {
	ID        uint16 `xml:"Object>ObjectID"`
	Multiple  string `xml:"Object>MultipleInstances"`
	Resources []struct {
		ID       uint16 `xml:"ID,attr"`
		Ops      string `xml:"Operations"`
		Multiple string `xml:"MultipleInstances"`
		Type     string `xml:"Type"`
	} `xml:"Object>Resources>Item"`
}

// TestObjectsMatchDDF checks the simulator's resources against the object
// definitions the server loads (ddf.FS): a type or operation that differs
// would make the server decode the device's TLV wrongly.
func TestObjectsMatchDDF(t *testing.T) {
	for _, o := range objects {
		t.Run(strconv.Itoa(int(o.id)), func(t *testing.T) {
			b, err := ddf.FS.ReadFile(strconv.Itoa(int(o.id)) + ".xml")
			if err != nil {
				t.Fatal(err)
			}
			var def ddfObject
			if err := xml.Unmarshal(b, &def); err != nil {
				t.Fatal(err)
			}
			if def.ID != o.id {
				t.Fatalf("ddf object id %d", def.ID)
			}
			if o.creatable && def.Multiple != "Multiple" {
				t.Errorf("simulator creates instances of a single-instance object")
			}
			byID := map[uint16]int{}
			for i, r := range def.Resources {
				byID[r.ID] = i
			}
			for _, r := range o.res {
				i, found := byID[r.id]
				if !found {
					t.Errorf("resource %d not in the ddf", r.id)
					continue
				}
				dr := def.Resources[i]
				typ, err := lwm2m.ParseType(dr.Type)
				if err != nil {
					t.Fatal(err)
				}
				if typ != r.typ {
					t.Errorf("resource %d: type %v, ddf %v", r.id, r.typ, typ)
				}
				var ops uint8
				for _, c := range strings.TrimSpace(dr.Ops) {
					ops |= map[rune]uint8{'R': opR, 'W': opW, 'E': opE}[c]
				}
				if ops != r.ops {
					t.Errorf("resource %d: ops %b, ddf %q", r.id, r.ops, dr.Ops)
				}
				if (dr.Multiple == "Multiple") != r.multiple {
					t.Errorf("resource %d: multiple %v, ddf %q", r.id, r.multiple, dr.Multiple)
				}
			}
		})
	}
}
