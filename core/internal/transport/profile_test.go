package transport

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"strings"
)

// profileShare returns the fraction of CPU samples in a pprof profile
// (gzipped protobuf, as written by runtime/pprof) whose stack contains a
// function whose name contains substr. It decodes just the fields it needs
// so that the benchmark can report the figure without extra modules.
func profileShare(data []byte, substr string) (float64, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return 0, err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return 0, err
	}
	type sample struct {
		locs  []uint64
		count int64
	}
	var (
		samples   []sample
		strs      []string
		funcName  = map[uint64]int64{}    // function id -> string index
		locFuncs  = map[uint64][]uint64{} // location id -> function ids
		errTrunc  = errors.New("truncated profile")
		fieldIter func(b []byte, fn func(num int, wire int, v uint64, b []byte) error) error
	)
	fieldIter = func(b []byte, fn func(num, wire int, v uint64, b []byte) error) error {
		for len(b) > 0 {
			key, n := binary.Uvarint(b)
			if n <= 0 {
				return errTrunc
			}
			b = b[n:]
			num, wire := int(key>>3), int(key&7)
			switch wire {
			case 0:
				v, n := binary.Uvarint(b)
				if n <= 0 {
					return errTrunc
				}
				b = b[n:]
				if err := fn(num, wire, v, nil); err != nil {
					return err
				}
			case 1:
				if len(b) < 8 {
					return errTrunc
				}
				b = b[8:]
			case 5:
				if len(b) < 4 {
					return errTrunc
				}
				b = b[4:]
			case 2:
				l, n := binary.Uvarint(b)
				if n <= 0 || uint64(len(b)-n) < l {
					return errTrunc
				}
				if err := fn(num, wire, 0, b[n:n+int(l)]); err != nil {
					return err
				}
				b = b[n+int(l):]
			default:
				return errors.New("unknown wire type")
			}
		}
		return nil
	}
	varints := func(wire int, v uint64, b []byte) []uint64 { // packed or not
		if wire == 0 {
			return []uint64{v}
		}
		var out []uint64
		for len(b) > 0 {
			x, n := binary.Uvarint(b)
			if n <= 0 {
				break
			}
			out = append(out, x)
			b = b[n:]
		}
		return out
	}
	err = fieldIter(raw, func(num, wire int, _ uint64, b []byte) error {
		switch num {
		case 2: // sample
			var s sample
			first := true
			err := fieldIter(b, func(num, wire int, v uint64, b []byte) error {
				switch num {
				case 1:
					s.locs = append(s.locs, varints(wire, v, b)...)
				case 2:
					if vals := varints(wire, v, b); first && len(vals) > 0 {
						s.count, first = int64(vals[0]), false
					}
				}
				return nil
			})
			samples = append(samples, s)
			return err
		case 4: // location
			var id uint64
			var fns []uint64
			err := fieldIter(b, func(num, wire int, v uint64, b []byte) error {
				switch num {
				case 1:
					id = v
				case 4: // line
					return fieldIter(b, func(num, _ int, v uint64, _ []byte) error {
						if num == 1 {
							fns = append(fns, v)
						}
						return nil
					})
				}
				return nil
			})
			locFuncs[id] = fns
			return err
		case 5: // function
			var id uint64
			var name int64
			err := fieldIter(b, func(num, _ int, v uint64, _ []byte) error {
				switch num {
				case 1:
					id = v
				case 2:
					name = int64(v)
				}
				return nil
			})
			funcName[id] = name
			return err
		case 6: // string table
			strs = append(strs, string(b))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	var total, hit int64
	for _, s := range samples {
		total += s.count
	stack:
		for _, l := range s.locs {
			for _, f := range locFuncs[l] {
				if i := funcName[f]; i >= 0 && int(i) < len(strs) && strings.Contains(strs[i], substr) {
					hit += s.count
					break stack
				}
			}
		}
	}
	if total == 0 {
		return 0, nil
	}
	return float64(hit) / float64(total), nil
}
