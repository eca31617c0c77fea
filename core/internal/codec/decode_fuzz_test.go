package codec

import (
	"errors"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// Each FuzzDecode target feeds a base path and a payload to Decode and
// checks that it never panics, that errors wrap ErrMalformed, that every
// record lies on a resource under the base path, and that whatever decodes
// re-encodes to a payload that decodes to the same records.
//
//	go test -run x -fuzz FuzzDecodeTLV -fuzztime 20s ./internal/codec/

func FuzzDecodeTLV(f *testing.F) {
	for _, tc := range tlvGolden {
		f.Add(tc.base, unhex(f, tc.hex))
	}
	for _, tc := range tlvDecodeCases {
		f.Add(tc.base, unhex(f, tc.hex))
	}
	addRoundTrips(f, lwm2m.FormatTLV)
	f.Fuzz(fuzzDecode(lwm2m.FormatTLV))
}

func FuzzDecodeText(f *testing.F) {
	for _, tc := range singleCases {
		if tc.format == lwm2m.FormatText {
			f.Add(tc.base, []byte(tc.data))
		}
	}
	f.Fuzz(fuzzDecode(lwm2m.FormatText))
}

func FuzzDecodeOpaque(f *testing.F) {
	for _, tc := range singleCases {
		if tc.format == lwm2m.FormatOpaque {
			f.Add(tc.base, []byte(tc.data))
		}
	}
	f.Fuzz(fuzzDecode(lwm2m.FormatOpaque))
}

func FuzzDecodeCBOR(f *testing.F) {
	for _, tc := range singleCases {
		if tc.format == lwm2m.FormatCBOR {
			f.Add(tc.base, unhex(f, tc.data))
		}
	}
	addRoundTrips(f, lwm2m.FormatCBOR)
	f.Fuzz(fuzzDecode(lwm2m.FormatCBOR))
}

func FuzzDecodeOMAJSON(f *testing.F) {
	for _, tc := range omaJSONCases {
		f.Add(tc.base, []byte(tc.data))
	}
	addRoundTrips(f, lwm2m.FormatOMAJSON)
	f.Fuzz(fuzzDecode(lwm2m.FormatOMAJSON))
}

func FuzzDecodeSenMLJSON(f *testing.F) {
	for _, tc := range senmlCases {
		f.Add(tc.base, []byte(tc.data))
	}
	addRoundTrips(f, lwm2m.FormatSenMLJSON)
	f.Fuzz(fuzzDecode(lwm2m.FormatSenMLJSON))
}

func FuzzDecodeSenMLCBOR(f *testing.F) {
	for _, tc := range senmlCases {
		if !tc.jsonOnly {
			f.Add(tc.base, toSenMLCBOR(f, tc.data))
		}
	}
	addRoundTrips(f, lwm2m.FormatSenMLCBOR)
	f.Fuzz(fuzzDecode(lwm2m.FormatSenMLCBOR))
}

func addRoundTrips(f *testing.F, format lwm2m.Format) {
	for _, rt := range roundTrips(format) {
		data, err := Encode(format, rt.base, rt.recs)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(rt.base.String(), data)
	}
}

func fuzzDecode(format lwm2m.Format) func(t *testing.T, base string, data []byte) {
	return func(t *testing.T, base string, data []byte) {
		p, err := lwm2m.ParsePath(base)
		if err != nil {
			return
		}
		recs, err := Decode(format, p, data, testTypes)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		for _, r := range recs {
			if r.Path.Level() < lwm2m.LevelResource || !r.Path.HasPrefix(p) {
				t.Fatalf("record %v is not a resource under %v", r.Path, p)
			}
		}
		enc, err := Encode(format, p, recs)
		if err != nil {
			// Not everything a client may send can be sent back: TLV
			// duplicates, JSON floats that overflowed to infinity.
			return
		}
		again, err := Decode(format, p, enc, testTypes)
		if err != nil {
			t.Fatalf("decoding our own encoding %q: %v", enc, err)
		}
		want := recs
		if format == lwm2m.FormatTLV {
			want = sortedCopy(recs) // TLV groups by path
		}
		// Times pass through float seconds; they keep millisecond precision.
		if d := sameRecords(again, want, time.Millisecond); d != "" {
			t.Fatalf("re-encoded as %q: %s", enc, d)
		}
	}
}

func FuzzParseLinks(f *testing.F) {
	for _, tc := range linkCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		links, err := ParseLinks(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		out := FormatLinks(links)
		again, err := ParseLinks(out)
		if err != nil {
			t.Fatalf("parsing our own %q: %v", out, err)
		}
		if len(again) != len(links) {
			t.Fatalf("%q: %d links, then %d", out, len(links), len(again))
		}
		for i := range links {
			a, b := links[i], again[i]
			if a.Target != b.Target || len(a.Attrs) != len(b.Attrs) {
				t.Fatalf("%q: link %d changed: %#v, then %#v", out, i, a, b)
			}
			for j := range a.Attrs {
				if a.Attrs[j] != b.Attrs[j] {
					t.Fatalf("%q: link %d attr %d changed: %#v, then %#v", out, i, j, a.Attrs[j], b.Attrs[j])
				}
			}
		}
	})
}
