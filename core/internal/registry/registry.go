package registry

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/store"
)

// Store layout. Every write of a registration touches these in one
// store.Update, so a reader never sees half of it, also with several server
// nodes sharing a Redis. Buckets only looked up by key are unordered; the
// scanned index is keys-only (on Redis a sorted set and nothing else: a
// Register writes three values and one index entry).
//
// The expiry index is also each tenant's list of registrations: its keys
// begin with the tenant. One entry per registration instead of an expiry
// entry and a tenant entry saved a Register and a De-register on Redis a
// sorted-set write each (see RATIONALE.md).
const (
	bucketReg  = store.UnorderedPrefix + "reg"      // id → Registration JSON
	bucketEp   = store.UnorderedPrefix + "reg_ep"   // endpoint → id
	bucketExp  = store.KeysOnlyPrefix + "reg_exp"   // expiryKey: tenant + "/" + zero-padded Unix ms + "/" + id
	bucketAddr = store.UnorderedPrefix + "reg_addr" // peer "ip:port" → id of the latest registration from there
)

// Renamed lists the buckets of earlier versions that MoveBuckets carries
// over to this layout at start-up.
var Renamed = []store.Rename{
	{From: "reg", To: bucketReg}, {From: "reg_ep", To: bucketEp}, {From: "reg_addr", To: bucketAddr},
	{From: "reg_exp", To: bucketExp}, {From: "reg_tn_id", To: bucketTenantV2},
}

// DeviceRef names the platform device an endpoint belongs to, and says
// how it must connect.
type DeviceRef struct {
	Tenant, DeviceID string
	// SecurityMode is the device's LwM2M security mode: SecurityPSK
	// devices register only over DTLS, with PSKIdentity; "" means
	// SecurityNoSec.
	SecurityMode string
	// PSKIdentity is the device's LwM2M server PSK identity (its
	// "lwm2m psk_id"); "" for a NO_SEC device.
	PSKIdentity string
	// AwakeTime, when set, is the operator's awake time for the device
	// (its awakeTimeRegistrationParameter); it wins over the client's "at"
	// parameter and Options.AwakeTime. 0 means always online.
	AwakeTime *time.Duration
}

// Security modes of DeviceRef.SecurityMode (the platform's names).
const (
	SecurityNoSec = "NO_SEC"
	SecurityPSK   = "PSK"
)

// Directory tells which endpoints may register. The registry calls it
// inside the store transaction that stores a new registration, on the
// store it was given (the Directory must keep its data there too), so a
// device deleted meanwhile is not registered. The transaction may run
// more than once.
type Directory interface {
	// LookupEndpoint returns the device endpoint belongs to, read in tx:
	// an error wrapping store.ErrNotFound for an unknown endpoint
	// (answered 4.03); any other error is answered 5.00.
	LookupEndpoint(tx store.Tx, endpoint string) (DeviceRef, error)
}

// IsRegistered reports, in tx, whether endpoint of tenant has a
// registration (until the expiry scan removes it, up to
// Options.ExpiryInterval after its lifetime and grace ran out). Two
// tenants may hold devices with one endpoint (only one of them connects),
// so the endpoint's registration must also be tenant's.
func IsRegistered(tx store.Tx, tenant, endpoint string) (bool, error) {
	id, err := tx.Get(bucketEp, endpoint)
	var reg *Registration
	if err == nil {
		reg, err = getReg(tx, string(id))
	}
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return reg.Tenant == tenant, nil
}

// PrefetchRegistered reads ahead what IsRegistered needs for endpoints,
// so that on Redis checking a page of devices costs two round trips, not
// two per device. Failures surface in IsRegistered.
func PrefetchRegistered(tx store.Tx, endpoints []string) {
	for _, ep := range endpoints {
		store.Prefetch(tx, bucketEp, ep)
	}
	for _, ep := range endpoints {
		if id, err := tx.Get(bucketEp, ep); err == nil { // the first reads them all
			store.Prefetch(tx, bucketReg, string(id))
		}
	}
}

