package model

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/ddf"
)

// Registry holds object definitions by object ID, one version per object:
// the last one added wins. It is safe for concurrent use.
//
// Reads vastly outnumber writes — ResourceType runs once per value decoded
// from any device — so the map is copy-on-write behind an atomic pointer:
// a read is one atomic load and two map lookups, with no lock whose
// reader count every core would write to. Writers, which are rare (start-up,
// an operator uploading a DDF), serialise on a mutex and copy the map.
type Registry struct {
	mu      sync.Mutex // serialises writers
	objects atomic.Pointer[map[uint16]*Object]
}

// New returns an empty registry; the zero Registry is empty too.
func New() *Registry { return &Registry{} }

// load returns the current map, which is never modified: nil when empty.
func (r *Registry) load() map[uint16]*Object {
	if r == nil {
		return nil
	}
	if p := r.objects.Load(); p != nil {
		return *p
	}
	return nil
}

// Builtin returns a registry holding the definitions embedded in module
// ddf (the OMA core objects 0-7 and 3303). An error means the embedded
// files are broken, a build defect.
func Builtin() (*Registry, error) {
	r := New()
	if err := r.AddFS(ddf.FS); err != nil {
		return nil, fmt.Errorf("builtin object model: %w", err)
	}
	return r, nil
}

// AddFS parses every *.xml file at the root of fsys and adds its objects,
// all or none: on any error (naming the file) nothing is added. Files that
// define no object (ErrNoObject) are skipped.
func (r *Registry) AddFS(fsys fs.FS) error {
	names, err := fs.Glob(fsys, "*.xml")
	if err != nil {
		return err
	}
	var all []*Object
	for _, name := range names {
		f, err := fsys.Open(name)
		if err != nil {
			return err
		}
		objs, err := ParseDDF(f)
		f.Close()
		if errors.Is(err, ErrNoObject) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		all = append(all, objs...)
	}
	r.Add(all...)
	return nil
}

// Add adds or replaces object definitions. The objects must not be
// modified afterwards. Nil objects are ignored.
func (r *Registry) Add(objs ...*Object) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := maps.Clone(r.load())
	if m == nil {
		m = make(map[uint16]*Object, len(objs))
	}
	for _, o := range objs {
		if o != nil {
			m[o.ID] = o
		}
	}
	r.objects.Store(&m)
}

// Object returns the definition of object id.
func (r *Registry) Object(id uint16) (*Object, bool) {
	o, ok := r.load()[id]
	return o, ok
}

// Objects returns every definition, ordered by object ID.
func (r *Registry) Objects() []*Object {
	out := slices.Collect(maps.Values(r.load()))
	slices.SortFunc(out, func(a, b *Object) int { return int(a.ID) - int(b.ID) })
	return out
}

// Resource returns the definition of the resource p names; p is a
// resource or resource-instance path.
func (r *Registry) Resource(p lwm2m.Path) (*Resource, bool) {
	if p.Level() < lwm2m.LevelResource {
		return nil, false
	}
	o, ok := r.Object(p.Object())
	if !ok {
		return nil, false
	}
	res, ok := o.Resources[p.Resource()]
	return res, ok
}

// ResourceType returns the data type of the resource p names (a resource
// or resource-instance path), or TypeNone when it is unknown. It makes
// Registry a codec.TypeResolver. A nil Registry knows no types.
func (r *Registry) ResourceType(p lwm2m.Path) lwm2m.Type {
	if res, ok := r.Resource(p); ok {
		return res.Type
	}
	return lwm2m.TypeNone
}
