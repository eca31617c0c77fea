package platform

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Registration field names: the header names of Cumulocity's LwM2M bulk
// registration CSV. The single-device JSON registration and the
// bootstrap parameters use the same names as JSON keys. Names are matched
// without regard to case and surrounding spaces.
const (
	FieldID                     = "ID"
	FieldIDType                 = "IDTYPE"
	FieldCredentials            = "CREDENTIALS"
	FieldName                   = "NAME"
	FieldType                   = "TYPE"
	FieldShell                  = "SHELL"
	FieldGenericUI              = "c8y_GenericUi"
	FieldAgent                  = "com_cumulocity_model_Agent"
	FieldEndpoint               = "endpoint id"
	FieldServerURI              = "lwm2m server uri"
	FieldSecurityMode           = "securityMode"
	FieldAwakeTime              = "awakeTimeRegistrationParameter"
	FieldServerPublicKey        = "serverPublicKey"
	FieldGenerateBSConfig       = "generateBootstrapServerConfig"
	FieldSecurityInstanceOffset = "securityInstanceOffset"
	FieldBootstrapShortServerID = "bootstrapShortServerId"
	FieldShortServerID          = "lwm2mShortServerId"
	FieldLifetime               = "registrationLifetime"
	FieldMinPeriod              = "defaultMinimumPeriod"
	FieldMaxPeriod              = "defaultMaximumPeriod"
	FieldBindingMode            = "bindingMode"
	FieldNotificationIfDisabled = "notificationIfDisabled"
	FieldDisableTimeout         = "disableTimeout"
	FieldRequestTimeout         = "lwm2mRequestTimeout"
	FieldPSKID                  = "lwm2m psk_id"
	FieldPSKKey                 = "lwm2m psk_key"
	FieldBootstrapPSKID         = "bootstrap psk_id"
	FieldBootstrapPSKKey        = "bootstrap psk_key"
	FieldXIDPSK                 = "external-c8y_Lwm2mPskId"
	FieldXIDBootstrapPSK        = "external-c8y_BootstrapPskId"
)

// External id types created from the external-... columns.
const (
	PSKIDType          = "c8y_Lwm2mPskId"
	BootstrapPSKIDType = "c8y_BootstrapPskId"
)

// field numbers the known fields, so a row is an array, not a map: a bulk
// import parses every row twice.
type field int

const (
	fID field = iota
	fIDType
	fCredentials
	fName
	fType
	fShell
	fGenericUI
	fAgent
	fEndpoint
	fServerURI
	fSecurityMode
	fAwakeTime
	fServerPublicKey
	fGenerateBSConfig
	fSecurityInstanceOffset
	fBootstrapShortServerID
	fShortServerID
	fLifetime
	fMinPeriod
	fMaxPeriod
	fBindingMode
	fNotificationIfDisabled
	fDisableTimeout
	fRequestTimeout
	fPSKID
	fPSKKey
	fBootstrapPSKID
	fBootstrapPSKKey
	fXIDPSK
	fXIDBootstrapPSK
	numFields
)

var fieldNames = [numFields]string{
	FieldID, FieldIDType, FieldCredentials, FieldName, FieldType, FieldShell, FieldGenericUI, FieldAgent,
	FieldEndpoint, FieldServerURI, FieldSecurityMode, FieldAwakeTime, FieldServerPublicKey,
	FieldGenerateBSConfig, FieldSecurityInstanceOffset, FieldBootstrapShortServerID, FieldShortServerID,
	FieldLifetime, FieldMinPeriod, FieldMaxPeriod, FieldBindingMode, FieldNotificationIfDisabled,
	FieldDisableTimeout, FieldRequestTimeout, FieldPSKID, FieldPSKKey, FieldBootstrapPSKID,
	FieldBootstrapPSKKey, FieldXIDPSK, FieldXIDBootstrapPSK,
}

func (f field) String() string { return fieldNames[f] }

