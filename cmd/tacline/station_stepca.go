package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/factory"
	"github.com/tacline/tacline/stepca"
	"github.com/tacline/tacline/store"
)

func init() {
	stationCommands = append(stationCommands, newStationBootstrapCmd)
}

func newStationBootstrapCmd() *cobra.Command {
	var caURL, root, token, dir string
	cmd := &cobra.Command{
		Use:   "bootstrap --ca-url URL --root FILE --token TOKEN --dir DIR",
		Short: "Obtain the station's mutual-TLS identity from a manufacturer's step-ca with a one-time token",
		Long: `Make a new key, have step-ca sign it with the one-time token an operator
made (` + "`step ca token <STATION-ID> --provisioner tacline-stations`" + `, see
` + "`tacline station enroll --stepca`" + `) and write DIR/cert.pem, DIR/key.pem (0600)
and DIR/stepca.json, replaced as one set (stopped at any point, DIR holds the
old identity or the new one). ` + "`tacline station simulate`" + ` renews the certificate at two
thirds of its life while it runs. DIR is the station's directory in the
credentials directory (stations/<STATION-ID>).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, f := range []struct{ name, v string }{{"--ca-url", caURL}, {"--root", root}, {"--token", token}, {"--dir", dir}} {
				if f.v == "" {
					return errorf("%s is required", f.name)
				}
			}
			if b, err := os.ReadFile(token); err == nil { // a file holding the token
				token = strings.TrimSpace(string(b))
			}
			ctx, cancel := signalContext(cmd.Context())
			defer cancel()
			cert, err := stepca.Bootstrap(ctx, caURL, root, token, dir)
			if err != nil {
				return err
			}
			var uris []string
			for _, u := range cert.URIs {
				uris = append(uris, u.String())
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "station identity in %s: %s, serial %s, valid until %s (renewed at two thirds of its life while the station client runs)\n",
				dir, strings.Join(uris, " "), cert.SerialNumber.Text(16), cert.NotAfter.UTC().Format(time.RFC3339))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&caURL, "ca-url", "", "step-ca's URL (https://ca.example:9000)")
	f.StringVar(&root, "root", "", "step-ca's root certificate (PEM)")
	f.StringVar(&token, "token", "", "the one-time token (or a file holding it)")
	f.StringVar(&dir, "dir", "", "the station's credentials directory")
	return cmd
}

// enrollStepCA records a station whose identity comes from step-ca (no
// tacline certificate) and prints what an operator sets up in step-ca
// (`tacline station enroll --stepca`).
func enrollStepCA(cmd *cobra.Command, spec castore.StationSpec, creds, provisioner string) error {
	if spec.ID == "" || len(spec.Roles) > 0 {
		return errorf("--stepca enrolls a station: --id is required and --roles is not allowed")
	}
	cfg, db, err := configAndLedger(cmd)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.EnrollStation(cmd.Context(), store.StationRecord{ID: spec.ID, Factory: spec.Factory, Line: spec.Line, Pools: spec.Pools}, operator()); err != nil {
		return err
	}
	if creds == "" {
		creds = cfg.Path("stations")
	}
	dir := filepath.Join(creds, spec.ID)
	if spec.Product != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, castore.ProductFile), []byte(spec.Product+"\n"), 0o644); err != nil {
			return err
		}
	}
	return printStepCAStationSetup(cmd.OutOrStdout(), spec.ID, provisioner, dir)
}

func printStepCAStationSetup(w io.Writer, id, provisioner, dir string) error {
	_, err := fmt.Fprintf(w, `enrolled %[1]s (its identity comes from step-ca)

Once, in step-ca: a JWK provisioner whose template writes the station id
(the token's subject) as the URI SAN tacline maps:

  step ca provisioner add %[2]s --type JWK --create --x509-template station.tpl
  # ca.json, that provisioner's claims: "defaultTLSCertDuration": "24h",
  #   "disableSmallstepExtensions": true; and "crl": {"enabled": true} for revocation

station.tpl:
%[3]s

tacline.yaml (server section):
  stepca_station_ca: [/etc/tacline/stepca/root_ca.crt]
  stepca_crl: https://ca.example:9000/1.0/crl

For this station, an operator makes a one-time token and the station uses it:

  step ca token %[1]s --provisioner %[2]s > %[1]s.token
  tacline station bootstrap --ca-url https://ca.example:9000 --root root_ca.crt --token %[1]s.token --dir %[4]s
`, id, provisioner, indent(stepca.StationTemplate, "  "), dir)
	return err
}

func indent(s, pre string) string {
	return pre + strings.ReplaceAll(s, "\n", "\n"+pre)
}

// renewStepCAStations makes every station of the list that holds a step-ca
// identity (stepca.json, from `tacline station bootstrap`) present a
// certificate renewed at two thirds of its life while ctx runs.
func renewStepCAStations(ctx context.Context, stations []factory.StationCreds, log io.Writer) error {
	for i := range stations {
		dir := filepath.Dir(stations[i].CertFile)
		if !stepca.IsBootstrapped(dir) {
			continue
		}
		r, err := stepca.NewRenewer(dir)
		if err != nil {
			return err
		}
		id := stations[i].ID
		go r.Run(ctx, func(format string, args ...any) {
			fmt.Fprintf(log, "station %s: "+format+"\n", append([]any{id}, args...)...)
		})
		stations[i].GetClientCertificate = r.GetClientCertificate
	}
	return nil
}
