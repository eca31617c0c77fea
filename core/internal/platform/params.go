package platform

import (
	"encoding/hex"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Limits of registration fields.
const (
	maxPSKID      = 128 // bytes; DTLS allows more, no client sends more
	maxPSKKey     = 64  // bytes (RFC 4279 asks for at least 64 to be supported)
	maxServerURI  = 255 // the Security object's LwM2M Server URI
	maxPublicKey  = 4096
	maxSeconds    = math.MaxInt32 // LwM2M Integer resources in seconds
	maxAwakeMs    = math.MaxInt32
	minCredential = 12
)

// Binding modes the server configures (bindingMode).
const (
	BindingUQ = "UQ"
	BindingU  = "U"
)

// deviceParams are the stored LwM2M parameters of a device: what the
// bootstrap server writes to it and how the server treats it. Units
// follow the CSV: seconds for lifetime, periods and disable timeout,
// milliseconds for the request timeout. Keys are kept in plain form: the
// DTLS handshake needs them.
type deviceParams struct {
	SecurityMode           string `json:"securityMode"`
	ServerURI              string `json:"serverUri,omitempty"`
	ServerPublicKey        []byte `json:"serverPublicKey,omitempty"`
	GenerateBSConfig       bool   `json:"generateBootstrapServerConfig,omitempty"`
	SecurityInstanceOffset int    `json:"securityInstanceOffset,omitempty"`
	BootstrapShortServerID int    `json:"bootstrapShortServerId,omitempty"`
	ShortServerID          int    `json:"lwm2mShortServerId"`
	Lifetime               *int64 `json:"registrationLifetime,omitempty"`
	MinPeriod              *int64 `json:"defaultMinimumPeriod,omitempty"`
	MaxPeriod              *int64 `json:"defaultMaximumPeriod,omitempty"`
	BindingMode            string `json:"bindingMode"`
	NotificationIfDisabled *bool  `json:"notificationIfDisabled,omitempty"`
	DisableTimeout         *int64 `json:"disableTimeout,omitempty"`
	RequestTimeoutMs       *int64 `json:"lwm2mRequestTimeout,omitempty"`
	PSKID                  string `json:"pskId,omitempty"`
	PSKKey                 []byte `json:"pskKey,omitempty"`
	BootstrapPSKID         string `json:"bootstrapPskId,omitempty"`
	BootstrapPSKKey        []byte `json:"bootstrapPskKey,omitempty"`
}

// defaultParams is what a device registered with nothing but an endpoint
// gets.
func defaultParams() deviceParams {
	return deviceParams{SecurityMode: SecurityNoSec, ShortServerID: 1, BindingMode: BindingUQ}
}

// parseParams validates the LwM2M parameter fields of vs. maxReq bounds
// lwm2mRequestTimeout. The order of checks is the order of the fields in
// the documentation, so the first problem of a row is reported.
func parseParams(vs *values, maxReq time.Duration) (deviceParams, *FieldError) {
	p := defaultParams()
	switch m := strings.ToUpper(strings.TrimSpace(vs.get(fSecurityMode))); m {
	case "", SecurityNoSec:
	case SecurityPSK:
		p.SecurityMode = SecurityPSK
	default:
		return p, fieldErr(fSecurityMode, "must be NO_SEC or PSK")
	}
	if s := strings.TrimSpace(vs.get(fServerURI)); s != "" {
		if err := checkServerURI(s, p.SecurityMode); err != nil {
			return p, err
		}
		p.ServerURI = s
	}
	if s := strings.TrimSpace(vs.get(fServerPublicKey)); s != "" {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) > maxPublicKey {
			return p, fieldErr(fServerPublicKey, "must be hex, at most %d bytes", maxPublicKey)
		}
		p.ServerPublicKey = b
	}
	var err *FieldError
	if p.GenerateBSConfig, err = parseBool(vs, fGenerateBSConfig, false); err != nil {
		return p, err
	}
	if p.SecurityInstanceOffset, err = parseInt(vs, fSecurityInstanceOffset, 0, 0, 65533); err != nil {
		return p, err
	}
	if p.BootstrapShortServerID, err = parseInt(vs, fBootstrapShortServerID, 0, 0, 65534); err != nil {
		return p, err
	}
	if p.ShortServerID, err = parseInt(vs, fShortServerID, 1, 1, 65534); err != nil {
		return p, err
	}
	if p.Lifetime, err = parseOptInt(vs, fLifetime, 1, maxSeconds); err != nil {
		return p, err
	}
	if p.MinPeriod, err = parseOptInt(vs, fMinPeriod, 0, maxSeconds); err != nil {
		return p, err
	}
	if p.MaxPeriod, err = parseOptInt(vs, fMaxPeriod, 0, maxSeconds); err != nil {
		return p, err
	}
	if p.MinPeriod != nil && p.MaxPeriod != nil && *p.MaxPeriod > 0 && *p.MaxPeriod < *p.MinPeriod {
		return p, fieldErr(fMaxPeriod, "must not be less than %s", FieldMinPeriod)
	}
	switch b := strings.ToUpper(strings.TrimSpace(vs.get(fBindingMode))); b {
	case "", BindingUQ:
	case BindingU:
		p.BindingMode = BindingU
	default:
		return p, fieldErr(fBindingMode, "must be UQ or U")
	}
	if s := strings.TrimSpace(vs.get(fNotificationIfDisabled)); s != "" {
		b, err := parseBool(vs, fNotificationIfDisabled, false)
		if err != nil {
			return p, err
		}
		p.NotificationIfDisabled = &b
	}
	if p.DisableTimeout, err = parseOptInt(vs, fDisableTimeout, 0, maxSeconds); err != nil {
		return p, err
	}
	maxMs := maxReq.Milliseconds()
	if p.RequestTimeoutMs, err = parseOptInt(vs, fRequestTimeout, 1, math.MaxInt64); err != nil {
		return p, err
	}
	if p.RequestTimeoutMs != nil && *p.RequestTimeoutMs > maxMs {
		return p, fieldErr(fRequestTimeout, "must not exceed the server's maximum request timeout of %d ms (%s)", maxMs, maxReq)
	}
	if p.PSKID, p.PSKKey, err = parsePSK(vs, fPSKID, fPSKKey, p.SecurityMode); err != nil {
		return p, err
	}
	if p.BootstrapPSKID, p.BootstrapPSKKey, err = parsePSK(vs, fBootstrapPSKID, fBootstrapPSKKey, p.SecurityMode); err != nil {
		return p, err
	}
	return p, nil
}