// Listener is told about registrations coming and going. Calls for one
// endpoint arrive in order, on a goroutine of the registry, after the
// change is stored and the CoAP response was handed to the transport; a
// slow listener delays later events of the endpoints sharing its queue,
// so hand long work to another goroutine.
type Listener interface {
	// Registered: a new registration; replaced is the previous registration
	// of the same endpoint (now gone) or nil.
	Registered(ctx context.Context, reg *Registration, replaced *Registration)
	Updated(ctx context.Context, reg *Registration)
	// Deregistered: the registration ended by De-register, RemoveEndpoint
	// or, with expired true, by its lifetime running out.
	Deregistered(ctx context.Context, reg *Registration, expired bool)
}

// Options configure a Registry. Zero fields take the documented defaults.
type Options struct {
	Logger *slog.Logger
	// AwakeTime is how long a queue-mode device is reachable after a
	// Register or Update, unless it asked for another time with the "at"
	// query parameter. Default 60s.
	AwakeTime time.Duration
	// ExpiryGrace is added to a registration's lifetime before it is
	// removed, for Updates delayed by retransmissions. Zero means the
	// default: 5% of the lifetime, at least 2s and at most 93s
	// (MAX_TRANSMIT_WAIT, the longest a CoAP retransmission takes).
	ExpiryGrace time.Duration
	// ExpiryInterval is the period of Run's scan for expired registrations;
	// default 1s.
	ExpiryInterval time.Duration
	// Transport is recorded in registrations whose requests carry no
	// transport.PeerInfo (go-coap's stock servers in tests); default "udp".
	// Requests from this server's own transports carry one.
	Transport string
}

// Registry keeps registrations in a store.Store. It is safe for concurrent
// use, and several Registries (server nodes) may share one store: each
// registration is removed by exactly one of them.
type Registry struct {
	st   store.Store
	dir  Directory
	opts Options
	log  *slog.Logger

	mu        sync.RWMutex
	listeners []Listener
	events    dispatcher
}

// New returns a Registry over st that admits the endpoints dir knows.
func New(st store.Store, dir Directory, opts Options) *Registry {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.AwakeTime <= 0 {
		opts.AwakeTime = 60 * time.Second
	}
	if opts.ExpiryInterval <= 0 {
		opts.ExpiryInterval = time.Second
	}
	if opts.Transport == "" {
		opts.Transport = "udp"
	}
	r := &Registry{st: st, dir: dir, opts: opts, log: opts.Logger.With("component", "registry")}
	r.events.r = r
	return r
}

// AddListener adds l; it is told about changes from then on.
func (r *Registry) AddListener(l Listener) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.listeners = append(r.listeners, l)
}

func (r *Registry) getListeners() []Listener {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.listeners
}

// grace is how long after ExpiresAt a registration is removed.
func (r *Registry) grace(lifetime int64) time.Duration {
	if r.opts.ExpiryGrace > 0 {
		return r.opts.ExpiryGrace
	}
	g := time.Duration(lifetime) * time.Second / 20
	return min(max(g, 2*time.Second), 93*time.Second)
}

// touch sets the times that follow from a Register or Update at now.
func (r *Registry) touch(reg *Registration, now time.Time) {
	reg.LastUpdate = now
	reg.Expiry = reg.ExpiresAt().Add(r.grace(reg.Lifetime)).UnixMilli()
	reg.AwakeUntil = time.Time{}
	if reg.QueueMode {
		// the operator's setting wins over the client's "at", which wins
		// over the server default; 0 means always online, that is until
		// the registration expires
		awake := r.opts.AwakeTime
		switch {
		case reg.DeviceAwake != nil:
			awake = time.Duration(*reg.DeviceAwake) * time.Millisecond
		case reg.AwakeTime != nil:
			awake = time.Duration(*reg.AwakeTime) * time.Second
		}
		if awake == 0 {
			awake = time.Until(time.UnixMilli(reg.Expiry)) + time.Second
		}
		reg.AwakeUntil = now.Add(awake)
	}
}

