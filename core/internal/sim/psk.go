package sim

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// PSK is a DTLS pre-shared key credential: the identity the device sends
// in the handshake and the key.
type PSK struct {
	Identity string
	Key      []byte
}

// maxPSKKey and maxPSKIdentity bound credentials as the server does.
const (
	maxPSKKey      = 64
	maxPSKIdentity = 128
)

// ExpandPSK derives the credentials of one device of a run from patterns,
// so that every device has its own identity and key:
//
//   - "{ep}" or "%s" is replaced by the device's endpoint name,
//   - "{n}" by its number (Config.Start + index).
//
// The key pattern, once expanded, is the key's text (its UTF-8 bytes are
// the key), or "hex:" followed by the key in hex. Examples:
// identity "{ep}" and key "secret-{n}", or identity "psk-%s" and key
// "hex:000102030405060708090a0b0c0d0e0f" (one key for all). The platform
// registration of such a device names the key in hex:
// hex.EncodeToString(psk.Key).
func ExpandPSK(identityPattern, keyPattern, endpoint string, n int) (PSK, error) {
	if identityPattern == "" || keyPattern == "" {
		return PSK{}, errors.New("sim: psk identity and key patterns must both be set")
	}
	id := expand(identityPattern, endpoint, n)
	if len(id) > maxPSKIdentity {
		return PSK{}, fmt.Errorf("sim: psk identity %q is longer than %d bytes", id, maxPSKIdentity)
	}
	k := expand(keyPattern, endpoint, n)
	var key []byte
	if h, ok := strings.CutPrefix(k, "hex:"); ok {
		b, err := hex.DecodeString(h)
		if err != nil {
			return PSK{}, fmt.Errorf("sim: psk key after hex: is not hex: %w", err)
		}
		key = b
	} else {
		key = []byte(k)
	}
	if len(key) == 0 || len(key) > maxPSKKey {
		return PSK{}, fmt.Errorf("sim: psk key of %d bytes: want 1 to %d", len(key), maxPSKKey)
	}
	return PSK{Identity: id, Key: key}, nil
}

func expand(pattern, endpoint string, n int) string {
	return strings.NewReplacer("{ep}", endpoint, "%s", endpoint, "{n}", strconv.Itoa(n)).Replace(pattern)
}

// checkPSK refuses a configuration whose first server is coaps:// without
// credentials for it.
func (f *fleet) checkPSK(psk PSK) error {
	first, secure := "server", f.secure
	if f.bootstrap != "" {
		_, secure, _ = parseURI(f.bootstrap)
		first = "bootstrap server"
	}
	if secure && (psk.Identity == "" || len(psk.Key) == 0) {
		return fmt.Errorf("sim: the %s is coaps:// and needs PSK credentials (psk identity and key); only coap:// works without", first)
	}
	return nil
}
