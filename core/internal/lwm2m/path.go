package lwm2m

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxID is the largest usable object, instance or resource ID; 65535 is
// reserved by the specification.
const MaxID = 65534

// Path addresses a node of the LwM2M data model: root, object, object
// instance, resource or resource instance. The zero Path is the root "/".
// Path is a small value type, comparable and usable as a map key.
type Path struct {
	ids [4]uint16
	n   uint8
}

// Level names the depth of a Path.
type Level uint8

// The levels of the data model, from the root down.
const (
	LevelRoot Level = iota
	LevelObject
	LevelInstance
	LevelResource
	LevelResourceInstance
)

// ErrInvalidPath is wrapped by every ParsePath error.
var ErrInvalidPath = errors.New("invalid lwm2m path")

// NewPath builds a Path from up to four IDs. It panics on more than four IDs
// or an ID above MaxID: use it with constants, ParsePath with input.
func NewPath(ids ...uint16) Path {
	if len(ids) > 4 {
		panic("lwm2m: path deeper than four levels")
	}
	var p Path
	for i, id := range ids {
		if id > MaxID {
			panic("lwm2m: id above MaxID")
		}
		p.ids[i] = id
	}
	p.n = uint8(len(ids))
	return p
}

// ParsePath parses "/3/0/1", "3/0/1" or "/" (the root).
func ParsePath(s string) (Path, error) {
	s = strings.TrimPrefix(s, "/")
	s = strings.TrimSuffix(s, "/")
	var p Path
	if s == "" {
		return p, nil
	}
	// walked with Cut, not Split: every link of every Register is parsed
	for rest, more := s, true; more; p.n++ {
		var part string
		part, rest, more = strings.Cut(rest, "/")
		if p.n == 4 {
			return Path{}, fmt.Errorf("%w %q: more than four levels", ErrInvalidPath, s)
		}
		id, err := strconv.ParseUint(part, 10, 16)
		if err != nil || id > MaxID || (len(part) > 1 && part[0] == '0') || part == "" {
			return Path{}, fmt.Errorf("%w %q: %q is not an id in 0..%d", ErrInvalidPath, s, part, MaxID)
		}
		p.ids[p.n] = uint16(id)
	}
	return p, nil
}

// MustParsePath is ParsePath for constants in tests and tables.
func MustParsePath(s string) Path {
	p, err := ParsePath(s)
	if err != nil {
		panic(err)
	}
	return p
}

// Level reports how deep the path is.
func (p Path) Level() Level { return Level(p.n) }

// Len is the number of IDs in the path.
func (p Path) Len() int { return int(p.n) }

// ID returns the i-th ID (0 = object). It panics when i >= Len().
func (p Path) ID(i int) uint16 {
	if i >= int(p.n) {
		panic("lwm2m: path index out of range")
	}
	return p.ids[i]
}

// Object, Instance, Resource and ResourceInstance return that level's ID,
// or 0 when the path is not that deep; check Level first.
func (p Path) Object() uint16           { return p.ids[0] }
func (p Path) Instance() uint16         { return p.ids[1] }
func (p Path) Resource() uint16         { return p.ids[2] }
func (p Path) ResourceInstance() uint16 { return p.ids[3] }

// Append returns the path one level deeper. It panics on a four-level path.
func (p Path) Append(id uint16) Path {
	if p.n >= 4 {
		panic("lwm2m: cannot append to a resource instance path")
	}
	p.ids[p.n] = id
	p.n++
	return p
}

// Parent returns the path one level up; the root's parent is the root.
func (p Path) Parent() Path {
	if p.n == 0 {
		return p
	}
	p.n--
	p.ids[p.n] = 0
	return p
}

// Truncate returns the first n levels of p (n <= Len()).
func (p Path) Truncate(n int) Path {
	if n >= int(p.n) {
		return p
	}
	for i := n; i < 4; i++ {
		p.ids[i] = 0
	}
	p.n = uint8(n)
	return p
}

// HasPrefix reports whether q is p or an ancestor of p.
func (p Path) HasPrefix(q Path) bool {
	if q.n > p.n {
		return false
	}
	for i := 0; i < int(q.n); i++ {
		if p.ids[i] != q.ids[i] {
			return false
		}
	}
	return true
}

// Segments returns the IDs as strings, for CoAP Uri-Path options.
func (p Path) Segments() []string {
	out := make([]string, p.n)
	for i := range out {
		out[i] = strconv.Itoa(int(p.ids[i]))
	}
	return out
}

// String formats the path as "/3/0/1"; the root is "/".
func (p Path) String() string {
	if p.n == 0 {
		return "/"
	}
	var b strings.Builder
	for i := 0; i < int(p.n); i++ {
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(int(p.ids[i])))
	}
	return b.String()
}

// Compare orders paths depth-first: parents before children, siblings by ID.
func (p Path) Compare(q Path) int {
	for i := 0; i < int(min(p.n, q.n)); i++ {
		if p.ids[i] != q.ids[i] {
			if p.ids[i] < q.ids[i] {
				return -1
			}
			return 1
		}
	}
	return int(p.n) - int(q.n)
}

// MarshalText and UnmarshalText let paths travel as JSON strings.
func (p Path) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

func (p *Path) UnmarshalText(b []byte) error {
	q, err := ParsePath(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}
