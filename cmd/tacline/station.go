package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tacline/tacline/ca/castore"
	"github.com/tacline/tacline/config"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/provisioner"
	"github.com/tacline/tacline/store"
)

func init() {
	stationCommands = append(stationCommands, newStationEnrollCmd, newStationDisableCmd, newStationListCmd)
}

func newStationEnrollCmd() *cobra.Command {
	var spec castore.StationSpec
	var pools, roles, creds, stepcaProv string
	var viaStepCA bool
	enroll := &cobra.Command{
		Use:   "enroll",
		Short: "Issue a station (or role) client certificate from the station CA in the HSM and record the station",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pools != "" {
				spec.Pools = strings.Split(pools, ",")
			}
			if roles != "" {
				spec.Roles = strings.Split(roles, ",")
				for _, r := range spec.Roles {
					if role := provisioner.Role(r); !role.Valid() || role == provisioner.RoleStation {
						return flagErr("--roles", "%q is not a role: use operator, auditor, regulator or admin (a station is enrolled with --id)", r)
					}
				}
			}
			switch {
			case spec.Person != "" && spec.ID != "":
				return flagErr("--person", "names the person a role certificate is for; a station (--id) is not a person")
			case spec.Person == "" && spec.ID == "" && len(spec.Roles) > 0:
				return flagErr("--person", "is required with --roles: a role certificate is for one person (e.g. --person j.doe), so the audit log tells who acted")
			}
			if viaStepCA {
				return enrollStepCA(cmd, spec, creds, stepcaProv)
			}
			return withLedgerAndHSM(cmd, func(ctx context.Context, cfg *config.File, db *store.DB, tok *hsm.Token) error {
				if creds == "" {
					creds = cfg.Path("stations")
				}
				cert, err := castore.EnrollStation(ctx, db, tok, spec, creds, operator())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "enrolled %s (certificate serial %s, pools %s); credentials in %s\n",
					cert.Subject.CommonName, cert.SerialNumber.Text(16), strings.Join(spec.Pools, ","), creds)
				return nil
			})
		},
	}
	f := enroll.Flags()
	f.StringVar(&spec.ID, "id", "", "station id, e.g. F1-L3-S07")
	f.StringVar(&spec.Factory, "factory", "", "factory")
	f.StringVar(&spec.Line, "line", "", "production line")
	f.StringVar(&pools, "pools", "", "pools the station may draw from, comma separated")
	f.StringVar(&spec.Product, "product", "", "product the station provisions (written to its credentials for the simulator)")
	f.StringVar(&roles, "roles", "", "roles instead of a station: operator, auditor, regulator, admin (with --person)")
	f.StringVar(&spec.Person, "person", "", "with --roles: the person the certificate is for; the audit log names them as \"person <name>\"")
	f.StringVar(&creds, "creds", "", "credentials directory (default: stations/ next to the config)")
	f.BoolVar(&viaStepCA, "stepca", false, "the station's identity comes from a manufacturer's step-ca: record it and print the step-ca set-up (docs/stepca.md)")
	f.StringVar(&stepcaProv, "stepca-provisioner", "tacline-stations", "with --stepca: the step-ca provisioner for stations")
	return enroll
}

func newStationDisableCmd() *cobra.Command {
	var id, person, serial string
	disable := &cobra.Command{
		Use:   "disable",
		Short: "Disable a station, a person's role certificates, or one role certificate by serial: the next request is refused",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n := len(slices.DeleteFunc([]string{id, person, serial}, func(s string) bool { return s == "" })); n != 1 {
				return flagErr("--id", "name a station (--id), a person (--person) or a role certificate (--serial), one of them")
			}
			db, err := ledgerFromFlags(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			switch {
			case person != "":
				serials, err := db.DisablePerson(cmd.Context(), person, operator())
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "person %s disabled (certificate serials %s)\nnot reached: %s\n", person, strings.Join(serials, ", "), store.UnrecordedRoleCerts)
				return nil
			case serial != "":
				pc, err := db.DisableRoleCertificate(cmd.Context(), serial, operator())
				if err != nil {
					return err
				}
				who := "recorded by its serial alone"
				if pc.Person != "" {
					who = "of person " + pc.Person
				}
				fmt.Fprintf(cmd.OutOrStdout(), "role certificate %s disabled (%s)\n", pc.CertSerial, who)
				return nil
			}
			if err := db.DisableStation(cmd.Context(), id, operator()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "station %s disabled\n", id)
			return nil
		},
	}
	disable.Flags().StringVar(&id, "id", "", "station id")
	disable.Flags().StringVar(&person, "person", "", "a person: disables every role certificate enrolled for them")
	disable.Flags().StringVar(&serial, "serial", "", "a role certificate's serial (hex, colons allowed): disables it, also one enrolled before the ledger recorded role certificates (migration 0023)")
	return disable
}

func newStationListCmd() *cobra.Command {
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List stations, then the people with role certificates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := ledgerFromFlags(cmd)
			if err != nil {
				return err
			}
			defer db.Close()
			sts, err := db.Stations(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			if !asJSON {
				fmt.Fprintln(w, "STATION\tFACTORY\tLINE\tPOOLS\tCERT SERIAL\tENABLED")
			}
			for _, s := range sts {
				if asJSON {
					printJSON(cmd.OutOrStdout(), map[string]any{"id": s.ID, "factory": s.Factory, "line": s.Line, "pools": s.Pools,
						"cert_serial": s.CertSerial, "enabled": s.DisabledAt.IsZero(), "enrolled_at": s.EnrolledAt})
					continue
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%v\n", s.ID, s.Factory, s.Line, strings.Join(s.Pools, ","), s.CertSerial, s.DisabledAt.IsZero())
			}
			people, err := db.People(cmd.Context())
			if err != nil {
				return err
			}
			if !asJSON && len(people) > 0 {
				fmt.Fprintln(w, "\nPERSON\tROLES\tCERT SERIAL\tENABLED")
			}
			for _, p := range people {
				if asJSON {
					printJSON(cmd.OutOrStdout(), map[string]any{"person": p.Person, "roles": p.Roles, "cert_serial": p.CertSerial,
						"enabled": p.DisabledAt.IsZero(), "enrolled_at": p.EnrolledAt})
					continue
				}
				name := p.Person
				if name == "" {
					name = "-" // enrolled before migration 0023, disabled by its serial
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%v\n", name, strings.Join(p.Roles, ","), p.CertSerial, p.DisabledAt.IsZero())
			}
			return w.Flush()
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	return list
}
