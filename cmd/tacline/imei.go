package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/tacerr"
)

func init() { register(newIMEICmd) }

func newIMEICmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "imei",
		Short: "Check and convert IMEIs",
	}
	cmd.AddCommand(newIMEICheckCmd())
	return cmd
}

func newIMEICheckCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check [--json] VALUE...",
		Short: "Check IMEIs and show their parts (exit status 1 if any is invalid)",
		Long: `Check each VALUE as an IMEI: 14 digits (TAC and serial number; the check
digit is computed), 15 digits (the check digit must be right) or 16 digits
(IMEISV), with single spaces or hyphens allowed between digits, or the RFC 7254
URN that device certificates carry (urn:gsma:imei:TTTTTTTT-SSSSSS-D, the
last digit 0 or the check digit). A VALUE of
"-" reads further values from standard input, one per line (a trailing
carriage return is dropped; blank lines are skipped).

One result per value, one line each. With --json, one JSON object per line
with the fields input, valid, imei, imei14, tac, snr, check_digit, urn and
error (empty when valid). Exit status 0 when every value is valid, 1
otherwise.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return tacerr.New(tacerr.InvalidInput, "give at least one IMEI to check, e.g. tacline imei check 490154203237518")
			}
			return runIMEICheck(cmd.InOrStdin(), cmd.OutOrStdout(), args, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per value")
	return cmd
}

// imeiCheckResult is one line of `tacline imei check --json`.
type imeiCheckResult struct {
	Input      string `json:"input"`
	Valid      bool   `json:"valid"`
	IMEI       string `json:"imei"`
	IMEI14     string `json:"imei14"`
	TAC        string `json:"tac"`
	SNR        string `json:"snr"`
	CheckDigit string `json:"check_digit"`
	URN        string `json:"urn"`
	Error      string `json:"error"`
}

func runIMEICheck(stdin io.Reader, w io.Writer, args []string, asJSON bool) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	invalid := 0
	check := func(v string) error {
		r := imeiCheckResult{Input: v}
		m, err := imei.ParseAny(v)
		if err != nil {
			invalid++
			r.Error = err.Error()
		} else {
			r.Valid = true
			r.IMEI, r.IMEI14, r.URN = m.String(), m.Digits14(), m.URN()
			r.TAC, r.SNR = m.TACString(), m.SNRString()
			r.CheckDigit = strconv.Itoa(int(m.CheckDigit()))
		}
		var err2 error
		switch {
		case asJSON:
			err2 = enc.Encode(r)
		case r.Valid:
			_, err2 = fmt.Fprintf(bw, "%s: valid IMEI %s (TAC %s, SNR %s, check digit %s, %s)\n", strconv.Quote(v), r.IMEI, r.TAC, r.SNR, r.CheckDigit, r.URN)
		default:
			_, err2 = fmt.Fprintf(bw, "%s: invalid: %s\n", strconv.Quote(v), r.Error)
		}
		return err2
	}
	for _, v := range args {
		if v != "-" {
			if err := check(v); err != nil {
				return fmt.Errorf("write result: %w", err)
			}
			continue
		}
		sc := bufio.NewScanner(stdin)
		n := 0
		for sc.Scan() {
			n++
			line := strings.TrimSuffix(sc.Text(), "\r")
			if line == "" {
				continue
			}
			if err := check(line); err != nil {
				return fmt.Errorf("write result: %w", err)
			}
		}
		if err := sc.Err(); err != nil {
			// The results so far are written before the run stops.
			if ferr := bw.Flush(); ferr != nil {
				return fmt.Errorf("write result: %w", ferr)
			}
			if errors.Is(err, bufio.ErrTooLong) {
				return tacerr.Field(tacerr.InvalidInput, "stdin", "line %d of standard input is longer than %d bytes, no IMEI: give one value per line (the values before it were checked)", n+1, bufio.MaxScanTokenSize)
			}
			return tacerr.Wrap(tacerr.InvalidInput, err, "read values from standard input after line %d", n)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	if invalid > 0 {
		return exitError{code: 1}
	}
	return nil
}
