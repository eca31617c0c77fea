// Package platform is the tenant-scoped domain model behind the REST API:
// tenants and users with password authentication, the inventory of managed
// objects, external ids, alarms, events and LwM2M device registrations.
// Everything is kept in a store.Store, and every key of tenant data starts
// with the tenant id, so one tenant's calls can never reach another
// tenant's records.
//
// Devices are registered one at a time (RegisterDevice, JSON) or in bulk
// from a CSV (BulkRegister), with the fields of Cumulocity's LwM2M bulk
// registration (the Field constants) and one validation path for both.
// Units: registrationLifetime, defaultMinimumPeriod, defaultMaximumPeriod
// and disableTimeout are seconds (they are written to the device's Server
// object); awakeTimeRegistrationParameter and lwm2mRequestTimeout are
// milliseconds. PSK keys (and serverPublicKey) are hex. Keys are kept in
// plain form in the store because DTLS needs them; no API returns them and
// no message or log line contains them.
//
// An endpoint belongs to the tenant that registered it first: another
// tenant registering it gets its device with a MAJOR alarm, and that
// device never connects (LookupEndpoint, PSKByIdentity and BootstrapConfig
// all answer for the first tenant's device).
//
// Platform also serves the CoAP side of the server: it is the
// registry.Directory that admits registering endpoints and the
// device.Sink that keeps each device's latest values; c8y_Connection is
// read from the registry whenever a device's managed object is shown. DeviceSettings,
// PSKByIdentity and BootstrapConfig give the registry, the DTLS layer and
// the bootstrap server a device's settings, keys and bootstrap
// configuration; RecordEvent records what they did on the device.
package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// Errors for the caller's mistakes. Store errors (store.ErrNotFound,
// store.ErrUnavailable, store.ErrConflict) are passed through wrapped.
var (
	// ErrInvalid: the request is malformed or not supported (REST 400).
	ErrInvalid = errors.New("invalid input")
	// ErrForbidden: the caller may not do this (REST 403).
	ErrForbidden = errors.New("forbidden")
	// ErrDuplicate: the thing to create already exists (REST 409).
	ErrDuplicate = errors.New("already exists")
	// ErrUnauthorized: unknown user or wrong password (REST 401).
	ErrUnauthorized = errors.New("bad credentials")
)

// Management is the id of the tenant that exists from the first start; its
// admins create the other tenants.
const Management = "management"

// Remover ends the live registration of an endpoint (registry.Registry
// does). An error wrapping store.ErrNotFound means there was none.
type Remover interface {
	RemoveEndpoint(ctx context.Context, endpoint string) error
}

// Renamed lists the buckets of earlier versions that MoveBuckets carries
// over to this layout at start-up (the connection status is now read from
// the registry).
var Renamed = []store.Rename{
	{From: "platform_domain", To: bucketDomain}, {From: "platform_seq", To: bucketSeq},
	{From: "platform_xid", To: bucketXID}, {From: "platform_endpoint", To: bucketEndpoint},
	{From: "platform_latest", To: bucketLatest}, {From: "platform_psk", To: bucketPSK},
	{From: "platform_conn"},
	{From: "platform_alarm_src", To: bucketAlarmSrc}, {From: "platform_event_src", To: bucketEventSrc},
}

// Store layout. Tenant data is keyed "<tenant>/<...>"; tenant ids and user
// names cannot contain "/", and free-form parts (external id types and
// values) are path-escaped, so no key of one tenant is a prefix of
// another's. Managed object ids are zero-padded in keys so scans run in id
// order. Buckets only looked up by key are unordered.
const (
	bucketTenant   = "platform_tenant"                           // tenant id -> tenantRecord
	bucketDomain   = store.UnorderedPrefix + "platform_domain"   // lower-case domain -> tenant id
	bucketUser     = "platform_user"                             // tenant/user -> userRecord
	bucketMO       = "platform_mo"                               // tenant/padded id -> moRecord
	bucketSeq      = store.UnorderedPrefix + "platform_seq"      // "mo", "alarm", "event" -> last id given
	bucketXID      = store.UnorderedPrefix + "platform_xid"      // tenant/type/externalId -> mo id
	bucketXIDByMO  = "platform_xid_mo"                           // tenant/padded id/type/externalId -> xidEntry
	bucketEndpoint = store.UnorderedPrefix + "platform_endpoint" // endpoint (global) -> binding
	bucketLatest   = store.UnorderedPrefix + "platform_latest"   // tenant/padded id -> map path -> LatestValue
	bucketPSK      = store.UnorderedPrefix + "platform_psk"      // "s/"|"b/" + psk identity (global) -> pskBinding
	bucketAlarm    = "platform_alarm"                            // tenant/reversed id -> alarmRecord
	bucketAlarmSrc = store.KeysOnlyPrefix + "platform_alarm_src" // tenant/padded source/reversed id
	bucketAlarmAct = "platform_alarm_act"                        // tenant/padded source/type -> id of the open alarm
	bucketEvent    = "platform_event"                            // tenant/reversed id -> eventRecord
	bucketEventSrc = store.KeysOnlyPrefix + "platform_event_src" // tenant/padded source/reversed id
	seqMO          = "mo"
	seqAlarm       = "alarm"
	seqEvent       = "event"
)

