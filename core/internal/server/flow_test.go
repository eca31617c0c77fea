package server

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/sim"
)

// The "Done when" of issue 3 end to end, on the bolt store: NO_SEC and PSK
// devices bulk-registered from one CSV (with bad rows reported and not
// created) bootstrap over UDP and DTLS, register over UDP and DTLS where
// the bootstrap server told them, answer shell commands sent through REST,
// and the PSK device keeps its registration across a change of its source
// port (DTLS Connection ID). No response body ever shows a key or a
// password.

// startFlowServer runs a server with all four CoAP ports (LwM2M UDP and
// DTLS, bootstrap UDP and DTLS) on loopback. The request timeout is long
// enough for a CoAP retransmission: a request the server sends while the
// device moves to a new port is lost once and resent.
func startFlowServer(t *testing.T) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := Open(ctx, Config{
		HTTPAddr: "127.0.0.1:0", Store: boltSpec(t),
		CoAPAddr: "127.0.0.1:0", CoAPSAddr: "127.0.0.1:0",
		BootstrapCoAPAddr: "127.0.0.1:0", BootstrapCoAPSAddr: "127.0.0.1:0",
		PublicHost:    "127.0.0.1",
		AdminPassword: adminPass, RequestTimeout: 10 * time.Second, AwakeTime: 2 * time.Second,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
		PlatformOptions: platform.Options{BcryptCost: 4},
	})
	if err != nil {
		cancel()
		t.Fatalf("open server: %v", err)
	}
	ts := &testServer{Server: s, cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.Run(ctx) }()
	t.Cleanup(ts.stop)
	return ts
}

// flowREST is a REST client as management/admin that keeps every response
// body, so the test can show that no secret ever appears in one.
type flowREST struct {
	ts *testServer

	mu     sync.Mutex
	bodies []string
}

// do sends one request and decodes the JSON answer into out (when not nil).
func (c *flowREST) do(t *testing.T, method, path, contentType string, body io.Reader, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+c.ts.HTTPAddr()+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("management/admin", adminPass)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	c.mu.Lock()
	c.bodies = append(c.bodies, method+" "+path+" -> "+string(data))
	c.mu.Unlock()
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
	return resp.StatusCode
}

func (c *flowREST) call(t *testing.T, method, path string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	return c.do(t, method, path, "application/json", rd, out)
}

