package device

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
	"github.com/lwm2md/lwm2md/core/internal/store"
)

// Store layout. An observation lives in bucketObs under obsKey(endpoint,
// path); bucketObsToken maps its hex token to that key, so that a
// notification can be matched after a restart (or on another node) without
// loading every observation.
const (
	bucketObs      = "obs"
	bucketObsToken = "obs-token"
)

// obsRecord is the durable form of an observation.
type obsRecord struct {
	Endpoint string       `json:"endpoint"`
	RegID    string       `json:"registrationId"`
	Tenant   string       `json:"tenant"`
	DeviceID string       `json:"deviceId"`
	Path     lwm2m.Path   `json:"path"`
	Token    []byte       `json:"token"`
	Format   lwm2m.Format `json:"format"` // the Accept it was established with
	Since    time.Time    `json:"since"`
}

// obsKey is "endpoint/3/0/9".
func obsKey(ep string, p lwm2m.Path) string {
	return ep + "/" + strings.TrimPrefix(p.String(), "/")
}

// observation is a cached obsRecord plus the notification order state
// (RFC 7641 §3.4), which is not worth persisting.
type observation struct {
	rec obsRecord

	mu      sync.Mutex
	seq     uint32
	last    time.Time
	started bool
}

// fresh reports whether a notification with Observe value seq is newer
// than the last one accepted, and records it.
func (o *observation) fresh(seq uint32, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.started {
		newer := (o.seq < seq && seq-o.seq < 1<<23) || (o.seq > seq && o.seq-seq > 1<<23)
		if !newer && now.Sub(o.last) <= 128*time.Second {
			return false
		}
	}
	o.seq, o.last, o.started = seq, now, true
	return true
}

// obsIndex caches observations by token and by endpoint/path. The store is
// the truth; the cache is filled when observations are made and on a miss.
type obsIndex struct {
	mu      sync.Mutex
	byToken map[string]*observation
	byEP    map[string]map[lwm2m.Path]*observation
	// gen counts removals, so that a record read from the store while an
	// observation was being forgotten is not cached again (see cache).
	gen uint64
}

func newObsIndex() *obsIndex {
	return &obsIndex{byToken: map[string]*observation{}, byEP: map[string]map[lwm2m.Path]*observation{}}
}

// put caches o and returns the observation it replaces for the same path.
func (x *obsIndex) put(o *observation) *observation {
	x.mu.Lock()
	defer x.mu.Unlock()
	paths := x.byEP[o.rec.Endpoint]
	if paths == nil {
		paths = map[lwm2m.Path]*observation{}
		x.byEP[o.rec.Endpoint] = paths
	}
	old := paths[o.rec.Path]
	if old != nil {
		delete(x.byToken, string(old.rec.Token))
	}
	paths[o.rec.Path] = o
	x.byToken[string(o.rec.Token)] = o
	return old
}

// generation returns the removal count, to pass to cache.
func (x *obsIndex) generation() uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.gen
}

// cache adds an observation read from the store unless something was
// removed since gen (the record may be one being forgotten) or the path
// is cached already. It returns the observation to use.
func (x *obsIndex) cache(o *observation, gen uint64) *observation {
	x.mu.Lock()
	defer x.mu.Unlock()
	if cur := x.byEP[o.rec.Endpoint][o.rec.Path]; cur != nil {
		if string(cur.rec.Token) == string(o.rec.Token) {
			return cur
		}
		return o // a newer observation of the path is cached: use, don't cache
	}
	if x.gen != gen {
		return o
	}
	paths := x.byEP[o.rec.Endpoint]
	if paths == nil {
		paths = map[lwm2m.Path]*observation{}
		x.byEP[o.rec.Endpoint] = paths
	}
	paths[o.rec.Path] = o
	x.byToken[string(o.rec.Token)] = o
	return o
}

// remove drops o if it is still the cached observation of its token.
func (x *obsIndex) remove(o *observation) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.gen++
	if x.byToken[string(o.rec.Token)] == o {
		delete(x.byToken, string(o.rec.Token))
	}
	if paths := x.byEP[o.rec.Endpoint]; paths != nil && paths[o.rec.Path] == o {
		delete(paths, o.rec.Path)
		if len(paths) == 0 {
			delete(x.byEP, o.rec.Endpoint)
		}
	}
}

