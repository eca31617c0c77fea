package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/lwm2md/lwm2md/core/internal/sim/simtest"
)

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