// parsePSK reads one identity/key pair: both are required for PSK and
// refused for NO_SEC.
func parsePSK(vs *values, idf, keyf field, mode string) (string, []byte, *FieldError) {
	id := strings.TrimSpace(vs.get(idf))
	key := strings.TrimSpace(vs.get(keyf))
	if mode != SecurityPSK {
		switch {
		case id != "":
			return "", nil, fieldErr(idf, "is only allowed with securityMode PSK")
		case key != "":
			return "", nil, fieldErr(keyf, "is only allowed with securityMode PSK")
		}
		return "", nil, nil
	}
	switch {
	case id == "":
		return "", nil, fieldErr(idf, "is required with securityMode PSK")
	case len(id) > maxPSKID:
		return "", nil, fieldErr(idf, "is longer than %d bytes", maxPSKID)
	case !printable(id):
		return "", nil, fieldErr(idf, "may hold only printable characters")
	case key == "":
		return "", nil, fieldErr(keyf, "is required with securityMode PSK")
	}
	b, err := hex.DecodeString(key)
	if err != nil {
		return "", nil, fieldErr(keyf, "must be hex digits (two per byte)")
	}
	if len(b) == 0 || len(b) > maxPSKKey {
		return "", nil, fieldErr(keyf, "must be 1 to %d bytes", maxPSKKey)
	}
	return id, b, nil
}

func printable(s string) bool {
	for _, c := range s {
		if c == unicode.ReplacementChar || !unicode.IsPrint(c) {
			return false
		}
	}
	return true
}

