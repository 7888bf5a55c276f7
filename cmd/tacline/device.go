package main

import (
	"encoding/hex"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/factory"
)

func init() { register(newDeviceCmd) }

// deviceCommands lets other files add `tacline device X` subcommands.
var deviceCommands []func() *cobra.Command

func newDeviceCmd() *cobra.Command {
	c := &cobra.Command{Use: "device", Short: "Act as a device: answer authenticity challenges"}
	c.AddCommand(newDeviceRespondCmd())
	for _, f := range deviceCommands {
		c.AddCommand(f())
	}
	return c
}

func newDeviceRespondCmd() *cobra.Command {
	var keyFile, nonceHex, out string
	c := &cobra.Command{
		Use:   "respond --key FILE --nonce HEX -o SIG",
		Short: "Sign a challenge nonce with a device key, as the device would",
		Long: `Signs the hex-decoded nonce bytes with the device's PKCS#8 PEM key
(ECDSA with SHA-256, or SHA-384 for a P-384 key) and writes the ASN.1 DER
signature to SIG ("-" for standard output): the --signature input of
tacline verify.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyFile == "" || nonceHex == "" || out == "" {
				return errorf("--key, --nonce and -o are required")
			}
			nonce, err := hex.DecodeString(strings.TrimSpace(nonceHex))
			if err != nil {
				return errorf("--nonce: not hexadecimal (%v); give the challenge nonce as hex digits", err)
			}
			data, err := os.ReadFile(keyFile)
			if err != nil {
				return errorf("--key: %v", err)
			}
			key, err := factory.ParseDeviceKey(data)
			if err != nil {
				return errorf("--key %s: %w", keyFile, err)
			}
			sig, err := factory.SignChallenge(key, nonce)
			if err != nil {
				return err
			}
			if out == "-" {
				_, err = cmd.OutOrStdout().Write(sig)
				return err
			}
			return os.WriteFile(out, sig, 0o644)
		},
	}
	f := c.Flags()
	f.StringVar(&keyFile, "key", "", "the device's private key (PKCS#8 PEM)")
	f.StringVar(&nonceHex, "nonce", "", "the challenge nonce, hex")
	f.StringVarP(&out, "output", "o", "", "where to write the DER signature (- for standard output)")
	return c
}
