package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/lwm2md/lwm2md/core/internal/api"
	"github.com/lwm2md/lwm2md/core/internal/platform"
	"github.com/lwm2md/lwm2md/core/internal/rest"
	"github.com/lwm2md/lwm2md/core/internal/store/bolt"
)

// apiServer serves the real API on a bolt store with a tenant whose
// admin is "<tenant>/alice:alice-secret-1".
func apiServer(t *testing.T) (url, user string, p *platform.Platform) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "api.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ctx := context.Background()
	p = platform.New(st, platform.Options{Logger: slog.New(slog.DiscardHandler), BcryptCost: bcrypt.MinCost})
	if _, err := p.Bootstrap(ctx, "admin-secret-1"); err != nil {
		t.Fatal(err)
	}
	admin := rest.Principal{Tenant: platform.Management, User: "admin", Admin: true}
	tn, err := p.CreateTenant(ctx, admin, platform.NewTenant{Company: "A", Domain: "a.example.com", AdminName: "alice", AdminPass: "alice-secret-1"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Config{Platform: p, Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close)
	return srv.URL, tn.ID + "/alice:alice-secret-1", p
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "devices.csv")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errw bytes.Buffer
	code = runRegister(context.Background(), args, &out, &errw)
	return code, out.String(), errw.String()
}

func TestRegisterCommand(t *testing.T) {
	url, user, _ := apiServer(t)

	// 25 rows in chunks of 10, semicolons, a BOM, CRLF, a blank line and
	// a quoted field over two lines, so file lines differ from row
	// numbers; rows 7 and 23 are bad.
	var b strings.Builder
	b.WriteString("\ufeffID;NAME;CREDENTIALS\r\n")
	line := 2
	badLines := map[int]string{}
	for i := 1; i <= 25; i++ {
		switch i {
		case 5:
			fmt.Fprintf(&b, "cli-%02d;\"two\r\nlines\";\r\n", i)
			line += 2
			continue
		case 7:
			badLines[line] = "CREDENTIALS"
			fmt.Fprintf(&b, "cli-%02d;weak;password\r\n", i)
		case 12:
			b.WriteString("\r\n")
			line++
			fmt.Fprintf(&b, "cli-%02d;ok;\r\n", i)
		case 23:
			badLines[line] = "IDTYPE-less"
			fmt.Fprintf(&b, "cli-%02d;too;many;fields\r\n", i)
		default:
			fmt.Fprintf(&b, "cli-%02d;ok;\r\n", i)
		}
		line++
	}
	file := writeFile(t, b.String())

	code, stdout, stderr := runCLI("--api", url, "--user", user, "-chunk", "10", file)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (rows failed)\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"rows 10/25", "rows 20/25", "rows 25/25 (created 23, exists 0, failed 2)"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("progress %q missing:\n%s", want, stderr)
		}
	}
	if !strings.HasPrefix(stdout, "25 rows: 23 created, 0 already existed, 2 failed\n") {
		t.Errorf("summary:\n%s", stdout)
	}
	for l, what := range badLines {
		want := fmt.Sprintf("line %d", l)
		if !strings.Contains(stdout, want) {
			t.Errorf("failure of file line %d (%s) not reported as %q:\n%s", l, what, want, stdout)
		}
	}
	if !strings.Contains(stdout, "(cli-07): failed: CREDENTIALS: must be 12 to 72 characters long") ||
		!strings.Contains(stdout, "line 26: failed: the line has 4 fields, the header has 3") {
		t.Errorf("reasons:\n%s", stdout)
	}
	if strings.Contains(stdout+stderr, "password") {
		t.Errorf("a credential was printed:\n%s%s", stdout, stderr)
	}

	// Again: every good row exists, nothing fails but the two bad rows.
	code, stdout, _ = runCLI("-api", url, "-user", user, file)
	if code != 1 || !strings.HasPrefix(stdout, "25 rows: 0 created, 23 already existed, 2 failed\n") {
		t.Errorf("second run: exit %d\n%s", code, stdout)
	}

	// A clean file exits 0 and prints no progress for one chunk.
	code, stdout, stderr = runCLI("-api", url, "-user", user, writeFile(t, "ID,NAME\nclean-1,a\nclean-2,b\n"))
	if code != 0 || stdout != "2 rows: 2 created, 0 already existed, 0 failed\n" || stderr != "" {
		t.Errorf("clean file: exit %d\n%s\n%s", code, stdout, stderr)
	}

	// Password from the environment.
	tenantUser, pw, _ := strings.Cut(user, ":")
	t.Setenv("LWM2MD_PASSWORD", pw)
	if code, stdout, _ := runCLI("-api", url, "-user", tenantUser, writeFile(t, "ID\nenv-1\n")); code != 0 || !strings.Contains(stdout, "1 created") {
		t.Errorf("password from env: exit %d %s", code, stdout)
	}
}

func TestRegisterCommandErrors(t *testing.T) {
	url, user, _ := apiServer(t)
	good := writeFile(t, "ID\ne-1\n")
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no file", []string{"-api", url, "-user", user}, 2, "exactly one CSV file is required"},
		{"no api", []string{"-user", user, good}, 2, "-api is required"},
		{"no user", []string{"-api", url, good}, 2, "-user is required"},
		{"bad chunk", []string{"-api", url, "-user", user, "-chunk", "0", good}, 2, "-chunk must be at least 1"},
		{"missing file", []string{"-api", url, "-user", user, "/nonexistent/devices.csv"}, 1, "no such file"},
		{"wrong password", []string{"-api", url, "-user", strings.Split(user, ":")[0] + ":wrong", good}, 1, "401 Unauthorized: invalid credentials"},
		{"bad header", []string{"-api", url, "-user", user, writeFile(t, "NAME\nx\n")}, 1, "no ID or endpoint id column"},
		{"empty file", []string{"-api", url, "-user", user, writeFile(t, "")}, 1, "the file is empty"},
		{"header only", []string{"-api", url, "-user", user, writeFile(t, "ID\n")}, 1, "no rows"},
		{"server down", []string{"-api", "http://127.0.0.1:1", "-user", user, good}, 1, "upload of rows 1-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("exit %d, stderr %q; want %d with %q", code, stderr, tc.code, tc.stderr)
			}
		})
	}
}

func TestPlanChunks(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		maxRows       int
		maxBytes      int64
		want          []int // rows per chunk
	}{
		{"one chunk", "ID\na\nb\nc\n", 10, 1 << 20, []int{3}},
		{"by rows", "ID\na\nb\nc\nd\ne\n", 2, 1 << 20, []int{2, 2, 1}},
		{"by bytes", "ID\naaaa\nbbbb\ncccc\n", 10, 6, []int{1, 1, 1}},
		{"quoted newline stays whole", "ID,N\na,\"x\ny\"\nb,z\n", 1, 1 << 20, []int{1, 1}},
		{"no final newline", "ID\na\nb", 1, 1 << 20, []int{1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Open(writeFile(t, tc.content))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			p, err := planChunks(f, tc.maxRows, tc.maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			var body strings.Builder
			for _, c := range p.chunks {
				got = append(got, c.rows)
				body.WriteString(tc.content[c.start:c.end])
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) || string(p.header)+body.String() != tc.content {
				t.Errorf("chunks %v (want %v), header %q, bodies %q", got, tc.want, p.header, body.String())
			}
		})
	}
}
