package store

import (
	"context"
	"strings"
	"time"

	"github.com/tacline/tacline/catalog"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/tacerr"
)

const dateLayout = "2006-01-02"

const (
	sqlInsertTAC = `INSERT INTO tacs (tac, brand, model_name, model_number, marketing_name, device_type, radio_interfaces,
		imeis_per_device, allocation_date, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)`
	sqlInsertApproval = `INSERT INTO tac_approvals (tac, market, reference, valid_from, valid_until) VALUES (?,?,?,?,?)`
	sqlSelectTACs     = `SELECT tac, brand, model_name, model_number, marketing_name, device_type, radio_interfaces,
		imeis_per_device, allocation_date FROM tacs`
	sqlSelectApprovals = `SELECT tac, market, reference, valid_from, valid_until FROM tac_approvals`
)

// AddTACs adds catalogue records in one transaction: all or none. A TAC
// that is already in the catalogue is a conflict naming it.
func (db *DB) AddTACs(ctx context.Context, tacs []catalog.TAC, actor string) error {
	for i, t := range tacs {
		if err := t.Validate(); err != nil {
			return tacerr.Wrap(tacerr.InvalidInput, err, "record %d (TAC %s)", i+1, t.TACString())
		}
	}
	return db.InTx(ctx, func(tx *Tx) error {
		now := tx.Now()
		for _, t := range tacs {
			if _, err := tx.exec(tx.rebind(sqlInsertTAC), int64(t.TAC), t.Brand, t.ModelName, t.ModelNumber, t.MarketingName,
				t.DeviceType, strings.Join(t.RadioInterfaces, ","), t.IMEIsPerDevice, t.AllocationDate.Format(dateLayout),
				now.UnixMicro()); err != nil {
				if isDuplicate(err) {
					return tacerr.Field(tacerr.Conflict, "tac", "TAC %s is already in the catalogue; nothing was imported", t.TACString())
				}
				return translate(err, "add TAC "+t.TACString())
			}
			for _, a := range t.Approvals {
				until := ""
				if !a.ValidUntil.IsZero() {
					until = a.ValidUntil.Format(dateLayout)
				}
				if _, err := tx.exec(tx.rebind(sqlInsertApproval), int64(t.TAC), a.Market, a.Reference,
					a.ValidFrom.Format(dateLayout), until); err != nil {
					return translate(err, "add approval of TAC "+t.TACString())
				}
			}
			tx.Emit(Event{Type: EventTACAdded, Actor: actor, TAC: t.TACString(),
				Attrs: map[string]string{"brand": t.Brand, "model": t.ModelName, "imeis_per_device": itoa(t.IMEIsPerDevice)}})
		}
		return nil
	})
}

type tacRow struct {
	TAC             int64  `db:"tac"`
	Brand           string `db:"brand"`
	ModelName       string `db:"model_name"`
	ModelNumber     string `db:"model_number"`
	MarketingName   string `db:"marketing_name"`
	DeviceType      string `db:"device_type"`
	RadioInterfaces string `db:"radio_interfaces"`
	IMEIsPerDevice  int    `db:"imeis_per_device"`
	AllocationDate  string `db:"allocation_date"`
}

type approvalRow struct {
	TAC        int64  `db:"tac"`
	Market     string `db:"market"`
	Reference  string `db:"reference"`
	ValidFrom  string `db:"valid_from"`
	ValidUntil string `db:"valid_until"`
}

// TACs returns the catalogue, ordered by TAC.
func (db *DB) TACs(ctx context.Context) ([]catalog.TAC, error) {
	return loadTACs(ctx, db.r, "", nil)
}

// TAC returns one catalogue record or tac_unknown.
func (db *DB) TAC(ctx context.Context, tac uint32) (catalog.TAC, error) {
	ts, err := loadTACs(ctx, db.r, " WHERE tac = ?", []any{int64(tac)})
	if err != nil {
		return catalog.TAC{}, err
	}
	if len(ts) == 0 {
		return catalog.TAC{}, tacerr.Field(tacerr.TACUnknown, "tac", "TAC %s is not in the catalogue; add it with `tacline tac add` or `tacline tac import`", imei.FormatTAC(tac))
	}
	return ts[0], nil
}

type selectCtx interface {
	SelectContext(ctx context.Context, dest any, query string, args ...any) error
	Rebind(string) string
}

func loadTACs(ctx context.Context, q selectCtx, where string, args []any) ([]catalog.TAC, error) {
	var rows []tacRow
	if err := q.SelectContext(ctx, &rows, q.Rebind(sqlSelectTACs+where+" ORDER BY tac"), args...); err != nil {
		return nil, translate(err, "read TAC catalogue")
	}
	var apps []approvalRow
	if err := q.SelectContext(ctx, &apps, q.Rebind(sqlSelectApprovals+where+" ORDER BY tac, market, valid_from"), args...); err != nil {
		return nil, translate(err, "read TAC approvals")
	}
	byTAC := map[int64][]catalog.Approval{}
	for _, a := range apps {
		from, _ := time.Parse(dateLayout, a.ValidFrom)
		var until time.Time
		if a.ValidUntil != "" {
			until, _ = time.Parse(dateLayout, a.ValidUntil)
		}
		byTAC[a.TAC] = append(byTAC[a.TAC], catalog.Approval{Market: a.Market, Reference: a.Reference, ValidFrom: from, ValidUntil: until})
	}
	out := make([]catalog.TAC, 0, len(rows))
	for _, r := range rows {
		alloc, _ := time.Parse(dateLayout, r.AllocationDate)
		var radios []string
		if r.RadioInterfaces != "" {
			radios = strings.Split(r.RadioInterfaces, ",")
		}
		out = append(out, catalog.TAC{TAC: uint32(r.TAC), Brand: r.Brand, ModelName: r.ModelName, ModelNumber: r.ModelNumber,
			MarketingName: r.MarketingName, DeviceType: r.DeviceType, RadioInterfaces: radios, IMEIsPerDevice: r.IMEIsPerDevice,
			AllocationDate: alloc, Approvals: byTAC[r.TAC]})
	}
	return out, nil
}
