package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/stepca"
)

func init() { register(newStepCACmd) }

func newStepCACmd() *cobra.Command {
	cmd := &cobra.Command{Use: "stepca", Short: "Work with a manufacturer's step-ca (docs/stepca.md)"}
	cmd.AddCommand(newStepCAProvisionerCmd())
	return cmd
}

func newStepCAProvisionerCmd() *cobra.Command {
	var name, label string
	cmd := &cobra.Command{
		Use:   "provisioner [--name NAME] [--key-label LABEL]",
		Short: "Print the step-ca JWK provisioner that signs device certificates for tacline",
		Long: `Print the provisioner to add to step-ca's ca.json (authority.provisioners)
for issuer kind stepca: a JWK provisioner whose key is the public half of
tacline's RA key (--key-label, default stepca.key_label of --config; make it
with ` + "`tacline hsm keygen --label tacline-ra --type p256`" + `), with the
device template and the claims tacline needs. Also set authority.backdate to
"0s" in ca.json (see docs/stepca.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if label == "" {
				label = cfg.StepCA.KeyLabel
			}
			if label == "" {
				return fmt.Errorf("no RA key label: pass --key-label or set stepca.key_label")
			}
			if name == "" {
				name = cfg.StepCA.Provisioner
			}
			if name == "" {
				name = "tacline-devices"
			}
			tok, err := openHSMFromFlags(cmd)
			if err != nil {
				return err
			}
			defer tok.Close()
			key, err := tok.Signer(label)
			if err != nil {
				return err
			}
			p, err := stepca.DeviceProvisioner(name, key.Public(), "")
			if err != nil {
				return err
			}
			out, err := p.JSON()
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", out)
			return err
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "provisioner name (default stepca.provisioner, else tacline-devices)")
	cmd.Flags().StringVar(&label, "key-label", "", "label of the RA key in the HSM (default stepca.key_label)")
	return cmd
}
