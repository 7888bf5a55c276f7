package main

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/internal/atomicfile"
	"github.com/tacline/tacline/tacerr"
)

func init() { register(newAuditCmd) }

// auditFlags override the audit: section of --config.
type auditFlags struct {
	origin, keyLabel string
}

func (a *auditFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&a.origin, "origin", "", "the log's name (default: audit.origin of --config)")
	c.Flags().StringVar(&a.keyLabel, "key-label", "", "label of the ECDSA P-256 checkpoint key in the HSM (default: audit.key_label of --config)")
}

// config returns the audit: section of --config with the flags applied.
func (a *auditFlags) config(cmd *cobra.Command) (audit.Config, error) {
	f, err := loadConfig(cmd)
	if err != nil {
		return audit.Config{}, err
	}
	cfg := f.Audit
	if a.origin != "" {
		cfg.Origin = a.origin
	}
	if a.keyLabel != "" {
		cfg.KeyLabel = a.keyLabel
	}
	return cfg, cfg.Validate()
}

// signer validates the audit settings, opens the HSM of --config and
// returns the checkpoint key (generated first if asked) and a function
// closing the token.
func (a *auditFlags) signer(cmd *cobra.Command, generate bool) (audit.Config, crypto.Signer, func(), error) {
	cfg, err := a.config(cmd)
	if err != nil {
		return cfg, nil, nil, err
	}
	tok, err := openHSMFromFlags(cmd)
	if err != nil {
		return cfg, nil, nil, err
	}
	closeHSM := func() { _ = tok.Close() }
	if generate {
		if _, err := tok.GenerateKey(cfg.KeyLabel, hsm.ECP256); err != nil {
			closeHSM()
			return cfg, nil, nil, err
		}
	}
	key, err := tok.Signer(cfg.KeyLabel)
	if err != nil {
		closeHSM()
		return cfg, nil, nil, err
	}
	return cfg, key, closeHSM, nil
}

func newAuditCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "audit",
		Short: "The tamper-evident audit log: key, checkpoint, export, verify, prove, verify-proof",
	}
	c.AddCommand(newAuditKeyCmd(), newAuditWitnessKeyCmd(), newAuditCheckpointCmd(), newAuditExportCmd(), newAuditVerifyCmd(), newAuditProveCmd(), newAuditVerifyProofCmd())
	return c
}

func newAuditKeyCmd() *cobra.Command {
	var af auditFlags
	var generate bool
	c := &cobra.Command{
		Use:   "key [--generate]",
		Short: "Print the log's verifier key (auditors pass it to verify --log-key); --generate makes the HSM key first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, key, closeHSM, err := af.signer(cmd, generate)
			if err != nil {
				return err
			}
			defer closeHSM()
			s, err := audit.NewNoteSigner(cfg.Origin, key)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), s.Verifier().Key())
			return err
		},
	}
	af.add(c)
	c.Flags().BoolVar(&generate, "generate", false, "generate the key in the HSM first (fails if the label exists)")
	return c
}

