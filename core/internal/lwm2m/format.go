package lwm2m

import "fmt"

// Format is a CoAP content format number as used by LwM2M.
type Format uint16

// Content formats of LwM2M 1.0-1.2.
const (
	FormatText      Format = 0
	FormatLink      Format = 40
	FormatOpaque    Format = 42
	FormatCBOR      Format = 60
	FormatSenMLJSON Format = 110
	FormatSenMLCBOR Format = 112
	FormatTLV       Format = 11542
	FormatOMAJSON   Format = 11543
	// FormatOldTLV and FormatOldJSON are the pre-registration numbers some
	// 1.0 clients still send.
	FormatOldTLV  Format = 1542
	FormatOldJSON Format = 1543
)

func (f Format) String() string {
	switch f {
	case FormatText:
		return "text/plain"
	case FormatLink:
		return "application/link-format"
	case FormatOpaque:
		return "application/octet-stream"
	case FormatCBOR:
		return "application/cbor"
	case FormatSenMLJSON:
		return "application/senml+json"
	case FormatSenMLCBOR:
		return "application/senml+cbor"
	case FormatTLV, FormatOldTLV:
		return "application/vnd.oma.lwm2m+tlv"
	case FormatOMAJSON, FormatOldJSON:
		return "application/vnd.oma.lwm2m+json"
	}
	return fmt.Sprintf("format(%d)", uint16(f))
}
