package sim

import (
	"slices"
	"sort"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// entry is one node of a device's data tree. Objects, instances and
// multiple resources are markers (zero val); single resources and resource
// instances carry their value.
type entry struct {
	path lwm2m.Path
	val  lwm2m.Value
}

// tree is a device's data model: entries sorted depth-first by path, so a
// node's descendants follow it contiguously. Devices start out sharing their
// version's template tree and copy it on their first change, which keeps an
// untouched device's model at zero bytes of its own.
type tree struct {
	entries []entry
	shared  bool // entries belong to a template: copy before changing
}

// search returns the index of p, or where it would be inserted.
func (t *tree) search(p lwm2m.Path) (int, bool) {
	i := sort.Search(len(t.entries), func(i int) bool { return t.entries[i].path.Compare(p) >= 0 })
	return i, i < len(t.entries) && t.entries[i].path == p
}

// has reports whether node p exists.
func (t *tree) has(p lwm2m.Path) bool {
	_, ok := t.search(p)
	return ok
}

// get returns the value at p.
func (t *tree) get(p lwm2m.Path) (lwm2m.Value, bool) {
	i, ok := t.search(p)
	if !ok {
		return lwm2m.Value{}, false
	}
	return t.entries[i].val, true
}

// span returns the index range of p and its descendants.
func (t *tree) span(p lwm2m.Path) (lo, hi int) {
	lo, _ = t.search(p)
	hi = lo
	for hi < len(t.entries) && t.entries[hi].path.HasPrefix(p) {
		hi++
	}
	return lo, hi
}

// children returns the ids of p's direct children, in order.
func (t *tree) children(p lwm2m.Path) []uint16 {
	lo, hi := t.span(p)
	var ids []uint16
	for _, e := range t.entries[lo:hi] {
		if e.path.Len() == p.Len()+1 {
			ids = append(ids, e.path.ID(p.Len()))
		}
	}
	return ids
}

func (t *tree) mutable() {
	if t.shared {
		t.entries = slices.Clone(t.entries)
		t.shared = false
	}
}

// set creates or replaces node p. The caller makes sure p's parents exist.
func (t *tree) set(p lwm2m.Path, v lwm2m.Value) {
	t.mutable()
	i, ok := t.search(p)
	if ok {
		t.entries[i].val = v
		return
	}
	t.entries = slices.Insert(t.entries, i, entry{path: p, val: v})
}

// remove deletes p and its descendants.
func (t *tree) remove(p lwm2m.Path) {
	lo, hi := t.span(p)
	if lo == hi {
		return
	}
	t.mutable()
	t.entries = slices.Delete(t.entries, lo, hi)
}

// removeChildren deletes p's descendants and keeps p.
func (t *tree) removeChildren(p lwm2m.Path) {
	lo, hi := t.span(p)
	if hi-lo <= 1 {
		return
	}
	t.mutable()
	t.entries = slices.Delete(t.entries, lo+1, hi)
}
