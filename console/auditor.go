package console

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/tacerr"
)

// auditExport is one export made from the console and its verification.
type auditExport struct {
	ID     int
	By     string
	At     time.Time
	Took   time.Duration
	Stats  audit.ExportStats
	Result audit.Result
	path   string
}

func (e *auditExport) id() int { return e.ID }

type auditorData struct {
	Size        int64
	Checkpoints []audit.CheckpointInfo
	LogKey      string
	Exports     []*auditExport
	Err         *errorNote
}

func (c *Console) auditor(w http.ResponseWriter, r *http.Request, p *page) {
	p.Title = "Audit log"
	d := &auditorData{LogKey: c.cfg.LogKey}
	var err error
	if d.Size, _, err = audit.Head(r.Context(), c.cfg.DB); err == nil {
		d.Checkpoints, err = audit.RecentCheckpoints(r.Context(), c.cfg.DB, 20)
	}
	if err != nil {
		n := c.note(r, p, err)
		d.Err = &n
	}
	id, _ := strconv.Atoi(r.URL.Query().Get("export"))
	c.mu.Lock()
	d.Exports = append([]*auditExport(nil), c.exports...)
	e := byID(c.exports, id)
	c.mu.Unlock()
	// The notice names an export this console keeps and its verdict, never
	// the link's text: a link cannot make the page claim a verification.
	if e != nil {
		verdict := "valid"
		if !e.Result.Valid {
			verdict = "INVALID: " + e.Result.Reason
		}
		p.Flash = "Export " + strconv.Itoa(e.ID) + " written and verified: " + verdict + "."
	}
	p.Data = d
	c.render(w, r, http.StatusOK, "audit", p)
}

// auditExport exports the whole log up to the newest signed checkpoint and
// verifies the file offline, against the log key this server trusts, as an
// auditor would with `tacline audit verify`.
func (c *Console) auditExport(w http.ResponseWriter, r *http.Request, p *page) {
	c.mu.Lock()
	c.expSeq++
	e := &auditExport{ID: c.expSeq, By: p.Actor.ID, At: c.cfg.Now().UTC()}
	c.mu.Unlock()
	dir := filepath.Join(c.cfg.WorkDir, "audit")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		c.fail(w, r, p, tacerr.Wrap(tacerr.Internal, err, "make the export directory"))
		return
	}
	e.path = filepath.Join(dir, "audit-export-"+strconv.Itoa(e.ID)+".tar")
	c.lengthen(w, "an audit export")
	start := time.Now()
	f, err := os.OpenFile(e.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err == nil {
		e.Stats, err = audit.Export(r.Context(), c.cfg.DB, f, audit.ExportOptions{})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		f, err = os.Open(e.path)
		if err == nil {
			e.Result = audit.Verify(f, audit.VerifyOptions{LogKey: c.cfg.LogKey})
			f.Close()
		}
	}
	e.Took = time.Since(start).Round(time.Millisecond)
	if err != nil {
		os.Remove(e.path)
		c.fail(w, r, p, err)
		return
	}
	c.cfg.Log.Info("console: audit export", "actor", p.Actor.ID, "export", e.ID, "events", e.Stats.Events, "valid", e.Result.Valid)
	keepNewest(&c.mu, &c.exports, e, keepExports, func(e *auditExport) string { return e.path })
	http.Redirect(w, r, "/console/audit?export="+strconv.Itoa(e.ID), http.StatusSeeOther)
}

func (c *Console) auditExportFile(w http.ResponseWriter, r *http.Request, p *page) {
	id, _ := strconv.Atoi(r.PathValue("id"))
	c.mu.Lock()
	e := byID(c.exports, id)
	c.mu.Unlock()
	if e == nil {
		c.problem(w, r, p, http.StatusNotFound, "No such export", "Export "+r.PathValue("id")+" is not kept (the newest 5 are, until a restart).")
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Disposition", `attachment; filename="`+filepath.Base(e.path)+`"`)
	c.lengthen(w, "an export's download")
	http.ServeFile(w, r, e.path)
}
