package codec

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// deviceTypes are the resource types of the Device object (3) from its DDF.
var deviceTypes = map[uint16]lwm2m.Type{
	0: lwm2m.TypeString, 1: lwm2m.TypeString, 2: lwm2m.TypeString, 3: lwm2m.TypeString,
	6: lwm2m.TypeInteger, 7: lwm2m.TypeInteger, 8: lwm2m.TypeInteger, 9: lwm2m.TypeInteger,
	10: lwm2m.TypeInteger, 11: lwm2m.TypeInteger, 12: lwm2m.TypeNone, 13: lwm2m.TypeTime,
	14: lwm2m.TypeString, 15: lwm2m.TypeString, 16: lwm2m.TypeString, 17: lwm2m.TypeString,
	18: lwm2m.TypeString, 19: lwm2m.TypeString, 20: lwm2m.TypeInteger, 21: lwm2m.TypeInteger,
}

// aclTypes are those of the Access Control object (2).
var aclTypes = map[uint16]lwm2m.Type{0: lwm2m.TypeInteger, 1: lwm2m.TypeInteger, 2: lwm2m.TypeInteger, 3: lwm2m.TypeInteger}

// typeOf gives every other object's resource r the type r%10 maps to in
// typeCycle, so tests and fuzzers reach every type: /9999/0/5 is Opaque,
// /9999/0/9 unknown.
var typeCycle = [10]lwm2m.Type{
	lwm2m.TypeString, lwm2m.TypeInteger, lwm2m.TypeUnsigned, lwm2m.TypeFloat, lwm2m.TypeBoolean,
	lwm2m.TypeOpaque, lwm2m.TypeTime, lwm2m.TypeObjlnk, lwm2m.TypeCorelnk, lwm2m.TypeNone,
}

var testTypes = TypeFunc(func(p lwm2m.Path) lwm2m.Type {
	switch p.Object() {
	case 3:
		return deviceTypes[p.Resource()]
	case 2:
		return aclTypes[p.Resource()]
	}
	return typeCycle[p.Resource()%10]
})

// resourceOf returns the resource id under test object 9999 of type t.
func resourceOf(t lwm2m.Type) uint16 {
	for i, c := range typeCycle {
		if c == t {
			return uint16(i)
		}
	}
	panic("no resource for type")
}

func rec(path string, v lwm2m.Value) lwm2m.Record {
	return lwm2m.Record{Path: lwm2m.MustParsePath(path), Value: v}
}

func recAt(path string, v lwm2m.Value, t time.Time) lwm2m.Record {
	r := rec(path, v)
	r.Time = t
	return r
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameRecords reports the first difference between two record lists, or "".
func sameRecords(got, want []lwm2m.Record, timeSlack time.Duration) string {
	if len(got) != len(want) {
		return fmt.Sprintf("got %d records, want %d: %s", len(got), len(want), dump(got))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Path != w.Path || !g.Value.Equal(w.Value) {
			return fmt.Sprintf("record %d: got %v=%v:%q, want %v=%v:%q", i, g.Path, g.Value.Type, g.Value.Text(), w.Path, w.Value.Type, w.Value.Text())
		}
		d := g.Time.Sub(w.Time)
		if g.Time.IsZero() != w.Time.IsZero() || d > timeSlack || d < -timeSlack {
			return fmt.Sprintf("record %d %v: time %v, want %v", i, g.Path, g.Time, w.Time)
		}
	}
	return ""
}

func dump(recs []lwm2m.Record) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "%v=%v:%q ", r.Path, r.Value.Type, r.Value.Text())
	}
	return b.String()
}

// wantErr checks err against the expected error text: "" means success.
func wantErr(t *testing.T, err error, want string) bool {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return false
	}
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
	return true
}

// wantMalformed is wantErr for decoders: errors must wrap ErrMalformed.
func wantMalformed(t *testing.T, err error, want string) bool {
	t.Helper()
	if err != nil && !errors.Is(err, ErrMalformed) {
		t.Fatalf("error %q does not wrap ErrMalformed", err)
	}
	return wantErr(t, err, want)
}

// fixClock pins the clock that relative SenML times are resolved against.
func fixClock(t *testing.T, at time.Time) {
	old := now
	now = func() time.Time { return at }
	t.Cleanup(func() { now = old })
}
