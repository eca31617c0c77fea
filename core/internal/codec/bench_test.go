package codec

import (
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// The benchmarks read and write the Device object instance of the spec
// examples (16 values), the typical answer to a Read of /3/0.

func benchDecode(b *testing.B, f lwm2m.Format) {
	base := lwm2m.NewPath(3, 0)
	data, err := Encode(f, base, specDeviceRecords)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(f, base, data, testTypes); err != nil {
			b.Fatal(err)
		}
	}
}

func benchEncode(b *testing.B, f lwm2m.Format) {
	base := lwm2m.NewPath(3, 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(f, base, specDeviceRecords); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeTLV(b *testing.B)       { benchDecode(b, lwm2m.FormatTLV) }
func BenchmarkEncodeTLV(b *testing.B)       { benchEncode(b, lwm2m.FormatTLV) }
func BenchmarkDecodeSenMLCBOR(b *testing.B) { benchDecode(b, lwm2m.FormatSenMLCBOR) }
func BenchmarkEncodeSenMLCBOR(b *testing.B) { benchEncode(b, lwm2m.FormatSenMLCBOR) }
func BenchmarkDecodeSenMLJSON(b *testing.B) { benchDecode(b, lwm2m.FormatSenMLJSON) }

func BenchmarkParseLinks(b *testing.B) {
	data := []byte(linkCases[0].in)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseLinks(data); err != nil {
			b.Fatal(err)
		}
	}
}
