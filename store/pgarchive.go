package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/tacline/tacline/tacerr"
)

// A pg_dump custom-format archive is a header, a table of contents (TOC)
// and data blocks. pg_restore executes, for every TOC entry, its definition
// (defn), and for an entry with data (hadDumper) its COPY statement
// (copyStmt) followed by the data, or, when copyStmt is empty, the data
// itself as SQL. Some entries act without being listed by pg_restore
// --list: SEARCHPATH's defn runs at the start of the restore. So what a
// restore will run is judged from the TOC itself, read here as
// pg_restore reads it (src/bin/pg_dump/pg_backup_archiver.c, ReadHead and
// ReadToc; pg_backup_custom.c, _ReadExtraToc and _readBlockHeader),
// without running anything.

// Archive versions (MAKE_ARCHIVE_VERSION(1, minor, 0)) whose TOC layout is
// known here: 1.12 (PostgreSQL 9.5) to 1.16 (PostgreSQL 17).
const (
	pgArchV1_12 = 1<<16 | 12<<8
	pgArchV1_14 = 1<<16 | 14<<8 // table access method
	pgArchV1_15 = 1<<16 | 15<<8 // compression algorithm byte
	pgArchV1_16 = 1<<16 | 16<<8 // relkind
)

// Data offsets of a custom archive's TOC entry (K_OFFSET_*) and data block
// types (BLK_*).
const (
	pgOffsetNotSet = 1
	pgOffsetSet    = 2
	pgOffsetNoData = 3
	pgBlockData    = 1
)

// pgMaxString bounds one string of the TOC (a function body, a view): the
// reader never allocates more for a length the file claims.
const pgMaxString = 16 << 20

// pgArchive is the header and TOC of a custom-format archive.
type pgArchive struct {
	version       int // MAKE_ARCHIVE_VERSION
	intSize       int
	offSize       int
	remoteVersion string // "Dumped from database version"
	dumpVersion   string // "Dumped by pg_dump version"
	entries       []pgEntry
	headerEnd     int64 // where the TOC's entry count starts
	tocEnd        int64 // where the data blocks start
}

// pgEntry is one TOC entry, the fields pg_restore acts on.
type pgEntry struct {
	dumpID     int64
	hadDumper  bool
	tableOID   string
	oid        string
	tag        string
	desc       string
	section    int64
	defn       string
	dropStmt   string
	copyStmt   string
	namespace  string
	tablespace string
	tableAM    string
	relkind    int64
	owner      string
	withOids   string
	deps       []string
	nulls      uint32 // bit i: the entry's i-th string was NULL (not "")
	dataState  byte
	dataOffset int64
}

// name is how a message names e: its type, schema and name as pg_restore
// --list prints them.
func (e pgEntry) name() string {
	ns := e.namespace
	if ns == "" {
		ns = "-"
	}
	return fmt.Sprintf("%s %s %q", e.desc, ns, e.tag)
}

// pgReader reads an archive's integers and strings as ReadInt and ReadStr
// do.
type pgReader struct {
	r       *bufio.Reader
	pos     int64
	intSize int
	err     error
}

func (r *pgReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("at byte %d: "+format, append([]any{r.pos}, args...)...)
	}
}

func (r *pgReader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	// Read what is there, not what a length claims: a short file fails
	// without the claimed allocation.
	b, err := io.ReadAll(io.LimitReader(r.r, int64(n)))
	if err == nil && len(b) < n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		r.fail("%v", err)
		return nil
	}
	r.pos += int64(n)
	return b
}

func (r *pgReader) byte() byte {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return b[0]
}

// int reads a sign byte and intSize little-endian bytes.
func (r *pgReader) int() int64 {
	sign := r.byte()
	b := r.bytes(r.intSize)
	var v int64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | int64(b[i])
	}
	if v < 0 {
		r.fail("integer out of range")
	}
	if sign != 0 {
		v = -v
	}
	return v
}

// str reads a length (-1: NULL, returned as ok false) and that many bytes.
func (r *pgReader) str() (s string, ok bool) {
	n := r.int()
	if r.err != nil || n < 0 {
		return "", false
	}
	if n > pgMaxString {
		r.fail("a string of %d bytes", n)
		return "", false
	}
	return string(r.bytes(int(n))), true
}

func (r *pgReader) s() string {
	s, _ := r.str()
	return s
}

