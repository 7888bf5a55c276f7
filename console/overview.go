package console

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tacline/tacline/api/wire"
	"github.com/tacline/tacline/audit"
	"github.com/tacline/tacline/hsm"
	"github.com/tacline/tacline/imei"
	"github.com/tacline/tacline/internal/pemblock"
	"github.com/tacline/tacline/register"
	"github.com/tacline/tacline/store"
	"github.com/tacline/tacline/tacerr"
)

// The overview's window: rates are the reservations of the last hour, in
// twelve buckets of five minutes, read from the ledger's timestamps (so
// every replica shows the same numbers).
const (
	window  = time.Hour
	buckets = 12
	bucket  = window / buckets
)

type overviewData struct {
	Now      time.Time
	Pools    []poolView
	Stations []stationView
	Lines    []lineView
	Errors   []errorCount
	Register *register.Report
	// DeliveryOff: this server does not deliver to the register.
	DeliveryOff bool
	Audit       *auditView
	HSM         *hsmView
	Issuers     []issuerView
	Chart       *depletionChart
	// Problems lists what could not be read (the rest is still shown).
	Problems []readProblem
}

// readProblem is a part of the overview that could not be read.
type readProblem struct {
	What string
	Err  errorNote
}

type poolView struct {
	store.PoolStats
	TACText  string
	Size     int64
	Used     int64
	UsedPct  string
	UsedW    int    // width of the used bar, of 100
	PerHour  int64  // IMEIs reserved in the last hour
	Forecast string // when the pool runs dry at that rate
	Soon     bool   // within 7 days
	Spark    string // polyline points of IMEIs per bucket
	SparkMax int64
}

type stationView struct {
	ID, Factory, Line string
	Pools             []string
	Devices, IMEIs    int64 // last hour
	LastSeen          time.Time
	Disabled          bool
}

// lineView sums a production line's stations.
type lineView struct {
	Line               string // factory/line
	Stations, Disabled int
	Devices, IMEIs     int64 // last hour
	LastSeen           time.Time
}

type errorCount struct {
	Code  string
	Count int64
}

type auditView struct {
	Size       int64
	Checkpoint int64 // size of the newest signed checkpoint
	SignedAt   time.Time
	Age        string
	Behind     int64 // events not yet covered by a signed checkpoint
}

type hsmView struct {
	hsm.Health
	Fail      *errorNote // the probe failed (Health.Err, logged, not shown)
	Latency   string
	Signs     int64
	SignMean  string
	SignP99   string
	CheckedAt time.Time
}

type issuerView struct {
	KeyID, Label, Kind, Subject string
	NotAfter                    time.Time
	Days                        int
	Active, Loaded              bool       // Loaded: this server issues under it
	Unusable                    *errorNote // why this server cannot sign under it (nil: it can)
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, p *page) {
	p.Title = "Overview"
	p.Data = c.collect(r, p)
	c.render(w, r, http.StatusOK, "overview", p)
}