func newAuditWitnessKeyCmd() *cobra.Command {
	var af auditFlags
	var generate bool
	var label string
	c := &cobra.Command{
		Use:   "witness-key [--generate] [--label LABEL]",
		Short: "Print headquarters' witness key (each site's site.witness_key); --generate makes the Ed25519 key in the HSM first",
		Long: `Headquarters cosigns the site checkpoints it verified with an Ed25519 key in
its HSM (C2SP tlog-cosignature/v1, docs/sites.md). This prints its verifier
key, name+keyid+base64(0x04||public key), the witness name being audit.origin;
every site is configured with it (site.witness_key).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := af.config(cmd)
			if err != nil {
				return err
			}
			if label != "" {
				cfg.WitnessKeyLabel = label
			}
			if cfg.WitnessKeyLabel == "" {
				return tacerr.Field(tacerr.InvalidConfig, "audit.witness_key_label", "is not set: name the witness key's label (or pass --label)")
			}
			tok, err := openHSMFromFlags(cmd)
			if err != nil {
				return err
			}
			defer tok.Close()
			if generate {
				if _, err := tok.GenerateEd25519(cfg.WitnessKeyLabel); err != nil {
					return err
				}
			}
			key, err := tok.Ed25519Signer(cfg.WitnessKeyLabel)
			if err != nil {
				return err
			}
			c, err := audit.NewCosigner(cfg.Origin, key, nil)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), c.Verifier().Key())
			return err
		},
	}
	af.add(c)
	c.Flags().BoolVar(&generate, "generate", false, "generate the Ed25519 key in the HSM first (fails if the label exists)")
	c.Flags().StringVar(&label, "label", "", "label of the witness key (default: audit.witness_key_label of --config)")
	return c
}

func newAuditCheckpointCmd() *cobra.Command {
	var af auditFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "checkpoint [--json]",
		Short: "Sign a checkpoint of the log now (in the HSM), after proving it extends the previous one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, key, closeHSM, err := af.signer(cmd, false)
			if err != nil {
				return err
			}
			defer closeHSM()
			db, err := ledgerFromFlags(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			l, err := audit.New(db, cfg, key)
			if err != nil {
				return err
			}
			cp, err := l.Checkpoint(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), map[string]any{"size": cp.Size, "root": cp.Root.String(), "checkpoint": string(cp.Note), "log_key": cp.VerifierKey})
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), string(cp.Note))
			return err
		},
	}
	af.add(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return c
}

func newAuditExportCmd() *cobra.Command {
	var o audit.ExportOptions
	var out string
	var asJSON bool
	c := &cobra.Command{
		Use:   "export [--from-size A] [--to-size B] -o FILE",
		Short: "Write events A..B-1 with the signed checkpoint at B and its proofs to a tar file for offline verification",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return tacerr.Field(tacerr.InvalidInput, "o", "give the output file with -o FILE (- for standard output)")
			}
			db, err := ledgerFromFlags(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			st, err := writeAtomically(out, cmd.OutOrStdout(), func(w io.Writer) (audit.ExportStats, error) {
				return audit.Export(cmd.Context(), db, w, o)
			})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.ErrOrStderr(), st)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "exported events %d..%d (%d events, %d bytes) to %s\n", st.FromSize, st.ToSize, st.Events, st.Bytes, out)
			return nil
		},
	}
	f := c.Flags()
	f.Int64Var(&o.FromSize, "from-size", 0, "first event (the size of the tree the auditor already trusts)")
	f.Int64Var(&o.ToSize, "to-size", 0, "size of a signed checkpoint to export up to (default: the newest)")
	f.StringVarP(&out, "output", "o", "", "output file, - for standard output")
	f.BoolVar(&asJSON, "json", false, "print the export's figures as JSON on standard error")
	return c
}

// writeAtomically writes through fn to path via a temporary file renamed
// into place on success, so a failed export leaves nothing behind; "-"
// writes to stdout.
func writeAtomically[T any](path string, stdout io.Writer, fn func(io.Writer) (T, error)) (T, error) {
	if path == "-" {
		return fn(stdout)
	}
	var v T
	err := atomicfile.WriteFunc(path, 0o600, func(w io.Writer) error {
		var err error
		v, err = fn(w)
		return err
	})
	var ce *atomicfile.CreateError
	if errors.As(err, &ce) {
		err = tacerr.Wrap(tacerr.InvalidInput, ce.Err, "create %s", path)
	}
	if err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// readLogKey takes a key string, or @FILE holding one.
func readLogKey(v string) (string, error) {
	if !strings.HasPrefix(v, "@") {
		return v, nil
	}
	b, err := os.ReadFile(v[1:])
	if err != nil {
		return "", tacerr.Wrap(tacerr.InvalidInput, err, "--log-key: read %s", v[1:])
	}
	return strings.TrimSpace(string(b)), nil
}

func newAuditVerifyCmd() *cobra.Command {
	var logKey, previous string
	var asJSON bool
	c := &cobra.Command{
		Use:   "verify FILE [--log-key KEY|@FILE] [--previous CHECKPOINT] [--json]",
		Short: "Verify an audit export offline (no database, no HSM); exit status 0 valid, 1 invalid",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var o audit.VerifyOptions
			var err error
			if o.LogKey, err = readLogKey(logKey); err != nil {
				return err
			}
			if previous != "" {
				if o.Previous, err = os.ReadFile(previous); err != nil {
					return tacerr.Wrap(tacerr.InvalidInput, err, "--previous: read %s", previous)
				}
			}
			f, err := os.Open(args[0])
			if err != nil {
				return tacerr.Wrap(tacerr.InvalidInput, err, "open the export")
			}
			defer f.Close()
			res := audit.Verify(f, o)
			return reportVerify(cmd.OutOrStdout(), asJSON, res.Valid, res, fmt.Sprintf("%d events, tree size %d, root %s", res.Events, res.TreeSize, res.Root), res.Reason)
		},
	}
	c.Flags().StringVar(&logKey, "log-key", "", "the log's verifier key as you know it (default: trust the key inside the export)")
	c.Flags().StringVar(&previous, "previous", "", "a signed checkpoint you trusted before: the export must extend it")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object: valid, events, tree_size, reason")
	return c
}

// reportVerify prints a verification result and sets the exit status.
func reportVerify(w io.Writer, asJSON, valid bool, res any, summary, reason string) error {
	var err error
	switch {
	case asJSON:
		err = printJSON(w, res)
	case valid:
		_, err = fmt.Fprintf(w, "valid: %s\n", summary)
	default:
		_, err = fmt.Fprintf(w, "INVALID: %s\n", reason)
	}
	if err != nil {
		return err
	}
	if !valid {
		return exitError{code: 1}
	}
	return nil
}

func newAuditProveCmd() *cobra.Command {
	var imeiText, out string
	var asJSON bool
	c := &cobra.Command{
		Use:   "prove --imei IMEI [--json] [-o FILE]",
		Short: "The audit events of one IMEI with inclusion proofs against the newest checkpoint (check with verify-proof)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if imeiText == "" {
				return tacerr.Field(tacerr.InvalidInput, "imei", "give the IMEI with --imei")
			}
			db, err := ledgerFromFlags(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			b, err := audit.Prove(cmd.Context(), db, imeiText)
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			if err := printJSON(&buf, b); err != nil {
				return err
			}
			if out != "" {
				if _, err := writeAtomically(out, cmd.OutOrStdout(), func(w io.Writer) (int64, error) { return buf.WriteTo(w) }); err != nil {
					return err
				}
			}
			if asJSON {
				_, err = cmd.OutOrStdout().Write(buf.Bytes())
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "IMEI %s: %d events proven against checkpoint of size %s, %d pending the next checkpoint\n", b.IMEI, len(b.Events), checkpointSize(b.Checkpoint), b.Pending)
			for _, e := range b.Events {
				fmt.Fprintf(w, "  #%d %s %s %s %s\n", e.Index, e.Event.Time.Format("2006-01-02T15:04:05.000000Z"), e.Event.Type, e.Event.Actor, e.Event.Reason)
			}
			return nil
		},
	}
	c.Flags().StringVar(&imeiText, "imei", "", "the IMEI (14 or 15 digits)")
	c.Flags().StringVarP(&out, "output", "o", "", "write the proof file here")
	c.Flags().BoolVar(&asJSON, "json", false, "print the proof file (JSON) on standard output")
	return c
}

func checkpointSize(note string) string {
	lines := strings.SplitN(note, "\n", 3)
	if len(lines) < 2 {
		return "?"
	}
	return lines[1]
}

func newAuditVerifyProofCmd() *cobra.Command {
	var logKey string
	var asJSON bool
	c := &cobra.Command{
		Use:   "verify-proof FILE [--log-key KEY|@FILE] [--json]",
		Short: "Verify a proof file from audit prove offline; exit status 0 valid, 1 invalid",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := readLogKey(logKey)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return tacerr.Wrap(tacerr.InvalidInput, err, "read the proof file")
			}
			res := audit.VerifyProof(data, key)
			return reportVerify(cmd.OutOrStdout(), asJSON, res.Valid, res, fmt.Sprintf("IMEI %s, %d events included in the tree of size %d", res.IMEI, res.Events, res.TreeSize), res.Reason)
		},
	}
	c.Flags().StringVar(&logKey, "log-key", "", "the log's verifier key as you know it (default: trust the key inside the file)")
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object: valid, imei, events, tree_size, reason")
	return c
}
