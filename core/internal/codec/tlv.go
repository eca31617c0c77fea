package codec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// OMA TLV (LwM2M 1.0 §6.4.3): every entry is a header byte, an 8- or 16-bit
// id, a length in the header or in 1-3 following bytes, and the value.
// Bits 7-6 of the header give the entry type; containers (object instance,
// multiple resource) hold further entries in their value.
const (
	tlvInstance         = 0b00
	tlvResourceInstance = 0b01
	tlvMultiple         = 0b10
	tlvResource         = 0b11

	// tlvMaxLen is the largest length a 24-bit length field can carry.
	tlvMaxLen = 1<<24 - 1
)

var tlvTypeNames = [...]string{"object instance", "resource instance", "multiple resource", "resource"}

// tlvLevel is the data-model level of an entry of each type.
var tlvLevel = [...]lwm2m.Level{lwm2m.LevelInstance, lwm2m.LevelResourceInstance, lwm2m.LevelResource, lwm2m.LevelResource}

type tlvEntry struct {
	typ   uint8
	id    uint16
	value []byte
	off   int // payload offset of the header
	voff  int // payload offset of the value
}

// tlvNext reads the entry at data[i:]; data starts at payload offset base,
// so that errors point into the whole payload.
func tlvNext(data []byte, i, base int) (tlvEntry, int, error) {
	start := i
	h := data[i]
	i++
	e := tlvEntry{typ: h >> 6, off: base + start}
	idLen := 1
	if h&0x20 != 0 {
		idLen = 2
	}
	lenLen := int(h>>3) & 3
	if need := idLen + lenLen; len(data)-i < need {
		return e, 0, malformed("tlv: header at offset %d truncated: needs %d more bytes, %d left", e.off, need, len(data)-i)
	}
	if idLen == 1 {
		e.id = uint16(data[i])
	} else {
		e.id = binary.BigEndian.Uint16(data[i:])
	}
	i += idLen
	if e.id > lwm2m.MaxID {
		return e, 0, malformed("tlv: id %d at offset %d is reserved", e.id, e.off)
	}
	n := int(h & 7)
	if lenLen > 0 {
		n = 0
		for _, b := range data[i : i+lenLen] {
			n = n<<8 | int(b)
		}
		i += lenLen
	}
	if n > len(data)-i {
		return e, 0, malformed("tlv: length %d exceeds remaining %d bytes at offset %d", n, len(data)-i, e.off)
	}
	e.value = data[i : i+n]
	e.voff = base + i
	return e, i + n, nil
}

type tlvDecoder struct {
	base  lwm2m.Path
	types TypeResolver
	recs  []lwm2m.Record
}

func decodeTLV(base lwm2m.Path, data []byte, types TypeResolver) ([]lwm2m.Record, error) {
	if base.Level() == lwm2m.LevelRoot {
		return nil, malformed("tlv: cannot decode at the root path: TLV does not carry object ids")
	}
	d := tlvDecoder{base: base, types: types}
	if err := d.entries(data, 0, lwm2m.Path{}, true); err != nil {
		return nil, err
	}
	return d.recs, nil
}

// entries decodes the entries of data, children of parent. At the top
// level (top) there is no parent yet: it is derived from the base path and
// the entry's type, since a client may answer a Read of /3/0/7 with the
// multiple resource 7 itself.
func (d *tlvDecoder) entries(data []byte, off int, parent lwm2m.Path, top bool) error {
	for i := 0; i < len(data); {
		e, next, err := tlvNext(data, i, off)
		if err != nil {
			return err
		}
		i = next
		level := tlvLevel[e.typ]
		p := parent
		if top {
			if p, err = d.topParent(e, level); err != nil {
				return err
			}
		} else if level != parent.Level()+1 {
			return malformed("tlv: %s %d at offset %d cannot sit inside %v", tlvTypeNames[e.typ], e.id, e.off, parent)
		}
		p = p.Append(e.id)
		switch e.typ {
		case tlvInstance, tlvMultiple:
			if err := d.entries(e.value, e.voff, p, false); err != nil {
				return err
			}
		default:
			if err := checkRecordPath("tlv", d.base, p); err != nil {
				return err
			}
			v, err := tlvValue(p, d.types.ResourceType(p), e.value, e.voff)
			if err != nil {
				return err
			}
			d.recs = append(d.recs, lwm2m.Record{Path: p, Value: v})
		}
	}
	return nil
}

