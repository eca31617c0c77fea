package sim

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/lwm2m"
)

// DeviceConfig configures one simulated device.
type DeviceConfig struct {
	Endpoint string // client endpoint name (ep=); required
	// Server is the LwM2M server: "coap://host:port", "host:port" or
	// "coap://host" (port 5683).
	Server string
	// Version is Version10 or Version11 (the default).
	Version string
	// Lifetime of the registration, in whole seconds; default 300 s. The
	// device sends an Update after 75-85% of it.
	Lifetime time.Duration
	// QueueMode registers with the Q flag (1.1) or binding UQ (1.0).
	QueueMode bool
	// Rate is how often the device's sensor values change, in changes per
	// second (0.2 = every 5 s). Every change of an observed value yields a
	// notification unless the observation's attributes hold it back. 0
	// means values change only through Tick.
	Rate float64
	// Confirmable sends notifications as CON messages, waiting for the ACK;
	// the default is NON.
	Confirmable bool
	// RequestTimeout bounds each request to the server (Register, Update,
	// De-register, confirmable notifications); default 10 s.
	RequestTimeout time.Duration
	// LocalIP is the address the device's socket binds to (default: chosen
	// by the system). Load tests beyond ~28,000 devices per process spread
	// devices over several loopback addresses: each has its own port range.
	LocalIP string
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger

	// Bootstrap is the bootstrap server ("coap://host:5683" or
	// "coaps://host:5684"). When set, Start bootstraps first and then
	// connects to the LwM2M server the bootstrap server wrote; Server may
	// then be empty. See bootstrap.go.
	Bootstrap string
	// PSK is the device's DTLS credential for the first server it talks
	// to: the bootstrap server when Bootstrap is set (the LwM2M server's
	// credentials then come from the bootstrap), else the LwM2M server,
	// which Server must then name as coaps://.
	PSK PSK
	// RebindAfter moves a DTLS session to a new UDP socket (a new source
	// port) after this long, and again every RebindAfter, and sends an
	// Update from there: the session must survive through its Connection
	// ID. Plain UDP sessions are not moved. 0 never moves.
	RebindAfter time.Duration
}

// fleet holds what the devices of one run share: settings, the template,
// counters and the scheduler.
type fleet struct {
	server      string // host:port; "" until a bootstrap names it
	secure      bool   // server is coaps
	bootstrap   string // bootstrap server URI, or ""
	rebindAfter time.Duration
	version     string
	lifetime    int64
	queue       bool
	period      time.Duration // between value changes; 0 = none
	confirmable bool
	timeout     time.Duration
	log         *slog.Logger
	dialer      *net.Dialer
	tmpl        *template
	stats       *counters
	rt          *scheduler
}

