package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify/revocation"
)

func init() { register(newCRLCmd) }

func newCRLCmd() *cobra.Command {
	c := &cobra.Command{Use: "crl", Short: "Certificate revocation lists of the device issuers and the roots in the HSM"}
	rc := revocation.DefaultConfig()
	var out string
	var asJSON bool
	publish := &cobra.Command{
		Use:   "publish -o DIR [--next-update DURATION] [--json]",
		Short: "Sign a fresh CRL of every device issuer and root whose key is in the HSM and write DIR/<issuer-key-id>.crl (DER)",
		Long: `Signs one CRL per device issuer, and one per root whose key is in the HSM
(covering the CA certificates it signed), with the key in the HSM, with the
next CRL number from the ledger (numbers only grow, whichever replica or
command signs) and nextUpdate = now + --next-update, records it in the
ledger (the server serves the latest at /v1/crl/<issuer-key-id>.crl) and
writes it to DIR/<issuer-key-id>.crl.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return flagErr("--output", "is required: the directory to write the CRLs to")
			}
			// crl publish makes no OCSP responder, whose lifetime must
			// be twice a CRL's: that rule does not bound --next-update here.
			rc.ResponderValidity = max(rc.ResponderValidity, 2*rc.NextUpdate)
			if err := rc.Validate(); err != nil {
				if e, ok := tacerr.As(err); ok && e.Field == "revocation.next_update" {
					return flagErr("--next-update", "%s", e.Message)
				}
				return err
			}
			return withLedgerAndHSM(cmd, func(ctx context.Context, _ *config.File, db *store.DB, tok *hsm.Token) error {
				issuers, err := revocation.LoadIssuers(ctx, db, tok.Signer)
				if err != nil {
					return err
				}
				pub, err := revocation.NewPublisher(db, issuers, rc, nil)
				if err != nil {
					return err
				}
				recs, err := pub.WriteAll(ctx, out)
				if err != nil {
					return err
				}
				type row struct {
					Issuer     string    `json:"issuer_key_id"`
					File       string    `json:"file"`
					Number     int64     `json:"crl_number"`
					Revoked    int64     `json:"revoked"`
					NextUpdate time.Time `json:"next_update"`
				}
				var rows []row
				for _, r := range recs {
					rows = append(rows, row{r.IssuerKeyID, filepath.Join(out, r.IssuerKeyID+".crl"), r.Number, r.Revoked, r.NextUpdateTime()})
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), rows)
				}
				for _, r := range rows {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: CRL number %d, %d revoked, next update %s\n", r.File, r.Number, r.Revoked, r.NextUpdate.Format(time.RFC3339))
				}
				return nil
			})
		},
	}
	f := publish.Flags()
	f.StringVarP(&out, "output", "o", "", "directory to write <issuer-key-id>.crl files to")
	f.DurationVar(&rc.NextUpdate, "next-update", rc.NextUpdate, "how long the CRLs are valid (nextUpdate = now + this)")
	f.BoolVar(&asJSON, "json", false, "print what was written as JSON")
	c.AddCommand(publish)
	return c
}
