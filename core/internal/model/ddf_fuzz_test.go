package model

import (
	"bytes"
	"errors"
	"io/fs"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/ddf"
)

// FuzzParseDDF checks that no document makes ParseDDF panic, that a
// document with a directive is never accepted, and that accepted objects
// have valid IDs and types.
//
//	go test -run x -fuzz FuzzParseDDF -fuzztime 20s ./internal/model/
//
// Only the smaller built-in files seed it: the fuzzer spends up to a minute
// minimising each new input, which on 20 KiB documents stalls it.
func FuzzParseDDF(f *testing.F) {
	names, _ := fs.Glob(ddf.FS, "*.xml")
	for _, n := range names {
		data, err := fs.ReadFile(ddf.FS, n)
		if err != nil {
			f.Fatal(err)
		}
		if len(data) <= 8<<10 {
			f.Add(data)
		}
	}
	f.Add([]byte(ddfDoc(testObject)))
	f.Add([]byte(`<!DOCTYPE LWM2M [<!ENTITY a "b">]><LWM2M><Object><ObjectID>1</ObjectID><Name>&a;</Name></Object></LWM2M>`))
	f.Add([]byte(`<DDFList/>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		objs, err := ParseDDF(bytes.NewReader(data))
		if err != nil {
			return
		}
		if bytes.Contains(data, []byte("<!")) && !bytes.Contains(data, []byte("<!--")) && !bytes.Contains(data, []byte("<![CDATA[")) {
			t.Fatalf("accepted a document with a directive")
		}
		if errors.Is(err, ErrNoObject) || len(objs) == 0 {
			t.Fatal("no objects and no error")
		}
		for _, o := range objs {
			if o.ID > lwm2m.MaxID || o.Version == "" {
				t.Fatalf("object %+v", o)
			}
			for id, r := range o.Resources {
				if id != r.ID || r.ID > lwm2m.MaxID || r.Type > lwm2m.TypeCorelnk {
					t.Fatalf("resource %+v", r)
				}
			}
		}
	})
}
