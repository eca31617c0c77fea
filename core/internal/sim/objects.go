package sim

import (
	"sort"

	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// Operations a resource allows, as in the DDF "Operations" element.
const (
	opR uint8 = 1 << iota
	opW
	opE
)

// resDef is the simulator's view of one resource definition: just what it
// needs to answer requests (type for untyped payloads, allowed operations).
type resDef struct {
	id       uint16
	typ      lwm2m.Type
	ops      uint8
	multiple bool
}

// objDef is one object the simulated device implements. ver10/ver11 are the
// object versions advertised by 1.0 and 1.1 clients ("" = 1.0, no ver
// attribute). creatable objects accept Create and Delete of instances.
type objDef struct {
	id           uint16
	ver10, ver11 string
	creatable    bool
	res          []resDef // sorted by id
}

// BinaryObjectID is the custom object of the simulator: an OPAQUE resource
// whose bytes change with every value change (ddf/33000.xml). 33000 lies in
// the range OMNA leaves for private objects that are never registered.
const BinaryObjectID = 33000

// objects are the definitions of every object the simulator implements,
// sorted by id. The resources are a subset of the OMA definitions: the ones
// a typical constrained device carries.
var objects = []*objDef{
	{id: 1, ver11: "1.1", res: []resDef{
		{id: 0, typ: lwm2m.TypeInteger, ops: opR},       // Short Server ID
		{id: 1, typ: lwm2m.TypeInteger, ops: opR | opW}, // Lifetime
		{id: 2, typ: lwm2m.TypeInteger, ops: opR | opW}, // Default Minimum Period
		{id: 3, typ: lwm2m.TypeInteger, ops: opR | opW}, // Default Maximum Period
		{id: 4, ops: opE}, // Disable
		{id: 5, typ: lwm2m.TypeInteger, ops: opR | opW}, // Disable Timeout
		{id: 6, typ: lwm2m.TypeBoolean, ops: opR | opW}, // Notification Storing
		{id: 7, typ: lwm2m.TypeString, ops: opR | opW},  // Binding
		{id: 8, ops: opE}, // Registration Update Trigger
	}},
	{id: 3, ver11: "1.1", res: []resDef{
		{id: 0, typ: lwm2m.TypeString, ops: opR},                   // Manufacturer
		{id: 1, typ: lwm2m.TypeString, ops: opR},                   // Model Number
		{id: 2, typ: lwm2m.TypeString, ops: opR},                   // Serial Number
		{id: 3, typ: lwm2m.TypeString, ops: opR},                   // Firmware Version
		{id: 4, ops: opE},                                          // Reboot
		{id: 5, ops: opE},                                          // Factory Reset
		{id: 6, typ: lwm2m.TypeInteger, ops: opR, multiple: true},  // Available Power Sources
		{id: 7, typ: lwm2m.TypeInteger, ops: opR, multiple: true},  // Power Source Voltage
		{id: 9, typ: lwm2m.TypeInteger, ops: opR},                  // Battery Level
		{id: 10, typ: lwm2m.TypeInteger, ops: opR},                 // Memory Free
		{id: 11, typ: lwm2m.TypeInteger, ops: opR, multiple: true}, // Error Code
		{id: 12, ops: opE},                                         // Reset Error Code
		{id: 13, typ: lwm2m.TypeTime, ops: opR | opW},              // Current Time
		{id: 14, typ: lwm2m.TypeString, ops: opR | opW},            // UTC Offset
		{id: 15, typ: lwm2m.TypeString, ops: opR | opW},            // Timezone
		{id: 16, typ: lwm2m.TypeString, ops: opR},                  // Supported Binding and Modes
		{id: 17, typ: lwm2m.TypeString, ops: opR},                  // Device Type
		{id: 18, typ: lwm2m.TypeString, ops: opR},                  // Hardware Version
		{id: 19, typ: lwm2m.TypeString, ops: opR},                  // Software Version
		{id: 20, typ: lwm2m.TypeInteger, ops: opR},                 // Battery Status
		{id: 21, typ: lwm2m.TypeInteger, ops: opR},                 // Memory Total
	}},
	{id: 4, ver11: "1.1", res: []resDef{
		{id: 0, typ: lwm2m.TypeInteger, ops: opR},                 // Network Bearer
		{id: 1, typ: lwm2m.TypeInteger, ops: opR, multiple: true}, // Available Network Bearer
		{id: 2, typ: lwm2m.TypeInteger, ops: opR},                 // Radio Signal Strength
		{id: 3, typ: lwm2m.TypeInteger, ops: opR},                 // Link Quality
		{id: 4, typ: lwm2m.TypeString, ops: opR, multiple: true},  // IP Addresses
		{id: 7, typ: lwm2m.TypeString, ops: opR, multiple: true},  // APN
		{id: 8, typ: lwm2m.TypeInteger, ops: opR},                 // Cell ID
		{id: 9, typ: lwm2m.TypeInteger, ops: opR},                 // SMNC
		{id: 10, typ: lwm2m.TypeInteger, ops: opR},                // SMCC
	}},
	{id: 5, ver11: "1.1", res: []resDef{
		{id: 0, typ: lwm2m.TypeOpaque, ops: opW},       // Package
		{id: 1, typ: lwm2m.TypeString, ops: opR | opW}, // Package URI
		{id: 2, ops: opE},                                         // Update
		{id: 3, typ: lwm2m.TypeInteger, ops: opR},                 // State
		{id: 5, typ: lwm2m.TypeInteger, ops: opR},                 // Update Result
		{id: 6, typ: lwm2m.TypeString, ops: opR},                  // PkgName
		{id: 7, typ: lwm2m.TypeString, ops: opR},                  // PkgVersion
		{id: 8, typ: lwm2m.TypeInteger, ops: opR, multiple: true}, // Firmware Update Protocol Support
		{id: 9, typ: lwm2m.TypeInteger, ops: opR},                 // Firmware Update Delivery Method
	}},
	{id: 6, res: []resDef{
		{id: 0, typ: lwm2m.TypeFloat, ops: opR}, // Latitude
		{id: 1, typ: lwm2m.TypeFloat, ops: opR}, // Longitude
		{id: 2, typ: lwm2m.TypeFloat, ops: opR}, // Altitude
		{id: 3, typ: lwm2m.TypeFloat, ops: opR}, // Radius
		{id: 5, typ: lwm2m.TypeTime, ops: opR},  // Timestamp
		{id: 6, typ: lwm2m.TypeFloat, ops: opR}, // Speed
	}},
	{id: 3303, ver10: "1.1", ver11: "1.1", creatable: true, res: []resDef{
		{id: 5518, typ: lwm2m.TypeTime, ops: opR},         // Timestamp
		{id: 5601, typ: lwm2m.TypeFloat, ops: opR},        // Min Measured Value
		{id: 5602, typ: lwm2m.TypeFloat, ops: opR},        // Max Measured Value
		{id: 5603, typ: lwm2m.TypeFloat, ops: opR},        // Min Range Value
		{id: 5604, typ: lwm2m.TypeFloat, ops: opR},        // Max Range Value
		{id: 5605, ops: opE},                              // Reset Min and Max Measured Values
		{id: 5700, typ: lwm2m.TypeFloat, ops: opR},        // Sensor Value
		{id: 5701, typ: lwm2m.TypeString, ops: opR},       // Sensor Units
		{id: 5750, typ: lwm2m.TypeString, ops: opR | opW}, // Application Type
	}},
	{id: BinaryObjectID, creatable: true, res: []resDef{
		{id: 0, typ: lwm2m.TypeOpaque, ops: opR | opW},  // Payload
		{id: 1, typ: lwm2m.TypeInteger, ops: opR | opW}, // Payload Size
		{id: 2, typ: lwm2m.TypeInteger, ops: opR},       // Sequence
		{id: 3, ops: opE}, // Regenerate
	}},
}

// object returns the definition of object id.
func object(id uint16) *objDef {
	i := sort.Search(len(objects), func(i int) bool { return objects[i].id >= id })
	if i < len(objects) && objects[i].id == id {
		return objects[i]
	}
	return nil
}

// resource returns the definition of resource id of o.
func (o *objDef) resource(id uint16) *resDef {
	i := sort.Search(len(o.res), func(i int) bool { return o.res[i].id >= id })
	if i < len(o.res) && o.res[i].id == id {
		return &o.res[i]
	}
	return nil
}

// version is the object version a client of LwM2M version v advertises.
func (o *objDef) version(v string) string {
	if v == Version10 {
		return o.ver10
	}
	return o.ver11
}

// resourceOf returns the definition of the resource p points at (p is a
// resource or resource-instance path), or nil.
func resourceOf(p lwm2m.Path) *resDef {
	if p.Level() < lwm2m.LevelResource {
		return nil
	}
	o := object(p.Object())
	if o == nil {
		return nil
	}
	return o.resource(p.Resource())
}

// simTypes implements codec.TypeResolver over the simulator's objects, so
// that TLV and text payloads written by the server decode to the right
// types.
type simTypes struct{}

var _ codec.TypeResolver = simTypes{}

func (simTypes) ResourceType(p lwm2m.Path) lwm2m.Type {
	if r := resourceOf(p); r != nil {
		return r.typ
	}
	return lwm2m.TypeNone
}

// Types returns the data types of the simulator's resources, for decoding
// what devices send in untyped formats (TLV, text) without the DDF model.
func Types() codec.TypeResolver { return simTypes{} }