func checkServerURI(s, mode string) *FieldError {
	if len(s) > maxServerURI {
		return fieldErr(fServerURI, "is longer than %d bytes", maxServerURI)
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.Hostname() == "" || (u.Scheme != "coap" && u.Scheme != "coaps") {
		return fieldErr(fServerURI, "must be a coap:// or coaps:// URI with a host")
	}
	if mode == SecurityPSK && u.Scheme != "coaps" {
		return fieldErr(fServerURI, "must be a coaps:// URI for securityMode PSK")
	}
	if mode != SecurityPSK && u.Scheme != "coap" {
		return fieldErr(fServerURI, "must be a coap:// URI for securityMode NO_SEC")
	}
	return nil
}

func parseBool(vs *values, f field, def bool) (bool, *FieldError) {
	switch strings.ToLower(strings.TrimSpace(vs.get(f))) {
	case "":
		return def, nil
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return def, fieldErr(f, "must be true or false (or 1 or 0)")
}

func parseInt(vs *values, f field, def, lo, hi int64) (int, *FieldError) {
	p, err := parseOptInt(vs, f, lo, hi)
	if err != nil || p == nil {
		return int(def), err
	}
	return int(*p), nil
}

func parseOptInt(vs *values, f field, lo, hi int64) (*int64, *FieldError) {
	s := strings.TrimSpace(vs.get(f))
	if s == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < lo || n > hi {
		if hi == math.MaxInt64 {
			return nil, fieldErr(f, "must be an integer of at least %d", lo)
		}
		return nil, fieldErr(f, "must be an integer in %d..%d", lo, hi)
	}
	return &n, nil
}

// checkCredentials enforces the password policy of device credentials.
// The message never contains the password.
func checkCredentials(pw string) *FieldError {
	if len(pw) < minCredential || len(pw) > MaxPassword {
		return fieldErr(fCredentials, "must be %d to %d characters long", minCredential, MaxPassword)
	}
	var upper, lower, digit, special bool
	for _, c := range pw {
		switch {
		case unicode.IsUpper(c):
			upper = true
		case unicode.IsLower(c):
			lower = true
		case unicode.IsDigit(c):
			digit = true
		case unicode.IsPunct(c) || unicode.IsSymbol(c):
			special = true
		}
	}
	if !upper || !lower || !digit || !special {
		return fieldErr(fCredentials, "must contain an upper-case letter, a lower-case letter, a digit and a special character")
	}
	return nil
}

// textValues renders stored parameters as registration text, the inverse
// of parseParams, so a partial update can be validated as a whole.
func (p *deviceParams) textValues(vs *values) {
	vs.put(fSecurityMode, p.SecurityMode)
	vs.put(fServerURI, p.ServerURI)
	if p.ServerPublicKey != nil {
		vs.put(fServerPublicKey, hex.EncodeToString(p.ServerPublicKey))
	}
	vs.put(fGenerateBSConfig, strconv.FormatBool(p.GenerateBSConfig))
	vs.put(fSecurityInstanceOffset, strconv.Itoa(p.SecurityInstanceOffset))
	vs.put(fBootstrapShortServerID, strconv.Itoa(p.BootstrapShortServerID))
	vs.put(fShortServerID, strconv.Itoa(p.ShortServerID))
	optInt := func(f field, v *int64) {
		if v != nil {
			vs.put(f, strconv.FormatInt(*v, 10))
		}
	}
	optInt(fLifetime, p.Lifetime)
	optInt(fMinPeriod, p.MinPeriod)
	optInt(fMaxPeriod, p.MaxPeriod)
	vs.put(fBindingMode, p.BindingMode)
	if p.NotificationIfDisabled != nil {
		vs.put(fNotificationIfDisabled, strconv.FormatBool(*p.NotificationIfDisabled))
	}
	optInt(fDisableTimeout, p.DisableTimeout)
	optInt(fRequestTimeout, p.RequestTimeoutMs)
	if p.PSKID != "" {
		vs.put(fPSKID, p.PSKID)
		vs.put(fPSKKey, hex.EncodeToString(p.PSKKey))
	}
	if p.BootstrapPSKID != "" {
		vs.put(fBootstrapPSKID, p.BootstrapPSKID)
		vs.put(fBootstrapPSKKey, hex.EncodeToString(p.BootstrapPSKKey))
	}
}