func millisPtr(d *time.Duration) *int64 {
	if d == nil {
		return nil
	}
	ms := d.Milliseconds()
	return &ms
}

// Awake reports whether requests may be sent to the device now: always for
// a device not in queue mode, else during the awake window after its last
// Register or Update.
func (r *Registry) Awake(reg *Registration) bool {
	return !reg.QueueMode || time.Now().Before(reg.AwakeUntil)
}

// errCorrupt: a stored registration cannot be decoded.
var errCorrupt = errors.New("corrupt registration record")

// errUnknown: no live registration with that id (answered 4.04).
var errUnknown = errors.New("unknown registration")

// live reports whether reg has not passed its removal deadline.
func live(reg *Registration, now time.Time) bool {
	return now.UnixMilli() < reg.Expiry
}

func getReg(tx store.Tx, id string) (*Registration, error) {
	b, err := tx.Get(bucketReg, id)
	if err != nil {
		return nil, err
	}
	return decodeReg(id, b)
}

// decodeReg decodes registration id as stored.
func decodeReg(id string, b []byte) (*Registration, error) {
	reg := new(Registration)
	if parseRecord(b, reg) {
		return reg, nil
	}
	*reg = Registration{}
	if err := json.Unmarshal(b, reg); err != nil {
		return nil, fmt.Errorf("registration %s: %w: %v", id, errCorrupt, err)
	}
	return reg, nil
}

// marshalReg encodes a registration for the store (see appendRecord).
func marshalReg(reg *Registration) ([]byte, error) {
	return appendRecord(make([]byte, 0, 512+len(reg.Links)), reg)
}

func putReg(tx store.Tx, reg *Registration, data []byte) error {
	if err := tx.Put(bucketReg, reg.ID, data); err != nil {
		return err
	}
	if err := tx.Put(bucketEp, reg.Endpoint, []byte(reg.ID)); err != nil {
		return err
	}
	if err := tx.Put(bucketExp, reg.expiryKey(), nil); err != nil {
		return err
	}
	if reg.Address != "" {
		return tx.Put(bucketAddr, reg.Address, []byte(reg.ID))
	}
	return nil
}

// deleteIfOwned removes key from an index bucket if it still names id: a
// newer registration from the same address may have taken it over. (On
// Redis the commit checks it, so a De-register reads only its record.)
func deleteIfOwned(tx store.Tx, bucket, key, id string) error {
	if key == "" {
		return nil
	}
	return store.DeleteIf(tx, bucket, key, []byte(id))
}

// deleteReg removes reg and the index entries that still point to it.
func deleteReg(tx store.Tx, reg *Registration) error {
	if err := tx.Delete(bucketReg, reg.ID); err != nil {
		return err
	}
	if err := tx.Delete(bucketExp, reg.expiryKey()); err != nil {
		return err
	}
	if err := deleteIfOwned(tx, bucketEp, reg.Endpoint, reg.ID); err != nil {
		return err
	}
	return deleteIfOwned(tx, bucketAddr, reg.Address, reg.ID)
}

