package transport

import (
	"bytes"
	"context"
	"encoding/hex"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// watchedOutput collects a command's output and says when it holds want.
type watchedOutput struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func (w *watchedOutput) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(b), nil
}

func (w *watchedOutput) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestDTLSOpenSSLCipherSuitesIntegration runs each PSK cipher suite with
// OpenSSL's own DTLS 1.2 client (openssl s_client) and a CoAP GET through
// the session: the suites as an OpenSSL peer implements them (CBC-SHA256
// with MAC-then-encrypt, CCM_8), beyond pion talking to pion.
func TestDTLSOpenSSLCipherSuitesIntegration(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	suites := []string{"PSK-AES128-CCM8", "PSK-AES128-GCM-SHA256", "PSK-AES128-CBC-SHA256", "PSK-AES128-CCM"}
	psk := newPSKMap()
	for _, suite := range suites {
		psk.m[suite] = []byte("secret-key-1") // one identity per client: a new session of an identity ends its old one
	}
	s := startDTLS(t, DTLSConfig{PSK: psk})
	for _, suite := range suites {
		t.Run(suite, func(t *testing.T) {
			t.Parallel()
			answer := "dtls " + suite + " ep-" + suite
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "s_client", "-dtls1_2", "-connect", s.Addr().String(),
				"-psk_identity", suite, "-psk", hex.EncodeToString([]byte("secret-key-1")), "-cipher", suite)
			out := &watchedOutput{want: answer, seen: make(chan struct{})}
			cmd.Stdout, cmd.Stderr = out, out
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// CON GET /whoami, message ID 0x1234, no token; s_client sends
			// it once the handshake is done
			_, _ = stdin.Write([]byte("\x40\x01\x12\x34\xb6whoami"))
			select {
			case <-out.seen:
			case <-time.After(20 * time.Second):
			}
			_ = stdin.Close() // s_client ends the session
			_ = cmd.Wait()
			if !strings.Contains(out.String(), "Cipher is "+suite) {
				t.Fatalf("no %s session:\n%s", suite, out)
			}
			if !strings.Contains(out.String(), answer) {
				t.Fatalf("no CoAP answer through the session:\n%s", out)
			}
		})
	}
}
