package platform

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// DeviceRequest registers one LwM2M device: a row of the bulk
// registration as JSON. Endpoint, SecurityMode and Name are the JSON
// registration's original keys; Fields holds every other key: the
// registration fields (see the Field constants, matched without regard to
// case) and, for unknown names, fragments of the managed object.
type DeviceRequest struct {
	Endpoint     string
	SecurityMode string
	Name         string
	Owner        string // user that registers it
	Fields       map[string]json.RawMessage
}

// UnmarshalJSON reads {"endpoint", "securityMode", "name", ...}.
func (d *DeviceRequest) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*d = DeviceRequest{}
	for k, v := range m {
		var dst *string
		switch k {
		case "endpoint":
			dst = &d.Endpoint
		case "securityMode":
			dst = &d.SecurityMode
		case "name":
			dst = &d.Name
		default:
			if f, ok := lookupField(k); ok && stringOnly(f) {
				if t := bytes.TrimSpace(v); len(t) > 0 && t[0] != '"' && string(t) != "null" {
					return fmt.Errorf("%s must be a string", k)
				}
			}
			if d.Fields == nil {
				d.Fields = make(map[string]json.RawMessage)
			}
			d.Fields[k] = v
			continue
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return fmt.Errorf("%s must be a string", k)
		}
	}
	return nil
}

// values merges the named fields into Fields.
func (d *DeviceRequest) values() (*values, error) {
	vs, err := valuesFromJSON(d.Fields)
	if err != nil {
		return nil, err
	}
	for _, kv := range []struct {
		f field
		v string
	}{{fEndpoint, d.Endpoint}, {fSecurityMode, d.SecurityMode}, {fName, d.Name}} {
		if kv.v == "" {
			continue
		}
		if vs.set[kv.f] && vs.get(kv.f) != kv.v {
			return nil, &FieldError{Field: kv.f.String(), Reason: "given twice with different values"}
		}
		vs.put(kv.f, kv.v)
	}
	return vs, nil
}

// deviceRow is one validated registration.
type deviceRow struct {
	ID          string // the endpoint name, also the c8y_Id
	Name        string
	Credentials string // the device user's password; "" for none
	Shell       bool
	Agent       bool
	GenericUI   json.RawMessage
	AwakeTimeMs *int64
	Params      deviceParams
	XIDs        []xidEntry // besides c8y_Id
	Fragments   map[string]json.RawMessage
}

// deviceUser names the credentials user of a device, as Cumulocity does.
func deviceUser(id string) string { return "device_" + id }