// collect reads everything the overview shows; what fails is listed in
// Problems and the rest is shown.
func (c *Console) collect(r *http.Request, p *page) *overviewData {
	ctx := r.Context()
	now := c.cfg.Now().UTC()
	d := &overviewData{Now: now}
	problem := func(what string, err error) {
		d.Problems = append(d.Problems, readProblem{What: what, Err: c.note(r, p, err)})
	}

	since := now.Add(-window).Truncate(bucket).Add(bucket)
	acts, err := c.activity(ctx, since)
	if err != nil {
		problem("recent provisioning", err)
	}
	perPool := map[string]*[buckets]int64{}
	type stAct struct {
		devices, imeis int64
		last           time.Time
	}
	perStation := map[string]*stAct{}
	for _, a := range acts {
		if a.Bucket < 0 || a.Bucket >= buckets {
			continue
		}
		if perPool[a.Pool] == nil {
			perPool[a.Pool] = &[buckets]int64{}
		}
		perPool[a.Pool][a.Bucket] += a.IMEIs
		s := perStation[a.Caller]
		if s == nil {
			s = &stAct{}
			perStation[a.Caller] = s
		}
		s.devices += a.Reservations
		s.imeis += a.IMEIs
		if a.Last.After(s.last) {
			s.last = a.Last
		}
	}
	// The rate is over the window's buckets so far (the current one is
	// partial).
	elapsed := now.Sub(since)

	// The pools with their per-state counts at every refresh: store.Pools
	// derives them without reading the ledger's bound IMEIs. A viewer the
	// pools route refuses sees the remaining SNRs only.
	var pools []store.PoolStats
	if a, err := c.as(p, "GET "+wire.PathPools); err != nil {
		problem("pool usage counts", err)
		if pools, err = c.cfg.Ops.PoolsRemaining(ctx); err != nil {
			problem("pools", err)
		}
	} else if pools, err = c.cfg.Ops.Pools(ctx, a); err != nil {
		problem("pools", err)
	}
	lastSeen, err := c.lastSeen(ctx)
	if err != nil {
		problem("stations' last reservations", err)
	}
	for _, ps := range pools {
		v := poolView{PoolStats: ps, TACText: imei.FormatTAC(ps.TAC), Size: int64(ps.SNREnd) - int64(ps.SNRStart) + 1}
		v.Used = v.Size - ps.Free
		v.UsedPct = strconv.FormatFloat(100*float64(v.Used)/float64(v.Size), 'f', 1, 64)
		v.UsedW = int(math.Round(100 * float64(v.Used) / float64(v.Size)))
		var series [buckets]int64
		if s := perPool[ps.Name]; s != nil {
			series = *s
		}
		for _, n := range series {
			v.PerHour += n
		}
		v.Spark, v.SparkMax = sparkline(series[:], 120, 28)
		v.Forecast, v.Soon = forecast(now, ps.Free, v.PerHour, elapsed)
		d.Pools = append(d.Pools, v)
	}

	d.Chart = newDepletionChart(now, d.Pools, elapsed)

	stations, err := c.cfg.DB.Stations(ctx)
	if err != nil {
		problem("stations", err)
	}
	for _, s := range stations {
		v := stationView{ID: s.ID, Factory: s.Factory, Line: s.Line, Pools: s.Pools, Disabled: !s.DisabledAt.IsZero()}
		if a := perStation[s.ID]; a != nil {
			v.Devices, v.IMEIs, v.LastSeen = a.devices, a.imeis, a.last
		} else {
			v.LastSeen = lastSeen[s.ID] // read at most a minute ago
		}
		d.Stations = append(d.Stations, v)
	}
	d.Lines = lines(d.Stations)

	d.Errors = c.errorCounts()
	d.DeliveryOff = !c.cfg.Delivering
	if rep, err := register.Status(ctx, c.cfg.DB); err != nil {
		problem("register delivery", err)
	} else {
		d.Register = &rep
	}
	if av, err := c.auditState(ctx, now); err != nil {
		problem("audit log", err)
	} else {
		d.Audit = av
	}
	d.HSM = c.hsmState(r, p)
	iv, err := c.issuerState(r, p, now)
	if err != nil {
		problem("issuers", err)
	}
	d.Issuers = iv
	return d
}

// forecast says when free SNRs run out at perHour IMEIs reserved over the
// elapsed part of the window.
func forecast(now time.Time, free, used int64, elapsed time.Duration) (string, bool) {
	if free == 0 {
		return "exhausted", true
	}
	if used == 0 || elapsed <= 0 {
		return "no use in the last hour", false
	}
	perSec := float64(used) / elapsed.Seconds()
	left := time.Duration(float64(free) / perSec * float64(time.Second))
	if left > 100*365*24*time.Hour || left < 0 {
		return "more than 100 years", false
	}
	if left < 7*24*time.Hour {
		return now.Add(left).Format("2006-01-02 15:04 UTC"), true
	}
	return now.Add(left).Format("2006-01-02"), false
}

