package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a simulation run of many devices.
type Config struct {
	// Server is the LwM2M server ("coap://127.0.0.1:5783").
	Server string
	// Devices is how many devices to run; each has its own UDP socket.
	Devices int
	// Prefix and Start name the devices: endpoints are Prefix+n for n from
	// Start to Start+Devices-1. Prefix defaults to "sim-".
	Prefix string
	Start  int
	// Version is Version10 or Version11 (the default).
	Version string
	// Lifetime of the registrations; default 300 s.
	Lifetime time.Duration
	// QueueMode registers the devices in queue mode.
	QueueMode bool
	// Rate is per device: sensor value changes per second. Each change of
	// an observed value yields one notification per observation (unless
	// pmin, gt, lt or st hold it back), so notifications per second are
	// about Rate x Devices x observations per device on changing values.
	Rate float64
	// Confirmable sends notifications as CON instead of NON.
	Confirmable bool
	// Duration ends the run after this long (counted from the first
	// Register); 0 runs until ctx is done.
	Duration time.Duration
	// RampUp spreads the devices' first Register evenly over this time
	// (an open-loop load, whose Register latencies count from when each
	// was due); 0 starts them as fast as Concurrency allows.
	RampUp time.Duration
	// Concurrency bounds Registers and De-registers in flight; default 128.
	Concurrency int
	// RequestTimeout bounds each request to the server; default 10 s.
	RequestTimeout time.Duration
	// API, when set, is the platform's REST base URL: before starting, every
	// device is created through POST /service/lwm2m-agent/deviceRegistration
	// as User ("tenant/user:password"); devices that exist (409) are fine.
	API            string
	User           string
	APIConcurrency int // requests in flight; default 16
	// Progress, when set, is called every ProgressInterval (default 1 s)
	// with the counters so far.
	Progress         func(Stats)
	ProgressInterval time.Duration
	// LocalIP is the address the devices' sockets bind to; see
	// DeviceConfig.LocalIP.
	LocalIP string
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger

	// Bootstrap is the bootstrap server URI; the devices bootstrap first
	// and Server may be empty (see DeviceConfig.Bootstrap).
	Bootstrap string
	// PSKIdentity and PSKKey are patterns of the devices' DTLS credentials
	// (see ExpandPSK): "{ep}" or "%s" is the endpoint, "{n}" the device
	// number. With API, PSK devices are provisioned with them as both
	// their lwm2m and their bootstrap credentials.
	PSKIdentity, PSKKey string
	// RebindAfter moves each DTLS session to a new source port this often
	// (see DeviceConfig.RebindAfter).
	RebindAfter time.Duration
}

// psk returns the credentials of device n, or none without patterns.
func (cfg *Config) psk(endpoint string, n int) (PSK, error) {
	if cfg.PSKIdentity == "" && cfg.PSKKey == "" {
		return PSK{}, nil
	}
	return ExpandPSK(cfg.PSKIdentity, cfg.PSKKey, endpoint, n)
}

