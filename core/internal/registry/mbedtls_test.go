package registry

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// buildMbedTLSClient compiles testdata/mbedtls_client.c, a DTLS 1.2 PSK
// client with mbedTLS's default settings as in Anjay, or skips the test
// when there is no compiler or no mbedTLS.
func buildMbedTLSClient(t *testing.T) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not installed (apt-get install -y gcc; make test installs it)")
	}
	if _, err := os.Stat("/usr/include/mbedtls/ssl.h"); err != nil {
		t.Skip("mbedTLS headers not installed (apt-get install -y libmbedtls-dev; make test installs them)")
	}
	bin := filepath.Join(t.TempDir(), "mbedtls_client")
	out, err := exec.Command(gcc, "-std=c99", "-Wall", "-o", bin, filepath.Join("testdata", "mbedtls_client.c"),
		"-lmbedtls", "-lmbedx509", "-lmbedcrypto").CombinedOutput()
	if err != nil {
		t.Fatalf("compile mbedtls_client.c: %v\n%s", err, out)
	}
	return bin
}

// TestMbedTLSInteropIntegration registers over DTLS with an mbedTLS client
// offering mbedTLS's default cipher suites, and is refused with a wrong
// key, an unknown identity or another device's endpoint.
func TestMbedTLSInteropIntegration(t *testing.T) {
	bin := buildMbedTLSClient(t)
	st, _ := openBolt(t)
	h := newHarness(t, st, Options{})
	s := h.startDTLS(t)
	h.dir.addPSK("dev-a", "t1", "mo-a", "psk-a")
	h.dir.addPSK("dev-b", "t1", "mo-b", "psk-b")
	port := strconv.Itoa(s.Addr().(*net.UDPAddr).Port)

	// run registers ep with the client; it returns the client's output and
	// whether it exited 0.
	run := func(t *testing.T, identity, key, ep string) (string, bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "127.0.0.1", port, identity, key,
			"ep="+ep+"&lt=60&lwm2m=1.1", "</3/0>,</1/0>")
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("mbedtls_client: %v\n%s", err, out)
		}
		if ctx.Err() != nil {
			t.Logf("mbedtls_client killed after %v", 20*time.Second)
		}
		return string(out), err == nil
	}

	// The refusals run first, so that nothing at all is stored for dev-a
	// before the accepted registration.
	refused := []struct {
		name     string
		identity string
		key      string
		ep       string
		wantOut  string // in the output; "" for a failed handshake
	}{
		{name: "wrong key", identity: "psk-a", key: "not-the-key-of-a", ep: "dev-a"},
		{name: "unknown identity", identity: "psk-nobody", key: testKeys["psk-a"], ep: "dev-a"},
		{name: "endpoint of another identity", identity: "psk-b", key: testKeys["psk-b"], ep: "dev-a", wantOut: "code=4.03"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			out, ok := run(t, tc.identity, tc.key, tc.ep)
			t.Logf("mbedtls_client: %s", strings.TrimSpace(out))
			if tc.wantOut == "" && ok {
				t.Errorf("client succeeded: %s", out)
			}
			if strings.Contains(out, "code=2.01") || !strings.Contains(out, tc.wantOut) {
				t.Errorf("output %q, want %q and no 2.01", out, tc.wantOut)
			}
			_, err := h.reg.ByEndpoint(context.Background(), tc.ep)
			mustNotFound(t, err)
		})
	}
	h.events.none(t, 0)

	t.Run("right identity and key", func(t *testing.T) {
		out, ok := run(t, "psk-a", testKeys["psk-a"], "dev-a")
		t.Logf("mbedtls_client: %s", strings.TrimSpace(out))
		if !ok || !strings.Contains(out, "code=2.01 ") || !strings.Contains(out, " location=rd/") {
			t.Fatalf("client output %q, want 2.01 with a location", out)
		}
		// mbedTLS's default list is ordered by strength: of the server's
		// suites it picks an AEAD one, not CBC
		if !strings.Contains(out, "cipher=TLS-PSK-WITH-AES-128-") {
			t.Errorf("output %q names no PSK cipher suite", out)
		}
		reg, err := h.reg.ByEndpoint(context.Background(), "dev-a")
		if err != nil {
			t.Fatal(err)
		}
		if reg.Transport != "dtls" || reg.PSKIdentity != "psk-a" || reg.DeviceID != "mo-a" || reg.Version != "1.1" ||
			reg.Lifetime != 60 || reg.Links != "</3/0>,</1/0>" || !strings.Contains(out, "location=rd/"+reg.ID) {
			t.Errorf("registration %+v", reg)
		}
		if e := h.events.next(t); e.kind != "registered" {
			t.Errorf("event %s", e.kind)
		}
	})
}
