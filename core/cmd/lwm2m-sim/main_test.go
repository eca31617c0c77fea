package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/sim/simtest"
)

// TestMain lets the tests run this binary's main as a child process.
func TestMain(m *testing.M) {
	if os.Getenv("LWM2M_SIM_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func TestSignalDeregistersIntegration(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			srv := simtest.Start(t)
			cmd := exec.Command(os.Args[0], "-server", srv.URI(), "-devices", "4", "-prefix", "sig-")
			cmd.Env = append(os.Environ(), "LWM2M_SIM_RUN_MAIN=1")
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for srv.Registered() < 4 {
				if time.Now().After(deadline) {
					_ = cmd.Process.Kill()
					t.Fatalf("devices did not register:\n%s", out.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("exit: %v\n%s", err, out.String())
			}
			if srv.Registered() != 0 {
				t.Errorf("%d devices still registered after %v", srv.Registered(), sig)
			}
			if !strings.Contains(out.String(), "deregistered 4") {
				t.Errorf("summary lacks the de-registrations:\n%s", out.String())
			}
		})
	}
}

func TestRunCommandIntegration(t *testing.T) {
	srv := simtest.Start(t)
	var mu sync.Mutex
	var created []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, _ := r.BasicAuth(); u != "t1/admin" || p != "pw" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		created = append(created, r.URL.Path)
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	defer api.Close()

	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{
		"-server", srv.URI(), "-devices", "3", "-prefix", "cmd-", "-start", "7",
		"-duration", "400ms", "-lifetime", "60", "-version", "1.0", "-progress", "100ms",
		"-api", api.URL, "-user", "t1/admin:pw",
	}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errOut.String())
	}
	for _, want := range []string{"3 devices cmd-7..cmd-9", "registered 3/3", "summary: devices 3: registrations 3", "deregistered 3"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	e := srv.Wait(t, simtest.Register, "cmd-8", 0, 0)
	if lt, _ := e.Param("lt"); lt != "60" {
		t.Errorf("lifetime %q, want 60", lt)
	}
	if v, _ := e.Param("lwm2m"); v != "1.0" {
		t.Errorf("version %q, want 1.0", v)
	}
	if len(created) != 3 || created[0] != "/service/lwm2m-agent/deviceRegistration" {
		t.Errorf("api calls %v", created)
	}
}

func TestRunCommandErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown flag", []string{"-nope"}, 2, "flag provided but not defined"},
		{"bad duration", []string{"-duration", "soon"}, 2, "want seconds or a duration"},
		{"extra argument", []string{"x"}, 2, `unexpected argument "x"`},
		{"api without user", []string{"-api", "http://127.0.0.1:1"}, 2, "-api needs -user"},
		{"bad version", []string{"-version", "2.0"}, 1, `version "2.0"`},
		{"bad server", []string{"-server", "http://x"}, 1, "only coap://"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(context.Background(), tc.args, &out, &errOut); code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			if !strings.Contains(errOut.String(), tc.want) {
				t.Errorf("stderr %q lacks %q", errOut.String(), tc.want)
			}
		})
	}
}
