package bootstrap

import (
	"net"
	"strings"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

func queryOptions(qs ...string) message.Options {
	var opts message.Options
	for _, q := range qs {
		opts = append(opts, message.Option{ID: message.URIQuery, Value: []byte(q)})
	}
	return opts
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name    string
		queries []string
		want    request
		wantErr string
	}{
		{"endpoint only", []string{"ep=dev1"}, request{endpoint: "dev1"}, ""},
		{"with pct", []string{"ep=dev1", "pct=112"}, request{endpoint: "dev1", pct: 112, hasPCT: true}, ""},
		{"unknown queries ignored", []string{"lwm2m=1.1", "ep=dev1", "x"}, request{endpoint: "dev1"}, ""},
		{"missing ep", []string{"pct=110"}, request{}, "missing ep query"},
		{"empty ep", []string{"ep="}, request{}, "ep must be 1 to 255 bytes"},
		{"long ep", []string{"ep=" + strings.Repeat("a", 256)}, request{}, "ep must be 1 to 255 bytes"},
		{"pct not a number", []string{"ep=d", "pct=x"}, request{}, `pct "x" is not a content format number`},
		{"pct too big", []string{"ep=d", "pct=65536"}, request{}, `pct "65536" is not a content format number`},
		{"pct with control bytes", []string{"ep=d", "pct=\x00\x1b"}, request{}, `pct "  " is not a content format number`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRequest(queryOptions(tc.queries...))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestChooseFormat(t *testing.T) {
	tests := []struct {
		name string
		r    request
		want lwm2m.Format
	}{
		{"no pct", request{}, lwm2m.FormatTLV},
		{"senml cbor", request{pct: 112, hasPCT: true}, lwm2m.FormatSenMLCBOR},
		{"senml json", request{pct: 110, hasPCT: true}, lwm2m.FormatSenMLJSON},
		{"old tlv", request{pct: 1542, hasPCT: true}, lwm2m.FormatOldTLV},
		{"text cannot carry instances", request{pct: 0, hasPCT: true}, lwm2m.FormatTLV},
		{"unknown", request{pct: 9999, hasPCT: true}, lwm2m.FormatTLV},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := chooseFormat(tc.r); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCompleteHost(t *testing.T) {
	specific := &net.UDPAddr{IP: net.ParseIP("192.0.2.7"), Port: 5683}
	v6 := &net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 5683}
	wildcard := &net.UDPAddr{IP: net.IPv6unspecified, Port: 5683}
	tests := []struct {
		name, uri string
		local     net.Addr
		want      string
	}{
		{"empty stays empty", "", specific, ""},
		{"host kept", "coap://lwm2m.example.com:5783", specific, "coap://lwm2m.example.com:5783"},
		{"no host", "coap://:5783", specific, "coap://192.0.2.7:5783"},
		{"unspecified v4", "coaps://0.0.0.0:5784", specific, "coaps://192.0.2.7:5784"},
		{"unspecified v6", "coap://[::]:5783", v6, "coap://[2001:db8::1]:5783"},
		{"no port", "coap://", specific, "coap://192.0.2.7"},
		{"wildcard socket: nothing better", "coap://:5783", wildcard, "coap://:5783"},
		{"no local address", "coap://:5783", nil, "coap://:5783"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := completeHost(tc.uri, tc.local)
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := completeHost("coap://%zz", specific); err == nil {
		t.Error("a malformed URI was accepted")
	}
}

func TestPlanRefusesUnusableConfig(t *testing.T) {
	opts := &Options{ServerURI: "coap://:5783", SecureServerURI: "coaps://:5784"}
	tests := []struct {
		name    string
		cfg     Config
		opts    *Options
		wantErr string
	}{
		{"unknown security mode", Config{SecurityMode: "RPK"}, opts, `security mode "RPK" is not supported`},
		{"PSK without key", Config{SecurityMode: SecurityPSK, PSKIdentity: "x"}, opts, "PSK device without lwm2m psk_id and psk_key"},
		{"no server uri", Config{}, &Options{}, "no LwM2M server URI"},
		{"no bootstrap uri", Config{GenerateBootstrapServerConfig: true}, opts, "no bootstrap server URI configured"},
		{"offset at the end", Config{SecurityInstanceOffset: 0xffff}, opts, "leaves no room"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := plan(&tc.cfg, tc.opts, lwm2m.FormatTLV, nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// FuzzParseRequest feeds hostile Uri-Query options to the request parser:
// it must never panic, and what it accepts is bounded.
func FuzzParseRequest(f *testing.F) {
	f.Add("ep=dev1", "pct=112")
	f.Add("ep=", "pct=")
	f.Add("pct=99999999999", "ep=\xff\xfe")
	f.Fuzz(func(t *testing.T, a, b string) {
		r, err := parseRequest(queryOptions(a, b))
		if err != nil {
			if strings.ContainsFunc(err.Error(), func(r rune) bool { return r < 0x20 }) {
				t.Errorf("error carries control characters: %q", err)
			}
			return
		}
		if r.endpoint == "" || len(r.endpoint) > maxEndpoint {
			t.Errorf("accepted endpoint of %d bytes", len(r.endpoint))
		}
		_ = chooseFormat(r)
	})
}