// sparkline returns SVG polyline points for series in a w x h box (the
// largest value at the top) and the largest value.
func sparkline(series []int64, w, h int) (string, int64) {
	top := slices.Max(series)
	scale := float64(h - 2)
	if top > 0 {
		scale /= float64(top)
	}
	out := make([]byte, 0, len(series)*10)
	for i, v := range series {
		x := float64(i) * float64(w) / float64(len(series)-1)
		y := float64(h-1) - float64(v)*scale
		if i > 0 {
			out = append(out, ' ')
		}
		out = strconv.AppendFloat(out, x, 'f', 1, 64)
		out = append(out, ',')
		out = strconv.AppendFloat(out, y, 'f', 1, 64)
	}
	return string(out), top
}

// errorCounts reads tacline_errors_total: error answers of this server
// since it started, by code.
func (c *Console) errorCounts() []errorCount {
	var out []errorCount
	for _, m := range c.family("tacline_errors_total") {
		for _, l := range m.GetLabel() {
			if l.GetName() == "code" {
				out = append(out, errorCount{Code: l.GetValue(), Count: int64(m.GetCounter().GetValue())})
			}
		}
	}
	slices.SortFunc(out, func(a, b errorCount) int {
		if a.Count != b.Count {
			return int(b.Count - a.Count)
		}
		if a.Code < b.Code {
			return -1
		}
		return 1
	})
	return out
}

