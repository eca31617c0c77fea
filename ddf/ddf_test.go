package ddf

import (
	"encoding/xml"
	"io/fs"
	"strconv"
	"strings"
	"testing"
)

// TestDefinitions checks that every built-in definition is one well-formed
// object whose ObjectID matches its file name, so the server's model and
// the files never disagree.
func TestDefinitions(t *testing.T) {
	files, err := fs.Glob(FS, "*.xml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no definitions embedded: %v", err)
	}
	for _, name := range files {
		t.Run(name, func(t *testing.T) {
			data, err := FS.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Objects []struct {
					ID    int `xml:"ObjectID"`
					Items []struct {
						ID   int    `xml:"ID,attr"`
						Type string `xml:"Type"`
					} `xml:"Resources>Item"`
				} `xml:"Object"`
			}
			if err := xml.Unmarshal(data, &doc); err != nil {
				t.Fatalf("not well-formed: %v", err)
			}
			if len(doc.Objects) != 1 {
				t.Fatalf("%d objects, want 1", len(doc.Objects))
			}
			if want := strings.TrimSuffix(name, ".xml"); strconv.Itoa(doc.Objects[0].ID) != want {
				t.Fatalf("ObjectID %d in file %s", doc.Objects[0].ID, name)
			}
			if len(doc.Objects[0].Items) == 0 {
				t.Fatal("no resources")
			}
		})
	}
}
