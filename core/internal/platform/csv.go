package platform

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxColumns bounds the header of a registration CSV.
const maxColumns = 512

// bom is the UTF-8 byte order mark spreadsheet programs put first.
var bom = []byte{0xEF, 0xBB, 0xBF}

// CSVDelimiter picks the delimiter of a registration CSV from its header
// line: ';' when it holds more semicolons than commas outside quotes,
// else ','.
func CSVDelimiter(header []byte) rune {
	commas, semis, quoted := 0, 0, false
	for _, c := range header {
		switch c {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				commas++
			}
		case ';':
			if !quoted {
				semis++
			}
		case '\n':
			if !quoted {
				return pick(commas, semis)
			}
		}
	}
	return pick(commas, semis)
}

func pick(commas, semis int) rune {
	if semis > commas {
		return ';'
	}
	return ','
}

// column is one header cell: a known field or an unknown name.
type column struct {
	f     field
	known bool
	name  string // as written, trimmed; "" for an unnamed column (ignored)
}

// csvRows reads the records of a registration CSV after its header.
type csvRows struct {
	r    *csv.Reader
	cols []column
}

// openCSV reads the header of a registration CSV: an optional UTF-8 BOM,
// the delimiter found from the header line, names matched without regard
// to case and surrounding spaces. A bad header fails the whole file
// (ErrInvalid).
func openCSV(src io.Reader) (*csvRows, error) {
	br := bufio.NewReaderSize(src, 64<<10)
	head, err := br.Peek(64 << 10)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("read csv: %w", err)
	}
	if bytes.HasPrefix(head, bom) {
		_, _ = br.Discard(len(bom))
		head = head[len(bom):]
	}
	if len(bytes.TrimSpace(head)) == 0 {
		return nil, invalid("the file is empty: a header line naming the columns is required")
	}
	r := csv.NewReader(br)
	r.Comma = CSVDelimiter(head)
	r.ReuseRecord = true
	// FieldsPerRecord 0: the header sets the count; LazyQuotes stays off.
	header, err := r.Read()
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return nil, invalid("the header line is not valid CSV: %v", pe.Err)
		}
		return nil, fmt.Errorf("read csv header: %w", err)
	}
	if len(header) > maxColumns {
		return nil, invalid("the header has %d columns; at most %d are allowed", len(header), maxColumns)
	}
	c := &csvRows{r: r, cols: make([]column, len(header))}
	seen := make(map[string]bool, len(header))
	hasID := false
	for i, h := range header {
		name := strings.TrimSpace(h)
		if name == "" {
			continue
		}
		norm := normalizeName(name)
		if seen[norm] {
			return nil, invalid("column %q appears twice in the header", name)
		}
		seen[norm] = true
		f, known := fieldByKey[norm]
		if known {
			if key := "\x00" + f.String(); seen[key] {
				return nil, invalid("column %q names the same field as an earlier column", name)
			} else {
				seen[key] = true
			}
		}
		c.cols[i] = column{f: f, known: known, name: name}
		hasID = hasID || (known && (f == fID || f == fEndpoint))
	}
	if !hasID {
		return nil, invalid("the header has no %s or %s column (is the first line the header?)", FieldID, FieldEndpoint)
	}
	return c, nil
}

// next reads the next record into vs. A record that is not valid CSV or
// has the wrong number of fields is a row error (the file goes on); err is
// io.EOF at the end or a read failure.
func (c *csvRows) next(vs *values) (line int, rowErr *FieldError, err error) {
	*vs = values{extra: vs.extra[:0]}
	rec, err := c.r.Read()
	if err != nil {
		var pe *csv.ParseError
		if !errors.As(err, &pe) {
			return 0, nil, err
		}
		if errors.Is(pe.Err, csv.ErrFieldCount) {
			return pe.StartLine, &FieldError{Reason: fmt.Sprintf("the line has %d fields, the header has %d", len(rec), len(c.cols))}, nil
		}
		return pe.StartLine, &FieldError{Reason: fmt.Sprintf("not valid CSV (column %d): %v", pe.Column, pe.Err)}, nil
	}
	line, _ = c.r.FieldPos(0)
	for i, v := range rec {
		col := c.cols[i]
		switch {
		case col.known:
			vs.put(col.f, v)
		case col.name != "":
			vs.extra = append(vs.extra, extraValue{name: col.name, text: v})
		}
	}
	return line, nil, nil
}
