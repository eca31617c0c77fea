package model

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// ddfDoc wraps object XML in the LWM2M root of the OMA files.
func ddfDoc(objects ...string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>
<LWM2M xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="http://www.openmobilealliance.org/tech/profiles/LWM2M-v1_1.xsd">` +
		strings.Join(objects, "\n") + "</LWM2M>"
}

const testObject = `<Object ObjectType="MODefinition">
	<Name>Test</Name>
	<Description1><![CDATA[A test object.]]></Description1>
	<ObjectID>9999</ObjectID>
	<ObjectURN>urn:oma:lwm2m:x:9999</ObjectURN>
	<LWM2MVersion>1.1</LWM2MVersion>
	<ObjectVersion>2.0</ObjectVersion>
	<MultipleInstances>Multiple</MultipleInstances>
	<Mandatory>Optional</Mandatory>
	<Resources>
		<Item ID="0"><Name>Value</Name><Operations>RW</Operations><MultipleInstances>Single</MultipleInstances>
			<Mandatory>Mandatory</Mandatory><Type>Float</Type><RangeEnumeration>0..100</RangeEnumeration><Units>Cel</Units>
			<Description>The value.</Description></Item>
		<Item ID="1"><Name>Reset</Name><Operations>E</Operations><MultipleInstances>Single</MultipleInstances>
			<Mandatory>Optional</Mandatory><Type></Type><RangeEnumeration></RangeEnumeration><Units></Units><Description></Description></Item>
		<Item ID="65534"><Name>Samples</Name><Operations> R </Operations><MultipleInstances>Multiple</MultipleInstances>
			<Mandatory>Optional</Mandatory><Type>Unsigned Integer</Type></Item>
	</Resources>
	<Description2></Description2>
</Object>`

// object returns testObject with old replaced by new.
func object(old, new string) string {
	if !strings.Contains(testObject, old) {
		panic("test object has no " + old)
	}
	return strings.Replace(testObject, old, new, 1)
}

func TestParseDDF(t *testing.T) {
	cases := []struct {
		name  string
		doc   string
		check func(t *testing.T, objs []*Object)
		err   string
	}{
		{name: "full object", doc: ddfDoc(testObject), check: func(t *testing.T, objs []*Object) {
			o := objs[0]
			if o.ID != 9999 || o.Name != "Test" || o.Description != "A test object." || o.URN != "urn:oma:lwm2m:x:9999" ||
				o.Version != "2.0" || o.LwM2MVersion != "1.1" || !o.Multiple || o.Mandatory || len(o.Resources) != 3 {
				t.Fatalf("object: %+v", o)
			}
			r := o.Resources[0]
			if r.Name != "Value" || r.Type != lwm2m.TypeFloat || r.Operations != "RW" || r.Multiple || !r.Mandatory ||
				r.Units != "Cel" || r.RangeEnumeration != "0..100" || r.Description != "The value." || !r.Readable() || !r.Writable() {
				t.Fatalf("resource 0: %+v", r)
			}
			if r := o.Resources[1]; r.Type != lwm2m.TypeNone || !r.Executable() || r.Readable() {
				t.Fatalf("resource 1: %+v", r)
			}
			if r := o.Resources[65534]; r.Type != lwm2m.TypeUnsigned || r.Operations != "R" || !r.Multiple {
				t.Fatalf("resource 65534: %+v", r)
			}
			if ids := o.ResourceIDs(); len(ids) != 3 || ids[0] != 0 || ids[2] != 65534 {
				t.Fatalf("ids %v", ids)
			}
		}},
		{name: "defaults", doc: ddfDoc(`<Object><Name>Min</Name><ObjectID>7</ObjectID><MultipleInstances>Single</MultipleInstances><Resources/></Object>`),
			check: func(t *testing.T, objs []*Object) {
				if o := objs[0]; o.ID != 7 || o.Version != "1.0" || o.LwM2MVersion != "1.0" || o.Multiple || len(o.Resources) != 0 {
					t.Fatalf("object: %+v", o)
				}
			}},
		{name: "several objects", doc: ddfDoc(testObject, object("<ObjectID>9999", "<ObjectID>10000")),
			check: func(t *testing.T, objs []*Object) {
				if len(objs) != 2 || objs[0].ID != 9999 || objs[1].ID != 10000 {
					t.Fatalf("objects: %v", objs)
				}
			}},
		{name: "reusable resources skipped", doc: ddfDoc(`<Object ObjectType="CommonResources"><Resources/></Object>`, testObject),
			check: func(t *testing.T, objs []*Object) {
				if len(objs) != 1 || objs[0].ID != 9999 {
					t.Fatalf("objects: %v", objs)
				}
			}},
		{name: "utf-8 bom", doc: "\xef\xbb\xbf" + ddfDoc(testObject)},
		{name: "latin-1", doc: strings.Replace(ddfDoc(object("<Name>Test", "<Name>Test \xb0C")), "UTF-8", "ISO-8859-1", 1),
			check: func(t *testing.T, objs []*Object) {
				if objs[0].Name != "Test °C" {
					t.Fatalf("name %q", objs[0].Name)
				}
			}},

		{name: "not lwm2m", doc: `<DDFList><Item/></DDFList>`, err: "ddf: no object definition: root element is <DDFList>, want <LWM2M>"},
		{name: "only reusable resources", doc: ddfDoc(`<Object ObjectType="CommonResources"/>`), err: "ddf: no object definition"},
		{name: "empty", doc: "", err: "ddf: no object definition: empty document"},
		{name: "not xml", doc: "{}", err: "ddf: not an XML document: text before the root element"},
		{name: "unclosed", doc: `<LWM2M><Object><ObjectID>1</ObjectID>`, err: "ddf: XML syntax error on line 1: unexpected EOF"},
		{name: "mismatched tags", doc: `<LWM2M><Object></LWM2M>`, err: "element <Object> closed by </LWM2M>"},
		{name: "other encoding", doc: `<?xml version="1.0" encoding="Shift_JIS"?><LWM2M/>`, err: `unsupported encoding "Shift_JIS"`},
		{name: "missing id", doc: ddfDoc(object("<ObjectID>9999</ObjectID>", "")), err: `ddf: object "Test": ObjectID: "" is not an id in 0..65534`},
		{name: "reserved id", doc: ddfDoc(object("<ObjectID>9999", "<ObjectID>65535")), err: `ObjectID: "65535" is not an id in 0..65534`},
		{name: "bad resource id", doc: ddfDoc(object(`ID="1"`, `ID="x"`)), err: `ddf: object 9999 (Test): resource "Reset": ID: "x" is not an id`},
		{name: "duplicate resource", doc: ddfDoc(object(`ID="1"`, `ID="0"`)), err: "ddf: object 9999 (Test): resource 0 defined twice"},
		{name: "unknown type", doc: ddfDoc(object("<Type>Float", "<Type>Decimal")), err: `ddf: object 9999 (Test): resource 0 (Value): Type: unknown lwm2m type "Decimal"`},
		{name: "bad operations", doc: ddfDoc(object("<Operations>RW", "<Operations>RWX")), err: `resource 0 (Value): Operations "RWX" is not R, W, RW, E or empty`},
		{name: "bad multiple", doc: ddfDoc(object("<MultipleInstances>Multiple</MultipleInstances>\n\t<Mandatory>", "<MultipleInstances>Many</MultipleInstances>\n\t<Mandatory>")),
			err: `ddf: object 9999 (Test): MultipleInstances: "Many" is not Single or Multiple`},
		{name: "bad resource mandatory", doc: ddfDoc(object("<Mandatory>Mandatory", "<Mandatory>Yes")), err: `resource 0 (Value): Mandatory: "Yes" is not Mandatory or Optional`},
		{name: "undeclared entity", doc: ddfDoc(object("<Name>Test", "<Name>&xxe;")), err: "invalid character entity &xxe;"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := ParseDDF(strings.NewReader(tc.doc))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, objs)
			}
		})
	}
}

// TestParseDDFRefusesDTD: DTDs and entities are refused before anything
// is expanded or fetched.
func TestParseDDFRefusesDTD(t *testing.T) {
	laughs := `<?xml version="1.0"?>
<!DOCTYPE LWM2M [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<LWM2M><Object><Name>&lol3;</Name><ObjectID>1</ObjectID></Object></LWM2M>`
	cases := []struct {
		name string
		doc  string
		err  string
	}{
		{"billion laughs", laughs, "ddf: DTD and entity declarations are not allowed (<!DOCTYPE LWM2M [\n <!ENTITY lol \"lol\">\n <!...>)"},
		{"external entity", `<?xml version="1.0"?><!DOCTYPE LWM2M [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>` +
			`<LWM2M><Object><Name>&xxe;</Name><ObjectID>1</ObjectID></Object></LWM2M>`, "ddf: DTD and entity declarations are not allowed"},
		{"external dtd", `<!DOCTYPE LWM2M SYSTEM "http://example.com/evil.dtd"><LWM2M/>`, "not allowed (<!DOCTYPE LWM2M SYSTEM"},
		{"parameter entity", `<!DOCTYPE x [<!ENTITY % p SYSTEM "http://example.com/p">%p;]><LWM2M/>`, "ddf: DTD and entity declarations are not allowed"},
		{"entity inside the document", ddfDoc(`<!ENTITY x "y">` + testObject), "not allowed (<!ENTITY x \"y\">)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDDF(strings.NewReader(tc.doc))
			if !errors.Is(err, ErrDTD) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
}

func TestParseDDFSizeLimit(t *testing.T) {
	doc := ddfDoc(testObject)
	big := doc[:len(doc)-len("</LWM2M>")] + strings.Repeat(" ", MaxDDFSize) + "</LWM2M>"
	if _, err := ParseDDF(strings.NewReader(big)); err == nil || err.Error() != "ddf: document larger than 4 MiB" {
		t.Fatalf("error %v", err)
	}
	// Exactly at the limit is fine.
	fit := doc[:len(doc)-len("</LWM2M>")] + strings.Repeat(" ", MaxDDFSize-len(doc)) + "</LWM2M>"
	if _, err := ParseDDF(bytes.NewReader([]byte(fit))); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
}
