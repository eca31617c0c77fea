package sim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/sim"
	"github.com/lwm2md/lwm2md/core/internal/sim/simtest"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// fakeAPI is the platform's deviceRegistration endpoint: it checks the
// credentials and the body and answers 201, or 409 for known endpoints.
type fakeAPI struct {
	mu    sync.Mutex
	known map[string]bool
	posts int
	bad   []string
}

func (a *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, pass, _ := r.BasicAuth()
	if r.Method != http.MethodPost || r.URL.Path != "/service/lwm2m-agent/deviceRegistration" {
		http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
		return
	}
	if user != "t1/admin" || pass != "secret" {
		http.Error(w, `{"error":"security/Unauthorized","message":"bad credentials"}`, http.StatusUnauthorized)
		return
	}
	var body map[string]string
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, `{"error":"bad json"}`, http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.posts++
	ep := body["endpoint"]
	if body["securityMode"] != "NO_SEC" || body["name"] != ep || ep == "" {
		a.bad = append(a.bad, fmt.Sprint(body))
	}
	if a.known[ep] {
		http.Error(w, `{"error":"conflict"}`, http.StatusConflict)
		return
	}
	a.known[ep] = true
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write([]byte(`{"id":"1","type":"c8y_lwm2m"}`))
}

func TestRunIntegration(t *testing.T) {
	t.Parallel()
	srv := simtest.Start(t)
	api := &fakeAPI{known: map[string]bool{"load-1003": true}} // one exists already: 409
	ts := httptest.NewServer(api)
	defer ts.Close()

	const n = 200
	var progress atomic.Int64
	var res struct {
		stats sim.Stats
		err   error
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		res.stats, res.err = sim.Run(context.Background(), sim.Config{
			Server:           srv.URI(),
			Devices:          n,
			Prefix:           "load-",
			Start:            1000,
			Rate:             20,
			Lifetime:         60 * time.Second,
			Duration:         2 * time.Second,
			RampUp:           200 * time.Millisecond,
			API:              ts.URL,
			User:             "t1/admin:secret",
			Progress:         func(sim.Stats) { progress.Add(1) },
			ProgressInterval: 100 * time.Millisecond,
		})
	}()

	eventually(t, func() bool { return srv.Registered() == n }, "all devices registered")
	// Observe a few devices: their temperature changes 20 times a second.
	var obs []*simtest.Observation
	for i := range 5 {
		obs = append(obs, observe(t, srv, fmt.Sprintf("load-%d", 1000+i*40), "/3303/0/5700"))
	}
	for _, o := range obs {
		if _, err := o.WaitN(3, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	s := res.stats

	api.mu.Lock()
	if api.posts != n || len(api.known) != n || len(api.bad) > 0 {
		t.Errorf("api saw %d posts for %d endpoints, bad bodies %v", api.posts, len(api.known), api.bad)
	}
	api.mu.Unlock()
	regs := map[string]bool{}
	for _, e := range srv.Events() {
		if e.Kind == simtest.Register {
			regs[e.Endpoint] = true
		}
	}
	for i := range n {
		if ep := fmt.Sprintf("load-%d", 1000+i); !regs[ep] {
			t.Errorf("%s never registered", ep)
		}
	}
	if srv.Registered() != 0 {
		t.Errorf("%d devices still registered after the run", srv.Registered())
	}
	if s.Devices != n || s.Registrations != n || s.RegFailed != 0 || s.Deregistered != n || s.Registered != 0 || s.Provisioned != n {
		t.Errorf("stats %+v", s)
	}
	if s.Notifications < 10 || s.Requests < 5 {
		t.Errorf("notifications %d, requests %d: want the observations served", s.Notifications, s.Requests)
	}
	if s.RegLatencyP50 <= 0 || s.RegLatencyP99 < s.RegLatencyP50 || s.RegLatencyMax < s.RegLatencyP99 {
		t.Errorf("latencies p50 %v p99 %v max %v", s.RegLatencyP50, s.RegLatencyP99, s.RegLatencyMax)
	}
	if s.RegistrationsPerSecond() <= 0 || s.NotificationsPerSecond() <= 0 {
		t.Errorf("rates %v reg/s, %v notifications/s", s.RegistrationsPerSecond(), s.NotificationsPerSecond())
	}
	if progress.Load() < 2 {
		t.Errorf("progress called %d times", progress.Load())
	}
	if sum := s.Summary(); !strings.Contains(sum, "registrations 200") || !strings.Contains(sum, "errors 0") {
		t.Errorf("summary %q", sum)
	}
}

func TestRunFailuresIntegration(t *testing.T) {
	srv := simtest.Start(t)
	api := &fakeAPI{known: map[string]bool{}}
	ts := httptest.NewServer(api)
	defer ts.Close()
	// A UDP port nobody listens on.
	l, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := l.LocalAddr().String()
	l.Close()

	tests := []struct {
		name string
		cfg  sim.Config
		want string
	}{
		{"no devices", sim.Config{Server: srv.URI()}, "at least 1"},
		{"bad server", sim.Config{Server: "coaps://x", Devices: 1}, "only coap://"},
		{"bad start", sim.Config{Server: srv.URI(), Devices: 1, Start: -1}, "start -1"},
		{"bad user", sim.Config{Server: srv.URI(), Devices: 1, API: ts.URL, User: "admin"}, "tenant/user:password"},
		{"refused credentials", sim.Config{Server: srv.URI(), Devices: 50, API: ts.URL, User: "t1/admin:wrong"}, "credentials refused"},
		{"api down", sim.Config{Server: srv.URI(), Devices: 1, API: "http://" + deadAddr, User: "t1/a:b"}, "provisioning failed"},
		{"server down", sim.Config{Server: deadAddr, Devices: 3, RequestTimeout: 300 * time.Millisecond}, "no device registered"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sim.Run(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if srv.Registered() != 0 || len(srv.Events()) != 0 {
		t.Errorf("failed runs registered devices: %v", srv.Events())
	}
}

func TestRunRefusedDeviceIntegration(t *testing.T) {
	srv := simtest.Start(t)
	srv.Refuse("part-1")
	ctx, cancel := context.WithCancel(context.Background())
	var stats sim.Stats
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		stats, err = sim.Run(ctx, sim.Config{Server: srv.URI(), Devices: 3, Prefix: "part-"})
	}()
	eventually(t, func() bool { return srv.Registered() == 2 }, "two devices registered")
	cancel() // as on Ctrl-C: the devices de-register
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if stats.Registrations != 2 || stats.RegFailed != 1 || stats.Deregistered != 2 || srv.Registered() != 0 {
		t.Errorf("stats %+v, server holds %d", stats, srv.Registered())
	}
	if r, rerr := srv.Do(context.Background(), "part-0", codes.GET, "/3/0/0", -1, nil); rerr == nil {
		t.Errorf("device answered %v after the run", r.Code)
	}
}
