package device

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/core/internal/registry"
)

func TestParseAttributes(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		want    string // Attributes.String()
		wantErr string
	}{
		{name: "periods", in: "pmin=10&pmax=60", want: "pmin=10&pmax=60"},
		{name: "all, canonical order", in: "epmax=9&epmin=8&st=1.5&lt=1&gt=10&pmax=60&pmin=10", want: "pmin=10&pmax=60&gt=10&lt=1&st=1.5&epmin=8&epmax=9"},
		{name: "leading ? and spaces", in: " ?pmin=1 & gt = -2.5e1", want: "pmin=1&gt=-25"},
		{name: "remove bare and empty", in: "pmin&gt=", want: "pmin&gt"},
		{name: "cancel removes all", in: "cancel", want: "pmin&pmax&gt&lt&st&epmin&epmax"},
		{name: "upper case names", in: "PMIN=5", want: "pmin=5"},
		{name: "empty", in: "", wantErr: "empty"},
		{name: "empty parameter", in: "pmin=1&&pmax=2", wantErr: "empty parameter"},
		{name: "unknown", in: "foo=1", wantErr: `unknown attribute "foo"`},
		{name: "twice", in: "pmin=1&pmin=2", wantErr: "pmin given twice"},
		{name: "negative period", in: "pmin=-1", wantErr: `pmin="-1" is not a number of seconds`},
		{name: "period too big", in: "pmax=4294967296", wantErr: "is not a number of seconds"},
		{name: "not a number", in: "gt=abc", wantErr: `gt="abc" is not a number`},
		{name: "NaN", in: "st=NaN", wantErr: "is not a number"},
		{name: "infinite", in: "lt=Inf", wantErr: "is not a number"},
		{name: "pmin above pmax", in: "pmin=60&pmax=10", wantErr: "pmin 60 is greater than pmax 10"},
		{name: "epmin above epmax", in: "epmin=6&epmax=1", wantErr: "epmin 6 is greater than epmax 1"},
		{name: "negative step", in: "st=-1", wantErr: "st must not be negative"},
		{name: "lt not below gt", in: "lt=10&gt=10", wantErr: "need lt + 2*st < gt"},
		{name: "step too wide", in: "lt=1&gt=5&st=2", wantErr: "need lt + 2*st < gt"},
		{name: "cancel with value", in: "cancel=1", wantErr: "cancel takes no value"},
		{name: "set and removed", in: "cancel&pmin=3", wantErr: "pmin is both set and removed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseAttributes(tc.in)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrBadAttributes) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := a.String(); got != tc.want {
				t.Fatalf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseExecuteArgs(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		want    []ExecArg
		wantErr string
	}{
		{name: "none", in: ""},
		{name: "digit", in: "1", want: []ExecArg{{ID: 1}}},
		{name: "spec example", in: "0='http://x',1", want: []ExecArg{{ID: 0, Value: "http://x", HasValue: true}, {ID: 1}}},
		{name: "empty value", in: "5=''", want: []ExecArg{{ID: 5, HasValue: true}}},
		{name: "punctuation", in: "9='!#$%&()*+-./:;<=>?@[]^_`{|}~'", want: []ExecArg{{ID: 9, Value: "!#$%&()*+-./:;<=>?@[]^_`{|}~", HasValue: true}}},
		{name: "two digits", in: "12", wantErr: "want ',' at offset 1"},
		{name: "not a digit", in: "a", wantErr: "want a digit at offset 0"},
		{name: "unquoted", in: "0=x", wantErr: "must be quoted"},
		{name: "unclosed", in: "0='x", wantErr: "not closed"},
		{name: "space", in: "0='a b'", wantErr: `character ' ' not allowed`},
		{name: "double quote", in: `0='"'`, wantErr: "not allowed"},
		{name: "backslash", in: `0='\'`, wantErr: "not allowed"},
		{name: "trailing comma", in: "0,", wantErr: "want a digit at offset 2"},
		{name: "equals only", in: "0=", wantErr: "must be quoted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseExecuteArgs(tc.in)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrBadArgs) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if s := FormatExecuteArgs(got); s != tc.in {
				t.Fatalf("FormatExecuteArgs = %q, want %q", s, tc.in)
			}
		})
	}
}

func FuzzParseAttributes(f *testing.F) {
	for _, s := range []string{"pmin=10&pmax=60&gt=5", "cancel", "pmin&st=", "lt=1&gt=5&st=1", "?epmin=1&epmax=2", "gt=1e308&lt=-1e308"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAttributes(s)
		if err != nil {
			return
		}
		if err := a.Validate(); err != nil {
			t.Fatalf("parsed %q but invalid: %v", s, err)
		}
		b, err := ParseAttributes(a.String())
		if err != nil {
			t.Fatalf("%q -> %q does not parse again: %v", s, a.String(), err)
		}
		if a.String() != b.String() {
			t.Fatalf("round trip %q -> %q -> %q", s, a.String(), b.String())
		}
	})
}

func FuzzParseExecuteArgs(f *testing.F) {
	for _, s := range []string{"0='http://x',1", "", "5=''", "0='a", "1,2,3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args, err := ParseExecuteArgs(s)
		if err != nil {
			return
		}
		if got := FormatExecuteArgs(args); got != s {
			t.Fatalf("round trip %q -> %q", s, got)
		}
	})
}

func TestAlternateRootPath(t *testing.T) {
	cases := []struct {
		name, root, path, want string
	}{
		{"default", "", "/3/0/9", "/3/0/9"},
		{"slash", "/", "/3/0", "/3/0"},
		{"alternate", "/lwm2m", "/3/0/9", "/lwm2m/3/0/9"},
		{"alternate without slash", "lwm2m/", "/3", "/lwm2m/3"},
		{"alternate root", "/lwm2m", "/", "/lwm2m"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg := &registry.Registration{RootPath: tc.root}
			if got := uri(reg, lwm2m.MustParsePath(tc.path)); got != tc.want {
				t.Fatalf("uri = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseLocation(t *testing.T) {
	cases := []struct {
		name, root, loc, want, wantErr string
	}{
		{name: "plain", loc: "3303/7", want: "/3303/7"},
		{name: "leading slash", loc: "/3303/7", want: "/3303/7"},
		{name: "under alternate root", root: "/lwm2m", loc: "lwm2m/3303/7", want: "/3303/7"},
		{name: "object only", loc: "3303", wantErr: "not an instance path"},
		{name: "garbage", loc: "rd/x", wantErr: "not an instance path"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseLocation(&registry.Registration{Endpoint: "dev", RootPath: tc.root}, tc.loc)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("got %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}