func (x *obsIndex) token(t []byte) *observation {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.byToken[string(t)]
}

func (x *obsIndex) path(ep string, p lwm2m.Path) *observation {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.byEP[ep][p]
}

// endpoint returns the cached observations of ep.
func (x *obsIndex) endpoint(ep string) []*observation {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []*observation
	for _, o := range x.byEP[ep] {
		out = append(out, o)
	}
	return out
}

// Observe starts observing path p of ep (GET with Observe=0) and returns
// the current value, which also goes to the Sink; later notifications go
// to the Sink as SourceNotify. The observation is persisted and survives a
// server restart. Observing a path again replaces the earlier observation,
// whose notifications are then answered with Reset. If the device answers
// without starting an observation, the records are returned together with
// an error wrapping ErrNotObserved.
func (c *Client) Observe(ctx context.Context, ep string, p lwm2m.Path) ([]lwm2m.Record, error) {
	if p.Level() == lwm2m.LevelRoot {
		return nil, fmt.Errorf("%w: observe needs at least an object path", ErrInvalid)
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	t, err := c.target(ctx, ep)
	if err != nil {
		return nil, err
	}
	token, err := message.GetToken()
	if err != nil {
		return nil, fmt.Errorf("make token: %w", err)
	}
	accept := acceptFor(t.reg, p)
	o := &observation{rec: obsRecord{
		Endpoint: ep, RegID: t.reg.ID, Tenant: t.reg.Tenant, DeviceID: t.reg.DeviceID,
		Path: p, Token: token, Format: accept, Since: time.Now().UTC(),
	}}
	// Cache before sending: a notification may overtake our bookkeeping.
	old := c.obs.put(o)
	zero := uint32(0)
	resp, err := c.roundTrip(ctx, t, request{code: codes.GET, path: p, token: token, accept: &accept, observe: &zero})
	if err == nil {
		err = resp.expect(codes.Content)
	}
	if err != nil {
		c.restore(o, old)
		return nil, err
	}
	recs, derr := c.decode(p, accept, resp.format, resp.hasFormat, resp.body)
	if derr == nil {
		c.emit(ctx, t.reg, SourceRead, recs)
	}
	if !resp.observe {
		c.restore(o, old)
		if derr != nil {
			return nil, derr
		}
		return recs, fmt.Errorf("%w: %s on %q", ErrNotObserved, p, ep)
	}
	if err := c.persist(ctx, o.rec); err != nil {
		// Without a durable record the observation would be lost on
		// restart; drop it so its notifications are reset.
		c.restore(o, old)
		return nil, fmt.Errorf("save observation of %s on %q: %w", p, ep, err)
	}
	if derr != nil {
		return nil, derr
	}
	return recs, nil
}

// restore undoes a failed Observe in the cache.
func (c *Client) restore(o, old *observation) {
	c.obs.remove(o)
	if old != nil {
		c.obs.put(old)
	}
}

// CancelObservation ends the observation of p on ep actively: GET with
// Observe=1 and the observation's token. The observation is forgotten
// first, so any notification crossing the request is answered with Reset.
// The answer's value goes to the Sink. It returns an error wrapping
// ErrNoObservation when p is not observed.
func (c *Client) CancelObservation(ctx context.Context, ep string, p lwm2m.Path) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	t, err := c.target(ctx, ep)
	if err != nil {
		return err
	}
	o, err := c.lookupPath(ctx, ep, p)
	if err != nil {
		return err
	}
	if err := c.forget(ctx, o); err != nil {
		return err
	}
	one := uint32(1)
	accept := o.rec.Format
	resp, err := c.roundTrip(ctx, t, request{code: codes.GET, path: p, token: o.rec.Token, accept: &accept, observe: &one})
	if err != nil {
		return err
	}
	if err := resp.expect(codes.Content); err != nil {
		return err
	}
	if recs, err := c.decode(p, accept, resp.format, resp.hasFormat, resp.body); err == nil {
		c.emit(ctx, t.reg, SourceRead, recs)
	}
	return nil
}