// Run simulates cfg.Devices devices against cfg.Server until cfg.Duration
// has passed or ctx is done, then de-registers them all and returns the
// final counters. It fails when provisioning through the API fails or when
// no device could register; single failed registrations are counted in
// Stats.RegFailed.
func Run(ctx context.Context, cfg Config) (Stats, error) {
	if cfg.Devices <= 0 {
		return Stats{}, errors.New("sim: devices must be at least 1")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "sim-"
	}
	if cfg.Start < 0 {
		return Stats{}, fmt.Errorf("sim: start %d: want >= 0", cfg.Start)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 128
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = time.Second
	}
	f, err := newFleet(DeviceConfig{
		Endpoint:       "-",
		Server:         cfg.Server,
		Version:        cfg.Version,
		Lifetime:       cfg.Lifetime,
		QueueMode:      cfg.QueueMode,
		Rate:           cfg.Rate,
		Confirmable:    cfg.Confirmable,
		RequestTimeout: cfg.RequestTimeout,
		LocalIP:        cfg.LocalIP,
		Logger:         cfg.Logger,
		Bootstrap:      cfg.Bootstrap,
		RebindAfter:    cfg.RebindAfter,
	})
	if err != nil {
		return Stats{}, err
	}
	// Check the credential patterns once rather than per device.
	if psk, err := cfg.psk(cfg.Prefix+strconv.Itoa(cfg.Start), cfg.Start); err != nil {
		return Stats{}, err
	} else if err := f.checkPSK(psk); err != nil {
		return Stats{}, err
	}
	endpoint := func(i int) string { return cfg.Prefix + strconv.Itoa(cfg.Start+i) }

	f.stats = newCounters()
	if cfg.API != "" {
		if err := provision(ctx, cfg, endpoint, f.stats); err != nil {
			return f.stats.snapshot(cfg.Devices), err
		}
	}
	provisioned := f.stats.provisioned.Load()
	f.stats = newCounters() // rates count from the first Register
	f.stats.provisioned.Store(provisioned)
	f.rt = newScheduler()
	defer f.rt.close()
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}

	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		if cfg.Progress == nil {
			return
		}
		t := time.NewTicker(cfg.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				cfg.Progress(f.stats.snapshot(cfg.Devices))
			}
		}
	}()

	devices, firstErr := startDevices(ctx, f, cfg, endpoint)
	if len(devices) == 0 {
		close(stopProgress)
		<-progressDone
		return f.stats.snapshot(cfg.Devices), fmt.Errorf("sim: no device registered: %w", firstErr)
	}
	<-ctx.Done()
	closeDevices(devices, cfg.Concurrency)
	close(stopProgress)
	<-progressDone
	return f.stats.snapshot(cfg.Devices), nil
}

// startDevices opens the devices' sockets, then registers them with at
// most cfg.Concurrency Registers in flight, spread over cfg.RampUp. It
// returns the registered devices and the first error. The sockets open
// first, as a real device's socket exists before it registers: opening
// costs the simulator about as much CPU as the Register itself, and a load
// generator that spends it while the Registers are measured takes it from
// the server under test.
func startDevices(ctx context.Context, f *fleet, cfg Config, endpoint func(int) string) ([]*Device, error) {
	var (
		mu       sync.Mutex
		devices  = make([]*Device, 0, cfg.Devices)
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(d *Device, err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		f.log.Debug("start failed", "endpoint", d.endpoint, "error", err)
		_ = d.Close()
	}

	opened := make([]*Device, cfg.Devices)
	var next atomic.Int64
	for range min(cfg.Concurrency, cfg.Devices) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.Devices || ctx.Err() != nil {
					return
				}
				ep := endpoint(i)
				d := f.newDevice(ep)
				d.psk, _ = cfg.psk(ep, cfg.Start+i) // checked by Run
				if err := d.open(ctx); err != nil {
					fail(d, err)
					continue
				}
				opened[i] = d
			}
		})
	}
	wg.Wait()

	sem := make(chan struct{}, cfg.Concurrency)
	begin := time.Now()
	for i, d := range opened {
		if d == nil {
			continue
		}
		var at time.Time
		if cfg.RampUp > 0 {
			at = begin.Add(time.Duration(int64(cfg.RampUp) * int64(i) / int64(cfg.Devices)))
			if wait := time.Until(at); wait > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(wait):
				}
			}
		}
		select {
		case <-ctx.Done():
		case sem <- struct{}{}:
		}
		if ctx.Err() != nil {
			// Stopped: the devices not yet registering only close.
			for _, d := range opened[i:] {
				if d != nil {
					_ = d.Close()
				}
			}
			break
		}
		d.due = at
		wg.Go(func() {
			defer func() { <-sem }()
			// A Register on its way finishes even when the run is being
			// stopped: the server may have registered the device already,
			// and only a finished Register can be undone by De-register.
			if err := d.registerFirst(context.WithoutCancel(ctx)); err != nil {
				fail(d, err)
				return
			}
			mu.Lock()
			devices = append(devices, d)
			mu.Unlock()
		})
	}
	wg.Wait()
	if firstErr == nil && len(devices) == 0 {
		firstErr = ctx.Err()
	}
	return devices, firstErr
}

// closeDevices de-registers and closes devices, concurrency at a time.
func closeDevices(devices []*Device, concurrency int) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, concurrency)
	for _, d := range devices {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_ = d.Close()
		}()
	}
	wg.Wait()
}
