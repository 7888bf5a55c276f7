package console

import (
	"crypto/hmac"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/tacline/tacline/register/reconcile"
	"github.com/tacline/tacline/tacerr"
)

// keepRuns is how many reconciliation runs (and keepExports audit
// exports) the console keeps, newest first; older ones and their files are
// deleted.
const (
	keepRuns    = 20
	keepExports = 5
	// maxUpload bounds an uploaded register file (a national list of a
	// few hundred million lines is larger: use `tacline reconcile`).
	maxUpload = 2 << 30
	// uploadTimeout is how long an upload whose token was accepted may
	// take to arrive, be reconciled and be answered, in place of the
	// server's read and write timeouts (server.read_timeout, 10 s by
	// default, would cut a file off at a few hundred MB on a fast LAN);
	// an audit export and a download of an export or a run's file get it
	// too (server.write_timeout, 30 s by default, cut a large one off).
	uploadTimeout = time.Hour
)

// lengthen gives a request that an authorised staff member made, and that
// moves a large file (an upload, an export, a download), uploadTimeout in
// place of the server's read and write timeouts, which still bounded
// everything before it.
func (c *Console) lengthen(w http.ResponseWriter, what string) {
	rc, deadline := http.NewResponseController(w), time.Now().Add(uploadTimeout)
	if err := errors.Join(rc.SetReadDeadline(deadline), rc.SetWriteDeadline(deadline)); err != nil {
		c.cfg.Log.Warn("console: "+what+" keeps the server's read and write timeouts", "err", err)
	}
}

// reconRun is one reconciliation made from the console.
type reconRun struct {
	ID      int
	File    string
	Format  string
	By      string
	At      time.Time
	Took    time.Duration
	Summary reconcile.Summary
	Err     *errorNote // why the run failed (nil: it did not)
	dir     string
}

// category is one result file of a run.
type category struct {
	Name, File string
	Count      int64
}

// Categories lists the run's category files with their counts.
func (r *reconRun) Categories() []category {
	s := r.Summary
	return []category{
		{"Missing in the register (bound here)", reconcile.FileMissing, s.MissingInRegister},
		{"Unknown to the manufacturer (under our TACs)", reconcile.FileUnknown, s.UnknownToManufacturer},
		{"Status mismatch (voided, revoked or reserved here)", reconcile.FileMismatch, s.StatusMismatch},
		{"Duplicates in the register", reconcile.FileDuplicates, s.DuplicatesInRegister},
		{"Registered to another device (bound here to ours)", reconcile.FileOtherDevice, s.RegisteredToOtherDevice},
		{"Malformed lines", reconcile.FileMalformed, s.Malformed},
	}
}

type regulatorData struct {
	Runs     []*reconRun
	Selected int
}

func (c *Console) regulator(w http.ResponseWriter, r *http.Request, p *page) {
	p.Title = "Reconciliation"
	sel, _ := strconv.Atoi(r.URL.Query().Get("run"))
	c.mu.Lock()
	d := &regulatorData{Runs: append([]*reconRun(nil), c.runs...), Selected: sel}
	run := byID(c.runs, sel)
	c.mu.Unlock()
	if run != nil { // a kept run, not any number a link names
		p.Flash = "Reconciliation run " + strconv.Itoa(run.ID) + " finished."
		if run.Err != nil {
			p.Flash = "Reconciliation run " + strconv.Itoa(run.ID) + " failed (below)."
		}
	}
	p.Data = d
	c.render(w, r, http.StatusOK, "regulator", p)
}

