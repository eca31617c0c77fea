package redis_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lwm2md/lwm2md/core/internal/store"
	"github.com/lwm2md/lwm2md/core/internal/store/redis"
)

// privateServer is a redis-server of the test's own, which it may stop
// and start. It keeps an append-only file in a temporary directory so
// committed data survives the restart and half-writes would show.
type privateServer struct {
	t    *testing.T
	bin  string
	port int
	dir  string
	cmd  *exec.Cmd
	out  bytes.Buffer
}

func newPrivateServer(t *testing.T) *privateServer {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &privateServer{t: t, bin: bin, port: port, dir: t.TempDir()}
	t.Cleanup(s.stop)
	s.start()
	return s
}

func (s *privateServer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

func (s *privateServer) start() {
	s.t.Helper()
	s.out.Reset()
	s.cmd = exec.Command(s.bin, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", s.dir)
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	// Wait until it answers (and has loaded its data) before going on.
	c := goredis.NewClient(&goredis.Options{Addr: s.addr(), MaxRetries: -1})
	defer c.Close()
	for i := 0; ; i++ {
		err := c.Ping(context.Background()).Err()
		if err == nil {
			return
		}
		if i == 250 {
			s.t.Fatalf("private redis-server on %s does not answer: %v\n%s", s.addr(), err, s.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop shuts the server down cleanly (SIGTERM flushes the append-only
// file) and waits for it to exit.
func (s *privateServer) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.cmd.Wait()
	s.cmd = nil
}

func TestOutageIntegration(t *testing.T) {
	srv := newPrivateServer(t)
	ctx := context.Background()
	// Default client options: they decide how fast a request fails.
	s := open(t, fmt.Sprintf("redis://%s/0", srv.addr()))
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.Put("b", "before", []byte("kept")) }); err != nil {
		t.Fatal(err)
	}

	// The server goes away in the middle of an Update that has read and
	// then writes three buckets: nothing of it may land.
	calls := 0
	err := s.Update(ctx, func(tx store.Tx) error {
		calls++
		if _, err := tx.Get("b", "before"); err != nil {
			return err
		}
		srv.stop()
		for _, b := range []string{"b", "c", "d"} {
			if err := tx.Put(b, "half", []byte("written")); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, store.ErrUnavailable) || calls != 1 {
		t.Fatalf("Update across the outage = %v after %d calls, want store.ErrUnavailable after 1", err, calls)
	}

	down := []struct {
		name string
		run  func() error
	}{
		{"view_get", func() error {
			return s.View(ctx, func(tx store.Tx) error { _, err := tx.Get("b", "before"); return err })
		}},
		{"view_scan", func() error {
			return s.View(ctx, func(tx store.Tx) error {
				return tx.Scan("b", "", "", func(string, []byte) error { return nil })
			})
		}},
		{"update_blind_write", func() error {
			return s.Update(ctx, func(tx store.Tx) error { return tx.Put("b", "while-down", []byte("x")) })
		}},
		{"update_read_error_swallowed", func() error {
			// fn ignores its read error; the Update must still fail.
			return s.Update(ctx, func(tx store.Tx) error {
				_, _ = tx.Get("b", "before")
				return tx.Put("b", "while-down", []byte("x"))
			})
		}},
	}
	for _, c := range down {
		t.Run("down_"+c.name, func(t *testing.T) {
			if err := c.run(); !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("error %v, want store.ErrUnavailable", err)
			}
		})
	}

	srv.start()
	t.Run("resumes", func(t *testing.T) {
		var got []string
		err := s.View(ctx, func(tx store.Tx) error {
			for _, b := range []string{"b", "c", "d"} {
				if err := tx.Scan(b, "", "", func(k string, v []byte) error {
					got = append(got, b+"/"+k+"="+string(v))
					return nil
				}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("view after restart: %v", err)
		}
		if len(got) != 1 || got[0] != "b/before=kept" {
			t.Fatalf("after restart the store holds %q, want only the write committed before the outage", got)
		}
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.Put("b", "after", []byte("ok")) }); err != nil {
			t.Fatalf("update after restart: %v", err)
		}
	})
}

func TestMain(m *testing.M) {
	// The outage test makes go-redis complain about every failed dial;
	// the assertions say what matters.
	redis.SetLogger(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}
