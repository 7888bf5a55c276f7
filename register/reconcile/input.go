package reconcile

import (
	"archive/zip"
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tacline/tacline/internal/spreadsheet"
	"github.com/tacline/tacline/tacerr"
)

// Format says how a register file is laid out.
type Format string

// The register file formats.
const (
	// FormatAuto takes a first line naming an approved_imei (or imei)
	// column as a CSV header, and otherwise reads one IMEI per line.
	FormatAuto Format = ""
	// FormatDIRBS is a CSV whose header names an approved_imei column
	// (the DIRBS registration list), plain or zipped.
	FormatDIRBS Format = "dirbs"
	// FormatLines is one IMEI per line, no header.
	FormatLines Format = "lines"
)

// ParseFormat checks a --format value.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatAuto, FormatDIRBS, FormatLines:
		return f, nil
	}
	return "", tacerr.Field(tacerr.InvalidInput, "format", "%q is not a register file format: use dirbs or lines (or leave it out to detect)", s)
}

// Input is an open register file: a plain file, or the one CSV inside a
// zip (DIRBS), decompressed as it is read.
type Input struct {
	io.Reader
	Name string // the file, or zip!entry
	Size int64  // bytes that reading will yield (uncompressed), for progress
	c    io.Closer
	zc   io.Closer
}

// Close closes the file.
func (in *Input) Close() error {
	if in.zc != nil {
		in.zc.Close()
	}
	if in.c != nil {
		return in.c.Close()
	}
	return nil
}

// OpenInput opens path; a zip must hold exactly one .csv file.
func OpenInput(path string) (*Input, error) { return OpenNamed(path, path) }

// OpenNamed is OpenInput naming the file name in errors and in Input.Name
// (the name a user gave a file stored under another path, such as an
// upload).
func OpenNamed(path, name string) (*Input, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidInput, err, "open register file")
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, tacerr.Wrap(tacerr.InvalidInput, err, "open register file")
	}
	var magic [4]byte
	n, _ := io.ReadFull(f, magic[:])
	if n == 4 && bytes.Equal(magic[:], []byte("PK\x03\x04")) {
		zr, err := zip.NewReader(f, st.Size())
		if err != nil {
			f.Close()
			return nil, tacerr.Wrap(tacerr.InvalidInput, err, "register file %s looks like a zip but cannot be read", name)
		}
		var csvs []*zip.File
		for _, e := range zr.File {
			if strings.EqualFold(filepath.Ext(e.Name), ".csv") {
				csvs = append(csvs, e)
			}
		}
		if len(csvs) != 1 {
			f.Close()
			return nil, tacerr.New(tacerr.InvalidInput, "register zip %s holds %d CSV files: a DIRBS list zip holds exactly one", name, len(csvs))
		}
		rc, err := csvs[0].Open()
		if err != nil {
			f.Close()
			return nil, tacerr.Wrap(tacerr.InvalidInput, err, "open %s in %s", csvs[0].Name, name)
		}
		return &Input{Reader: rc, Name: name + "!" + csvs[0].Name, Size: int64(csvs[0].UncompressedSize64), c: f, zc: rc}, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, tacerr.Wrap(tacerr.InvalidInput, err, "read register file")
	}
	return &Input{Reader: f, Name: name, Size: st.Size(), c: f}, nil
}

// maxLine bounds a line; longer lines are malformed.
const maxLine = 64 << 10

// lineReader yields records (lines) without their end (LF or CRLF),
// without copying them, and strips a UTF-8 byte order mark from the first.
// A record is one line unless a quoted field holds a line break (RFC 4180,
// as DIRBS-Core reads its lists, with PostgreSQL's COPY ... CSV): a line
// that leaves a quote open (an odd number of double quotes) goes on over
// the following lines up to the one that closes the quoted field, and the
// record keeps the line breaks inside it. A quote that no well-formed
// quoted field within maxLine bytes closes is a stray one: its line is a
// record of its own, and the lines after it are read as they would be
// without it.
type lineReader struct {
	br   *bufio.Reader
	n    int64 // line number of the first line of the last record returned (1-based)
	more int64 // lines after its first that the last record spans
	read int64 // bytes consumed
	long bool  // the last line was longer than maxLine (and is truncated)
	rec  []byte
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, maxLine)}
}

// next returns the next record, or io.EOF. The slice is valid until the
// next call.
func (lr *lineReader) next() ([]byte, error) {
	line, err := lr.br.ReadSlice('\n')
	lr.long = false
	lr.read += int64(len(line))
	if err == bufio.ErrBufferFull {
		// Keep (a copy of) the head for the report, skip to the line's end.
		head := append([]byte(nil), line[:64]...)
		lr.long = true
		for err == bufio.ErrBufferFull {
			var more []byte
			more, err = lr.br.ReadSlice('\n')
			lr.read += int64(len(more))
		}
		line = head
		if err == io.EOF {
			err = nil
		}
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			err = nil
		} else {
			if err != io.EOF {
				err = tacerr.Wrap(tacerr.InvalidInput, err, "read register file after line %d", lr.n+lr.more)
			}
			return nil, err
		}
	}
	lr.n += 1 + lr.more
	lr.more = 0
	if !lr.long && bytes.Count(line, quote)%2 == 1 {
		line = lr.quoted(line)
	}
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if lr.n == 1 {
		line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
	}
	return line, nil
}