func (c *Console) family(name string) []*dto.Metric {
	fams, err := c.cfg.Gatherer.Gather()
	if err != nil {
		c.cfg.Log.Warn("console: gather metrics", "err", err.Error())
	}
	for _, f := range fams {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	return nil
}

func (c *Console) auditState(ctx context.Context, now time.Time) (*auditView, error) {
	size, _, err := audit.Head(ctx, c.cfg.DB)
	if err != nil {
		return nil, err
	}
	v := &auditView{Size: size, Behind: size}
	cps, err := audit.RecentCheckpoints(ctx, c.cfg.DB, 1)
	if err != nil {
		return nil, err
	}
	if len(cps) > 0 {
		v.Checkpoint, v.SignedAt, v.Behind = cps[0].Size, cps[0].SignedAt, size-cps[0].Size
		v.Age = age(now.Sub(cps[0].SignedAt))
	}
	return v, nil
}

// age says how long ago in words a person reads at a glance.
func age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%.1f h", d.Hours())
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

// cachedLastSeen keeps each station's last reservation for lastSeenTTL,
// shared by every viewer. Each read after the first reads only the
// reservations committed since the previous read (store.LastReservations
// with the previous read's cursor), so its cost does not grow with the
// ledger; the map and its cursor are saved in the ledger (saveCache), so
// that the first read after a start, on any replica, goes on from the
// newest saved one instead of scanning every reservation.
type cachedLastSeen struct {
	mu        sync.Mutex
	loaded    bool                 // the saved map was looked for
	at        time.Time            // when the cached map was read, on the ledger's clock
	savedAt   time.Time            // the read last saved in the ledger
	from      store.ActivityCursor // where the last read started (zero: every reservation)
	cur       store.ActivityCursor // what the reads so far have counted
	byStation map[string]time.Time
}

// savedLastSeen is a cachedLastSeen as the ledger keeps it (times in Unix
// microseconds).
type savedLastSeen struct {
	Cursor    store.ActivityCursor `json:"cursor"`
	ByStation map[string]int64     `json:"by_station"`
}

const lastSeenTTL = time.Minute

// The names of the caches saved in the ledger (store.ConsoleCache), and
// how often a console saves each at most. The names changed when the
// caches gained their cursors (migration 0021 removed the old rows).
const (
	cacheLastSeen  = "last_seen.2"
	cacheActivity  = "activity.2"
	cacheSaveEvery = time.Minute
)

// lastSeen returns the last reservation of each caller, read again (from
// the previous read on) when older than lastSeenTTL.
func (c *Console) lastSeen(ctx context.Context) (map[string]time.Time, error) {
	c.seen.mu.Lock()
	defer c.seen.mu.Unlock()
	if !c.seen.loaded {
		c.seen.loaded = true
		var saved savedLastSeen
		at := c.loadCache(ctx, cacheLastSeen, &saved)
		if at.IsZero() {
			at = c.loadLegacyLastSeen(ctx, &saved)
		}
		if !at.IsZero() {
			c.seen.byStation, c.seen.at, c.seen.savedAt, c.seen.cur = make(map[string]time.Time, len(saved.ByStation)), at, at, saved.Cursor
			for caller, t := range saved.ByStation {
				c.seen.byStation[caller] = time.UnixMicro(t).UTC()
			}
		}
	}
	now := c.cfg.DB.Now()
	if c.seen.byStation != nil && now.Sub(c.seen.at) < lastSeenTTL {
		return c.seen.byStation, nil
	}
	c.seen.from = c.seen.cur
	last, cur, err := c.cfg.DB.LastReservations(ctx, c.seen.cur, maps.Clone(c.seen.byStation))
	if err != nil {
		return c.seen.byStation, err
	}
	c.seen.byStation, c.seen.at, c.seen.cur = last, now, cur
	c.saveCache(ctx, cacheLastSeen, &c.seen.savedAt, now, func() any {
		saved := savedLastSeen{Cursor: cur, ByStation: make(map[string]int64, len(last))}
		for caller, t := range last {
			saved.ByStation[caller] = t.UnixMicro()
		}
		return saved
	})
	return last, nil
}

// cacheLastSeenV1 is the name of the stations' last reservations as
// consoles before migration 0021 saved them: the map alone, read up to the
// row's time.
const cacheLastSeenV1 = "last_seen"

// loadLegacyLastSeen loads the stations' last reservations saved before
// they had a cursor, with a cursor from the time of that read
// (store.ReservationCursorSince: a reservation read twice changes no
// maximum), so that the first read after the upgrade does not scan every
// reservation; the zero time when there is none.
func (c *Console) loadLegacyLastSeen(ctx context.Context, saved *savedLastSeen) time.Time {
	at, state, err := c.cfg.DB.ConsoleCache(ctx, cacheLastSeenV1)
	if err != nil || at.IsZero() || json.Unmarshal(state, &saved.ByStation) != nil {
		return time.Time{}
	}
	if saved.Cursor, err = c.cfg.DB.ReservationCursorSince(ctx, at); err != nil {
		c.cfg.Log.Warn("console: read the saved cache; reading in full", "cache", cacheLastSeenV1, "err", err.Error())
		saved.ByStation = nil
		return time.Time{}
	}
	return at
}

// loadCache decodes the cache saved as name into v and returns the time of
// the read it describes; the zero time when there is none or it cannot be
// read (the console then reads in full, as on a new ledger).
func (c *Console) loadCache(ctx context.Context, name string, v any) time.Time {
	at, state, err := c.cfg.DB.ConsoleCache(ctx, name)
	if err == nil && !at.IsZero() {
		err = json.Unmarshal(state, v)
	}
	if err != nil {
		c.cfg.Log.Warn("console: read the saved cache; reading in full", "cache", name, "err", err.Error())
		return time.Time{}
	}
	return at
}

// saveCache saves state() as name, read at readAt, when the last save
// (*savedAt) is at least cacheSaveEvery older; a failure is logged (the
// next start reads more).
func (c *Console) saveCache(ctx context.Context, name string, savedAt *time.Time, readAt time.Time, state func() any) {
	if readAt.Sub(*savedAt) < cacheSaveEvery {
		return
	}
	b, err := json.Marshal(state())
	if err == nil {
		err = c.cfg.DB.SaveConsoleCache(ctx, name, readAt, b)
	}
	if err != nil {
		c.cfg.Log.Warn("console: save the cache", "cache", name, "err", err.Error())
		return
	}
	*savedAt = readAt
}

// cachedActivity keeps the window's activity per caller, pool and bucket
// between refreshes, shared by every viewer: a refresh reads only the
// reservations committed since its previous read (store.RecentActivity
// with the previous read's cursor) and adds them into the kept buckets,
// not the whole hour, whose reservations grow with the line's rate. The
// buckets and the cursor are saved in the ledger (saveCache) so that the
// first refresh after a start goes on from the newest saved read as well.
type cachedActivity struct {
	mu      sync.Mutex
	loaded  bool                 // the saved buckets were looked for
	readAt  time.Time            // the previous read, on the ledger's clock
	savedAt time.Time            // the read last saved in the ledger
	cur     store.ActivityCursor // what the reads so far have counted
	cold    bool                 // the last read started from the zero cursor
	rows    []timedActivity      // every bucket of the window read so far
}

// timedActivity is an Activity whose bucket starts at start.
type timedActivity struct {
	store.Activity
	start time.Time
}

// savedActivity is a cachedActivity as the ledger keeps it (times in Unix
// microseconds).
type savedActivity struct {
	Cursor store.ActivityCursor `json:"cursor"`
	Rows   []savedBucket        `json:"rows"`
}

// savedBucket is a timedActivity as the ledger keeps it.
type savedBucket struct {
	Caller       string `json:"c"`
	Pool         string `json:"p"`
	Start        int64  `json:"s"`
	Reservations int64  `json:"r"`
	IMEIs        int64  `json:"i"`
	Last         int64  `json:"l"`
}

// activity returns the reservations' activity of the window starting at
// since, in buckets of width bucket counted from since.
func (c *Console) activity(ctx context.Context, since time.Time) ([]store.Activity, error) {
	c.act.mu.Lock()
	defer c.act.mu.Unlock()
	if !c.act.loaded {
		c.act.loaded = true
		var saved savedActivity
		if at := c.loadCache(ctx, cacheActivity, &saved); !at.IsZero() {
			c.act.rows, c.act.readAt, c.act.savedAt, c.act.cur = make([]timedActivity, len(saved.Rows)), at, at, saved.Cursor
			for i, r := range saved.Rows {
				c.act.rows[i] = timedActivity{Activity: store.Activity{Caller: r.Caller, Pool: r.Pool, Reservations: r.Reservations,
					IMEIs: r.IMEIs, Last: time.UnixMicro(r.Last).UTC()}, start: time.UnixMicro(r.Start).UTC()}
			}
		}
	}
	now := c.cfg.DB.Now()
	if c.act.readAt.Before(since.Add(-store.ActivitySlack)) {
		// Read before the window (or never): the window's reservations
		// are fewer than those since that read.
		c.act.cur, c.act.rows = store.ActivityCursor{}, nil
	}
	c.act.cold = c.act.cur.IsZero()
	fresh, cur, err := c.cfg.DB.RecentActivity(ctx, c.act.cur, since, bucket)
	if err != nil {
		return nil, err
	}
	c.act.rows, c.act.readAt, c.act.cur = mergeActivity(c.act.rows, fresh, since), now, cur
	rows := c.act.rows
	c.saveCache(ctx, cacheActivity, &c.act.savedAt, now, func() any {
		saved := savedActivity{Cursor: cur, Rows: make([]savedBucket, len(rows))}
		for i, r := range rows {
			saved.Rows[i] = savedBucket{Caller: r.Caller, Pool: r.Pool, Start: r.start.UnixMicro(), Reservations: r.Reservations,
				IMEIs: r.IMEIs, Last: r.Last.UnixMicro()}
		}
		return saved
	})
	out := make([]store.Activity, len(c.act.rows))
	for i, r := range c.act.rows {
		out[i] = r.Activity
		out[i].Bucket = int(r.start.Sub(since) / bucket)
	}
	return out, nil
}

// mergeActivity keeps the buckets of kept that start at or after since and
// adds fresh into them (its buckets counted from since): fresh counts only
// reservations kept has not, so a bucket's counts add up.
func mergeActivity(kept []timedActivity, fresh []store.Activity, since time.Time) []timedActivity {
	type key struct {
		caller, pool string
		start        time.Time
	}
	out := make([]timedActivity, 0, len(kept)+len(fresh))
	at := make(map[key]int, len(kept)+len(fresh))
	for _, r := range kept {
		if !r.start.Before(since) {
			at[key{r.Caller, r.Pool, r.start}] = len(out)
			out = append(out, r)
		}
	}
	for _, a := range fresh {
		start := since.Add(time.Duration(a.Bucket) * bucket)
		i, ok := at[key{a.Caller, a.Pool, start}]
		if !ok {
			at[key{a.Caller, a.Pool, start}] = len(out)
			out = append(out, timedActivity{Activity: a, start: start})
			continue
		}
		r := &out[i]
		r.Reservations += a.Reservations
		r.IMEIs += a.IMEIs
		if a.Last.After(r.Last) {
			r.Last = a.Last
		}
	}
	slices.SortFunc(out, func(a, b timedActivity) int {
		return cmp.Or(strings.Compare(a.Caller, b.Caller), strings.Compare(a.Pool, b.Pool), a.start.Compare(b.start))
	})
	return out
}

// cachedHealth keeps the last HSM probe for healthTTL, so that many open
// overviews do not sign a probe each every few seconds.
type cachedHealth struct {
	mu sync.Mutex
	at time.Time
	h  hsm.Health
}

const healthTTL = 10 * time.Second

func (c *Console) hsmState(r *http.Request, p *page) *hsmView {
	if c.cfg.Health == nil {
		return nil
	}
	c.health.mu.Lock()
	if time.Since(c.health.at) > healthTTL {
		c.health.h, c.health.at = c.cfg.Health(r.Context()), time.Now()
	}
	v := &hsmView{Health: c.health.h, CheckedAt: c.health.at.UTC()}
	c.health.mu.Unlock()
	if !v.OK {
		n := c.note(r, p, tacerr.Wrap(tacerr.HSMUnavailable, errors.New(v.Health.Err), "the HSM probe signature failed"))
		v.Fail = &n
	}
	v.Latency = ms(v.Health.Latency.Seconds())
	for _, m := range c.family("tacline_hsm_sign_duration_seconds") {
		h := m.GetHistogram()
		v.Signs = int64(h.GetSampleCount())
		if v.Signs > 0 {
			v.SignMean = ms(h.GetSampleSum() / float64(v.Signs))
			v.SignP99 = ms(quantile(h, 0.99))
		}
	}
	return v
}

// quantile estimates a quantile of a histogram: the upper bound of the
// bucket where it falls.
func quantile(h *dto.Histogram, q float64) float64 {
	want := q * float64(h.GetSampleCount())
	for _, b := range h.GetBucket() {
		if float64(b.GetCumulativeCount()) >= want {
			return b.GetUpperBound()
		}
	}
	return math.Inf(1)
}

func ms(sec float64) string {
	if math.IsInf(sec, 1) {
		return "> 4 s"
	}
	return strconv.FormatFloat(sec*1000, 'f', 2, 64) + " ms"
}

func (c *Console) issuerState(r *http.Request, p *page, now time.Time) ([]issuerView, error) {
	recs, err := c.cfg.DB.Issuers(r.Context())
	if err != nil {
		return nil, err
	}
	var st IssuerState
	if c.cfg.Issuers != nil {
		st = c.cfg.Issuers()
	}
	var out []issuerView
	for _, rec := range recs {
		v := issuerView{KeyID: rec.KeyID, Label: rec.Label, Kind: rec.Kind, Active: rec.Active}
		if why, ok := st.Unusable[rec.KeyID]; ok {
			n := c.note(r, p, tacerr.Prefixed("this server cannot sign under issuer "+rec.KeyID, why, tacerr.Internal))
			v.Unusable = &n
		}
		v.Loaded = rec.KeyID == st.Active
		if certs, err := pemblock.Certificates([]byte(rec.CertPEM), tacerr.Internal, "cert_pem"); err == nil {
			cert := certs[0]
			v.Subject, v.NotAfter = cert.Subject.CommonName, cert.NotAfter
			v.Days = int(cert.NotAfter.Sub(now).Hours() / 24)
		}
		out = append(out, v)
	}
	return out, nil
}

// depletionChart draws every pool's remaining share (100 % at the top)
// from now on at the last hour's rate: where a line meets the bottom, the
// pool runs dry.
type depletionChart struct {
	W, H, Left, Bottom int
	Lines              []chartLine
	Ticks              []chartTick
	Horizon            string
}

type chartLine struct {
	Pool, Points, Class, Label string
}

type chartTick struct {
	X      int
	Label  string
	Anchor string // text-anchor: the last label ends at its tick
}

const (
	chartW, chartH           = 720, 220
	chartLeft, chartBottom   = 48, 24
	minHorizon, maxHorizon   = 30 * 24 * time.Hour, 5 * 365 * 24 * time.Hour
	chartTicks, chartClasses = 4, 6
)

func newDepletionChart(now time.Time, pools []poolView, elapsed time.Duration) *depletionChart {
	if len(pools) == 0 {
		return nil
	}
	// The horizon reaches the latest forecast date, within bounds.
	horizon := minHorizon
	for _, p := range pools {
		if p.PerHour > 0 && p.Free > 0 && elapsed > 0 {
			left := time.Duration(float64(p.Free) / (float64(p.PerHour) / elapsed.Seconds()) * float64(time.Second))
			horizon = max(horizon, min(left, maxHorizon))
		}
	}
	c := &depletionChart{W: chartW, H: chartH, Left: chartLeft, Bottom: chartH - chartBottom, Horizon: age(horizon)}
	plotW, plotH := float64(chartW-chartLeft-8), float64(chartH-chartBottom-8)
	x := func(d time.Duration) float64 { return float64(chartLeft) + plotW*d.Seconds()/horizon.Seconds() }
	y := func(share float64) float64 { return 8 + plotH*(1-share) }
	for i := 0; i <= chartTicks; i++ {
		d := horizon * time.Duration(i) / chartTicks
		anchor := "middle"
		if i == chartTicks {
			anchor = "end"
		}
		c.Ticks = append(c.Ticks, chartTick{X: int(x(d)), Label: now.Add(d).Format("2006-01-02"), Anchor: anchor})
	}
	for i, p := range pools {
		share := float64(p.Free) / float64(p.Size)
		end, endShare := horizon, share
		if p.PerHour > 0 && elapsed > 0 {
			perSec := float64(p.PerHour) / elapsed.Seconds() / float64(p.Size) // share per second
			if dry := time.Duration(share / perSec * float64(time.Second)); dry < horizon {
				end, endShare = dry, 0
			} else {
				endShare = share - perSec*horizon.Seconds()
			}
		}
		pts := strconv.FormatFloat(x(0), 'f', 1, 64) + "," + strconv.FormatFloat(y(share), 'f', 1, 64) + " " +
			strconv.FormatFloat(x(end), 'f', 1, 64) + "," + strconv.FormatFloat(y(endShare), 'f', 1, 64)
		c.Lines = append(c.Lines, chartLine{Pool: p.Name, Points: pts, Class: "series-" + strconv.Itoa(i%chartClasses),
			Label: p.Name + ": " + p.Forecast})
	}
	return c
}

// lines sums the stations per factory/line, in the stations' order.
func lines(stations []stationView) []lineView {
	var out []lineView
	at := map[string]int{}
	for _, s := range stations {
		key := s.Factory + "/" + s.Line
		i, ok := at[key]
		if !ok {
			i = len(out)
			at[key] = i
			out = append(out, lineView{Line: key})
		}
		l := &out[i]
		l.Stations++
		if s.Disabled {
			l.Disabled++
		}
		l.Devices += s.Devices
		l.IMEIs += s.IMEIs
		if s.LastSeen.After(l.LastSeen) {
			l.LastSeen = s.LastSeen
		}
	}
	return out
}
