package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/tacerr"
	"github.com/tacline/tacline/verify"
)

func init() { register(newVerifyCmd) }

func newVerifyCmd() *cobra.Command {
	var trustFile, chainFile, sigFile, imeiArg, nonce, tacsFile string
	var crlFiles []string
	var asJSON bool
	c := &cobra.Command{
		Use:   "verify --trust ROOTS.pem [--crl FILE]... [--tacs FILE] --imei IMEI --chain FILE --nonce HEX --signature FILE [--json]",
		Short: "Check a device offline: genuine, cloned, tampered, counterfeit, revoked or unknown",
		Long: `Checks a device's answer to a challenge without a database: the chain
(--chain, PEM, device certificate first) must verify to a self-signed
certificate of --trust (other certificates there serve as intermediates),
the certificate must not be revoked by the --crl CRLs (DER or PEM; without
--crl revocation is not checked), with --tacs (the manufacturers' TAC
catalogue, from ` + "`tacline tac export`" + `) the IMEI's TAC must be one of
theirs (otherwise the answer is unknown), the claimed --imei must be in the
certificate, and --signature (DER, from ` + "`tacline device respond`" + `) must
verify over the hex-decoded --nonce with the certificate's key.

Exit status: 0 only for genuine, 1 for any other verdict, 2 for bad input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := verify.OfflineRequest{IMEI: imeiArg, Nonce: nonce}
			// The chain and the signature come from the device: read no
			// more than one byte past what verify accepts (it refuses
			// that byte), so a huge file, or /dev/zero, costs nothing.
			for _, f := range []struct {
				flag, name string
				dst        *[]byte
				limit      int64 // 0: the operator's file, read whole
			}{{"--trust", trustFile, &req.Trust, 0}, {"--chain", chainFile, &req.Chain, verify.MaxChainBytes}, {"--signature", sigFile, &req.Signature, verify.MaxSignatureBytes}} {
				if f.name == "" {
					return flagErr(f.flag, "is required")
				}
				data, err := readFileUpTo(f.name, f.limit)
				if err != nil {
					return flagErr(f.flag, "%v", err)
				}
				*f.dst = data
			}
			for _, name := range crlFiles {
				data, err := os.ReadFile(name)
				if err != nil {
					return flagErr("--crl", "%v", err)
				}
				req.CRLs = append(req.CRLs, data)
			}
			if tacsFile != "" {
				data, err := os.ReadFile(tacsFile)
				if err != nil {
					return flagErr("--tacs", "%v", err)
				}
				req.TACs = data
			}
			res, err := verify.Offline(cmd.Context(), req)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				err = printJSON(out, struct {
					Verdict           verify.Verdict `json:"verdict"`
					Reasons           []string       `json:"reasons"`
					IMEI              string         `json:"imei"`
					CertificateSerial string         `json:"certificate_serial"`
				}{res.Verdict, res.Reasons, res.IMEI, res.CertificateSerial})
			} else {
				_, err = fmt.Fprintf(out, "%s: IMEI %s, certificate %s\n  %s\n", res.Verdict, res.IMEI, res.CertificateSerial, strings.Join(res.Reasons, "\n  "))
			}
			if err != nil {
				return err
			}
			if res.Verdict != verify.Genuine {
				return exitError{1}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&trustFile, "trust", "", "PEM file of trusted manufacturer roots (and intermediates)")
	f.StringArrayVar(&crlFiles, "crl", nil, "CRL file (DER or PEM); repeat for several issuers")
	f.StringVar(&tacsFile, "tacs", "", "TAC catalogue of the trusted manufacturers (`tacline tac export`); other TACs answer unknown")
	f.StringVar(&imeiArg, "imei", "", "the IMEI the device claims")
	f.StringVar(&chainFile, "chain", "", "PEM file of the device's chain, device certificate first")
	f.StringVar(&nonce, "nonce", "", "the challenge nonce, hex")
	f.StringVar(&sigFile, "signature", "", "file holding the device's DER signature over the nonce")
	f.BoolVar(&asJSON, "json", false, "print {verdict, reasons, imei, certificate_serial} as JSON")
	return c
}

// readFileUpTo reads the file name, or (limit > 0) at most its first
// limit+1 bytes.
func readFileUpTo(name string, limit int64) ([]byte, error) {
	if limit <= 0 {
		return os.ReadFile(name)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit+1))
}

// flagErr is bad command-line input (exit status 2) naming the flag.
func flagErr(flag, format string, args ...any) error {
	return tacerr.Field(tacerr.InvalidInput, flag, format, args...)
}