// topParent finds the parent path of a top-level entry at level.
func (d *tlvDecoder) topParent(e tlvEntry, level lwm2m.Level) (lwm2m.Path, error) {
	b := d.base
	switch {
	case level <= b.Level():
		// The entry names a node of the base path itself.
		if want := b.ID(int(level) - 1); e.id != want {
			return lwm2m.Path{}, malformed("tlv: %s %d at offset %d does not match base path %v", tlvTypeNames[e.typ], e.id, e.off, b)
		}
		return b.Truncate(int(level) - 1), nil
	case level == b.Level()+1:
		return b, nil
	case b.Level() == lwm2m.LevelObject && level == lwm2m.LevelResource:
		// Some clients answer a Read of a single-instance object with the
		// resources of instance 0, without the instance wrapper.
		return b.Append(0), nil
	}
	return lwm2m.Path{}, malformed("tlv: %s %d at offset %d cannot sit directly under %v", tlvTypeNames[e.typ], e.id, e.off, b)
}

// tlvValue decodes the value of a resource (instance) of type t.
func tlvValue(p lwm2m.Path, t lwm2m.Type, b []byte, off int) (lwm2m.Value, error) {
	switch t {
	case lwm2m.TypeNone:
		return lwm2m.Untyped(bytes.Clone(b)), nil
	case lwm2m.TypeString:
		return lwm2m.String(string(b)), nil
	case lwm2m.TypeCorelnk:
		return lwm2m.Corelnk(string(b)), nil
	case lwm2m.TypeOpaque:
		return lwm2m.Opaque(bytes.Clone(b)), nil
	case lwm2m.TypeInteger, lwm2m.TypeTime:
		if !validIntLen(len(b)) {
			return lwm2m.Value{}, malformed("tlv: %v (%v) at offset %d: integer length %d is not 1, 2, 4 or 8", p, t, off, len(b))
		}
		return lwm2m.Value{Type: t, Int: beInt(b)}, nil
	case lwm2m.TypeUnsigned:
		if !validIntLen(len(b)) {
			return lwm2m.Value{}, malformed("tlv: %v (%v) at offset %d: integer length %d is not 1, 2, 4 or 8", p, t, off, len(b))
		}
		return lwm2m.Unsigned(beUint(b)), nil
	case lwm2m.TypeFloat:
		switch len(b) {
		case 4:
			return lwm2m.Float(float64(math.Float32frombits(binary.BigEndian.Uint32(b)))), nil
		case 8:
			return lwm2m.Float(math.Float64frombits(binary.BigEndian.Uint64(b))), nil
		}
		return lwm2m.Value{}, malformed("tlv: %v (Float) at offset %d: float length %d is not 4 or 8", p, off, len(b))
	case lwm2m.TypeBoolean:
		if len(b) != 1 || b[0] > 1 {
			return lwm2m.Value{}, malformed("tlv: %v (Boolean) at offset %d: want one byte 0 or 1, got % x", p, off, b)
		}
		return lwm2m.Boolean(b[0] == 1), nil
	case lwm2m.TypeObjlnk:
		if len(b) != 4 {
			return lwm2m.Value{}, malformed("tlv: %v (Objlnk) at offset %d: length %d is not 4", p, off, len(b))
		}
		return lwm2m.Objlnk(binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])), nil
	}
	return lwm2m.Value{}, malformed("tlv: %v has unknown type %v", p, t)
}

func validIntLen(n int) bool { return n == 1 || n == 2 || n == 4 || n == 8 }