// parseRow validates one registration. Problems are reported as a
// *FieldError naming the first bad field.
func parseRow(vs *values, maxReq time.Duration) (*deviceRow, *FieldError) {
	r := &deviceRow{Shell: true, Agent: true}
	id := strings.TrimSpace(vs.get(fID))
	ep := strings.TrimSpace(vs.get(fEndpoint))
	switch {
	case id == "" && ep == "":
		return nil, fieldErr(fID, "is required (the endpoint name)")
	case id == "":
		id = ep
	case ep != "" && ep != id:
		return nil, fieldErr(fEndpoint, "must equal ID")
	}
	if err := checkEndpoint(id); err != nil {
		return nil, &FieldError{Field: FieldID, Reason: err.Error()}
	}
	r.ID = id
	if t := strings.TrimSpace(vs.get(fIDType)); t != "" && !strings.EqualFold(t, EndpointIDType) {
		return nil, fieldErr(fIDType, "must be %s", EndpointIDType)
	}
	if pw := vs.get(fCredentials); pw != "" {
		if err := checkCredentials(pw); err != nil {
			return nil, err
		}
		if strings.ContainsAny(id, "/:") {
			return nil, fieldErr(fCredentials, "cannot be used with an ID holding '/' or ':' (the user name would not work in tenant/user:password)")
		}
		r.Credentials = pw
	}
	r.Name = strings.TrimSpace(vs.get(fName))
	if r.Name == "" {
		r.Name = id
	}
	if len(r.Name) > 1024 {
		return nil, fieldErr(fName, "is longer than 1024 bytes")
	}
	if t := strings.TrimSpace(vs.get(fType)); t != "" && t != DeviceType {
		return nil, fieldErr(fType, "must be %s", DeviceType)
	}
	var err *FieldError
	if r.Shell, err = parseBool(vs, fShell, true); err != nil {
		return nil, err
	}
	if s := strings.TrimSpace(vs.get(fGenericUI)); s != "" {
		var obj map[string]json.RawMessage
		if json.Unmarshal([]byte(s), &obj) != nil || obj == nil {
			return nil, fieldErr(fGenericUI, "must be a JSON object such as {}")
		}
		r.GenericUI = compact(s)
	}
	if s := strings.TrimSpace(vs.get(fAgent)); s == "{}" {
		r.Agent = true
	} else if r.Agent, err = parseBool(vs, fAgent, true); err != nil {
		return nil, err
	}
	if r.AwakeTimeMs, err = parseOptInt(vs, fAwakeTime, 0, maxAwakeMs); err != nil {
		return nil, err
	}
	if r.Params, err = parseParams(vs, maxReq); err != nil {
		return nil, err
	}
	for _, x := range []struct {
		f   field
		typ string
	}{{fXIDPSK, PSKIDType}, {fXIDBootstrapPSK, BootstrapPSKIDType}} {
		v := strings.TrimSpace(vs.get(x.f))
		if v == "" {
			continue
		}
		if len(v) > maxExternalID {
			return nil, fieldErr(x.f, "is longer than %d bytes", maxExternalID)
		}
		r.XIDs = append(r.XIDs, xidEntry{Type: x.typ, ExternalID: v})
	}
	if len(r.XIDs) == 2 && r.XIDs[0] == r.XIDs[1] {
		r.XIDs = r.XIDs[:1]
	}
	return r, r.parseFragments(vs.extra)
}

// reservedFragment are names an unknown column may not set: the server
// maintains them.
func reservedFragment(name string) bool {
	return ignored[name] || name == "c8y_Connection" || name == "c8y_IsDevice" || name == "c8y_SupportedOperations"
}

// parseFragments turns unknown columns into fragments. Names that look
// like secrets are dropped: a fragment is shown to every user of the
// tenant.
func (r *deviceRow) parseFragments(extra []extraValue) *FieldError {
	for _, e := range extra {
		if e.name == "" || reservedFragment(e.name) || secretName(e.name) {
			continue
		}
		if len(e.name) > maxFragmentName {
			return &FieldError{Field: e.name[:32] + "...", Reason: fmt.Sprintf("column names must be at most %d bytes", maxFragmentName)}
		}
		var v json.RawMessage
		switch {
		case e.raw != nil:
			var buf bytes.Buffer
			if json.Compact(&buf, e.raw) != nil {
				return &FieldError{Field: e.name, Reason: "is not valid JSON"}
			}
			v = buf.Bytes()
		default:
			s := strings.TrimSpace(e.text)
			if s == "" {
				continue
			}
			// An object or array written in a cell is kept as JSON.
			if (s[0] == '{' || s[0] == '[') && json.Valid([]byte(s)) {
				v = compact(s)
			} else {
				v, _ = json.Marshal(e.text)
			}
		}
		if r.Fragments == nil {
			r.Fragments = make(map[string]json.RawMessage)
		}
		r.Fragments[e.name] = v
	}
	return nil
}

func secretName(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "key") || strings.Contains(k, "pass") || strings.Contains(k, "secret") ||
		strings.Contains(k, "psk") || strings.Contains(k, "credential")
}

func compact(s string) json.RawMessage {
	var buf bytes.Buffer
	if json.Compact(&buf, []byte(s)) != nil {
		return json.RawMessage(s)
	}
	return buf.Bytes()
}

