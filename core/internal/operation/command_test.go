package operation

import (
	"strings"
	"testing"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		name, line string
		verb       Verb
		path, arg  string
		err        string
	}{
		{name: "read", line: "read /3/0/0", verb: VerbRead, path: "/3/0/0"},
		{name: "read object", line: "  READ /3 ", verb: VerbRead, path: "/3"},
		{name: "write keeps spaces", line: "write /3/0/15 Europe/Berlin time", verb: VerbWrite, path: "/3/0/15", arg: "Europe/Berlin time"},
		{name: "execute args", line: "execute /5/0/2 0='x',1", verb: VerbExecute, path: "/5/0/2", arg: "0='x',1"},
		{name: "create", line: `create /3303 {"5700": 21.5, "5701": "Cel"}`, verb: VerbCreate, path: "/3303"},
		{name: "delete", line: "delete /3303/1", verb: VerbDelete, path: "/3303/1"},
		{name: "discover root", line: "discover /", verb: VerbDiscover, path: "/"},
		{name: "observe", line: "observe /3303/0/5700", verb: VerbObserve, path: "/3303/0/5700"},
		{name: "cancel", line: "cancelobservation /3303/0/5700", verb: VerbCancelObservation, path: "/3303/0/5700"},
		{name: "writeattr", line: "writeattr /3303/0/5700 pmin=1&pmax=5", verb: VerbWriteAttributes, path: "/3303/0/5700", arg: "pmin=1&pmax=5"},
		{name: "empty", line: "  ", err: "empty command"},
		{name: "unknown verb", line: "reboot /3/0/4", err: `unknown command "reboot"`},
		{name: "no path", line: "read", err: "read needs a path"},
		{name: "bad path", line: "read /3/x", err: "invalid lwm2m path"},
		{name: "write without value", line: "write /3/0/14", err: "write needs a value"},
		{name: "write to instance", line: "write /3/0 1", err: "write needs a resource path"},
		{name: "execute object", line: "execute /3", err: "execute needs a resource path"},
		{name: "delete resource", line: "delete /3/0/1", err: "delete needs an object instance path"},
		{name: "create bad json", line: "create /3303 {5700:1}", err: "create takes a JSON object"},
		{name: "create bad id", line: `create /3303 {"x":1}`, err: `"x" is not a resource id`},
		{name: "create nested", line: `create /3303 {"1":{"a":1}}`, err: "must be a string, number or boolean"},
		{name: "read with arg", line: "read /3/0/0 extra", err: "takes no argument"},
		{name: "writeattr without attrs", line: "writeattr /3/0/9", err: "writeattr needs attributes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseCommand(tc.line)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseCommand(%q) error = %v, want %q", tc.line, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCommand(%q): %v", tc.line, err)
			}
			if c.Verb != tc.verb || c.Path.String() != tc.path || (tc.arg != "" && c.Arg != tc.arg) {
				t.Fatalf("got %+v", c)
			}
		})
	}
}

func TestParseCommandCreateValues(t *testing.T) {
	c, err := ParseCommand(`create /3303/2 {"5700": 21.5, "5701": "Cel", "5750": true}`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint16]string{5700: "21.5", 5701: "Cel", 5750: "true"}
	for id, v := range want {
		if c.Resources[id] != v {
			t.Errorf("resource %d = %q, want %q", id, c.Resources[id], v)
		}
	}
	if got := c.String(); got != `create /3303/2 {"5700":"21.5","5701":"Cel","5750":"true"}` {
		t.Errorf("String() = %s", got)
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"read /3/0/0", "write /3/0/14 +02", `create /3303 {"5700":1}`, "writeattr /1 pmin=1", "delete /1/2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := ParseCommand(line)
		if err != nil {
			return
		}
		// a parsed command formats back into one that parses the same way
		again, err := ParseCommand(c.String())
		if err != nil {
			t.Fatalf("ParseCommand(%q) ok but its String %q fails: %v", line, c.String(), err)
		}
		if again.Verb != c.Verb || again.Path != c.Path {
			t.Fatalf("round trip changed %+v to %+v", c, again)
		}
	})
}