func newFleet(cfg DeviceConfig) (*fleet, error) {
	var addr string
	var secure bool
	if cfg.Server != "" || cfg.Bootstrap == "" {
		var err error
		if addr, secure, err = parseURI(cfg.Server); err != nil {
			return nil, err
		}
	}
	if cfg.Bootstrap != "" {
		if _, _, err := parseURI(cfg.Bootstrap); err != nil {
			return nil, fmt.Errorf("sim: bootstrap: %w", err)
		}
	}
	if cfg.RebindAfter < 0 {
		return nil, fmt.Errorf("sim: rebind-after %v: want >= 0", cfg.RebindAfter)
	}
	switch cfg.Version {
	case "":
		cfg.Version = Version11
	case Version10, Version11:
	default:
		return nil, fmt.Errorf("sim: version %q: want %s or %s", cfg.Version, Version10, Version11)
	}
	lt := int64(cfg.Lifetime / time.Second)
	if cfg.Lifetime == 0 {
		lt = 300
	}
	if lt < 1 {
		return nil, fmt.Errorf("sim: lifetime %v: want at least 1s", cfg.Lifetime)
	}
	if cfg.Rate < 0 {
		return nil, fmt.Errorf("sim: rate %v: want >= 0", cfg.Rate)
	}
	f := &fleet{
		server:      addr,
		secure:      secure,
		bootstrap:   cfg.Bootstrap,
		rebindAfter: cfg.RebindAfter,
		version:     cfg.Version,
		lifetime:    lt,
		queue:       cfg.QueueMode,
		confirmable: cfg.Confirmable,
		timeout:     cfg.RequestTimeout,
		log:         cfg.Logger,
		tmpl:        templateFor(cfg.Version),
	}
	f.dialer = &net.Dialer{Timeout: 3 * time.Second}
	if cfg.LocalIP != "" {
		ip := net.ParseIP(cfg.LocalIP)
		if ip == nil {
			return nil, fmt.Errorf("sim: local ip %q is not an IP address", cfg.LocalIP)
		}
		f.dialer.LocalAddr = &net.UDPAddr{IP: ip}
	}
	if cfg.Rate > 0 {
		f.period = time.Duration(float64(time.Second) / cfg.Rate)
	}
	if f.timeout <= 0 {
		f.timeout = 10 * time.Second
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	f.log = f.log.With("component", "sim")
	return f, nil
}

// Device is one simulated LwM2M client with its own UDP socket. It
// registers, keeps its registration up to date and answers the server's
// requests until Close. A Device is safe for concurrent use.
type Device struct {
	f        *fleet
	endpoint string
	own      bool  // f and its scheduler belong to this device alone
	link     *link // to the LwM2M server, once started

	// Set before Start: the device's credential and bootstrap server, and
	// when its first Register was due (a run with RampUp): the latency of
	// that Register counts from then, so that a load generator falling
	// behind its schedule cannot hide the wait (coordinated omission).
	psk          PSK
	bootstrapURI string
	due          time.Time
	// Set by Start: the LwM2M server and, after a bootstrap, what the
	// bootstrap server wrote; rebind is the swappable socket of a DTLS
	// session.
	boot    *bootState
	rebind  *rebindConn
	queue   bool // queue mode from a bootstrapped binding (1.1: the Q parameter)
	rebinds atomic.Int64

	// regMu serialises Register, Update and De-register: an Update that
	// fails while another is on its way must not register twice.
	regMu sync.Mutex

	mu            sync.Mutex
	tree          tree
	links         []byte // registration payload; nil while the template's applies
	location      string // "/rd/<id>" from the Register answer
	registered    bool
	closed        bool
	tickStarted   bool
	lifetime      int64
	binding       string
	timeOffset    int64 // seconds, from a Write of /3/0/13
	battery       int64
	rng           uint64
	seed          uint64
	sensors       []sensor
	attrs         map[lwm2m.Path]attrs
	obs           []*observation
	acks          map[int32]chan bool // confirmable notifications waiting for ACK
	updateGen     uint64
	obsGen        uint64
	obsAt         int64
	sendLinks     bool // the next Update carries the object links
	sendLifetime  bool
	sendBinding   bool
	changes       uint64 // counts requested Updates, so none is lost to one in flight
	ticking       atomic.Bool
	reboots       atomic.Int64
	notifications atomic.Int64
}

// NewDevice returns a device that is not yet connected; Start connects and
// registers it. Each device made by NewDevice has its own timer goroutines;
// Run shares them between all devices of a run.
func NewDevice(cfg DeviceConfig) (*Device, error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("sim: no endpoint")
	}
	f, err := newFleet(cfg)
	if err != nil {
		return nil, err
	}
	if err := f.checkPSK(cfg.PSK); err != nil {
		return nil, err
	}
	f.stats = newCounters()
	f.rt = newScheduler()
	d := f.newDevice(cfg.Endpoint)
	d.own = true
	d.psk = cfg.PSK
	return d, nil
}

func (f *fleet) newDevice(endpoint string) *Device {
	h := fnv.New64a()
	h.Write([]byte(endpoint))
	seed := h.Sum64()
	d := &Device{
		f:            f,
		endpoint:     endpoint,
		tree:         tree{entries: f.tmpl.entries, shared: true},
		lifetime:     f.lifetime,
		binding:      "U",
		battery:      100 - int64(seed%20),
		rng:          seed | 1,
		seed:         seed,
		bootstrapURI: f.bootstrap,
	}
	if f.queue && f.version == Version10 {
		d.binding = "UQ"
	}
	d.resetSensors()
	return d
}

// resetSensors gives the device its initial sensors, with a first payload.
func (d *Device) resetSensors() {
	d.sensors = []sensor{
		newSensor(lwm2m.NewPath(3303, 0), d.seed),
		newSensor(lwm2m.NewPath(BinaryObjectID, 0), d.seed),
	}
	d.sensors[1].step(d, time.Now(), nil)
}

// Endpoint returns the device's endpoint name.
func (d *Device) Endpoint() string { return d.endpoint }