// beInt reads a big-endian two's complement integer of 1, 2, 4 or 8 bytes.
func beInt(b []byte) int64 {
	switch len(b) {
	case 1:
		return int64(int8(b[0]))
	case 2:
		return int64(int16(binary.BigEndian.Uint16(b)))
	case 4:
		return int64(int32(binary.BigEndian.Uint32(b)))
	}
	return int64(binary.BigEndian.Uint64(b))
}

func beUint(b []byte) uint64 {
	var u uint64
	for _, c := range b {
		u = u<<8 | uint64(c)
	}
	return u
}

func encodeTLV(base lwm2m.Path, recs []lwm2m.Record) ([]byte, error) {
	if base.Level() == lwm2m.LevelRoot {
		return nil, fmt.Errorf("%w: tlv cannot encode at the root path: TLV does not carry object ids", ErrUnsupported)
	}
	if err := checkEncode("tlv", base, recs); err != nil {
		return nil, err
	}
	sorted := sortedCopy(recs)
	for i := 1; i < len(sorted); i++ {
		prev, p := sorted[i-1].Path, sorted[i].Path
		if p == prev {
			return nil, fmt.Errorf("tlv: duplicate record for %v", p)
		}
		if prev.Level() == lwm2m.LevelResource && p.HasPrefix(prev) {
			return nil, fmt.Errorf("tlv: %v is both a single value and has resource instance %v", prev, p)
		}
	}
	// Object and instance requests list their children; a resource request
	// is answered with the resource itself (single or multiple).
	start := base.Level() + 1
	if base.Level() >= lwm2m.LevelResource {
		start = base.Level()
	}
	return appendTLVLevel(make([]byte, 0, 16*len(sorted)), sorted, start)
}

// appendTLVLevel writes the entries at level for recs, which are sorted and
// share the path down to level-1, grouping them by their ID at level.
func appendTLVLevel(dst []byte, recs []lwm2m.Record, level lwm2m.Level) ([]byte, error) {
	idx := int(level) - 1
	for i := 0; i < len(recs); {
		id := recs[i].Path.ID(idx)
		j := i + 1
		for j < len(recs) && recs[j].Path.ID(idx) == id {
			j++
		}
		group := recs[i:j]
		i = j
		var err error
		switch {
		case level == lwm2m.LevelInstance:
			dst, err = appendTLVContainer(dst, tlvInstance, id, group, lwm2m.LevelResource)
		case level == lwm2m.LevelResource && group[0].Path.Level() == lwm2m.LevelResourceInstance:
			dst, err = appendTLVContainer(dst, tlvMultiple, id, group, lwm2m.LevelResourceInstance)
		case level == lwm2m.LevelResource:
			dst, err = appendTLVValue(dst, tlvResource, id, group[0])
		default:
			dst, err = appendTLVValue(dst, tlvResourceInstance, id, group[0])
		}
		if err != nil {
			return nil, err
		}
	}
	return dst, nil
}

// appendTLVContainer writes a container entry. The children are written in
// place after room for the largest header, which is then shifted down to
// the real header size: one pass, no intermediate buffers.
func appendTLVContainer(dst []byte, typ uint8, id uint16, recs []lwm2m.Record, childLevel lwm2m.Level) ([]byte, error) {
	const maxHdr = 6
	at := len(dst)
	dst = append(dst, make([]byte, maxHdr)...)
	dst, err := appendTLVLevel(dst, recs, childLevel)
	if err != nil {
		return nil, err
	}
	n := len(dst) - at - maxHdr
	if n > tlvMaxLen {
		return nil, fmt.Errorf("tlv: %s %d is %d bytes, more than TLV's %d", tlvTypeNames[typ], id, n, tlvMaxLen)
	}
	var h [maxHdr]byte
	hdr := tlvHeader(&h, typ, id, n)
	copy(dst[at:], hdr)
	copy(dst[at+len(hdr):], dst[at+maxHdr:])
	return dst[:at+len(hdr)+n], nil
}

