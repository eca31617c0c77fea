package model

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/lwm2md/lwm2md/core/internal/codec"
	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

var _ codec.TypeResolver = (*Registry)(nil)

// registryDir finds the OMA LwM2M registry checkout shared next to the
// repository (/work/shared/lwm2m-registry beside /work/main), or "".
func registryDir() string {
	if d := os.Getenv("LWM2M_REGISTRY_DIR"); d != "" {
		return d
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return ""
	}
	// core/internal/model -> repository root -> ../shared
	d := filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "shared", "lwm2m-registry")
	if _, err := os.Stat(d); err != nil {
		return ""
	}
	return d
}

// TestRegistryFiles parses every object definition of the OMA registry.
func TestRegistryFiles(t *testing.T) {
	dir := registryDir()
	if dir == "" {
		t.Skip("OMA registry not found next to the repository (set LWM2M_REGISTRY_DIR)")
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.xml"))
	if err != nil {
		t.Fatal(err)
	}
	var objects, definitions, resources int
	types := map[lwm2m.Type]int{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Base(f)
		isDef := bytes.Contains(data, []byte(`ObjectType="MODefinition"`))
		if isDef {
			definitions++
		}
		objs, err := ParseDDF(bytes.NewReader(data))
		if errors.Is(err, ErrNoObject) && !isDef {
			continue // DDF.xml, units, Common.xml
		}
		if err != nil {
			t.Errorf("%s: %v", base, err)
			continue
		}
		objects += len(objs)
		if id, err := strconv.Atoi(strings.TrimSuffix(base, ".xml")); err == nil && (len(objs) != 1 || int(objs[0].ID) != id) {
			t.Errorf("%s: parsed object %d, want %d", base, objs[0].ID, id)
		}
		for _, o := range objs {
			for _, r := range o.Resources {
				resources++
				types[r.Type]++
			}
		}
	}
	if objects != definitions || objects == 0 {
		t.Fatalf("parsed %d objects, the registry defines %d", objects, definitions)
	}
	for typ := lwm2m.TypeNone; typ <= lwm2m.TypeCorelnk; typ++ {
		if types[typ] == 0 {
			t.Errorf("no resource of type %v in the registry", typ)
		}
	}
	t.Logf("%d files, %d objects, %d resources, types %v", len(files), objects, resources, types)
}

func TestBuiltin(t *testing.T) {
	r, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint16{0, 1, 2, 3, 4, 5, 6, 7, 3303} {
		if _, ok := r.Object(id); !ok {
			t.Errorf("object %d missing", id)
		}
	}
	if o, _ := r.Object(3); o.Name != "Device" || o.Multiple {
		t.Errorf("device: %+v", o)
	}
	cases := []struct {
		path string
		want lwm2m.Type
	}{
		{"/3/0/0", lwm2m.TypeString},
		{"/3/0/4", lwm2m.TypeNone}, // Reboot, executable
		{"/3/0/7/1", lwm2m.TypeInteger},
		{"/3/0/13", lwm2m.TypeTime},
		{"/3303/0/5700", lwm2m.TypeFloat},
		{"/1/0/1", lwm2m.TypeInteger},
		{"/1/0/13", lwm2m.TypeUnsigned},
		{"/0/0/3", lwm2m.TypeOpaque},
		{"/1/0/6", lwm2m.TypeBoolean},
		{"/3/0/999", lwm2m.TypeNone},
		{"/9999/0/0", lwm2m.TypeNone},
		{"/3/0", lwm2m.TypeNone},
	}
	for _, tc := range cases {
		if got := r.ResourceType(lwm2m.MustParsePath(tc.path)); got != tc.want {
			t.Errorf("ResourceType(%s) = %v, want %v", tc.path, got, tc.want)
		}
	}
	objs := r.Objects()
	for i := 1; i < len(objs); i++ {
		if objs[i-1].ID >= objs[i].ID {
			t.Fatalf("Objects() not ordered by id: %d before %d", objs[i-1].ID, objs[i].ID)
		}
	}
}

// TestBuiltinTypesTLV decodes the Device example of the TLV specification
// typed by the built-in model, as the server does.
func TestBuiltinTypesTLV(t *testing.T) {
	r, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	// /3/0/13 Current Time (Time), /3/0/9 Battery Level (Integer),
	// /3/0/7 Power Source Voltage (multiple Integer).
	data := []byte{0xC4, 0x0D, 0x51, 0x82, 0x42, 0x8F, 0xC1, 0x09, 0x64, 0x84, 0x07, 0x42, 0x01, 0x13, 0x88}
	recs, err := codec.Decode(lwm2m.FormatTLV, lwm2m.NewPath(3, 0), data, r)
	if err != nil {
		t.Fatal(err)
	}
	want := []lwm2m.Value{{Type: lwm2m.TypeTime, Int: 0x5182428F}, lwm2m.Integer(100), lwm2m.Integer(5000)}
	if len(recs) != len(want) {
		t.Fatalf("got %d records", len(recs))
	}
	for i := range want {
		if !recs[i].Value.Equal(want[i]) {
			t.Errorf("%v = %v %v, want %v %v", recs[i].Path, recs[i].Value.Type, recs[i].Value, want[i].Type, want[i])
		}
	}
}

func TestAddFS(t *testing.T) {
	good := ddfDoc(testObject)
	fsys := fstest.MapFS{
		"9999.xml":   {Data: []byte(good)},
		"DDF.xml":    {Data: []byte(`<DDFList/>`)},
		"readme.txt": {Data: []byte("not xml")},
	}
	r := New()
	if err := r.AddFS(fsys); err != nil {
		t.Fatal(err)
	}
	if typ := r.ResourceType(lwm2m.MustParsePath("/9999/3/0")); typ != lwm2m.TypeFloat {
		t.Fatalf("type %v", typ)
	}
	fsys["bad.xml"] = &fstest.MapFile{Data: []byte(ddfDoc(object("<ObjectID>9999", "<ObjectID>10000")) + "<!DOCTYPE x>")}
	fsys["worse.xml"] = &fstest.MapFile{Data: []byte(`<!DOCTYPE x><LWM2M/>`)}
	r2 := New()
	err := r2.AddFS(fsys)
	if err == nil || !strings.HasPrefix(err.Error(), "worse.xml: ddf: DTD") {
		t.Fatalf("error %v", err)
	}
	if len(r2.Objects()) != 0 {
		t.Fatal("a failed AddFS added objects")
	}
}

func TestRegistryReplaceAndZero(t *testing.T) {
	var zero Registry
	if zero.ResourceType(lwm2m.MustParsePath("/3/0/0")) != lwm2m.TypeNone || len(zero.Objects()) != 0 {
		t.Fatal("zero registry not empty")
	}
	var nilReg *Registry
	if nilReg.ResourceType(lwm2m.MustParsePath("/3/0/0")) != lwm2m.TypeNone {
		t.Fatal("nil registry knows a type")
	}
	zero.Add(&Object{ID: 5, Version: "1.0", Resources: map[uint16]*Resource{1: {ID: 1, Type: lwm2m.TypeString}}}, nil)
	zero.Add(&Object{ID: 5, Version: "1.1", Resources: map[uint16]*Resource{1: {ID: 1, Type: lwm2m.TypeOpaque}}})
	if o, _ := zero.Object(5); o.Version != "1.1" || zero.ResourceType(lwm2m.MustParsePath("/5/0/1")) != lwm2m.TypeOpaque {
		t.Fatal("last Add does not win")
	}
}

// TestRegistryConcurrent reads while objects are added; run with -race.
func TestRegistryConcurrent(t *testing.T) {
	r, err := Builtin()
	if err != nil {
		t.Fatal(err)
	}
	n := len(r.Objects())
	var wg sync.WaitGroup
	p := lwm2m.MustParsePath("/3/0/13")
	for range 4 {
		wg.Go(func() {
			for range 2000 {
				if r.ResourceType(p) != lwm2m.TypeTime {
					t.Error("device current time lost its type")
					return
				}
			}
		})
	}
	for i := range 200 {
		r.Add(&Object{ID: uint16(20000 + i), Resources: map[uint16]*Resource{0: {Type: lwm2m.TypeBoolean}}})
	}
	wg.Wait()
	if len(r.Objects()) != n+200 || r.ResourceType(lwm2m.NewPath(20199, 0, 0)) != lwm2m.TypeBoolean {
		t.Fatalf("%d objects", len(r.Objects()))
	}
}

func BenchmarkResourceType(b *testing.B) {
	r, err := Builtin()
	if err != nil {
		b.Fatal(err)
	}
	p := lwm2m.MustParsePath("/3303/0/5700")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r.ResourceType(p) != lwm2m.TypeFloat {
				b.Fatal("wrong type")
			}
		}
	})
}

func BenchmarkParseDDFDevice(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "ddf", "3.xml"))
	if err != nil {
		b.Skip(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseDDF(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}
