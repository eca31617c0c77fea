package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

func queryOf(s string) (*query, error) {
	var q query
	if s == "" {
		return &q, nil
	}
	for _, p := range strings.Split(s, "&") {
		if err := q.add([]byte(p)); err != nil {
			return &q, err
		}
	}
	return &q, nil
}

func TestParseRegister(t *testing.T) {
	tests := []struct {
		name     string
		query    string
		payload  string
		want     registerRequest // compared fields only
		wantCode codes.Code
		wantErr  string
	}{
		{name: "defaults", query: "ep=a", want: registerRequest{endpoint: "a", version: "1.0", lifetime: DefaultLifetime, binding: "U"}},
		{name: "1.0 UQS", query: "ep=a&b=UQS&lt=30", want: registerRequest{endpoint: "a", version: "1.0", lifetime: 30, binding: "UQS", queue: true}},
		{name: "1.1 Q flag", query: "ep=a&lwm2m=1.1&b=UT&Q", want: registerRequest{endpoint: "a", version: "1.1", lifetime: DefaultLifetime, binding: "UT", queue: true}},
		{name: "1.2 letters", query: "ep=a&lwm2m=1.2&b=UMH", want: registerRequest{endpoint: "a", version: "1.2", lifetime: DefaultLifetime, binding: "UMH"}},
		{name: "awake time", query: "ep=a&at=0", want: registerRequest{endpoint: "a", version: "1.0", lifetime: DefaultLifetime, binding: "U", hasAwake: true}},
		{name: "unknown parameters ignored", query: "ep=a&foo=bar&pct=110", want: registerRequest{endpoint: "a", version: "1.0", lifetime: DefaultLifetime, binding: "U"}},
		{name: "version 1.3", query: "ep=a&lwm2m=1.3", wantCode: codes.PreconditionFailed, wantErr: `unsupported LwM2M version "1.3"`},
		{name: "empty version", query: "ep=a&lwm2m=", wantCode: codes.PreconditionFailed, wantErr: `unsupported LwM2M version ""`},
		{name: "no ep", query: "lt=5", wantCode: codes.BadRequest, wantErr: "missing endpoint name"},
		{name: "empty ep", query: "ep=", wantCode: codes.BadRequest, wantErr: "missing endpoint name"},
		{name: "long ep", query: "ep=" + strings.Repeat("x", 256), wantCode: codes.BadRequest, wantErr: "longer than 255"},
		{name: "negative lt", query: "ep=a&lt=-1", wantCode: codes.BadRequest, wantErr: `bad lifetime lt="-1"`},
		{name: "huge lt", query: "ep=a&lt=99999999999", wantCode: codes.BadRequest, wantErr: "bad lifetime"},
		{name: "bad at", query: "ep=a&at=x", wantCode: codes.BadRequest, wantErr: `bad awake time at="x"`},
		{name: "Q with value", query: "ep=a&Q=1", wantCode: codes.BadRequest, wantErr: "Q takes no value"},
		{name: "1.0 binding T", query: "ep=a&b=T", wantCode: codes.BadRequest, wantErr: "not valid for LwM2M 1.0"},
		{name: "1.1 binding UQ", query: "ep=a&lwm2m=1.1&b=UQ", wantCode: codes.BadRequest, wantErr: "separate Q parameter"},
		{name: "1.1 binding M", query: "ep=a&lwm2m=1.1&b=M", wantCode: codes.BadRequest, wantErr: "letters are U, S, N, T"},
		{name: "1.1 repeated letter", query: "ep=a&lwm2m=1.1&b=UU", wantCode: codes.BadRequest, wantErr: `repeats 'U'`},
		{name: "1.1 empty binding", query: "ep=a&lwm2m=1.1&b=", wantCode: codes.BadRequest, wantErr: "empty binding"},
		{name: "long sms", query: "ep=a&sms=" + strings.Repeat("1", 65), wantCode: codes.BadRequest, wantErr: "sms number is longer"},
		{name: "duplicate lt", query: "ep=a&lt=1&lt=2", wantCode: codes.BadRequest, wantErr: `duplicate query parameter "lt"`},
		{name: "bad payload", query: "ep=a", payload: "</3/0>x", wantCode: codes.BadRequest, wantErr: "bad link-format payload"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, err := queryOf(tc.query)
			var got registerRequest
			if err == nil {
				got, err = parseRegister(q, []byte(tc.payload))
			}
			if tc.wantErr != "" {
				var re *requestError
				if !errors.As(err, &re) || re.code != tc.wantCode || !strings.Contains(re.msg, tc.wantErr) {
					t.Fatalf("err = %v, want %v %q", err, tc.wantCode, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w := tc.want
			if got.endpoint != w.endpoint || got.version != w.version || got.lifetime != w.lifetime ||
				got.binding != w.binding || got.queue != w.queue || got.hasAwake != w.hasAwake {
				t.Errorf("got %+v\nwant %+v", got, w)
			}
		})
	}
}

func TestParsePayload(t *testing.T) {
	tests := []struct {
		name     string
		payload  string
		oldRoot  string
		wantRoot string
		wantCT   []uint16
		wantErr  string
	}{
		{name: "empty", payload: ""},
		{name: "no root link", payload: "</3/0>,</1/0>"},
		{name: "root with ct", payload: `</>;rt="oma.lwm2m";ct=11543,</3/0>`, wantRoot: "/", wantCT: []uint16{11543}},
		{name: "quoted ct list", payload: `</>;rt="oma.lwm2m";ct="60 110 112",</3/0>`, wantRoot: "/", wantCT: []uint16{60, 110, 112}},
		{name: "alternate root", payload: `</lwm2m>;rt="oma.lwm2m",</lwm2m/3/0>,</lwm2m/3303>;ver="1.1"`, wantRoot: "/lwm2m"},
		{name: "alternate root with slash", payload: `</lwm2m/>;rt="oma.lwm2m",</lwm2m/3/0>`, wantRoot: "/lwm2m"},
		{name: "rt list", payload: `</x>;rt="core oma.lwm2m",</x/3/0>`, wantRoot: "/x"},
		{name: "update keeps old root", payload: `</lwm2m/3/0>`, oldRoot: "/lwm2m"},
		{name: "whitespace and attributes", payload: " </3/0> ; title=\"a, b\" ,\n</1>;ver=1.1;Q ", wantErr: ""},
		{name: "bad ct", payload: `</>;rt="oma.lwm2m";ct=json`, wantErr: `bad content format "json"`},
		{name: "ct too large", payload: `</>;rt="oma.lwm2m";ct=70000`, wantErr: "bad content format"},
		{name: "two roots", payload: `</>;rt="oma.lwm2m",</a>;rt="oma.lwm2m"`, wantErr: "more than one root link"},
		{name: "relative root", payload: `<a>;rt="oma.lwm2m"`, wantErr: "must start with /"},
		{name: "resource path", payload: "</3/0/1>", wantErr: "not an object or object instance path"},
		{name: "text path", payload: "</3/zero>", wantErr: "not an object or object instance path"},
		{name: "relative link", payload: "<3/0>", wantErr: "must start with /"},
		{name: "outside root", payload: `</r>;rt="oma.lwm2m",</s/3>`, wantErr: "not under the root path /r"},
		{name: "bad ver", payload: `</3>;ver=1`, wantErr: `bad object version ver="1"`},
		{name: "unterminated", payload: `</3`, wantErr: "bad link-format payload"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := parsePayload(tc.payload, tc.oldRoot)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if info.root != tc.wantRoot || !slices.Equal(info.formats, tc.wantCT) {
				t.Errorf("root %q ct %v, want %q %v", info.root, info.formats, tc.wantRoot, tc.wantCT)
			}
		})
	}
}

func TestRDPath(t *testing.T) {
	tests := []struct {
		path   string
		wantID string
		wantOK bool
	}{
		{"/rd", "", true},
		{"/rd/abc", "abc", true},
		{"/rd/abc/def", "", false},
		{"/bs", "", false},
		{"/", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			opts := make(message.Options, 0, 4)
			buf := make([]byte, 64)
			opts, _, _ = opts.SetPath(buf, tc.path)
			id, ok := rdPath(opts)
			if id != tc.wantID || ok != tc.wantOK {
				t.Errorf("got %q %v, want %q %v", id, ok, tc.wantID, tc.wantOK)
			}
		})
	}
}