// lookupPath finds the observation of ep/p in the cache or the store.
func (c *Client) lookupPath(ctx context.Context, ep string, p lwm2m.Path) (*observation, error) {
	if o := c.obs.path(ep, p); o != nil {
		return o, nil
	}
	gen := c.obs.generation()
	var rec obsRecord
	err := c.st.View(ctx, func(tx store.Tx) error {
		v, err := tx.Get(bucketObs, obsKey(ep, p))
		if err != nil {
			return err
		}
		return json.Unmarshal(v, &rec)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s on %q", ErrNoObservation, p, ep)
	}
	if err != nil {
		return nil, fmt.Errorf("load observation of %s on %q: %w", p, ep, err)
	}
	return c.obs.cache(&observation{rec: rec}, gen), nil
}

// lookupToken finds the observation a notification belongs to, in the
// cache or, after a restart, in the store.
func (c *Client) lookupToken(ctx context.Context, token []byte) (*observation, error) {
	if len(token) == 0 {
		return nil, nil
	}
	if o := c.obs.token(token); o != nil {
		return o, nil
	}
	gen := c.obs.generation()
	var rec obsRecord
	found := false
	err := c.st.View(ctx, func(tx store.Tx) error {
		key, err := tx.Get(bucketObsToken, hex.EncodeToString(token))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err := tx.Get(bucketObs, string(key))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("decode observation %q: %w", key, err)
		}
		found = string(rec.Token) == string(token)
		return nil
	})
	if err != nil || !found {
		return nil, err
	}
	return c.obs.cache(&observation{rec: rec}, gen), nil
}

// persist writes rec, replacing an earlier observation of the same path.
func (c *Client) persist(ctx context.Context, rec obsRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	key := obsKey(rec.Endpoint, rec.Path)
	return c.st.Update(ctx, func(tx store.Tx) error {
		if v, err := tx.Get(bucketObs, key); err == nil {
			var old obsRecord
			if json.Unmarshal(v, &old) == nil && len(old.Token) > 0 {
				if err := tx.Delete(bucketObsToken, hex.EncodeToString(old.Token)); err != nil {
					return err
				}
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := tx.Put(bucketObs, key, data); err != nil {
			return err
		}
		return tx.Put(bucketObsToken, hex.EncodeToString(rec.Token), []byte(key))
	})
}

// forget drops o from the store, if it is still the stored observation of
// its path, and then from the cache: in that order a concurrent cache miss
// cannot bring it back (see obsIndex.cache).
func (c *Client) forget(ctx context.Context, o *observation) error {
	defer c.obs.remove(o)
	key := obsKey(o.rec.Endpoint, o.rec.Path)
	err := c.st.Update(ctx, func(tx store.Tx) error {
		if err := tx.Delete(bucketObsToken, hex.EncodeToString(o.rec.Token)); err != nil {
			return err
		}
		v, err := tx.Get(bucketObs, key)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var cur obsRecord
		if json.Unmarshal(v, &cur) == nil && string(cur.Token) != string(o.rec.Token) {
			return nil // replaced by a newer observation meanwhile
		}
		return tx.Delete(bucketObs, key)
	})
	if err != nil {
		return fmt.Errorf("delete observation of %s on %q: %w", o.rec.Path, o.rec.Endpoint, err)
	}
	return nil
}

// Observations lists the persisted observations of ep, for the API and
// tests.
func (c *Client) Observations(ctx context.Context, ep string) ([]lwm2m.Path, error) {
	recs, err := c.stored(ctx, ep)
	if err != nil {
		return nil, err
	}
	out := make([]lwm2m.Path, len(recs))
	for i, r := range recs {
		out[i] = r.Path
	}
	return out, nil
}

// stored reads the persisted observations of ep.
func (c *Client) stored(ctx context.Context, ep string) ([]obsRecord, error) {
	var out []obsRecord
	err := c.st.View(ctx, func(tx store.Tx) error {
		return tx.Scan(bucketObs, ep+"/", "", func(key string, v []byte) error {
			var rec obsRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode observation %q: %w", key, err)
			}
			if rec.Endpoint == ep { // "ep/" also prefixes endpoint "ep/x"
				out = append(out, rec)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list observations of %q: %w", ep, err)
	}
	return out, nil
}