// checkDevice finds what stops row from being created in tenant, inside
// tx: an *ExistsError when its ID, endpoint (in tenant) or credentials
// user exists, a *FieldError when a PSK identity or external id is taken.
// shadow reports that another tenant registered the endpoint first: the
// device may be created but will never connect.
func checkDevice(tx store.Tx, tenant string, r *deviceRow) (shadow bool, err error) {
	switch mo, err := tx.Get(bucketXID, xidKey(tenant, EndpointIDType, r.ID)); {
	case err == nil:
		return false, &ExistsError{Field: FieldID, Reason: fmt.Sprintf("a device with c8y_Id %q already exists in this tenant", r.ID), ID: string(mo)}
	case !errors.Is(err, store.ErrNotFound):
		return false, err
	}
	if r.Credentials != "" {
		if ok, err := exists(tx, bucketUser, userKey(tenant, deviceUser(r.ID))); err != nil {
			return false, err
		} else if ok {
			return false, &ExistsError{Field: FieldCredentials, Reason: fmt.Sprintf("user %q already exists in this tenant", deviceUser(r.ID))}
		}
	}
	var b binding
	switch err := getBinding(tx, r.ID, &b); {
	case err == nil && b.Tenant == tenant:
		return false, &ExistsError{Field: FieldEndpoint, Reason: fmt.Sprintf("endpoint %q is already registered", r.ID), ID: b.DeviceID}
	case err == nil:
		shadow = true
	case !errors.Is(err, store.ErrNotFound):
		return false, err
	}
	if err := checkPSKFree(tx, r.Params.PSKID, false, nil); err != nil {
		return false, err
	}
	if err := checkPSKFree(tx, r.Params.BootstrapPSKID, true, nil); err != nil {
		return false, err
	}
	for _, x := range r.XIDs {
		if ok, err := exists(tx, bucketXID, xidKey(tenant, x.Type, x.ExternalID)); err != nil {
			return false, err
		} else if ok {
			f := fXIDPSK
			if x.Type == BootstrapPSKIDType {
				f = fXIDBootstrapPSK
			}
			return false, &FieldError{Field: f.String(), Reason: fmt.Sprintf("external id %s %q already exists in this tenant", x.Type, x.ExternalID), kind: ErrDuplicate}
		}
	}
	return shadow, nil
}

// DuplicateEndpointAlarm is the type of the MAJOR alarm raised on a
// device whose endpoint another tenant registered first.
const DuplicateEndpointAlarm = "lwm2m_DuplicateEndpoint"

func duplicateEndpointText(ep string) string {
	return fmt.Sprintf("A device with endpoint %s already exists in another tenant; this device will not connect", ep)
}

