package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/tacerr"
)

func init() { register(newHSMCmd) }

func newHSMCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hsm",
		Short: "Make development tokens, generate and list keys in the HSM",
	}
	cmd.AddCommand(newHSMInitDevCmd(), newHSMKeygenCmd(), newHSMListCmd(), newHSMHealthCmd())
	return cmd
}

func newHSMInitDevCmd() *cobra.Command {
	var dir, label string
	cmd := &cobra.Command{
		Use:   "init-dev --dir DIR [--label LABEL]",
		Short: "Create a SoftHSM2 development token under DIR and print its configuration",
		Long: `Create a SoftHSM2 token for development under DIR, and nothing anywhere
else: DIR/softhsm2.conf, the token in DIR/tokens, a random user PIN in DIR/pin
and security officer PIN in DIR/so-pin (both mode 0600). Prints the hsm:
section of tacline's configuration to use it. Needs the softhsm2 package
(make tools installs it and says so).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return tacerr.Field(tacerr.InvalidInput, "--dir", "give the directory for the development token, e.g. --dir var/hsm")
			}
			cfg, err := hsm.InitDev(dir, label, "")
			if err != nil {
				return err
			}
			return writeHSMSnippet(cmd.OutOrStdout(), cfg)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for softhsm2.conf, the token and its PIN files")
	cmd.Flags().StringVar(&label, "label", hsm.DevTokenLabel, "token label")
	return cmd
}

func writeHSMSnippet(w io.Writer, cfg hsm.Config) error {
	_, err := fmt.Fprintf(w, "hsm:\n  module: %s\n  token_label: %s\n  pin: %s\n  softhsm2_conf: %s\n",
		strconv.Quote(cfg.Module), strconv.Quote(cfg.TokenLabel), strconv.Quote(cfg.PIN), strconv.Quote(cfg.SoftHSMConf))
	return err
}

func newHSMKeygenCmd() *cobra.Command {
	var label, typ string
	cmd := &cobra.Command{
		Use:   "keygen --label LABEL [--type p256|p384|rsa3072|ed25519]",
		Short: "Generate a non-extractable key pair in the HSM",
		Long: `Generate a key pair inside the configured token (hsm: section of --config).
The private key is sensitive and not extractable; a label already in use is
refused. Prints the label, key id (CKA_ID) and the public key (PEM).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			kt, err := hsm.ParseKeyType(typ)
			if err != nil {
				return err
			}
			tok, err := openHSMFromFlags(cmd)
			if err != nil {
				return err
			}
			defer tok.Close()
			info, err := tok.GenerateKey(label, kt)
			if err != nil {
				return err
			}
			pub, err := publicPEM(info)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "label: %s\nid: %s\ntype: %s\n%s", info.Label, info.ID, info.Type, pub)
			return err
		},
	}
	cmd.Flags().StringVar(&label, "label", "", "key label (unique on the token)")
	cmd.Flags().StringVar(&typ, "type", "p256", "key type: p256, p384, rsa3072 or ed25519 (a witness key)")
	return cmd
}

// hsmKeyJSON is one element of `tacline hsm list --json`.
type hsmKeyJSON struct {
	hsm.KeyInfo
	PublicKey string `json:"public_key"` // PEM
}

func newHSMListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json]",
		Short: "List the key pairs on the configured token",
		Long: `List the key pairs on the configured token: label, key id (CKA_ID), type
and whether the private key is safe (sensitive, never extractable). With
--json, one JSON array of objects with label, id, type, sensitive,
extractable and public_key (PEM).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tok, err := openHSMFromFlags(cmd)
			if err != nil {
				return err
			}
			defer tok.Close()
			keys, err := tok.Keys()
			if err != nil {
				return err
			}
			if asJSON {
				out := make([]hsmKeyJSON, 0, len(keys))
				for _, k := range keys {
					pub, err := publicPEM(k)
					if err != nil {
						return err
					}
					out = append(out, hsmKeyJSON{KeyInfo: k, PublicKey: pub})
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "LABEL\tID\tTYPE\tSAFE")
			for _, k := range keys {
				safe := "yes"
				if !k.Sensitive || k.Extractable {
					safe = "NO (extractable or not sensitive)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.Label, k.ID, k.Type, safe)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newHSMHealthCmd() *cobra.Command {
	var key string
	cmd := &cobra.Command{
		Use:   "health [--key LABEL]",
		Short: "Sign a probe with a key and print the result as JSON (exit status 1 if unhealthy)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadHSMConfig(cmd)
			if err != nil {
				return err
			}
			if key != "" {
				cfg.HealthKey = key
			}
			if cfg.HealthKey == "" {
				return tacerr.Field(tacerr.InvalidInput, "--key", "name the key to probe with --key LABEL (or set hsm.health_key)")
			}
			tok, err := hsm.Open(cfg)
			if err != nil {
				return err
			}
			defer tok.Close()
			h := tok.Health(cmd.Context())
			if err := json.NewEncoder(cmd.OutOrStdout()).Encode(h); err != nil {
				return err
			}
			if !h.OK {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "label of the key to sign the probe with")
	return cmd
}

func publicPEM(k hsm.KeyInfo) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(k.Public)
	if err != nil {
		return "", tacerr.Wrap(tacerr.Internal, err, "encode the public key of %q", k.Label)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

func openHSMFromFlags(cmd *cobra.Command) (*hsm.Token, error) {
	cfg, err := loadHSMConfig(cmd)
	if err != nil {
		return nil, err
	}
	return hsm.Open(cfg)
}

// loadHSMConfig reads the --config file (package config: strict, relative
// paths resolved against the file's directory) and checks its hsm: section.
func loadHSMConfig(cmd *cobra.Command) (hsm.Config, error) {
	f, err := loadConfig(cmd)
	if err != nil {
		return hsm.Config{}, err
	}
	if err := f.ValidateHSM(); err != nil {
		return hsm.Config{}, err
	}
	return f.HSM, nil
}
