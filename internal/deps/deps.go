//go:build tools

// Package deps pins module versions shared by the packages that land in
// parallel; it is removed once every dependency has a real importer.
package deps

import (
	_ "github.com/RoaringBitmap/roaring/v2"
	_ "github.com/ThalesGroup/crypto11"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/jmoiron/sqlx"
	_ "github.com/mattn/go-sqlite3"
	_ "github.com/miekg/pkcs11"
	_ "github.com/pressly/goose/v3"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/rogpeppe/go-internal/testscript"
	_ "github.com/schollz/progressbar/v3"
	_ "github.com/spf13/cobra"
	_ "github.com/transparency-dev/formats/log"
	_ "github.com/transparency-dev/merkle"
	_ "github.com/zmap/zlint/v3"
	_ "golang.org/x/crypto/ocsp"
	_ "golang.org/x/mod/sumdb/tlog"
	_ "golang.org/x/term"
	_ "gopkg.in/yaml.v3"
)
