package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/register/dirbs"
)

func init() { register(newExportCmd) }

func newExportCmd() *cobra.Command {
	c := &cobra.Command{Use: "export", Short: "Bulk files for national registers: DIRBS registration list (full or delta), DRS upload"}
	c.AddCommand(newExportListCmd(), newExportDRSCmd())
	return c
}

func printExport(cmd *cobra.Command, asJSON bool, e dirbs.Export) error {
	if asJSON {
		return printJSON(cmd.OutOrStdout(), e)
	}
	_, err := fmt.Fprintf(cmd.OutOrStdout(), "export %d (%s): %d rows written to %s (outbox high-water %d)\n", e.ID, e.Kind, e.Rows, e.File, e.HighWater)
	return err
}

func newExportListCmd() *cobra.Command {
	var db dbFlags
	var out string
	var since int64
	var asJSON bool
	c := &cobra.Command{
		Use:   "registration-list -o FILE.zip [--delta-since EXPORT_ID]",
		Short: "Write the DIRBS registration list of bound IMEIs (or the changes since an earlier export)",
		Long: `Write a zip holding one CSV named like the zip, header
approved_imei,make,model,status,model_number,brand_name,device_type,radio_interface,device_id,
one row per bound IMEI (14-digit approved_imei, status whitelist). With
--delta-since, only the changes since that export, with a change_type column
(add, remove, update). The export's id is printed: pass it to the next
--delta-since. The file is written atomically.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errorf("-o is required: the .zip to write")
			}
			ledger, err := db.open(cmd)
			if err != nil {
				return err
			}
			defer ledger.Close()
			e, err := dirbs.ExportRegistrationList(cmd.Context(), ledger, out, since)
			if err != nil {
				return err
			}
			return printExport(cmd, asJSON, e)
		},
	}
	db.add(c)
	c.Flags().StringVarP(&out, "output", "o", "", "the .zip file to write")
	c.Flags().Int64Var(&since, "delta-since", 0, "write the changes since this export id")
	c.Flags().BoolVar(&asJSON, "json", false, "print the export record as JSON")
	return c
}

func newExportDRSCmd() *cobra.Command {
	var db dbFlags
	var out string
	var models []string
	var asJSON bool
	c := &cobra.Command{
		Use:   "drs -o FILE.tsv [--model NAME]...",
		Short: "Write the DIRBS device-registration bulk upload: TSV, no header, one device per row, one column per IMEI",
		Long: `Write the DIRBS device-registration (DRS) bulk upload of bound devices: TSV
without header, one device per row, its IMEIs (15 digits) one per column. A
DRS upload declares its IMEIs per device and every row must have that many
columns, so devices are split by their number of IMEIs into one file each:
-o drs.tsv writes drs-1imei.tsv, drs-2imei.tsv, ... for the numbers present
(none when no device is bound). Each file is written atomically and recorded
as its own export; one line (or, with --json, one JSON object) per file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errorf("-o is required: the .tsv to write")
			}
			ledger, err := db.open(cmd)
			if err != nil {
				return err
			}
			defer ledger.Close()
			es, err := dirbs.ExportDRS(cmd.Context(), ledger, out, models)
			if err != nil {
				return err
			}
			if len(es) == 0 && !asJSON {
				_, err := fmt.Fprintln(cmd.OutOrStdout(), "no bound device: nothing written")
				return err
			}
			for _, e := range es {
				if err := printExport(cmd, asJSON, e); err != nil {
					return err
				}
			}
			return nil
		},
	}
	db.add(c)
	c.Flags().StringVarP(&out, "output", "o", "", "the .tsv name: one file per IMEI count is written next to it (NAME-<n>imei.tsv)")
	c.Flags().StringSliceVar(&models, "model", nil, "only devices of this TAC model name (repeatable)")
	c.Flags().BoolVar(&asJSON, "json", false, "print each export record as JSON")
	return c
}