// register stores a new registration of a device that the Directory
// knows and admit lets in, replacing the endpoint's previous registration,
// all in one transaction. It fills in reg's device fields and times and
// returns the replaced registration or nil. A refused device gets an
// error wrapping store.ErrNotFound or a *requestError; its transaction
// writes nothing (so it costs the embedded store no rollback).
func (r *Registry) register(ctx context.Context, reg *Registration, admit func(DeviceRef) error) (*Registration, error) {
	var replaced *Registration
	var refused error
	err := r.st.Update(ctx, func(tx store.Tx) error {
		replaced, refused = nil, nil // fn may run more than once
		// Most Registers are of devices that have no registration (new,
		// or theirs ran out): a store where reads cost a round trip may
		// take that as read and let the commit check it; or else it
		// reads the entry with the device's binding.
		if !store.PresumeMissing(tx, bucketEp, reg.Endpoint) {
			store.Prefetch(tx, bucketEp, reg.Endpoint)
		}
		ref, err := r.dir.LookupEndpoint(tx, reg.Endpoint)
		if err == nil {
			err = admit(ref)
		}
		var re *requestError
		if errors.Is(err, store.ErrNotFound) || errors.As(err, &re) {
			refused = err
			return nil
		}
		if err != nil {
			return err
		}
		if strings.ContainsRune(ref.Tenant, '/') { // it heads the registration's expiry key
			return fmt.Errorf("device of endpoint %q: tenant id %q holds a '/'", reg.Endpoint, ref.Tenant)
		}
		reg.Tenant, reg.DeviceID, reg.DeviceAwake = ref.Tenant, ref.DeviceID, millisPtr(ref.AwakeTime)
		r.touch(reg, reg.RegisteredAt)
		data, err := marshalReg(reg)
		if err != nil {
			return err
		}
		old, err := tx.Get(bucketEp, reg.Endpoint)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		default:
			prev, err := getReg(tx, string(old))
			switch {
			case errors.Is(err, store.ErrNotFound):
			case err != nil:
				return err
			default:
				if err := deleteReg(tx, prev); err != nil {
					return err
				}
				replaced = prev
			}
		}
		return putReg(tx, reg, data)
	})
	if err == nil {
		err = refused
	}
	return replaced, err
}

// update applies u to the live registration id, from peer address addr.
func (r *Registry) update(ctx context.Context, id, addr string, now time.Time, apply func(*Registration) error) (*Registration, error) {
	var updated *Registration
	err := r.st.Update(ctx, func(tx store.Tx) error {
		updated = nil
		reg, err := getReg(tx, id)
		if errors.Is(err, store.ErrNotFound) {
			return errUnknown
		}
		if err != nil {
			return err
		}
		if !live(reg, now) {
			return errUnknown // Run removes it and tells the listeners
		}
		oldKey, oldAddr := reg.expiryKey(), reg.Address
		if err := apply(reg); err != nil {
			return err
		}
		if addr != "" && addr != oldAddr { // NAT rebinding moved the device
			reg.Address = addr
			if err := deleteIfOwned(tx, bucketAddr, oldAddr, id); err != nil {
				return err
			}
			if err := tx.Put(bucketAddr, addr, []byte(id)); err != nil {
				return err
			}
		}
		r.touch(reg, now)
		data, err := marshalReg(reg)
		if err != nil {
			return err
		}
		if err := tx.Put(bucketReg, id, data); err != nil {
			return err
		}
		if newKey := reg.expiryKey(); newKey != oldKey {
			if err := tx.Delete(bucketExp, oldKey); err != nil {
				return err
			}
			if err := tx.Put(bucketExp, newKey, nil); err != nil {
				return err
			}
		}
		updated = reg
		return nil
	})
	return updated, err
}

// remove deletes the registration found by find inside one transaction.
func (r *Registry) remove(ctx context.Context, find func(tx store.Tx) (*Registration, error)) (*Registration, error) {
	var removed *Registration
	err := r.st.Update(ctx, func(tx store.Tx) error {
		removed = nil
		reg, err := find(tx)
		if err != nil {
			return err
		}
		if err := deleteReg(tx, reg); err != nil {
			return err
		}
		removed = reg
		return nil
	})
	return removed, err
}

