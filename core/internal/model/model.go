// Package model holds the LwM2M object model: object and resource
// definitions parsed from OMA DDF XML files, and the Registry the server
// consults to type the values devices send (it is the codec.TypeResolver of
// the whole server). Definitions come from the built-in set embedded in
// module ddf and from files operators add; DDF parsing refuses DTDs and
// entities, since definitions may be uploaded by anyone with access.
package model

import (
	"slices"
	"strings"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// Object is the definition of one LwM2M object. Objects are shared by all
// readers of a Registry: treat them as immutable once added.
type Object struct {
	ID           uint16
	Name         string
	Description  string
	URN          string // "urn:oma:lwm2m:oma:3", empty when the DDF has none
	Version      string // ObjectVersion, "1.0" when the DDF has none
	LwM2MVersion string // LWM2MVersion, "1.0" when the DDF has none
	Multiple     bool   // multiple instances allowed
	Mandatory    bool
	Resources    map[uint16]*Resource
}

// Resource is the definition of one resource of an object.
type Resource struct {
	ID   uint16
	Name string
	// Type is TypeNone for executable resources, which have no value.
	Type       lwm2m.Type
	Multiple   bool // multiple resource instances
	Mandatory  bool
	Operations string // "R", "W", "RW", "E" or "" (none)
	Units      string
	// RangeEnumeration is the DDF's free text, e.g. "0..100" or "0-5".
	RangeEnumeration string
	Description      string
}

// Readable, Writable and Executable report the resource's operations.
func (r *Resource) Readable() bool   { return strings.Contains(r.Operations, "R") }
func (r *Resource) Writable() bool   { return strings.Contains(r.Operations, "W") }
func (r *Resource) Executable() bool { return r.Operations == "E" }

// ResourceIDs returns the IDs of the object's resources in ascending order.
func (o *Object) ResourceIDs() []uint16 {
	ids := make([]uint16, 0, len(o.Resources))
	for id := range o.Resources {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
