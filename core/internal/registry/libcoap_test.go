package registry

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLibcoapInteropIntegration registers with Debian's libcoap client, the
// command from the README's tour.
func TestLibcoapInteropIntegration(t *testing.T) {
	bin, err := exec.LookPath("coap-client-notls")
	if err != nil {
		t.Skip("coap-client-notls not installed (apt-get install -y libcoap3-bin; make test installs it)")
	}
	st, _ := openBolt(t)
	h := newHarness(t, st, Options{})
	h.dir.add("libcoap-1", "t1", "d1")
	port := strconv.Itoa(h.srv.Addr().(*net.UDPAddr).Port)
	tests := []struct {
		name       string
		ep         string
		wantOut    string // in combined output
		registered bool
	}{
		{name: "known endpoint", ep: "libcoap-1", registered: true},
		{name: "unknown endpoint", ep: "stranger", wantOut: "4.03", registered: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "-m", "post", "-t", "40", "-e", "</3/0>,</1/0>", "-B", "10",
				"coap://127.0.0.1:"+port+"/rd?ep="+tc.ep+"&lt=60&lwm2m=1.0")
			out, err := cmd.CombinedOutput()
			if err != nil && tc.registered {
				t.Fatalf("coap-client: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.wantOut) {
				t.Errorf("output %q does not contain %q", out, tc.wantOut)
			}
			reg, err := h.reg.ByEndpoint(context.Background(), tc.ep)
			if !tc.registered {
				mustNotFound(t, err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if reg.Version != "1.0" || reg.Lifetime != 60 || reg.Links != "</3/0>,</1/0>" || !strings.HasPrefix(reg.Address, "127.0.0.1:") {
				t.Errorf("registration %+v", reg)
			}
		})
	}
}
