package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/lwm2md/lwm2md/core/internal/api"
	"github.com/lwm2md/lwm2md/core/internal/platform"
)

// registerUsage is printed for -h and usage errors.
const registerUsage = `usage: lwm2md register -api URL -user TENANT/USER[:PASSWORD] [-chunk N] devices.csv

Bulk-registers the LwM2M devices of a registration CSV (Cumulocity's bulk
registration format, comma- or semicolon-delimited) with a running server.
Large files are uploaded in chunks of -chunk rows, with a progress line per
chunk. Prints a summary and every row that failed or already exists, with
its line in the file. Without ":PASSWORD" the password is read from the
environment variable LWM2MD_PASSWORD. Exit status 1 if any row failed.
`

// registerCommand runs "lwm2md register" and returns the exit status.
func registerCommand(args []string) int {
	return runRegister(context.Background(), args, os.Stdout, os.Stderr)
}

// registerConfig is the parsed command line.
type registerConfig struct {
	api, user, password, file string
	chunkRows                 int
	timeout                   time.Duration
}

func parseRegisterArgs(args []string, stderr io.Writer) (*registerConfig, error) {
	fs := flag.NewFlagSet("lwm2md register", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, registerUsage); fs.PrintDefaults() }
	c := &registerConfig{}
	fs.StringVar(&c.api, "api", "", "REST API base URL, e.g. http://localhost:8080")
	fs.StringVar(&c.user, "user", "", "TENANT/USER[:PASSWORD] to upload as")
	fs.IntVar(&c.chunkRows, "chunk", 10000, "rows per upload")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "timeout of one upload")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() != 1:
		return nil, errors.New("exactly one CSV file is required")
	case c.api == "":
		return nil, errors.New("-api is required")
	case c.user == "":
		return nil, errors.New("-user is required")
	case c.chunkRows < 1:
		return nil, errors.New("-chunk must be at least 1")
	}
	c.file = fs.Arg(0)
	c.api = strings.TrimRight(c.api, "/")
	var ok bool
	if c.user, c.password, ok = strings.Cut(c.user, ":"); !ok {
		c.password = os.Getenv("LWM2MD_PASSWORD")
	}
	return c, nil
}

func runRegister(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseRegisterArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "lwm2md register: %v\n%s", err, registerUsage)
		return 2
	}
	f, err := os.Open(cfg.file)
	if err != nil {
		fmt.Fprintf(stderr, "lwm2md register: %v\n", err)
		return 1
	}
	defer f.Close()
	plan, err := planChunks(f, cfg.chunkRows, api.MaxBulkFile*8/10)
	if err != nil {
		fmt.Fprintf(stderr, "lwm2md register: %s: %v\n", cfg.file, err)
		return 1
	}
	up := &uploader{cfg: cfg, client: &http.Client{Timeout: cfg.timeout}, stderr: stderr}
	var sum summary
	lineAt := plan.headerLines + 1 // file line where the current chunk's body starts
	for _, ch := range plan.chunks {
		body := make([]byte, ch.end-ch.start)
		if _, err := f.ReadAt(body, ch.start); err != nil {
			fmt.Fprintf(stderr, "lwm2md register: %s: %v\n", cfg.file, err)
			return 1
		}
		res, err := up.upload(ctx, plan.header, body)
		if err != nil {
			fmt.Fprintf(stderr, "lwm2md register: upload of rows %d-%d: %v\n", sum.rows+1, sum.rows+ch.rows, err)
			sum.print(stdout)
			return 1
		}
		sum.add(res, lineAt-plan.headerLines-1)
		lineAt += bytes.Count(body, []byte("\n"))
		if len(plan.chunks) > 1 {
			fmt.Fprintf(stderr, "rows %d/%d (created %d, exists %d, failed %d)\n", sum.rows, plan.rows, sum.created, sum.existing, sum.failed)
		}
	}
	sum.print(stdout)
	if sum.failed > 0 {
		return 1
	}
	return 0
}

// chunk is a byte range of whole records.
type chunk struct {
	start, end int64
	rows       int
}

type chunkPlan struct {
	header      []byte // the header line as in the file, without a BOM
	headerLines int    // physical lines the header takes
	chunks      []chunk
	rows        int
}

