package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// Check validates the sections that only some commands use (server, hsm),
// which Load leaves to them, and, with files, that every file the
// configuration names can be read (and the SQLite ledger's directory
// exists). It starts nothing and opens no database or token. It returns
// every problem found, each an invalid_config error naming its field.
func (f *File) Check(files bool) []error {
	var errs []error
	if err := f.ValidateServer(); err != nil {
		errs = append(errs, err)
	}
	if err := f.ValidateHSM(); err != nil {
		errs = append(errs, err)
	}
	if !files {
		return errs
	}
	type ref struct{ field, path string }
	refs := []ref{{"server.tls_cert", f.Server.TLSCert}, {"server.tls_key", f.Server.TLSKey},
		{"hsm.module", f.HSM.Module}, {"hsm.softhsm2_conf", f.HSM.SoftHSMConf}}
	for i, p := range f.Server.ClientCA {
		refs = append(refs, ref{fmt.Sprintf("server.client_ca[%d]", i), p})
	}
	for i, p := range f.Server.MappedCA {
		refs = append(refs, ref{fmt.Sprintf("server.mapped_ca[%d]", i), p})
	}
	if p, ok := strings.CutPrefix(f.HSM.PIN, "file:"); ok {
		refs = append(refs, ref{"hsm.pin", p})
	}
	t := f.Register.TLS
	refs = append(refs, ref{"register.tls.ca_file", f.Path(t.CAFile)}, ref{"register.tls.cert_file", f.Path(t.CertFile)},
		ref{"register.tls.key_file", f.Path(t.KeyFile)})
	for _, r := range refs {
		if r.path == "" || (r.field == "hsm.module" && !strings.Contains(r.path, "/")) {
			continue
		}
		fh, err := os.Open(r.path)
		if err != nil {
			errs = append(errs, tacerr.Field(tacerr.InvalidConfig, r.field, "cannot read %s: %v", r.path, unwrapPathError(err)))
			continue
		}
		fh.Close()
	}
	if f.Database.Driver == store.SQLite && !strings.Contains(f.Database.DSN, "://") {
		dir := filepath.Dir(f.Database.DSN)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			errs = append(errs, tacerr.Field(tacerr.InvalidConfig, "database.dsn", "the ledger's directory %s does not exist", dir))
		}
	}
	return errs
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
