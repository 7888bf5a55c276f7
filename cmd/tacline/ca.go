package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/ca"
	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/internal/atomicfile"
	"github.com/tacline/tacline/lifecycle"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

func init() { register(newCACmd) }

// withLedgerAndHSM opens the configuration's ledger and HSM token for fn.
func withLedgerAndHSM(cmd *cobra.Command, fn func(ctx context.Context, cfg *config.File, db *store.DB, tok *hsm.Token) error) error {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	if err := cfg.ValidateHSM(); err != nil {
		return err
	}
	db, err := openLedger(cmd.Context(), cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	tok, err := hsm.Open(cfg.HSM)
	if err != nil {
		return err
	}
	defer tok.Close()
	return fn(cmd.Context(), cfg, db, tok)
}

// deviceNotAfter is the device profile's fixed notAfter (zero when it is
// a duration): every issuing CA must end no earlier.
func deviceNotAfter(cfg *config.File) time.Time {
	t, _ := cfg.Profile.FixedNotAfter()
	return t
}

func newCACmd() *cobra.Command {
	c := &cobra.Command{Use: "ca", Short: "Key ceremony: CA keys in the HSM, issuers in the ledger"}
	var dev, infra bool
	var curve, label, out, csrOut string
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Make the issuing CA key in the HSM: with --dev also a root and a station CA (development); without, a CSR for the offline root",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withLedgerAndHSM(cmd, func(ctx context.Context, cfg *config.File, db *store.DB, tok *hsm.Token) error {
				if out == "" {
					out = cfg.Path("ca")
				}
				if !dev {
					if csrOut == "" {
						csrOut = filepath.Join(out, label+".csr")
					}
					// Decide before a key is made: a CSR that cannot be
					// written leaves a key no CSR can be made for again.
					if err := checkWritable(csrOut); err != nil {
						return err
					}
					if infra {
						// A factory site: its own station CA; its device
						// issuing CA certified at headquarters.
						d, err := castore.InitInfra(ctx, db, tok, cfg.Manufacturer, curve, operator(), time.Now())
						if err != nil {
							return err
						}
						if err := os.MkdirAll(out, 0o755); err != nil {
							return err
						}
						for name, cert := range map[string]*x509.Certificate{"infra-root.pem": d.InfraRoot, "station-ca.pem": d.StationCA} {
							if err := os.WriteFile(filepath.Join(out, name), castore.PEM(cert), 0o644); err != nil {
								return err
							}
						}
						fmt.Fprintf(cmd.OutOrStdout(), "infrastructure root %s and station CA %s made (keys in the HSM); certificates in %s\n",
							ca.KeyID(d.InfraRoot), ca.KeyID(d.StationCA), out)
					}
					csr, err := ca.InitOffline(ctx, castore.Issuers{DB: db, Kind: store.IssuerDevice, Actor: operator()}, castore.Keys{Token: tok}, ca.CeremonyOptions{IssuerLabel: label, Curve: curve,
						Organization: cfg.Manufacturer, Now: time.Now()})
					if err != nil {
						return err
					}
					if err := atomicfile.Write(csrOut, csr, 0o644); err != nil {
						return tacerr.Wrap(tacerr.Internal, err, "the key %q is made; write its CSR to %s", label, csrOut)
					}
					fmt.Fprintf(cmd.OutOrStdout(), "issuing CA key %q made in the HSM; CSR for the offline root written to %s\n", label, csrOut)
					fmt.Fprintf(cmd.OutOrStdout(), "next: have the root sign it (a factory site: `tacline ca certify --csr` at headquarters), then `tacline ca import --label %s --cert CERT.pem --chain ROOT.pem`\n", label)
					return nil
				}
				d, err := castore.InitDev(ctx, db, tok, cfg.Manufacturer, curve, operator(), time.Now(), deviceNotAfter(cfg))
				if err != nil {
					return err
				}
				if err := os.MkdirAll(out, 0o755); err != nil {
					return err
				}
				for name, cert := range map[string]*x509.Certificate{"root.pem": d.Root, "issuing.pem": d.Issuing, "infra-root.pem": d.InfraRoot, "station-ca.pem": d.StationCA} {
					if err := os.WriteFile(filepath.Join(out, name), castore.PEM(cert), 0o644); err != nil {
						return err
					}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "development CA made (keys in the HSM): device root %s, device issuing CA %s (active), infrastructure root %s, station CA %s; certificates in %s\n",
					ca.KeyID(d.Root), ca.KeyID(d.Issuing), ca.KeyID(d.InfraRoot), ca.KeyID(d.StationCA), out)
				return nil
			})
		},
	}
	initCmd.Flags().BoolVar(&dev, "dev", false, "development: also a root key and a station CA in the HSM")
	initCmd.Flags().BoolVar(&infra, "infra", false, "without --dev: also the infrastructure root and station CA in the HSM (a factory site, docs/sites.md)")
	initCmd.Flags().StringVar(&curve, "curve", "P-256", "P-256 or P-384")
	initCmd.Flags().StringVar(&label, "label", "tacline-device-ca-1", "HSM label of the issuing CA key (without --dev)")
	initCmd.Flags().StringVar(&out, "out", "", "directory for certificates and the CSR (default: ca/ next to the config)")
	initCmd.Flags().StringVar(&csrOut, "csr", "", "where to write the CSR (without --dev)")
	c.AddCommand(initCmd)

	var certifyCSR, certifyOut string
	certify := &cobra.Command{
		Use:   "certify",
		Short: "At headquarters: certify a factory site's issuing CA key (its `ca init` CSR) with the device root in this HSM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if certifyCSR == "" {
				return errorf("--csr is required: the CSR the site's `tacline ca init --infra` wrote")
			}
			csrPEM, err := os.ReadFile(certifyCSR)
			if err != nil {
				return fmt.Errorf("--csr: %w", err)
			}
			if certifyOut == "" {
				certifyOut = strings.TrimSuffix(certifyCSR, filepath.Ext(certifyCSR)) + ".pem"
			}
			return withLedgerAndHSM(cmd, func(ctx context.Context, cfg *config.File, db *store.DB, tok *hsm.Token) error {
				cert, root, err := castore.CertifySiteCA(ctx, db, tok, csrPEM, time.Now(), deviceNotAfter(cfg), operator())
				if err != nil {
					return err
				}
				if err := os.WriteFile(certifyOut, append(castore.PEM(cert), castore.PEM(root)...), 0o644); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "issuing CA %q (key %s) certified by the device root %s; certificate and root in %s\n",
					cert.Subject.CommonName, ca.KeyID(cert), ca.KeyID(root), certifyOut)
				fmt.Fprintf(cmd.OutOrStdout(), "next, at the site: `tacline ca import --label LABEL --cert %s --activate`\n", filepath.Base(certifyOut))
				return nil
			})
		},
	}
	certify.Flags().StringVar(&certifyCSR, "csr", "", "the site's CSR (PEM), as its `tacline ca init` wrote it")
	certify.Flags().StringVar(&certifyOut, "out", "", "where to write the certificate followed by the root (default: the CSR's name with .pem)")
	c.AddCommand(certify)

	var certFile, chainFile string
	var activate bool
	imp := &cobra.Command{
		Use:   "import",
		Short: "Install the issuing CA certificate signed by the offline root, after checking it certifies the HSM key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			certPEM, err := os.ReadFile(certFile)
			if err != nil {
				return fmt.Errorf("--cert: %w", err)
			}
			var chainPEM []byte
			if chainFile != "" {
				if chainPEM, err = os.ReadFile(chainFile); err != nil {
					return fmt.Errorf("--chain: %w", err)
				}
			}
			return withLedgerAndHSM(cmd, func(ctx context.Context, cfg *config.File, db *store.DB, tok *hsm.Token) error {
				signer, err := tok.Signer(label)
				if tacerr.Is(err, tacerr.HSMKeyNotFound) {
					// Not hsm.Token's advice (make a key): a new key cannot
					// match a certificate the root signed.
					return tacerr.Field(tacerr.HSMKeyNotFound, "--label", "no key labelled %q on the token: the issuing CA key is the one `tacline ca init --label %s` made for the CSR the root signed; pass that key's label (`tacline hsm list` shows the keys)", label, label)
				}
				if err != nil {
					return err
				}
				rec, err := ca.Import(ctx, castore.Issuers{DB: db, Kind: store.IssuerDevice, Actor: operator()}, label, signer, certPEM, chainPEM, activate, time.Now(), deviceNotAfter(cfg))
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "issuer %s (key %s) installed, active: %v\n", rec.Label, rec.KeyID, rec.Active)
				return nil
			})
		},
	}
	imp.Flags().StringVar(&label, "label", "tacline-device-ca-1", "HSM label of the issuing CA key")
	imp.Flags().StringVar(&certFile, "cert", "", "the signed issuing CA certificate (PEM)")
	imp.Flags().StringVar(&chainFile, "chain", "", "certificates above it, up to the root (PEM)")
	imp.Flags().BoolVar(&activate, "activate", false, "make it the active issuer")
	c.AddCommand(imp)

	var activateKeyID string
	act := &cobra.Command{
		Use:   "activate --key-id K",
		Short: "Make a recorded device issuer (imported without --activate) the active one, after checking its dates, its chain and its key in the HSM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if activateKeyID == "" {
				return flagErr("--key-id", "is required: the issuer's key id (`tacline ca list`)")
			}
			return withLedgerAndHSM(cmd, func(ctx context.Context, cfg *config.File, db *store.DB, tok *hsm.Token) error {
				rec, err := ca.Activate(ctx, castore.Issuers{DB: db, Kind: store.IssuerDevice, Actor: operator()}, castore.Keys{Token: tok},
					activateKeyID, time.Now(), deviceNotAfter(cfg))
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "issuer %s (key %s) is now active; running servers issue under it within provisioning.issuer_refresh (at once on SIGHUP)\n", rec.Label, rec.KeyID)
				return nil
			})
		},
	}
	act.Flags().StringVar(&activateKeyID, "key-id", "", "key id of the device issuer to make active (`tacline ca list`)")
	c.AddCommand(act)

	var newLabel string
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Make a new issuing CA key active (development: signed by the dev root); old issuers stay for verification",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withLedgerAndHSM(cmd, func(ctx context.Context, cfg *config.File, db *store.DB, tok *hsm.Token) error {
				if !dev {
					return fmt.Errorf("without --dev, rotate with `tacline ca init --label NEW` and `tacline ca import --label NEW --activate`")
				}
				root, _, rootSigner, err := castore.ActiveCA(ctx, db, tok, store.IssuerRoot)
				if err != nil {
					return err
				}
				if newLabel == "" {
					newLabel = fmt.Sprintf("tacline-device-ca-%d", time.Now().Unix())
				}
				rec, _, err := ca.RotateDev(ctx, castore.Issuers{DB: db, Kind: store.IssuerDevice, Actor: operator()}, castore.Keys{Token: tok},
					root, rootSigner, ca.CeremonyOptions{IssuerLabel: newLabel, Curve: curve, Organization: cfg.Manufacturer, Now: time.Now(), DeviceNotAfter: deviceNotAfter(cfg)})
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "issuer %s (key %s) is now active; running servers issue under it within provisioning.issuer_refresh (at once on SIGHUP)\n", rec.Label, rec.KeyID)
				return nil
			})
		},
	}
	rotate.Flags().BoolVar(&dev, "dev", false, "development: sign the new issuing CA with the dev root in the HSM")
	rotate.Flags().StringVar(&newLabel, "label", "", "HSM label of the new key")
	rotate.Flags().StringVar(&curve, "curve", "P-256", "P-256 or P-384")
	c.AddCommand(rotate)

	var keyID, reason string
	revoke := &cobra.Command{
		Use:   "revoke --key-id K [--reason compromised|superseded|cessationOfOperation|other]",
		Short: "Revoke a device issuing CA or station CA that is not active: its root's CRL lists it (signed at the next CRL refresh)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rr, err := lifecycle.ParseRevokeReason("--reason", reason, lifecycle.RevokeCAReasons)
			if err != nil {
				return err
			}
			if keyID == "" {
				return flagErr("--key-id", "is required: the issuer's key id (`tacline ca list`)")
			}
			db, err := ledgerFromFlags(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			if err := db.RevokeIssuer(cmd.Context(), keyID, rr, operator()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "issuer %s revoked (%s): its root's CRL lists it from the next CRL (`tacline crl publish`, or a running server within revocation.poll)\n", keyID, reason)
			return nil
		},
	}
	revoke.Flags().StringVar(&keyID, "key-id", "", "key id of the CA to revoke")
	revoke.Flags().StringVar(&reason, "reason", "superseded", "compromised, superseded, cessationOfOperation or other")
	c.AddCommand(revoke)

	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List issuers: label, key id, curve, validity, active",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := ledgerFromFlags(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			recs, err := db.Issuers(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			if !asJSON {
				fmt.Fprintln(w, "KIND\tLABEL\tKEY ID\tCURVE\tNOT BEFORE\tNOT AFTER\tACTIVE\tREVOKED")
			}
			for _, r := range recs {
				var nb, na string
				if certs, err := ca.ParseChainPEM([]byte(r.CertPEM)); err == nil && len(certs) > 0 {
					nb, na = certs[0].NotBefore.UTC().Format(time.RFC3339), certs[0].NotAfter.UTC().Format(time.RFC3339)
				}
				revoked := "-"
				if !r.RevokedAt.IsZero() {
					revoked = r.RevokedAt.UTC().Format(time.RFC3339) + " " + string(r.RevokeReason)
				}
				if asJSON {
					row := map[string]any{"kind": r.Kind, "label": r.Label, "key_id": r.KeyID, "curve": r.Curve,
						"not_before": nb, "not_after": na, "active": r.Active}
					if !r.RevokedAt.IsZero() {
						row["revoked_at"], row["revoke_reason"] = r.RevokedAt.UTC().Format(time.RFC3339), r.RevokeReason
					}
					printJSON(cmd.OutOrStdout(), row)
					continue
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%v\t%s\n", r.Kind, r.Label, r.KeyID, r.Curve, nb, na, r.Active, revoked)
			}
			return w.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	c.AddCommand(list)
	return c
}

// checkWritable refuses (field --csr) a CSR path whose directory cannot be
// made or written, or that is a directory, before anything is made.
func checkWritable(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return flagErr("--csr", "cannot make the directory for %s (%v); no key was made", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return flagErr("--csr", "%s is a directory; name the CSR file; no key was made", path)
	}
	probe, err := os.CreateTemp(dir, ".csr-probe-*")
	if err != nil {
		return flagErr("--csr", "cannot write in %s (%v); no key was made", dir, err)
	}
	probe.Close()
	return os.Remove(probe.Name())
}
