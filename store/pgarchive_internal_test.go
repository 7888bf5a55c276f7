package store

import (
	"bufio"
	"bytes"
	"reflect"
	"testing"
)

// testArchive encodes a custom-format archive header (version 1.14, 4-byte
// integers, 8-byte offsets) and the TOC entries es, as pg_dump writes them.
func testArchive(es []pgEntry) []byte {
	var b bytes.Buffer
	b.WriteString("PGDMP")
	b.Write([]byte{1, 14, 0, 4, 8, 1})
	w := pgWriter{b: &b, intSize: 4}
	w.int(-1) // compression level
	for _, v := range []int64{0, 0, 0, 1, 0, 126, 0} {
		w.int(v)
	}
	for _, s := range []string{"ledger", "15.20", "15.20"} {
		w.str(s, false)
	}
	w.int(int64(len(es)))
	for _, e := range es {
		w.int(e.dumpID)
		w.int(0)
		for _, s := range []string{e.tableOID, e.oid, e.tag, e.desc} {
			w.str(s, false)
		}
		w.int(e.section)
		for _, s := range []string{e.defn, e.dropStmt, e.copyStmt, e.namespace, e.tablespace, e.tableAM, e.owner, e.withOids} {
			w.str(s, false)
		}
		w.str("", true)
		b.WriteByte(pgOffsetNoData)
		b.Write(make([]byte, 8))
	}
	return b.Bytes()
}

// TestParsePGArchive: the TOC reader gives back the fields written, and
// refuses a truncated archive or one that claims a string longer than the
// file holds.
func TestParsePGArchive(t *testing.T) {
	want := pgEntry{dumpID: 7, tableOID: "1255", oid: "17413", tag: "imeis_guard()", desc: "FUNCTION", section: 2,
		defn: "CREATE FUNCTION public.imeis_guard() ...;\n", dropStmt: "DROP FUNCTION public.imeis_guard();\n",
		namespace: "public", tableAM: "heap", owner: "postgres", withOids: "false", dataState: pgOffsetNoData}
	data := testArchive([]pgEntry{want})
	a, err := parsePGArchive(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.entries) != 1 || a.remoteVersion != "15.20" || a.tocEnd != int64(len(data)) {
		t.Fatalf("read %+v", a)
	}
	if got := a.entries[0]; !reflect.DeepEqual(got, want) {
		t.Fatalf("entry %+v, want %+v", got, want)
	}
	long := bytes.Clone(data)
	copy(long[51:], []byte{0, 0xff, 0xff, 0xff, 0}) // the database name's length: 16 MiB - 1
	for name, bad := range map[string][]byte{"truncated": data[:len(data)-3], "header only": data[:14], "a string longer than the file": long} {
		if _, err := parsePGArchive(bufio.NewReader(bytes.NewReader(bad))); err == nil {
			t.Errorf("%s: read", name)
		}
	}
}

// FuzzParsePGArchive: no archive makes the TOC reader panic.
func FuzzParsePGArchive(f *testing.F) {
	f.Add(testArchive([]pgEntry{{dumpID: 1, tag: "t", desc: "TABLE", section: 2, defn: "CREATE TABLE public.t ();\n", namespace: "public"}}))
	f.Add([]byte("PGDMP\x01\x0e\x00\x04\x08\x01\x00\x7f\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parsePGArchive(bufio.NewReader(bytes.NewReader(data)))
	})
}