// planChunks reads the file once to find record boundaries: chunks of at
// most maxRows records and about maxBytes bytes, cut between records so
// quoted fields spanning lines stay whole. The server validates; here a
// malformed record only counts as a row.
func planChunks(f *os.File, maxRows int, maxBytes int64) (*chunkPlan, error) {
	br := bufio.NewReaderSize(f, 64<<10)
	head, _ := br.Peek(64 << 10)
	var skip int64
	if bytes.HasPrefix(head, []byte{0xEF, 0xBB, 0xBF}) {
		skip = 3
		_, _ = br.Discard(3)
		head = head[3:]
	}
	r := csv.NewReader(br)
	r.Comma = platform.CSVDelimiter(head)
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	if _, err := r.Read(); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty")
		}
		var pe *csv.ParseError
		if !errors.As(err, &pe) {
			return nil, err
		}
	}
	hdrEnd := skip + r.InputOffset()
	p := &chunkPlan{header: make([]byte, hdrEnd-skip)}
	if _, err := f.ReadAt(p.header, skip); err != nil {
		return nil, err
	}
	p.headerLines = bytes.Count(p.header, []byte("\n"))
	if len(p.header) == 0 || p.header[len(p.header)-1] != '\n' {
		p.header = append(p.header, '\n')
		p.headerLines++
	}
	cur := chunk{start: hdrEnd, end: hdrEnd}
	for {
		_, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		var pe *csv.ParseError
		if err != nil && !errors.As(err, &pe) {
			return nil, err
		}
		off := skip + r.InputOffset()
		if cur.rows > 0 && (cur.rows == maxRows || off-cur.start > maxBytes) {
			p.chunks = append(p.chunks, cur)
			cur = chunk{start: cur.end, end: cur.end}
		}
		cur.end = off
		cur.rows++
		p.rows++
	}
	if cur.rows > 0 {
		p.chunks = append(p.chunks, cur)
	}
	if p.rows == 0 {
		return nil, errors.New("the file has a header but no rows")
	}
	return p, nil
}

// bulkAnswer is what the server answers an upload.
type bulkAnswer struct {
	NumberOfAll      int                  `json:"numberOfAll"`
	NumberOfCreated  int                  `json:"numberOfCreated"`
	NumberOfFailed   int                  `json:"numberOfFailed"`
	NumberOfExisting int                  `json:"numberOfExisting"`
	Results          []platform.RowResult `json:"results"`
}

type uploader struct {
	cfg    *registerConfig
	client *http.Client
	stderr io.Writer
}

func (u *uploader) upload(ctx context.Context, header, body []byte) (*bulkAnswer, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("file", "devices.csv")
	if err != nil {
		return nil, err
	}
	fw.Write(header)
	fw.Write(body)
	if err := mw.Close(); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.cfg.api+api.BulkPath, &buf)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(u.cfg.user, u.cfg.password)
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error, Message string }
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			return nil, fmt.Errorf("%s: %s", resp.Status, e.Message)
		}
		return nil, fmt.Errorf("%s", resp.Status)
	}
	var a bulkAnswer
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("unexpected answer: %w", err)
	}
	return &a, nil
}

// summary adds up the chunks' answers.
type summary struct {
	rows, created, existing, failed int
	notes                           []string // rows that failed, exist, or were created with a warning
}

// add counts a chunk's results; shift turns the chunk's line numbers
// into the file's.
func (s *summary) add(a *bulkAnswer, shift int) {
	s.rows += a.NumberOfAll
	s.created += a.NumberOfCreated
	s.existing += a.NumberOfExisting
	s.failed += a.NumberOfFailed
	for _, r := range a.Results {
		if r.Reason == "" {
			continue
		}
		what := r.Reason
		if r.Field != "" {
			what = r.Field + ": " + r.Reason
		}
		where := fmt.Sprintf("line %d", r.Line+shift)
		if r.Endpoint != "" {
			where += " (" + r.Endpoint + ")"
		}
		s.notes = append(s.notes, where+": "+r.Status+": "+what)
	}
}

func (s *summary) print(w io.Writer) {
	fmt.Fprintf(w, "%d rows: %d created, %d already existed, %d failed\n", s.rows, s.created, s.existing, s.failed)
	for _, n := range s.notes {
		fmt.Fprintln(w, n)
	}
}