func appendTLVValue(dst []byte, typ uint8, id uint16, r lwm2m.Record) ([]byte, error) {
	var h [6]byte
	if t := r.Value.Type; t == lwm2m.TypeString || t == lwm2m.TypeCorelnk {
		// Appended straight from the string, saving a copy.
		if len(r.Value.Str) > tlvMaxLen {
			return nil, fmt.Errorf("tlv: %v is %d bytes, more than TLV's %d", r.Path, len(r.Value.Str), tlvMaxLen)
		}
		dst = append(dst, tlvHeader(&h, typ, id, len(r.Value.Str))...)
		return append(dst, r.Value.Str...), nil
	}
	var scratch [8]byte
	val, err := tlvValueBytes(&scratch, r.Value)
	if err != nil {
		return nil, fmt.Errorf("tlv: %v: %w", r.Path, err)
	}
	if len(val) > tlvMaxLen {
		return nil, fmt.Errorf("tlv: %v is %d bytes, more than TLV's %d", r.Path, len(val), tlvMaxLen)
	}
	dst = append(dst, tlvHeader(&h, typ, id, len(val))...)
	return append(dst, val...), nil
}

func tlvHeader(h *[6]byte, typ uint8, id uint16, n int) []byte {
	b := typ << 6
	k := 1
	if id > 0xff {
		b |= 0x20
		h[1], h[2] = byte(id>>8), byte(id)
		k = 3
	} else {
		h[1] = byte(id)
		k = 2
	}
	switch {
	case n < 8:
		b |= byte(n)
	case n <= 0xff:
		b |= 1 << 3
		h[k] = byte(n)
		k++
	case n <= 0xffff:
		b |= 2 << 3
		h[k], h[k+1] = byte(n>>8), byte(n)
		k += 2
	default:
		b |= 3 << 3
		h[k], h[k+1], h[k+2] = byte(n>>16), byte(n>>8), byte(n)
		k += 3
	}
	h[0] = b
	return h[:k]
}

// tlvValueBytes encodes v; numbers use the smallest width that holds them.
func tlvValueBytes(s *[8]byte, v lwm2m.Value) ([]byte, error) {
	switch v.Type {
	case lwm2m.TypeOpaque, lwm2m.TypeNone:
		return v.Bytes, nil
	case lwm2m.TypeInteger, lwm2m.TypeTime:
		i := v.Int
		switch {
		case i == int64(int8(i)):
			s[0] = byte(i)
			return s[:1], nil
		case i == int64(int16(i)):
			binary.BigEndian.PutUint16(s[:], uint16(i))
			return s[:2], nil
		case i == int64(int32(i)):
			binary.BigEndian.PutUint32(s[:], uint32(i))
			return s[:4], nil
		}
		binary.BigEndian.PutUint64(s[:], uint64(i))
		return s[:8], nil
	case lwm2m.TypeUnsigned:
		u := v.Uint
		switch {
		case u <= math.MaxUint8:
			s[0] = byte(u)
			return s[:1], nil
		case u <= math.MaxUint16:
			binary.BigEndian.PutUint16(s[:], uint16(u))
			return s[:2], nil
		case u <= math.MaxUint32:
			binary.BigEndian.PutUint32(s[:], uint32(u))
			return s[:4], nil
		}
		binary.BigEndian.PutUint64(s[:], u)
		return s[:8], nil
	case lwm2m.TypeFloat:
		if f32 := float32(v.Float); float64(f32) == v.Float {
			binary.BigEndian.PutUint32(s[:], math.Float32bits(f32))
			return s[:4], nil
		}
		binary.BigEndian.PutUint64(s[:], math.Float64bits(v.Float))
		return s[:8], nil
	case lwm2m.TypeBoolean:
		s[0] = 0
		if v.Bool {
			s[0] = 1
		}
		return s[:1], nil
	case lwm2m.TypeObjlnk:
		binary.BigEndian.PutUint16(s[:], v.Link.Object)
		binary.BigEndian.PutUint16(s[2:], v.Link.Instance)
		return s[:4], nil
	}
	return nil, fmt.Errorf("unknown value type %v", v.Type)
}
