package codec

import (
	"slices"
	"strconv"
	"strings"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// Preferred chooses the Accept format of a request to a client of LwM2M
// version (the lwm2m= of its registration) that advertised the formats
// in advertised (the ct= of its "</>" link), for a request at level.
//
// LwM2M 1.0 clients get TLV, which every 1.0 client must support, except
// that object and instance reads go as OMA JSON when the client advertised
// it (Wakaama built for 1.0 answers in it anyway). 1.1+ clients get SenML
// CBOR if they advertised it, else SenML JSON if they advertised it, else
// TLV. A single resource is asked in the same format as whole instances
// rather than text/plain or CBOR: SenML and TLV carry the type and time of
// the value, and clients like Wakaama lack CBOR. The old numbers 1542 and
// 1543 are returned only when the client advertised them and not the new
// ones.
func Preferred(version string, advertised []lwm2m.Format, level lwm2m.Level) lwm2m.Format {
	has := func(f lwm2m.Format) bool { return slices.Contains(advertised, f) }
	tlv := lwm2m.FormatTLV
	if has(lwm2m.FormatOldTLV) && !has(lwm2m.FormatTLV) {
		tlv = lwm2m.FormatOldTLV
	}
	if isV10(version) {
		if level <= lwm2m.LevelInstance {
			switch {
			case has(lwm2m.FormatOMAJSON):
				return lwm2m.FormatOMAJSON
			case has(lwm2m.FormatOldJSON):
				return lwm2m.FormatOldJSON
			}
		}
		return tlv
	}
	switch {
	case has(lwm2m.FormatSenMLCBOR):
		return lwm2m.FormatSenMLCBOR
	case has(lwm2m.FormatSenMLJSON):
		return lwm2m.FormatSenMLJSON
	}
	return tlv
}

// isV10 reports whether version is 1.0 or older; anything unparsable is
// treated as 1.0, the version every client understands.
func isV10(version string) bool {
	maj, min, ok := strings.Cut(strings.TrimSpace(version), ".")
	if !ok {
		return true
	}
	ma, err1 := strconv.Atoi(maj)
	mi, err2 := strconv.Atoi(min)
	if err1 != nil || err2 != nil {
		return true
	}
	return ma < 1 || (ma == 1 && mi == 0)
}