// KeyedBuckets are the ordered buckets that a busy path also reads by key:
// every notification and Send reads its device's managed object. A store
// with a cache of values (Redis) may keep theirs too.
var KeyedBuckets = []string{bucketMO}

// Options tune a Platform; the zero value is the production setting.
type Options struct {
	Logger *slog.Logger
	// BcryptCost is the cost of new password hashes (bcrypt.DefaultCost
	// when 0).
	BcryptCost int
	// AuthCacheTTL is how long a successful password check is remembered
	// (one minute when 0; negative disables the cache). A password changed
	// on another server node is noticed here only after this time.
	AuthCacheTTL time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// MaxRequestTimeout bounds a device's lwm2mRequestTimeout
	// (DefaultMaxRequestTimeout when 0).
	MaxRequestTimeout time.Duration
	// BulkWorkers is how many rows of a bulk registration are written at
	// once (64 when 0); concurrent Updates share commits.
	BulkWorkers int
}

// DefaultMaxRequestTimeout is the default of Options.MaxRequestTimeout.
const DefaultMaxRequestTimeout = 5 * time.Minute

// Platform is the domain service. It is safe for concurrent use; all its
// state is in the store apart from the authentication cache.
type Platform struct {
	st    store.Store
	log   *slog.Logger
	cost  int
	cache *authCache
	now   func() time.Time
	// maxReq bounds lwm2mRequestTimeout; workers is Options.BulkWorkers.
	maxReq  time.Duration
	workers int
	// dummyHash is compared against for unknown users, so that a wrong
	// user name costs as much time as a wrong password and names cannot
	// be probed. Made on first use, at the configured cost.
	dummyHash func() []byte
}

// New returns a Platform keeping its data in st.
func New(st store.Store, opts Options) *Platform {
	p := &Platform{st: st, log: opts.Logger, cost: opts.BcryptCost, now: opts.Now, maxReq: opts.MaxRequestTimeout, workers: opts.BulkWorkers}
	if p.maxReq <= 0 {
		p.maxReq = DefaultMaxRequestTimeout
	}
	if p.workers <= 0 {
		p.workers = 64
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.log = p.log.With("component", "platform")
	if p.cost == 0 {
		p.cost = bcrypt.DefaultCost
	}
	if p.now == nil {
		p.now = time.Now
	}
	ttl := opts.AuthCacheTTL
	if ttl == 0 {
		ttl = time.Minute
	}
	p.cache = newAuthCache(ttl, 10000)
	p.dummyHash = sync.OnceValue(func() []byte {
		h, _ := bcrypt.GenerateFromPassword([]byte("lwm2md-dummy-password"), p.cost)
		return h
	})
	return p
}

func (p *Platform) clock() time.Time { return p.now().UTC() }

// parseID turns a managed object id into its number. Only the canonical
// decimal form is accepted, so "007" and "7" cannot name two keys.
func parseID(id string) (uint64, bool) {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != id {
		return 0, false
	}
	return n, true
}

func padID(n uint64) string { return fmt.Sprintf("%020d", n) }

func moKey(tenant string, n uint64) string { return tenant + "/" + padID(n) }

// nextID increments the managed object counter inside tx.
func nextID(tx store.Tx) (uint64, error) { return nextSeq(tx, seqMO, 1) }

// nextSeq adds n to a counter inside tx and returns the first of the n
// numbers reserved.
func nextSeq(tx store.Tx, name string, n uint64) (uint64, error) {
	var last uint64
	b, err := tx.Get(bucketSeq, name)
	switch {
	case err == nil:
		last, err = strconv.ParseUint(string(b), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("corrupt id counter %s %q: %w", name, b, err)
		}
	case !errors.Is(err, store.ErrNotFound):
		return 0, err
	}
	return last + 1, tx.Put(bucketSeq, name, []byte(strconv.FormatUint(last+n, 10)))
}

// getJSON reads key into v; the error wraps store.ErrNotFound when absent.
func getJSON(tx store.Tx, bucket, key string, v any) error {
	b, err := tx.Get(bucket, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("corrupt record %s %q: %w", bucket, key, err)
	}
	return nil
}

func putJSON(tx store.Tx, bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(bucket, key, b)
}

// exists reports whether key is in bucket.
func exists(tx store.Tx, bucket, key string) (bool, error) {
	_, err := tx.Get(bucket, key)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func notFound(what string) error { return fmt.Errorf("%s: %w", what, store.ErrNotFound) }

// kindError is a message that matches one of the sentinel errors without
// repeating its text ("endpoint is required", not "invalid input: ...").
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func invalid(format string, args ...any) error {
	return &kindError{ErrInvalid, fmt.Sprintf(format, args...)}
}

func duplicate(format string, args ...any) error {
	return &kindError{ErrDuplicate, fmt.Sprintf(format, args...)}
}

func forbidden(format string, args ...any) error {
	return &kindError{ErrForbidden, fmt.Sprintf(format, args...)}
}

func unmarshal(bucket, key string, v []byte, dst any) error {
	if err := json.Unmarshal(v, dst); err != nil {
		return fmt.Errorf("corrupt record %s %q: %w", bucket, key, err)
	}
	return nil
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