// secretField: values never shown, logged or echoed in messages.
func (f field) secret() bool {
	return f == fCredentials || f == fPSKKey || f == fBootstrapPSKKey
}

// fieldByKey maps normalized names to fields. "endpoint" is the JSON
// registration's name of the endpoint id.
var fieldByKey = func() map[string]field {
	m := make(map[string]field, numFields+1)
	for f := range numFields {
		m[normalizeName(fieldNames[f])] = f
	}
	m["endpoint"] = fEndpoint
	return m
}()

func normalizeName(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// lookupField finds a known field by a header or key name.
func lookupField(name string) (field, bool) {
	f, ok := fieldByKey[normalizeName(name)]
	return f, ok
}

// extraValue is an unknown column or key: it becomes a fragment.
type extraValue struct {
	name string
	text string          // CSV text
	raw  json.RawMessage // JSON value (registration by JSON)
}

// values is one registration's input: the known fields as text and the
// unknown ones in input order.
type values struct {
	v     [numFields]string
	set   [numFields]bool
	extra []extraValue
}

func (vs *values) get(f field) string { return vs.v[f] }

func (vs *values) put(f field, s string) {
	vs.v[f], vs.set[f] = s, true
}

// FieldError is a registration field that failed validation: the field's
// documented name and why. Its message never contains the value of a
// secret field. It matches ErrInvalid, or ErrDuplicate when a value that
// must be unique (a PSK identity, an external id) is taken.
type FieldError struct {
	Field  string
	Reason string
	kind   error // what it matches; ErrInvalid when nil
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrInvalid) true, or ErrDuplicate for a
// value that must be unique and is taken.
func (e *FieldError) Unwrap() error {
	if e.kind != nil {
		return e.kind
	}
	return ErrInvalid
}

func fieldErr(f field, format string, args ...any) *FieldError {
	return &FieldError{Field: f.String(), Reason: fmt.Sprintf(format, args...)}
}

// ExistsError reports that a device being registered already exists (its
// ID, endpoint or credentials user); the existing device is left as it
// was. It matches ErrDuplicate.
type ExistsError struct {
	Field  string
	Reason string
	ID     string // the existing managed object, when known
}

func (e *ExistsError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrDuplicate) true.
func (e *ExistsError) Unwrap() error { return ErrDuplicate }

// valuesFromJSON reads a JSON registration or bootstrap parameter object:
// known names become text fields (numbers and booleans as written,
// objects compacted), others extra values. null means "not given".
func valuesFromJSON(body map[string]json.RawMessage) (*values, error) {
	vs := &values{}
	seen := make(map[string]string, len(body))
	for k, raw := range body {
		norm := normalizeName(k)
		if prev, dup := seen[norm]; dup {
			return nil, invalid("%q and %q name the same field", prev, k)
		}
		seen[norm] = k
		raw = bytes.TrimSpace(raw)
		f, known := fieldByKey[norm]
		if !known {
			if string(raw) != "null" {
				vs.extra = append(vs.extra, extraValue{name: strings.TrimSpace(k), raw: raw})
			}
			continue
		}
		text, err := jsonText(raw)
		if err != nil {
			return nil, &FieldError{Field: f.String(), Reason: err.Error()}
		}
		if text == nil {
			continue
		}
		if vs.set[f] && vs.v[f] != *text {
			return nil, &FieldError{Field: f.String(), Reason: "given twice with different values"}
		}
		vs.put(f, *text)
	}
	return vs, nil
}

// jsonText renders a JSON value as registration text; nil for null.
func jsonText(raw json.RawMessage) (*string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("not a valid JSON string")
		}
		return &s, nil
	case '{', '[':
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return nil, fmt.Errorf("not valid JSON")
		}
		s := buf.String()
		return &s, nil
	}
	s := string(raw) // number, true, false
	return &s, nil
}

// stringOnly are the fields the JSON registration has always taken as
// strings; anything else there is a client error.
func stringOnly(f field) bool { return f == fEndpoint || f == fSecurityMode || f == fName || f == fID }