// reconcileUpload streams the uploaded register file to disk (the CSRF
// token is the form's first field, checked before the file is read),
// reconciles it against the ledger and lists the run.
func (c *Console) reconcileUpload(w http.ResponseWriter, r *http.Request, p *page) {
	r.Body = http.MaxBytesReader(w, r.Body, maxUpload)
	mr, err := r.MultipartReader()
	if err != nil {
		c.fail(w, r, p, tacerr.Wrap(tacerr.InvalidInput, err, "the upload is not a multipart form"))
		return
	}
	part, err := mr.NextPart()
	if err != nil || part.FormName() != "csrf" {
		c.problem(w, r, p, http.StatusForbidden, "The form could not be accepted", "The form's security token is missing. Nothing was changed. Reload the page and upload again.")
		return
	}
	tok, _ := io.ReadAll(io.LimitReader(part, 256))
	if !hmac.Equal(tok, []byte(c.csrfToken(r, p.Actor))) {
		c.problem(w, r, p, http.StatusForbidden, "The form could not be accepted", "The form's security token is not valid for your certificate (or the server restarted). Nothing was changed. Reload the page and upload again.")
		return
	}
	// A regulator's form, token checked: the file may take longer than
	// the server's timeouts, which still bound everything before here.
	c.lengthen(w, "the upload")
	c.mu.Lock()
	c.runSeq++
	run := &reconRun{ID: c.runSeq, By: p.Actor.ID, At: c.cfg.Now().UTC()}
	c.mu.Unlock()
	run.dir = filepath.Join(c.cfg.WorkDir, "reconcile", strconv.Itoa(run.ID))
	out := filepath.Join(run.dir, "out")
	// The console's own directories: failing to make them is the server's
	// fault (internal), not the regulator's file's.
	if err := os.MkdirAll(out, 0o700); err != nil {
		c.fail(w, r, p, tacerr.Wrap(tacerr.Internal, err, "make the run directory"))
		return
	}
	var path string
	for path == "" {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			c.abandon(run)
			c.fail(w, r, p, tacerr.Wrap(tacerr.InvalidInput, err, "read the upload"))
			return
		}
		switch part.FormName() {
		case "format":
			b, _ := io.ReadAll(io.LimitReader(part, 16))
			run.Format = string(b)
		case "file":
			run.File = filepath.Base(part.FileName())
			path = filepath.Join(run.dir, "register"+filepath.Ext(run.File))
			if err := saveUpload(part, path); err != nil {
				c.abandon(run)
				c.fail(w, r, p, err)
				return
			}
		}
	}
	format, err := reconcile.ParseFormat(run.Format)
	if err == nil && path == "" {
		err = tacerr.Field(tacerr.InvalidInput, "file", "choose a register file to upload")
	}
	if err != nil {
		c.abandon(run)
		c.fail(w, r, p, err)
		return
	}
	// Errors name the file as uploaded, not where it is stored.
	in, err := reconcile.OpenNamed(path, run.File)
	if err == nil {
		start := time.Now()
		run.Summary, err = reconcile.Run(r.Context(), reconcile.DBLedger{DB: c.cfg.DB}, in, reconcile.Options{Format: format, OutDir: out})
		run.Took = time.Since(start).Round(time.Millisecond)
		in.Close()
		os.Remove(path)
	}
	reqID := ""
	if err != nil {
		n := c.note(r, p, err)
		run.Err, reqID = &n, n.RequestID
	}
	c.cfg.Log.Info("console: reconciliation", "actor", p.Actor.ID, "run", run.ID, "file", run.File, "failed", run.Err != nil, "request_id", reqID)
	keepNewest(&c.mu, &c.runs, run, keepRuns, func(r *reconRun) string { return r.dir })
	http.Redirect(w, r, "/console/regulator?run="+strconv.Itoa(run.ID), http.StatusSeeOther)
}

func (r *reconRun) id() int { return r.ID }

// byID returns the item of list with id, or nil (call it under c.mu).
func byID[T interface{ id() int }](list []T, id int) T {
	var zero T
	for _, x := range list {
		if x.id() == id {
			return x
		}
	}
	return zero
}

// keepNewest puts item first in *list (under mu) and cuts the list to
// keep items, deleting the files (path) of those cut.
func keepNewest[T any](mu *sync.Mutex, list *[]T, item T, keep int, path func(T) string) {
	mu.Lock()
	*list = append([]T{item}, *list...)
	var drop []T
	if len(*list) > keep {
		drop = append(drop, (*list)[keep:]...)
		*list = (*list)[:keep]
	}
	mu.Unlock()
	for _, x := range drop {
		os.RemoveAll(path(x))
	}
}

func (c *Console) abandon(run *reconRun) { os.RemoveAll(run.dir) }

func saveUpload(src io.Reader, path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return tacerr.Wrap(tacerr.Internal, err, "store the upload")
	}
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return tacerr.Wrap(tacerr.InvalidInput, err, "read the uploaded file (at most %d GiB, arriving within %s; for a larger or slower file use tacline reconcile)", maxUpload>>30, uploadTimeout)
	}
	if err := f.Close(); err != nil {
		return tacerr.Wrap(tacerr.Internal, err, "store the upload")
	}
	return nil
}

// reconcileFile sends one category file of a run.
func (c *Console) reconcileFile(w http.ResponseWriter, r *http.Request, p *page) {
	id, _ := strconv.Atoi(r.PathValue("id"))
	file := r.PathValue("file")
	c.mu.Lock()
	run := byID(c.runs, id)
	c.mu.Unlock()
	ok := false
	if run != nil {
		for _, cat := range run.Categories() {
			ok = ok || cat.File == file
		}
	}
	if !ok || run.Err != nil {
		c.problem(w, r, p, http.StatusNotFound, "No such file", "Run "+r.PathValue("id")+" has no file "+file+" (runs are kept in memory: a restart forgets them).")
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="run-`+strconv.Itoa(id)+"-"+file+`"`)
	c.lengthen(w, "a run's download")
	http.ServeFile(w, r, filepath.Join(run.dir, "out", file))
}
