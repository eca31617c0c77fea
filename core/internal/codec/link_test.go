package codec

import (
	"reflect"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

func attr(name, value string) lwm2m.LinkAttr {
	return lwm2m.LinkAttr{Name: name, Value: value, HasValue: true}
}

func bare(name string) lwm2m.LinkAttr { return lwm2m.LinkAttr{Name: name} }

var linkCases = []struct {
	name string
	in   string
	want []lwm2m.Link
	err  string
}{
	{name: "wakaama 1.1 register", in: `</>;rt="oma.lwm2m";ct=110,</1>;ver=1.1,</1/0>,</3>;ver=1.1,</3/0>,</31024>;ver=1.0`,
		want: []lwm2m.Link{
			{Target: "/", Attrs: []lwm2m.LinkAttr{attr("rt", "oma.lwm2m"), attr("ct", "110")}},
			{Target: "/1", Attrs: []lwm2m.LinkAttr{attr("ver", "1.1")}},
			{Target: "/1/0"},
			{Target: "/3", Attrs: []lwm2m.LinkAttr{attr("ver", "1.1")}},
			{Target: "/3/0"},
			{Target: "/31024", Attrs: []lwm2m.LinkAttr{attr("ver", "1.0")}},
		}},
	{name: "quoted version", in: `</3>;ver="1.1"`, want: []lwm2m.Link{{Target: "/3", Attrs: []lwm2m.LinkAttr{attr("ver", "1.1")}}}},
	{name: "alternate root", in: `</lwm2m>;rt="oma.lwm2m",</lwm2m/1/0>`,
		want: []lwm2m.Link{{Target: "/lwm2m", Attrs: []lwm2m.LinkAttr{attr("rt", "oma.lwm2m")}}, {Target: "/lwm2m/1/0"}}},
	{name: "quoted separators and escapes", in: `</3/0>;title="a, b; \"c\" \\d";if=x`,
		want: []lwm2m.Link{{Target: "/3/0", Attrs: []lwm2m.LinkAttr{attr("title", `a, b; "c" \d`), attr("if", "x")}}}},
	{name: "whitespace", in: " \n</1/0> ; ver = 1.0 ,\r\n\t</3/0>;pmin=10 ; pmax=60 \n",
		want: []lwm2m.Link{
			{Target: "/1/0", Attrs: []lwm2m.LinkAttr{attr("ver", "1.0")}},
			{Target: "/3/0", Attrs: []lwm2m.LinkAttr{attr("pmin", "10"), attr("pmax", "60")}},
		}},
	{name: "attribute without value", in: `</3/0>;obs;Q,</4>`,
		want: []lwm2m.Link{{Target: "/3/0", Attrs: []lwm2m.LinkAttr{bare("obs"), bare("Q")}}, {Target: "/4"}}},
	{name: "empty values", in: `</3>;a=;b=""`,
		want: []lwm2m.Link{{Target: "/3", Attrs: []lwm2m.LinkAttr{attr("a", ""), attr("b", "")}}}},
	{name: "discover", in: `</3/0/7>;dim=2;gt=50.5;st=0.5,</3/0/7/0>,</3/0/7/1>`,
		want: []lwm2m.Link{
			{Target: "/3/0/7", Attrs: []lwm2m.LinkAttr{attr("dim", "2"), attr("gt", "50.5"), attr("st", "0.5")}},
			{Target: "/3/0/7/0"}, {Target: "/3/0/7/1"},
		}},
	{name: "stray semicolons", in: `</1/0>;, </3/0>;ver=1.1; `,
		want: []lwm2m.Link{{Target: "/1/0"}, {Target: "/3/0", Attrs: []lwm2m.LinkAttr{attr("ver", "1.1")}}}},
	{name: "trailing comma", in: `</1/0>,`, want: []lwm2m.Link{{Target: "/1/0"}}},
	{name: "empty", in: "", want: nil},
	{name: "blank", in: " \r\n", want: nil},

	{name: "no angle bracket", in: `/1/0`, err: `link-format: expected '<' at offset 0, got '/'`},
	{name: "unterminated target", in: `</1/0>,</3/0`, err: "link-format: unterminated '<' at offset 7"},
	{name: "empty target", in: `<>;ct=40`, err: "link-format: empty target at offset 0"},
	{name: "space in target", in: `</1 /0>`, err: `link-format: invalid character ' ' in target at offset 3`},
	{name: "junk after target", in: `</1/0>x`, err: `link-format: expected ',' or ';' after link 1 at offset 6, got 'x'`},
	{name: "missing separator", in: `</1/0></3/0>`, err: `expected ',' or ';' after link 1 at offset 6, got '<'`},
	{name: "empty link", in: `</1/0>,,</3/0>`, err: "link-format: empty link at offset 7"},
	{name: "leading comma", in: `,</3/0>`, err: `link-format: expected '<' at offset 0, got ','`},
	{name: "empty parameter", in: `</1/0>;;ver=1`, err: `link-format: invalid character ';' in parameter name at offset 7`},
	{name: "bad parameter name", in: `</1/0>;"ver"=1`, err: `invalid character '"' in parameter name at offset 7`},
	{name: "unterminated quote", in: `</1/0>;title="abc,</3/0>`, err: "link-format: unterminated quoted value at offset 13"},
	{name: "escape at end", in: `</1/0>;title="abc\`, err: "link-format: unterminated quoted value at offset 13"},
	{name: "quote inside token", in: `</1/0>;ver=1"1"`, err: `link-format: invalid character '"' in value of "ver" at offset 12`},
	{name: "value then junk", in: `</1/0>;ver="1" x`, err: `expected ',' or ';' after link 1 at offset 15, got 'x'`},
}

func TestParseLinks(t *testing.T) {
	for _, tc := range linkCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseLinks([]byte(tc.in))
			if wantMalformed(t, err, tc.err) {
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestFormatLinks(t *testing.T) {
	links := []lwm2m.Link{
		{Target: "/", Attrs: []lwm2m.LinkAttr{attr("rt", "oma.lwm2m"), attr("ct", "110")}},
		{Target: "/3", Attrs: []lwm2m.LinkAttr{attr("ver", "1.1")}},
		{Target: "/3/0", Attrs: []lwm2m.LinkAttr{bare("obs"), attr("title", `a, "b"; \c`), attr("x", ""), attr("y", "a b")}},
	}
	want := `</>;rt="oma.lwm2m";ct=110,</3>;ver=1.1,</3/0>;obs;title="a, \"b\"; \\c";x="";y="a b"`
	got := FormatLinks(links)
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	back, err := ParseLinks(got)
	if err != nil || !reflect.DeepEqual(back, links) {
		t.Fatalf("round trip: %v\n got %#v", err, back)
	}
	if got := FormatLinks(nil); len(got) != 0 {
		t.Fatalf("no links: %q", got)
	}
}