var quote = []byte{'"'}

// quoted returns the record that starts with line, which leaves a quote
// open: line and the lines after it up to the one that closes the quoted
// field (consumed). When the quoted field is not one (RFC 4180: a quote in
// it is doubled, and the closing quote ends the field: a comma, a line end
// or the end of the file follows it), or nothing within maxLine bytes
// closes it, the quote is a stray one and the record is line alone
// (copied).
func (lr *lineReader) quoted(line []byte) []byte {
	lr.rec = append(lr.rec[:0], line...) // Peek may move what line points to
	ahead, err := lr.br.Peek(maxLine - len(lr.rec))
	atEOF := err == io.EOF
	in := true // in the quoted field
	for i := 0; i < len(ahead); i++ {
		switch c := ahead[i]; {
		case in && c == '"':
			switch {
			case i+1 == len(ahead) && atEOF:
				return lr.take(ahead)
			case i+1 == len(ahead):
				return lr.rec
			case ahead[i+1] == '"':
				i++
			case ahead[i+1] == ',' || ahead[i+1] == '\r' || ahead[i+1] == '\n':
				in = false
			default:
				return lr.rec
			}
		case in:
		case c == '"':
			in = true
		case c == '\n':
			return lr.take(ahead[:i+1])
		}
	}
	if !in && atEOF {
		return lr.take(ahead)
	}
	return lr.rec
}

// take consumes b, the rest of the record in lr.rec, and returns the record.
func (lr *lineReader) take(b []byte) []byte {
	lr.rec = append(lr.rec, b...)
	lr.more = int64(bytes.Count(b, []byte{'\n'}))
	if len(b) > 0 && b[len(b)-1] != '\n' {
		lr.more++ // the file's last line has no end
	}
	lr.read += int64(len(b))
	lr.br.Discard(len(b))
	return lr.rec
}

// field returns the k-th comma-separated field of a CSV line (RFC 4180
// quoting; surrounding quotes removed, doubled quotes left as they are,
// which no IMEI contains), trimmed of blanks, and whether it exists.
func field(line []byte, k int) ([]byte, bool) {
	i, start, f, inQ := 0, 0, 0, false
	for ; i < len(line); i++ {
		switch c := line[i]; {
		case c == '"':
			inQ = !inQ
		case c == ',' && !inQ:
			if f == k {
				return trimField(line[start:i]), true
			}
			f++
			start = i + 1
		}
	}
	if f == k {
		return trimField(line[start:]), true
	}
	return nil, false
}

func trimField(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		b = b[1 : len(b)-1]
	}
	return b
}

// headerColumn reports whether line is a CSV header naming an IMEI
// column, and that column's index.
func headerColumn(line []byte) (int, bool) {
	for k := 0; ; k++ {
		f, ok := field(line, k)
		if !ok {
			return 0, false
		}
		switch strings.ToLower(string(f)) {
		case "approved_imei", "imei":
			return k, true
		}
	}
}

// deviceColumn returns the index of a CSV header's device_id column, or
// -1.
func deviceColumn(header []byte) int {
	for k := 0; ; k++ {
		f, ok := field(header, k)
		if !ok {
			return -1
		}
		if strings.EqualFold(string(f), "device_id") {
			return k
		}
	}
}

// unreadable refuses a record that shows the file cannot be read line by
// line: UTF-16 (a byte order mark, or NUL bytes, in line 1), or a carriage
// return outside a quoted field that no line feed follows (lines ending in
// CR alone run together into one record, and the IMEIs on them would all
// be reported missing_in_register). n is the record's line number.
func unreadable(line []byte, n int64, name string) error {
	if n == 1 && spreadsheet.IsUTF16(line) {
		return tacerr.Field(tacerr.InvalidInput, "register", "%s is UTF-16 text (a spreadsheet's \"Unicode text\"), which tacline does not read: save it as CSV UTF-8 (or plain ASCII) and run again", name)
	}
	if bytes.IndexByte(line, '\r') < 0 {
		return nil
	}
	inQ := false
	for i, c := range line {
		switch {
		case c == '"':
			inQ = !inQ
		case c == '\r' && !inQ && (i+1 == len(line) || line[i+1] != '\n'):
			return tacerr.Field(tacerr.InvalidInput, "register", "line %d of %s holds a carriage return that no line feed follows: its lines end in CR alone (classic Mac), so they cannot be told apart; save the file with LF or CRLF line ends and run again", n, name)
		}
	}
	return nil
}

// printable returns line cut to 64 bytes with control and non-ASCII bytes
// shown as \xNN, for the malformed report.
func printable(line []byte) string {
	var b strings.Builder
	for i, c := range line {
		if i == 64 {
			b.WriteString("...")
			break
		}
		if c < 0x20 || c >= 0x7f {
			fmt.Fprintf(&b, "\\x%02x", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