// upload posts file as the multipart form field "file".
func (c *flowREST) upload(t *testing.T, path string, file []byte, out any) int {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("file", "devices.csv")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write(file); err != nil {
		t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return c.do(t, "POST", path, mw.FormDataContentType(), &buf, out)
}

// command runs a shell command on a device through the operations API and
// returns the operation once it is SUCCESSFUL or FAILED.
func (c *flowREST) command(t *testing.T, deviceID, text string) map[string]any {
	t.Helper()
	var op map[string]any
	if code := c.call(t, "POST", "/devicecontrol/operations",
		map[string]any{"deviceId": deviceID, "c8y_Command": map[string]string{"text": text}}, &op); code != http.StatusCreated {
		t.Fatalf("post operation %q: %d %v", text, code, op)
	}
	id, _ := op["id"].(string)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		c.call(t, "GET", "/devicecontrol/operations/"+id, nil, &op)
		if op["status"] == "SUCCESSFUL" || op["status"] == "FAILED" {
			return op
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("operation %q stayed %v", text, op["status"])
	return nil
}

// succeed runs a shell command that must succeed with a result containing
// want, and returns the result.
func (c *flowREST) succeed(t *testing.T, deviceID, text, want string) string {
	t.Helper()
	op := c.command(t, deviceID, text)
	cmd, _ := op["c8y_Command"].(map[string]any)
	result := fmt.Sprint(cmd["result"])
	if op["status"] != "SUCCESSFUL" || !strings.Contains(result, want) {
		t.Fatalf("%s: %v, result %q (want %q), failure %v", text, op["status"], result, want, op["failureReason"])
	}
	return result
}

func (c *flowREST) registration(t *testing.T, ep string) map[string]any {
	t.Helper()
	var reg map[string]any
	if code := c.call(t, "GET", "/lwm2m/registrations/"+ep, nil, &reg); code != http.StatusOK {
		return nil
	}
	return reg
}

// latest returns the device's latest value at path as JSON, "" if none.
func (c *flowREST) latest(t *testing.T, deviceID, path string) string {
	t.Helper()
	var mo struct {
		Latest map[string]json.RawMessage `json:"lwm2m_LatestValues"`
	}
	c.call(t, "GET", "/inventory/managedObjects/"+deviceID, nil, &mo)
	return string(mo.Latest[path])
}

// events returns the texts of the device's bootstrap events, oldest
// first, from the unfiltered event list of the device.
func (c *flowREST) events(t *testing.T, deviceID string) []string {
	t.Helper()
	var page struct {
		Events []struct{ Type, Text string } `json:"events"`
	}
	c.call(t, "GET", "/event/events?pageSize=100&source="+deviceID, nil, &page)
	var out []string
	for _, e := range slices.Backward(page.Events) {
		if e.Type == "lwm2m_Bootstrap" {
			out = append(out, e.Text)
		}
	}
	return out
}

// leaks returns the fetched bodies that contain one of secrets.
func (c *flowREST) leaks(secrets ...string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, b := range c.bodies {
		for _, s := range secrets {
			if strings.Contains(strings.ToLower(b), strings.ToLower(s)) {
				out = append(out, b)
			}
		}
	}
	return out
}

// flowDevice is one good row of the CSV and what its flow expects.
type flowDevice struct {
	ep, name      string
	credentials   string
	psk           bool
	serverURI     string // lwm2m server uri: the server's actual port
	bootstrapURI  string // where the simulator bootstraps
	bsPSK, srvPSK sim.PSK
	instance      int   // securityInstanceOffset
	lifetime      int64 // registrationLifetime
	rebindAfter   time.Duration
	id            string // managed object, from the bulk answer
}

func (f *flowDevice) mode() string {
	if f.psk {
		return "PSK"
	}
	return "NO_SEC"
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIssue3BulkBootstrapDTLSFlow(t *testing.T) {
	ts := startFlowServer(t)
	c := &flowREST{ts: ts}
	host := "127.0.0.1:"
	nosec := &flowDevice{
		ep: "flow-nosec", name: "Meter, plain", credentials: "Flow!Secret-Pass1",
		serverURI:    "coap://" + host + portOf(t, ts.CoAPAddr()),
		bootstrapURI: "coap://" + ts.BootstrapAddr(),
		lifetime:     120,
	}
	psk := &flowDevice{
		ep: "flow-psk", name: "Meter, secure", credentials: "Flow!Secret-Pass2", psk: true,
		serverURI:    "coaps://" + host + portOf(t, ts.CoAPSAddr()),
		bootstrapURI: "coaps://" + ts.BootstrapSecureAddr(),
		bsPSK:        sim.PSK{Identity: "flow-psk-bs", Key: []byte{0xb0, 0x07, 0x57, 0x4a, 0x9e, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x10, 0x32, 0x54}},
		srvPSK:       sim.PSK{Identity: "flow-psk-id", Key: []byte{0x5e, 0xc2, 0xe7, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc}},
		instance:     2, lifetime: 90,
		// moves to a new source port every second: the operations may
		// meet a move, the last reads follow one for sure
		rebindAfter: time.Second,
	}
	secrets := []string{
		hex.EncodeToString(psk.srvPSK.Key), hex.EncodeToString(psk.bsPSK.Key),
		nosec.credentials, psk.credentials, "Weak-no-digits!", "deadbeef00112233",
	}

	t.Run("bulk registration", func(t *testing.T) {
		csv := bulkCSV(nosec, psk)
		var res struct {
			All      int `json:"numberOfAll"`
			Created  int `json:"numberOfCreated"`
			Failed   int `json:"numberOfFailed"`
			Existing int `json:"numberOfExisting"`
			Failures []struct {
				Line   int    `json:"line"`
				Device string `json:"deviceId"`
				Reason string `json:"failureReason"`
			} `json:"failedCreationList"`
			Results []platform.RowResult `json:"results"`
		}
		if code := c.upload(t, "/service/lwm2m-agent/deviceRegistration/bulk", []byte(csv), &res); code != http.StatusCreated {
			t.Fatalf("bulk upload: %d %+v", code, res)
		}
		if res.All != 4 || res.Created != 2 || res.Failed != 2 || res.Existing != 0 || len(res.Results) != 4 {
			t.Fatalf("bulk counts %+v", res)
		}
		want := []platform.RowResult{
			{Line: 2, Endpoint: nosec.ep, Status: platform.RowCreated},
			{Line: 3, Endpoint: "flow-weak", Status: platform.RowFailed, Field: "CREDENTIALS",
				Reason: "must contain an upper-case letter, a lower-case letter, a digit and a special character"},
			{Line: 4, Endpoint: psk.ep, Status: platform.RowCreated},
			{Line: 5, Endpoint: "flow-nokey", Status: platform.RowFailed, Field: "lwm2m psk_key", Reason: "is required with securityMode PSK"},
		}
		for i, w := range want {
			got := res.Results[i]
			if w.Status == platform.RowCreated && got.ID == "" {
				t.Errorf("row %d: created without an id: %+v", i, got)
			}
			w.ID = got.ID
			if got != w {
				t.Errorf("row %d: %+v, want %+v", i, got, w)
			}
		}
		nosec.id, psk.id = res.Results[0].ID, res.Results[2].ID
		if len(res.Failures) != 2 ||
			res.Failures[0].Line != 3 || res.Failures[0].Device != "flow-weak" || !strings.HasPrefix(res.Failures[0].Reason, "CREDENTIALS: must contain") ||
			res.Failures[1].Line != 5 || res.Failures[1].Device != "flow-nokey" || res.Failures[1].Reason != "lwm2m psk_key: is required with securityMode PSK" {
			t.Errorf("failedCreationList %+v", res.Failures)
		}

		// exactly the good rows exist, whole: managed object, endpoint
		// external id, PSK identity external id, bootstrap parameters
		var list struct {
			Objects []struct{ ID, Name string } `json:"managedObjects"`
		}
		c.call(t, "GET", "/inventory/managedObjects?pageSize=100", nil, &list)
		var names []string
		for _, mo := range list.Objects {
			names = append(names, mo.Name)
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{nosec.name, psk.name}) {
			t.Errorf("managed objects %q, want only the good rows'", names)
		}
		for ep, want := range map[string]int{nosec.ep: 200, psk.ep: 200, "flow-weak": 404, "flow-nokey": 404} {
			if code := c.call(t, "GET", "/identity/externalIds/c8y_Id/"+ep, nil, nil); code != want {
				t.Errorf("external id c8y_Id/%s: %d, want %d", ep, code, want)
			}
		}
		if code := c.call(t, "GET", "/identity/externalIds/"+platform.PSKIDType+"/"+psk.srvPSK.Identity, nil, nil); code != 200 {
			t.Errorf("external id %s/%s: %d", platform.PSKIDType, psk.srvPSK.Identity, code)
		}
		var mo map[string]any
		if c.call(t, "GET", "/inventory/managedObjects/"+nosec.id, nil, &mo); mo["name"] != nosec.name || mo["c8y_Notes"] != "bulk" {
			t.Errorf("managed object of the NO_SEC row: %v", mo)
		}
		var prm map[string]any
		if code := c.call(t, "GET", "/service/lwm2m-agent/deviceRegistration/"+psk.id+"/bootstrapParameters", nil, &prm); code != 200 ||
			prm["lwm2m psk_id"] != psk.srvPSK.Identity || prm["lwm2m psk_key"] != "***" || prm["bootstrap psk_key"] != "***" ||
			prm["lwm2m server uri"] != psk.serverURI {
			t.Errorf("bootstrap parameters of the PSK device: %d %v", code, prm)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	for _, f := range []*flowDevice{nosec, psk} {
		t.Run(f.mode(), func(t *testing.T) { runFlow(t, c, f) })
	}

	if leaks := c.leaks(secrets...); len(leaks) > 0 {
		t.Errorf("a key or password appears in %d response bodies, e.g. %.300s", len(leaks), leaks[0])
	}
	c.mu.Lock()
	n := len(c.bodies)
	c.mu.Unlock()
	t.Logf("%d response bodies checked for secrets", n)
}

// bulkCSV is the registration file: the two good devices and two bad rows
// (a weak password; a PSK device without its key), comma-delimited with
// quoted names holding commas, a BOM and untidy header names.
func bulkCSV(nosec, psk *flowDevice) string {
	header := []string{"ID", " idtype ", "CREDENTIALS", "NAME", "TYPE", "SHELL", "endpoint id", "lwm2m server uri",
		"securityMode", "generateBootstrapServerConfig", "securityInstanceOffset", "registrationLifetime", "bindingMode",
		"lwm2m psk_id", "lwm2m psk_key", "bootstrap psk_id", "bootstrap psk_key", "external-c8y_Lwm2mPskId", "c8y_Notes"}
	row := func(f *flowDevice) []string {
		r := []string{f.ep, "c8y_Id", f.credentials, `"` + f.name + `"`, "c8y_lwm2m", "1", f.ep, f.serverURI,
			f.mode(), "true", strconv.Itoa(f.instance), strconv.FormatInt(f.lifetime, 10), "U"}
		if f.psk {
			return append(r, f.srvPSK.Identity, hex.EncodeToString(f.srvPSK.Key),
				f.bsPSK.Identity, hex.EncodeToString(f.bsPSK.Key), f.srvPSK.Identity, "bulk")
		}
		return append(r, "", "", "", "", "", "bulk")
	}
	rows := [][]string{
		header,
		row(nosec),
		{"flow-weak", "c8y_Id", "Weak-no-digits!", "Weak", "c8y_lwm2m", "1", "flow-weak", nosec.serverURI,
			"NO_SEC", "", "", "", "", "", "", "", "", "", "bad"},
		row(psk),
		{"flow-nokey", "c8y_Id", "", "No key", "c8y_lwm2m", "1", "flow-nokey", psk.serverURI,
			"PSK", "", "", "", "", "flow-nokey-id", "", "flow-nokey-bs", "deadbeef00112233", "", "bad"},
	}
	var b strings.Builder
	b.WriteString("\ufeff")
	for _, r := range rows {
		b.WriteString(strings.Join(r, ","))
		b.WriteString("\r\n")
	}
	return b.String()
}

// runFlow bootstraps f's simulated device, lets it register where the
// bootstrap server told it and runs shell commands on it through REST.
func runFlow(t *testing.T, c *flowREST, f *flowDevice) {
	d, err := sim.NewDevice(sim.DeviceConfig{
		Endpoint: f.ep, Version: sim.Version11, Bootstrap: f.bootstrapURI, PSK: f.bsPSK,
		RebindAfter: f.rebindAfter, RequestTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if err := d.Start(context.Background()); err != nil {
		t.Fatalf("bootstrap and register: %v", err)
	}
	// the device's source address as the server sees it: a DTLS
	// device's socket is bound to the wildcard address
	start := "127.0.0.1:" + portOf(t, d.LocalAddr().String())

	// what the bootstrap server wrote: the LwM2M server account from the
	// CSV and, as generateBootstrapServerConfig asks, its own account at
	// the public host
	sec := d.Bootstrapped()
	srv, bs := sec[uint16(f.instance)], sec[uint16(f.instance+1)]
	wantBS := f.bootstrapURI // the public host and the bound port
	if len(sec) != 2 || srv == nil || bs == nil || srv[0].Str != f.serverURI || srv[1].Bool || !bs[1].Bool || bs[0].Str != wantBS {
		t.Fatalf("security instances %v, want /0/%d for %s and /0/%d for %s", sec, f.instance, f.serverURI, f.instance+1, wantBS)
	}
	if f.psk {
		if srv[2].Int != 0 || string(srv[3].Bytes) != f.srvPSK.Identity || !bytes.Equal(srv[5].Bytes, f.srvPSK.Key) ||
			bs[2].Int != 0 || string(bs[3].Bytes) != f.bsPSK.Identity || !bytes.Equal(bs[5].Bytes, f.bsPSK.Key) {
			t.Errorf("PSK security instances: server %v, bootstrap %v", srv, bs)
		}
	} else if srv[2].Int != 3 || bs[2].Int != 3 {
		t.Errorf("NO_SEC security instances: server mode %d, bootstrap mode %d", srv[2].Int, bs[2].Int)
	}

	// registered where the bootstrap told it, over the right transport
	wantTransport := map[bool]string{false: "udp", true: "dtls"}[f.psk]
	reg := c.registration(t, f.ep)
	if reg == nil || reg["transport"] != wantTransport || reg["deviceId"] != f.id ||
		fmt.Sprint(reg["lifetime"]) != strconv.FormatInt(f.lifetime, 10) || reg["lwm2mVersion"] != sim.Version11 {
		t.Fatalf("registration %v, want %s, device %s, lifetime %d", reg, wantTransport, f.id, f.lifetime)
	}
	if d.Rebinds() == 0 && reg["address"] != start { // (read before any move)
		t.Errorf("registration address %v, want %s", reg["address"], start)
	}
	if f.psk && reg["pskIdentity"] != f.srvPSK.Identity {
		t.Errorf("registration PSK identity %v, want %s", reg["pskIdentity"], f.srvPSK.Identity)
	}

	// shell commands through REST
	c.succeed(t, f.id, "read /3/0/0", "lwm2md")
	c.succeed(t, f.id, "write /3/0/14 +05:30", "written")
	c.succeed(t, f.id, "read /3/0/14", "+05:30")
	c.succeed(t, f.id, "read /1/0/1", strconv.FormatInt(f.lifetime, 10))
	c.succeed(t, f.id, "execute /3/0/4", "executed")
	if n := d.Reboots(); n != 1 {
		t.Errorf("device executed Reboot %d times, want 1", n)
	}
	c.succeed(t, f.id, "observe /3303/0/5700", "")
	observed := c.latest(t, f.id, "/3303/0/5700")
	if observed == "" {
		t.Fatal("the observe answer did not reach the latest values")
	}
	notes := d.Notifications()
	waitFor(t, "a notification to change the latest value", func() bool {
		d.Tick() // the sensor moves; the observation notifies
		time.Sleep(50 * time.Millisecond)
		return c.latest(t, f.id, "/3303/0/5700") != observed
	})
	if d.Notifications() <= notes {
		t.Errorf("latest value changed without a notification")
	}
	c.succeed(t, f.id, "discover /3/0", "</3/0/14>")

	// the bootstrap, step by step, as events on the device
	want := []string{
		"Bootstrap-Delete / 2.02 Deleted",
		fmt.Sprintf("Bootstrap-Write /0/%d 2.04 Changed", f.instance),
		fmt.Sprintf("Bootstrap-Write /0/%d 2.04 Changed", f.instance+1),
		fmt.Sprintf("Bootstrap-Write /1/%d 2.04 Changed", f.instance),
		"Bootstrap-Finish /bs 2.04 Changed",
		"Bootstrap finished: the device registers at the LwM2M server now",
	}
	var evs []string
	waitFor(t, "the bootstrap events", func() bool {
		evs = c.events(t, f.id)
		return len(evs) >= len(want)+1
	})
	if len(evs) != len(want)+1 || !strings.HasPrefix(evs[0], "Bootstrap-Request from 127.0.0.1:") || !slices.Equal(evs[1:], want) {
		t.Errorf("bootstrap events %q", evs)
	}

	if !f.psk {
		return
	}
	// NAT rebinding: the device's source port changes mid-session; the
	// session and registration survive (Connection ID), the registration
	// follows the device's address, and the server still reaches it
	var moved map[string]any
	waitFor(t, "the device to move to a new source port", func() bool {
		moved = c.registration(t, f.ep)
		return d.Rebinds() > 0 && moved != nil && moved["address"] != start
	})
	if moved["registrationId"] != reg["registrationId"] || moved["transport"] != "dtls" {
		t.Errorf("after the move: registration %v, want the same %v over dtls", moved, reg["registrationId"])
	}
	if a, _ := moved["address"].(string); !strings.HasPrefix(a, "127.0.0.1:") || a == start {
		t.Errorf("registration address after the move %v, was %s", a, start)
	}
	c.succeed(t, f.id, "read /3/0/0", "lwm2md")
	c.succeed(t, f.id, "read /3/0/14", "+05:30")
	if reg := c.registration(t, f.ep); reg == nil || reg["registrationId"] != moved["registrationId"] {
		t.Errorf("registration after reading from the moved device: %v", reg)
	}
	t.Logf("device moved %d times: %s -> %v", d.Rebinds(), start, moved["address"])
}