// readPGArchive reads the header and TOC of the custom-format archive in
// file, and checks that each entry with data points at a data block of its
// own: what pg_restore would act on, none of it run.
func readPGArchive(file string) (*pgArchive, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, tacerr.Wrap(tacerr.InvalidInput, err, "read the backup's dump")
	}
	defer f.Close()
	a, err := parsePGArchive(bufio.NewReaderSize(f, 1<<16))
	if err != nil {
		return nil, tacerr.New(tacerr.LedgerInvariant, "the backup's dump %s is not a pg_dump custom-format archive this tacline can read (%v): the backup set was altered after it was made, or made by something else; restore another set", file, err)
	}
	for _, e := range a.entries {
		if !e.hadDumper || e.dataState == pgOffsetNoData {
			continue
		}
		if e.dataState != pgOffsetSet {
			return nil, tacerr.New(tacerr.LedgerInvariant, "the backup's dump %s has no offset for the data of %s (it was not written by pg_dump to a file, as a backup writes it): restore another set", file, e.name())
		}
		r := &pgReader{r: bufio.NewReaderSize(io.NewSectionReader(f, e.dataOffset, 64), 64), pos: e.dataOffset, intSize: a.intSize}
		typ, id := r.byte(), r.int()
		if r.err != nil || typ != pgBlockData || id != e.dumpID {
			return nil, tacerr.New(tacerr.LedgerInvariant, "the backup's dump %s: the data of %s at byte %d is not a data block of that entry (type %d, entry %d, %v): the backup set was altered after it was made; restore another set", file, e.name(), e.dataOffset, typ, id, r.err)
		}
	}
	return a, nil
}

// parsePGArchive reads the header and the TOC.
func parsePGArchive(br *bufio.Reader) (*pgArchive, error) {
	a := &pgArchive{}
	r := &pgReader{r: br}
	if magic := r.bytes(5); r.err != nil || !bytes.Equal(magic, []byte("PGDMP")) {
		return nil, fmt.Errorf("no PGDMP signature")
	}
	vmaj, vmin, vrev := int(r.byte()), int(r.byte()), int(r.byte())
	a.version = vmaj<<16 | vmin<<8 | vrev
	if a.version < pgArchV1_12 || a.version >= pgArchV1_16+1<<8 {
		return nil, fmt.Errorf("archive version %d.%d-%d (this tacline reads 1.12 to 1.16)", vmaj, vmin, vrev)
	}
	a.intSize, a.offSize = int(r.byte()), int(r.byte())
	if a.intSize < 1 || a.intSize > 8 || a.offSize < 1 || a.offSize > 8 {
		return nil, fmt.Errorf("integer size %d, offset size %d", a.intSize, a.offSize)
	}
	r.intSize = a.intSize
	if format := r.byte(); format != 1 { // archCustom
		return nil, fmt.Errorf("archive format %d, not custom (1)", format)
	}
	if a.version >= pgArchV1_15 {
		r.byte() // compression algorithm
	} else {
		r.int() // compression level
	}
	for range 7 { // creation time: sec, min, hour, mday, mon, year, isdst
		r.int()
	}
	r.s() // database name
	a.remoteVersion, a.dumpVersion = r.s(), r.s()
	a.headerEnd = r.pos
	n := r.int()
	if r.err == nil && (n < 0 || n > 1<<20) {
		r.fail("%d TOC entries", n)
	}
	for i := int64(0); i < n && r.err == nil; i++ {
		var e pgEntry
		i := 0
		str := func() string {
			s, ok := r.str()
			if !ok {
				e.nulls |= 1 << i
			}
			i++
			return s
		}
		e.dumpID = r.int()
		e.hadDumper = r.int() != 0
		e.tableOID, e.oid = str(), str()
		e.tag, e.desc = str(), str()
		e.section = r.int()
		e.defn, e.dropStmt, e.copyStmt = str(), str(), str()
		e.namespace, e.tablespace = str(), str()
		if a.version >= pgArchV1_14 {
			e.tableAM = str()
		}
		if a.version >= pgArchV1_16 {
			e.relkind = r.int()
		}
		e.owner, e.withOids = str(), str()
		for r.err == nil { // dependencies, ended by a NULL string
			d, ok := r.str()
			if !ok {
				break
			}
			e.deps = append(e.deps, d)
		}
		e.dataState = r.byte()
		off := r.bytes(a.offSize)
		if len(off) > 0 {
			buf := make([]byte, 8)
			copy(buf, off)
			e.dataOffset = int64(binary.LittleEndian.Uint64(buf))
		}
		if r.err == nil && (e.dataState < pgOffsetNotSet || e.dataState > pgOffsetNoData) {
			r.fail("entry %d: data state %d", e.dumpID, e.dataState)
		}
		a.entries = append(a.entries, e)
	}
	if r.err != nil {
		return nil, r.err
	}
	a.tocEnd = r.pos
	return a, nil
}