func TestExpiryKey(t *testing.T) {
	k := expiryKey("t1", 1700000000123, "abcdefghij")
	if k != "t1/1700000000123/abcdefghij" {
		t.Errorf("key %q", k)
	}
	if expiryKey("t1", 999, "z") >= expiryKey("t1", 1000, "a") {
		t.Error("a tenant's keys do not sort by time")
	}
	if k := expiryKey("t1", 999, "z"); k >= "t10" || k < "t1/" {
		t.Errorf("key %q is outside its tenant's range", k)
	}
	tests := []struct {
		key    string
		tenant string
		ms     int64
		id     string
		wantOK bool
	}{
		{"t1/0000000000999/x", "t1", 999, "x", true},
		{"0000000000999/x", "", 0, "", false}, // legacy
		{"garbage", "", 0, "", false},
		{"t1/12/x", "", 0, "", false},
		{"t1/0000000000999/", "", 0, "", false},
		{"/0000000000999/x", "", 0, "", false},
		{"t1/0000000000999/x/y", "", 0, "", false},
		{"t1/abcdefghijklm/x", "", 0, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			tenant, ms, id, ok := splitExpiryKey(tc.key)
			if ok != tc.wantOK || (ok && (tenant != tc.tenant || ms != tc.ms || id != tc.id)) {
				t.Errorf("got %q %d %q %v", tenant, ms, id, ok)
			}
		})
	}
	legacy := []struct {
		key    string
		ms     int64
		id     string
		wantOK bool
	}{
		{"0000000000999/x", 999, "x", true},
		{"t1/0000000000999/x", 0, "", false},
		{"12/x", 0, "", false},
		{"0000000000999/", 0, "", false},
	}
	for _, tc := range legacy {
		t.Run("legacy "+tc.key, func(t *testing.T) {
			ms, id, ok := splitLegacyExpiryKey(tc.key)
			if ok != tc.wantOK || (ok && (ms != tc.ms || id != tc.id)) {
				t.Errorf("got %d %q %v", ms, id, ok)
			}
		})
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	for range 10000 {
		id := newID()
		if len(id) != 17 || strings.Trim(id, idAlphabet) != "" {
			t.Fatalf("bad id %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
		// the time part never goes back, so later ids sort after earlier
		// ones of another millisecond
		if prev != "" && id[:9] < prev[:9] {
			t.Fatalf("id %q sorts before the earlier %q", id, prev)
		}
		prev = id
	}
}

// FuzzParseRegister feeds arbitrary query strings and payloads to the
// Register and Update parsers: they must return a request or an error,
// never panic.
func FuzzParseRegister(f *testing.F) {
	f.Add("ep=a&lt=60&lwm2m=1.1&b=U", wakaamaPayload)
	f.Add("ep=a&lwm2m=1.2&Q&at=10", `</1>;ver="1.1",</1/0>`)
	f.Add("ep=a&b=UQS&sms=123", `</lwm2m>;rt="oma.lwm2m";ct="60 110",</lwm2m/3/0>`)
	f.Add("lwm2m=9", "<")
	f.Fuzz(func(t *testing.T, qs, payload string) {
		var q query
		for _, p := range strings.Split(qs, "&") {
			if q.add([]byte(p)) != nil {
				return
			}
		}
		_, _ = parseRegister(&q, []byte(payload))
		_, _ = parseUpdate(&q, []byte(payload), &Registration{Version: "1.1", RootPath: "/lwm2m"})
	})
}

func TestMarshalRegUnescaped(t *testing.T) {
	reg := &Registration{ID: "id", Endpoint: "ep", Links: `</>;rt="oma.lwm2m",</3/0>`}
	data, err := marshalReg(reg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`</3/0>`)) || bytes.Contains(data, []byte(`\u003c`)) {
		t.Fatalf("links escaped: %s", data)
	}
	var back Registration
	if err := json.Unmarshal(data, &back); err != nil || back.Links != reg.Links || data[len(data)-1] != '}' {
		t.Fatalf("round trip: %+v, %v (%q)", back, err, data)
	}
}