// Get returns the live registration with id, or an error wrapping
// store.ErrNotFound.
func (r *Registry) Get(ctx context.Context, id string) (*Registration, error) {
	var reg *Registration
	err := r.st.View(ctx, func(tx store.Tx) error {
		var err error
		reg, err = getReg(tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !live(reg, time.Now()) {
		return nil, fmt.Errorf("registration %s expired: %w", id, store.ErrNotFound)
	}
	return reg, nil
}

// ByEndpoint returns the live registration of endpoint ep, or an error
// wrapping store.ErrNotFound.
func (r *Registry) ByEndpoint(ctx context.Context, ep string) (*Registration, error) {
	reg, err := r.byIndex(ctx, bucketEp, ep)
	if err != nil {
		return nil, err
	}
	if !live(reg, time.Now()) {
		return nil, fmt.Errorf("endpoint %s: registration expired: %w", ep, store.ErrNotFound)
	}
	return reg, nil
}

// byIndex loads the registration whose id the index bucket holds under
// key, live or not: the callers judge liveness, each in its own terms.
func (r *Registry) byIndex(ctx context.Context, bucket, key string) (*Registration, error) {
	var reg *Registration
	err := r.st.View(ctx, func(tx store.Tx) error {
		id, err := tx.Get(bucket, key)
		if err != nil {
			return err
		}
		reg, err = getReg(tx, string(id))
		return err
	})
	return reg, err
}

// ByAddress returns the live registration whose device last sent from
// addr ("ip:port", as in Registration.Address), or an error wrapping
// store.ErrNotFound.
func (r *Registry) ByAddress(ctx context.Context, addr string) (*Registration, error) {
	reg, err := r.byIndex(ctx, bucketAddr, addr)
	if err != nil {
		return nil, err
	}
	if reg.Address != addr || !live(reg, time.Now()) {
		return nil, fmt.Errorf("address %s: no live registration: %w", addr, store.ErrNotFound)
	}
	return reg, nil
}

// List returns the live registrations of tenant, ordered by endpoint.
func (r *Registry) List(ctx context.Context, tenant string) ([]*Registration, error) {
	var regs []*Registration
	now := time.Now()
	err := r.st.View(ctx, func(tx store.Tx) error {
		regs = regs[:0]
		return store.ScanJoin(tx, bucketExp, tenant+"/", "", bucketReg, func(k string) (string, bool) {
			_, _, id, ok := splitExpiryKey(k)
			return id, ok
		}, func(_, id string, b []byte) error {
			reg, err := decodeReg(id, b)
			if err != nil {
				return err
			}
			if live(reg, now) {
				regs = append(regs, reg)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(regs, func(a, b *Registration) int { return strings.Compare(a.Endpoint, b.Endpoint) })
	return regs, nil
}

// Deregister removes the registration id as a De-register would and tells
// the listeners. An unknown id is an error wrapping store.ErrNotFound.
func (r *Registry) Deregister(ctx context.Context, id string) error {
	reg, err := r.remove(ctx, func(tx store.Tx) (*Registration, error) { return getReg(tx, id) })
	if err != nil {
		return err
	}
	r.log.Debug("deregistered", "endpoint", reg.Endpoint, "id", reg.ID)
	r.events.deregistered(reg, false)
	return nil
}

// RemoveEndpoint removes the registration of endpoint ep, if any (the
// device was deleted), and tells the listeners.
func (r *Registry) RemoveEndpoint(ctx context.Context, ep string) error {
	reg, err := r.remove(ctx, func(tx store.Tx) (*Registration, error) {
		id, err := tx.Get(bucketEp, ep)
		if err != nil {
			return nil, err
		}
		return getReg(tx, string(id))
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	r.log.Debug("endpoint removed", "endpoint", ep, "id", reg.ID)
	r.events.deregistered(reg, false)
	return nil
}

// idAlphabet is base32 with digits first, so that ids sort as their
// numbers do; ids are also URI path segments.
const idAlphabet = "0123456789abcdefghijklmnopqrstuv"

// newID returns a registration id of 17 characters: 9 for the time in
// milliseconds, then 40 random bits. Ids of registrations made close
// together sort close together, so a B-tree store appends them instead of
// touching a random page for each (the embedded store writes every page a
// commit touched); the random part keeps ids of one millisecond, on any
// node, apart.
func newID() string {
	var b [5]byte
	_, _ = rand.Read(b[:]) // never fails (Go 1.24+)
	r := uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 | uint64(b[4])<<32
	t := uint64(time.Now().UnixMilli())
	var out [17]byte
	for i := 8; i >= 0; i-- {
		out[i] = idAlphabet[t&31]
		t >>= 5
	}
	for i := 16; i >= 9; i-- {
		out[i] = idAlphabet[r&31]
		r >>= 5
	}
	return string(out[:])
}