// writeDevice stores a checked row as managed object id of tenant with
// everything that belongs to it, inside tx.
func writeDevice(tx store.Tx, tenant, owner string, id uint64, r *deviceRow, hash []byte, now time.Time, shadow bool) (*moRecord, error) {
	frags := make(map[string]json.RawMessage, len(r.Fragments)+6)
	for k, v := range r.Fragments {
		frags[k] = v
	}
	frags["c8y_IsDevice"] = json.RawMessage(`{}`)
	frags["c8y_Connection"] = connectionFragment(StatusOffline)
	// The device management UI offers its shell for c8y_Command.
	frags["c8y_SupportedOperations"] = json.RawMessage(`[]`)
	if r.Shell {
		frags["c8y_SupportedOperations"] = json.RawMessage(`["c8y_Command"]`)
	}
	if r.Agent {
		frags["com_cumulocity_model_Agent"] = json.RawMessage(`{}`)
	}
	if r.GenericUI != nil {
		frags[FieldGenericUI] = r.GenericUI
	}
	if r.AwakeTimeMs != nil {
		frags[FieldAwakeTime] = json.RawMessage(strconv.FormatInt(*r.AwakeTimeMs, 10))
	}
	params := r.Params
	info := &deviceInfo{Endpoint: r.ID, SecurityMode: params.SecurityMode, Params: &params}
	if hash != nil {
		owner = deviceUser(r.ID)
		info.User = owner
	}
	rec := &moRecord{ID: id, Type: DeviceType, Name: r.Name, Owner: owner, Created: now, Updated: now, Fragments: frags, Device: info}
	if err := putJSON(tx, bucketMO, moKey(tenant, id), rec); err != nil {
		return nil, err
	}
	if err := putExternalID(tx, tenant, EndpointIDType, r.ID, id); err != nil {
		return nil, err
	}
	for _, x := range r.XIDs {
		if err := putExternalID(tx, tenant, x.Type, x.ExternalID, id); err != nil {
			return nil, err
		}
	}
	devID := strconv.FormatUint(id, 10)
	if shadow {
		if _, err := raiseAlarm(tx, tenant, id, DuplicateEndpointAlarm, duplicateEndpointText(r.ID), SeverityMajor, now); err != nil {
			return nil, err
		}
	} else if err := putJSON(tx, bucketEndpoint, r.ID, binding{Tenant: tenant, DeviceID: devID, Ref: refOf(tenant, rec)}); err != nil {
		return nil, err
	}
	if err := putPSKBindings(tx, tenant, devID, r.ID, &params); err != nil {
		return nil, err
	}
	if hash != nil {
		u := userRecord{User: User{UserName: owner, CreationTime: now}, Hash: hash}
		if err := putJSON(tx, bucketUser, userKey(tenant, owner), u); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// RegisterDevice registers an LwM2M device in tenant from the fields of
// one bulk registration row: its managed object (type c8y_lwm2m,
// c8y_IsDevice, com_cumulocity_model_Agent, c8y_Connection DISCONNECTED,
// unknown fields as fragments), external ids (c8y_Id = endpoint and the
// external-... fields), the global endpoint binding, PSK identities, the
// credentials user and the bootstrap parameters, all in one transaction.
//
// An invalid field is a *FieldError (ErrInvalid; ErrDuplicate for a PSK
// identity or external id already in use); a device that exists in tenant
// is an *ExistsError (ErrDuplicate) and is left untouched. An endpoint
// registered first by another tenant is no error: the device is created
// with a MAJOR alarm and never connects.
func (p *Platform) RegisterDevice(ctx context.Context, tenant string, req DeviceRequest) (*ManagedObject, error) {
	vs, err := req.values()
	if err != nil {
		return nil, err
	}
	row, ferr := parseRow(vs, p.maxReq)
	if ferr != nil {
		return nil, ferr
	}
	var hash []byte
	if row.Credentials != "" {
		// bcrypt is slow: fail an existing device before paying for it.
		if err := p.st.View(ctx, func(tx store.Tx) error { _, err := checkDevice(tx, tenant, row); return err }); err != nil {
			return nil, fmt.Errorf("register device: %w", err)
		}
		if hash, err = p.hash(row.Credentials); err != nil {
			return nil, err
		}
	}
	now := p.clock()
	var rec *moRecord
	var shadow bool
	err = p.st.Update(ctx, func(tx store.Tx) error {
		var err error
		if shadow, err = checkDevice(tx, tenant, row); err != nil {
			return err
		}
		id, err := nextID(tx)
		if err != nil {
			return err
		}
		rec, err = writeDevice(tx, tenant, req.Owner, id, row, hash, now, shadow)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("register device: %w", err)
	}
	if shadow {
		p.log.Warn("device registered with an endpoint of another tenant; it will not connect", "tenant", tenant, "endpoint", row.ID, "id", rec.ID)
	} else {
		p.log.Info("device registered", "tenant", tenant, "endpoint", row.ID, "id", rec.ID, "securityMode", row.Params.SecurityMode)
	}
	return rec.public(), nil
}