// Location returns the registration's path ("/rd/<id>"), or "" while the
// device is not registered.
func (d *Device) Location() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.registered {
		return ""
	}
	return d.location
}

// LocalAddr returns the address of the device's socket, or nil before Start.
func (d *Device) LocalAddr() net.Addr {
	if d.link == nil {
		return nil
	}
	return d.link.LocalAddr()
}

// Reboots returns how often the server executed /3/0/4 (Reboot).
func (d *Device) Reboots() int64 { return d.reboots.Load() }

// Notifications returns how many notifications the device sent.
func (d *Device) Notifications() int64 { return d.notifications.Load() }

// Stats returns the device's counters.
func (d *Device) Stats() Stats { return d.f.stats.snapshot(1) }

// Start opens the device's socket and registers; call it once. ctx bounds
// the Register round trip (so does DeviceConfig.RequestTimeout). On error
// the device can only be closed.
func (d *Device) Start(ctx context.Context) error {
	if err := d.open(ctx); err != nil {
		return err
	}
	return d.registerFirst(ctx)
}

// open connects the device's socket (after a bootstrap, when it has a
// bootstrap server); the first half of Start.
func (d *Device) open(ctx context.Context) error {
	conn, err := d.connect(ctx)
	if err != nil {
		d.f.stats.regFailed.Add(1)
		d.f.stats.errors.Add(1)
		return err
	}
	d.link = newLink(conn, d)
	return nil
}

// registerFirst sends the first Register; the second half of Start.
func (d *Device) registerFirst(ctx context.Context) error {
	d.regMu.Lock()
	defer d.regMu.Unlock()
	return d.register(ctx, true)
}

// Close de-registers the device (when registered) and closes its socket.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.updateGen++
	d.obsGen++
	d.mu.Unlock()
	// Wait for a Register or Update on its way, then undo the registration.
	d.regMu.Lock()
	d.mu.Lock()
	registered, loc := d.registered, d.location
	d.mu.Unlock()
	var err error
	if registered {
		err = d.deregister(loc)
	}
	d.regMu.Unlock()
	if d.link != nil {
		if cerr := d.link.close(); cerr != nil && err == nil {
			err = cerr
		}
	}
	if d.own {
		d.f.rt.close()
	}
	return err
}

// fire runs one scheduled event.
func (d *Device) fire(e event) {
	switch e.kind {
	case evTick:
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return
		}
		next := time.Unix(0, e.at).Add(d.f.period)
		if now := time.Now(); next.Before(now) {
			next = now.Add(d.f.period) // fell behind: skip, do not burst
		}
		d.f.rt.schedule(next, d, evTick, 0)
		d.mu.Unlock()
		if d.ticking.CompareAndSwap(false, true) {
			d.Tick()
			d.ticking.Store(false)
		}
	case evUpdate:
		d.regMu.Lock()
		defer d.regMu.Unlock()
		d.mu.Lock()
		stale := e.gen != d.updateGen || d.closed
		d.mu.Unlock()
		if !stale {
			d.update()
		}
	case evObs:
		d.mu.Lock()
		if e.gen != d.obsGen || d.closed {
			d.mu.Unlock()
			return
		}
		d.obsAt = 0
		out := d.evaluateLocked(time.Now(), nil)
		d.mu.Unlock()
		d.send(out)
	}
}

// Tick changes the device's sensor values now, as a Rate tick does, and
// notifies the observers of the changed values.
func (d *Device) Tick() {
	now := time.Now()
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	changed := make([]lwm2m.Path, 0, 8)
	for i := range d.sensors {
		changed = d.sensors[i].step(d, now, changed)
	}
	if d.nextRand()%60 == 0 && d.battery > 5 {
		d.battery--
		changed = append(changed, lwm2m.NewPath(3, 0, 9))
	}
	var out []notification
	if len(d.obs) > 0 {
		out = d.evaluateLocked(now, changed)
	}
	d.mu.Unlock()
	d.send(out)
}

// nextRand is a xorshift64* step on the device's own generator: 8 bytes of
// state instead of a rand.Rand per device.
func (d *Device) nextRand() uint64 {
	x := d.rng
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	d.rng = x
	return x * 2685821657736338717
}

// randFloat returns a float in [0, 1); the caller holds d.mu.
func (d *Device) randFloat() float64 { return float64(d.nextRand()>>11) / (1 << 53) }

// jitter is randFloat for callers that do not hold d.mu.
func (d *Device) jitter() float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.randFloat()
}
