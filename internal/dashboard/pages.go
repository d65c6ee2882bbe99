package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shipbot/shipbot/internal/report"

	"github.com/shipbot/shipbot/internal/dora"
	"github.com/shipbot/shipbot/internal/logctx"
	"github.com/shipbot/shipbot/internal/store/record"
)

const (
	recentDeploys = 5  // finished deploys shown per environment on the home page
	scanDeploys   = 20 // deploy records read per environment to find them
	// deliveryReleases are the releases read per environment for its
	// delivery chart: 30 days of them unless an environment deploys more
	// than 30 times a day.
	deliveryReleases = 1000
)

// previewEnv names a pull request's preview environment (Kind preview).
var previewEnv = regexp.MustCompile(`^pr-([0-9]+)$`)

// --- views: plain values the templates render ---

type releaseView struct {
	SHA, Short, CommitURL, Ref, By, DeployID string
	At                                       time.Time
}

type batchView struct {
	Index                               int
	Label                               string // "canary", "2", ...
	Instances                           []string
	State                               string // pending, running, success, failure
	Started, Finished                   time.Time
	Duration                            time.Duration
	Drain, Install, Health, Admit, Bake time.Duration
	Err                                 string
	// Traffic is the batch's last judgement by its traffic, in words
	// (report.Figures); "" without analysis.
	Traffic string
}

type deployView struct {
	ID, Repo, Env                    string
	SHA, Short, CommitURL, Ref       string
	Creator, Kind, State, Reason     string
	Previous, PreviousShort          string
	CreatedAt, StartedAt, FinishedAt time.Time
	Elapsed                          time.Duration // running: so far; finished: start to end
	Batches                          []batchView
	BatchesDone                      int
	Analysed                         bool // a batch was judged by its traffic: the table shows it
	Percent                          int  // progress; -1 when unknown
	Final                            bool // will not change any more
	LogTail                          string
	// RolledBack: the deploy succeeded, then a /rollback replaced its
	// release (record.ResultRolledBack).
	RolledBack bool
	// Repair: not a deploy but a drift repair (record.KindRepair): the
	// lists show what it repaired, its Reason.
	Repair bool
}

type envView struct {
	Name    string
	Current *releaseView
	Lock    *record.EnvLock
	Running *deployView
	Queued  []deployView
	Recent  []deployView

	// Frozen says that a freeze window holds the environment's pushes and
	// when it ends; Window is that window as written. Known from the
	// deploy it holds: the environment's configuration is not in the store.
	Frozen, Window string

	// Delivery is the chart of deploys and failures per day over the
	// last 30 days, and DeliveryLine its figures in words; empty when
	// there was no deploy in that time.
	Delivery     template.HTML
	DeliveryLine string
}

type previewView struct {
	Repo, URL, PRURL, Short, CommitURL string
	Number                             int
	UpdatedAt                          time.Time
	Closed                             bool
	Deploy                             *deployView
}

type repoView struct {
	Name, URL string
	Envs      []envView
}

func (d *Dashboard) commitURL(repo, sha string) string {
	return d.web + "/" + repo + "/commit/" + sha
}

func terminal(state string) bool {
	switch state {
	case record.StateSuccess, record.StateFailure, record.StateError, record.StateSuperseded, record.StateCancelled:
		return true
	}
	return false
}

func (d *Dashboard) deployView(x record.Deploy) deployView {
	v := deployView{
		ID: x.ID, Repo: x.Env.Repo, Env: x.Env.Name, SHA: x.SHA, Short: report.Short(x.SHA), CommitURL: d.commitURL(x.Env.Repo, x.SHA),
		Ref: x.Ref, Creator: x.Creator, Kind: x.Kind, State: x.State, Reason: report.DeployReason(x),
		Previous: x.Previous, PreviousShort: report.Short(x.Previous),
		CreatedAt: x.CreatedAt, StartedAt: x.StartedAt, FinishedAt: x.FinishedAt,
		Final: terminal(x.State), LogTail: x.LogTail, Percent: -1, Repair: x.Kind == record.KindRepair,
	}
	switch {
	case !x.StartedAt.IsZero() && !x.FinishedAt.IsZero():
		v.Elapsed = x.FinishedAt.Sub(x.StartedAt)
	case !x.StartedAt.IsZero() && x.State == record.StateRunning:
		v.Elapsed = d.o.Now().Sub(x.StartedAt)
	}
	for i, b := range x.Batches {
		bv := batchView{
			Index: b.Index, Label: strconv.Itoa(b.Index + 1), Instances: b.Instances, Started: b.Started, Finished: b.Finished,
			Drain: b.Drain, Install: b.Install, Health: b.Health, Admit: b.Admit, Bake: b.Bake, Err: report.BatchFailure(b),
			Traffic: report.Figures(b.Analysis),
		}
		if bv.Traffic != "" {
			v.Analysed = true
		}
		if i == 0 && len(x.Batches) > 1 {
			bv.Label = "canary"
		}
		switch {
		case bv.Err != "" || b.Failure != nil:
			bv.State = record.StateFailure
		case !b.Finished.IsZero():
			bv.State = record.StateSuccess
			v.BatchesDone++
		case !b.Started.IsZero():
			bv.State = record.StateRunning
		default:
			bv.State = "pending"
		}
		if !b.Started.IsZero() && !b.Finished.IsZero() {
			bv.Duration = b.Finished.Sub(b.Started)
		} else if !b.Started.IsZero() && x.State == record.StateRunning {
			bv.Duration = d.o.Now().Sub(b.Started)
		}
		v.Batches = append(v.Batches, bv)
	}
	switch {
	case x.State == record.StateSuccess:
		v.Percent = 100
	case len(x.Batches) > 0:
		v.Percent = v.BatchesDone * 100 / len(x.Batches)
	}
	return v
}

// --- handlers ---

func (d *Dashboard) home(w http.ResponseWriter, r *http.Request) {
	v, ok := d.authenticate(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	repos, err := d.o.Store.ListRepos(ctx)
	if err != nil {
		d.storeError(w, r, err)
		return
	}
	var out []repoView
	var previews []previewView
	previewDeploys := map[string]*deployView{} // "repo#N" → latest deploy of pr-N
	running := false
	for _, repo := range repos {
		if !v.canSee(repo) {
			continue
		}
		rv := repoView{Name: repo, URL: d.web + "/" + repo}
		envs, err := d.o.Store.ListEnvironments(ctx, repo)
		if err != nil {
			d.storeError(w, r, err)
			return
		}
		for _, env := range envs {
			if m := previewEnv.FindStringSubmatch(env.Name); m != nil {
				if ds, err := d.o.Store.ListDeploys(ctx, env, 1); err == nil && len(ds) > 0 {
					dv := d.deployView(ds[0])
					previewDeploys[repo+"#"+m[1]] = &dv
					running = running || !dv.Final
				}
				continue
			}
			ev, err := d.envView(ctx, env)
			if err != nil {
				d.storeError(w, r, err)
				return
			}
			running = running || ev.Running != nil || len(ev.Queued) > 0
			rv.Envs = append(rv.Envs, ev)
		}
		out = append(out, rv)
	}
	pvs, err := d.o.Store.ListPreviews(ctx)
	if err != nil {
		d.storeError(w, r, err)
		return
	}
	for _, p := range pvs {
		if !v.canSee(p.Repo) || p.SHA == "" { // never built (a fork's, closed)
			continue
		}
		pv := previewView{Repo: p.Repo, Number: p.Number, URL: p.URL, PRURL: fmt.Sprintf("%s/%s/pull/%d", d.web, p.Repo, p.Number),
			Short: report.Short(p.SHA), CommitURL: d.commitURL(p.Repo, p.SHA), UpdatedAt: p.UpdatedAt, Closed: p.Closed,
			Deploy: previewDeploys[p.Repo+"#"+strconv.Itoa(p.Number)]}
		previews = append(previews, pv)
	}
	sort.SliceStable(previews, func(i, j int) bool { return previews[i].Closed != previews[j].Closed && !previews[i].Closed })
	installed, err := d.installations(ctx, v)
	if err != nil {
		d.storeError(w, r, err)
		return
	}
	var problems []string
	if d.o.Problems != nil && v.Operator {
		problems = d.o.Problems()
	}
	d.render(w, r, http.StatusOK, "home", map[string]any{
		"Title": "shipbot", "Repos": out, "Previews": previews, "Live": running, "Problems": problems, "Installed": installed,
	}, v)
}

// installationView is one installation of the App as the home page lists
// it: the account and the repositories the viewer may see.
type installationView struct {
	Account string
	All     bool // on all of the account's repositories
	Repos   []installedRepo
}

type installedRepo struct{ Name, URL string }

// installations are the App's installations the store keeps, with the
// repositories v can see; an installation with none of those is left out
// for a signed-in user, who sees only what they can read.
func (d *Dashboard) installations(ctx context.Context, v viewer) ([]installationView, error) {
	ins, err := d.o.Store.ListInstallations(ctx)
	if err != nil {
		return nil, err
	}
	var out []installationView
	for _, in := range ins {
		iv := installationView{Account: in.Account, All: in.Selection == "all"}
		for _, r := range in.Repos {
			if v.canSee(r) {
				iv.Repos = append(iv.Repos, installedRepo{Name: r, URL: d.web + "/" + r})
			}
		}
		if len(iv.Repos) == 0 && !v.Operator {
			continue
		}
		out = append(out, iv)
	}
	return out, nil
}

func (d *Dashboard) envView(ctx context.Context, env record.EnvKey) (envView, error) {
	ev := envView{Name: env.Name}
	cur, err := d.o.Store.CurrentRelease(ctx, env)
	switch {
	case err == nil:
		ev.Current = &releaseView{SHA: cur.SHA, Short: report.Short(cur.SHA), CommitURL: d.commitURL(env.Repo, cur.SHA), Ref: cur.Ref, By: cur.By, At: cur.At, DeployID: cur.DeployID}
	case !errors.Is(err, record.ErrNotFound):
		return ev, err
	}
	if l, ok, err := d.o.Store.EnvironmentLock(ctx, env); err != nil {
		return ev, err
	} else if ok {
		ev.Lock = &l
	}
	runID, hasRun, err := d.o.Store.Running(ctx, env)
	if err != nil {
		return ev, err
	}
	pendID, hasPend, err := d.o.Store.Pending(ctx, env)
	if err != nil {
		return ev, err
	}
	ds, err := d.o.Store.ListDeploys(ctx, env, scanDeploys)
	if err != nil {
		return ev, err
	}
	rels, err := d.o.Store.Releases(ctx, env, deliveryReleases)
	if err != nil {
		return ev, err
	}
	if m := dora.Compute(dora.HistoryOf(env, rels), dora.Window{}, d.o.Now()); m.Deploys > 0 {
		ev.Delivery = dora.Chart(m.Days)
		ev.DeliveryLine = report.DeliverySummary(report.Delivery{Days: len(m.Days), Deploys: m.Deploys, Failures: m.Failures,
			Restores: m.Restores, Restore: m.TimeToRestore, LeadTimes: m.LeadTimes, LeadTime: m.LeadTime})
	}
	rolledBack := rolledBackIDs(rels)
	seen := map[string]bool{}
	for _, x := range ds {
		seen[x.ID] = true
		switch {
		case (hasRun && x.ID == runID) || x.State == record.StateRunning:
			if ev.Running == nil {
				dv := d.deployView(x)
				ev.Running = &dv
			}
		case x.State == record.StateQueued || x.State == record.StateWaiting || x.State == record.StateLocked:
			ev.Queued = append(ev.Queued, d.deployView(x))
			if ev.Frozen == "" && x.State == record.StateWaiting && x.Why != nil && x.Why.Until.After(d.o.Now()) {
				ev.Frozen, ev.Window = report.FreezeNotice(*x.Why), x.Why.Text
			}
		case terminal(x.State) && len(ev.Recent) < recentDeploys:
			dv := d.deployView(x)
			dv.RolledBack = rolledBack[x.ID]
			ev.Recent = append(ev.Recent, dv)
		}
	}
	// Slots can name deploys older than the ones read.
	for _, id := range []string{runID, pendID} {
		if id == "" || seen[id] || (id == runID && !hasRun) || (id == pendID && !hasPend) {
			continue
		}
		x, err := d.o.Store.GetDeploy(ctx, id)
		if errors.Is(err, record.ErrNotFound) {
			continue
		}
		if err != nil {
			return ev, err
		}
		dv := d.deployView(x)
		if id == runID && ev.Running == nil {
			ev.Running = &dv
		} else if !dv.Final {
			ev.Queued = append(ev.Queued, dv)
		}
	}
	return ev, nil
}

// rolledBackIDs are the deploys among rels whose release was rolled back.
func rolledBackIDs(rels []record.Release) map[string]bool {
	ids := map[string]bool{}
	for _, r := range rels {
		if r.Result == record.ResultRolledBack {
			ids[r.DeployID] = true
		}
	}
	return ids
}

// rolledBack reports whether the successful deploy x's release was
// rolled back since; the release history says so, not the deploy.
func (d *Dashboard) rolledBack(ctx context.Context, x record.Deploy) (bool, error) {
	if x.State != record.StateSuccess || x.Kind == record.KindPreview {
		return false, nil
	}
	rels, err := d.o.Store.Releases(ctx, x.Env, deliveryReleases)
	if err != nil {
		return false, err
	}
	return rolledBackIDs(rels)[x.ID], nil
}

// deploy serves /deploys/{id} (the page) and /deploys/{id}.json (the same
// as data, with the page's live part rendered, which the page polls).
func (d *Dashboard) deploy(w http.ResponseWriter, r *http.Request) {
	v, ok := d.authenticate(w, r)
	if !ok {
		return
	}
	id, asJSON := strings.CutSuffix(r.PathValue("id"), ".json")
	if !asJSON && strings.Contains(r.Header.Get("Accept"), "application/json") {
		asJSON = true
	}
	x, err := d.o.Store.GetDeploy(r.Context(), id)
	// Someone who cannot see the repository learns nothing, not even that
	// the deploy exists.
	if errors.Is(err, record.ErrNotFound) || (err == nil && !v.canSee(x.Env.Repo)) {
		if asJSON {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no deploy " + id + " that you can see"})
			return
		}
		d.errorPage(w, r, http.StatusNotFound, report.DashboardNoDeploy(id))
		return
	}
	if err != nil {
		d.storeError(w, r, err)
		return
	}
	dv := d.deployView(x)
	if dv.RolledBack, err = d.rolledBack(r.Context(), x); err != nil {
		d.storeError(w, r, err)
		return
	}
	if !asJSON {
		d.render(w, r, http.StatusOK, "deploy", map[string]any{"Title": dv.Env + " · " + dv.Short + " · " + dv.Repo, "D": dv}, v)
		return
	}
	var live bytes.Buffer
	if err := d.tmpl["deploy"].ExecuteTemplate(&live, "live", map[string]any{"D": dv}); err != nil {
		logctx.From(r.Context()).Error("dashboard: render", "err", err)
	}
	writeJSON(w, http.StatusOK, deployJSON{
		ID: x.ID, Repository: x.Env.Repo, Environment: x.Env.Name, SHA: x.SHA, Ref: x.Ref, Creator: x.Creator,
		Kind: x.Kind, State: x.State, Reason: dv.Reason, Previous: x.Previous,
		CreatedAt: x.CreatedAt, StartedAt: x.StartedAt, FinishedAt: x.FinishedAt,
		Batches: x.Batches, LogTail: x.LogTail, Final: dv.Final, Percent: dv.Percent, HTML: live.String(),
	})
}

// deployJSON is /deploys/{id}.json: the deploy record, minus the ids that
// only the bot needs, plus the rendered live part of the page.
type deployJSON struct {
	ID          string               `json:"id"`
	Repository  string               `json:"repository"`
	Environment string               `json:"environment"`
	SHA         string               `json:"sha"`
	Ref         string               `json:"ref,omitempty"`
	Creator     string               `json:"creator,omitempty"`
	Kind        string               `json:"kind"`
	State       string               `json:"state"`
	Reason      string               `json:"reason,omitempty"`
	Previous    string               `json:"previous,omitempty"`
	CreatedAt   time.Time            `json:"created_at"`
	StartedAt   time.Time            `json:"started_at"`
	FinishedAt  time.Time            `json:"finished_at"`
	Batches     []record.BatchTiming `json:"batches"`
	LogTail     string               `json:"log_tail,omitempty"`
	Final       bool                 `json:"final"`
	Percent     int                  `json:"percent"` // -1 when unknown
	HTML        string               `json:"html"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (d *Dashboard) storeError(w http.ResponseWriter, r *http.Request, err error) {
	logctx.From(r.Context()).Error("dashboard: store read failed", "err", err)
	status := http.StatusInternalServerError
	if errors.Is(err, record.ErrUnavailable) {
		status = http.StatusServiceUnavailable
	}
	d.errorPage(w, r, status, report.DashboardStoreDown)
}

func (d *Dashboard) errorPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if apiStyle(r) {
		writeJSON(w, status, map[string]string{"error": msg})
		return
	}
	d.render(w, r, status, "error", map[string]any{"Title": http.StatusText(status), "Message": msg}, viewer{})
}

// render executes a page template into a buffer first, so a template error
// is a clean 500 rather than half a page.
func (d *Dashboard) render(w http.ResponseWriter, r *http.Request, status int, page string, data map[string]any, v viewer) {
	data["Viewer"] = v
	data["Version"] = d.o.Version
	data["Now"] = d.o.Now()
	var buf bytes.Buffer
	if err := d.tmpl[page].ExecuteTemplate(&buf, "layout", data); err != nil {
		logctx.From(r.Context()).Error("dashboard: render", "page", page, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func parseTemplates() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, page := range []string{"home", "deploy", "signin", "error", "audit"} {
		t, err := template.New(page).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard: templates: %w", err)
		}
		out[page] = t
	}
	return out, nil
}

var funcs = template.FuncMap{
	"ago":  ago,
	"dur":  dur,
	"iso":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"zero": func(t time.Time) bool { return t.IsZero() },
	"join": strings.Join,
}

// ago says how long ago t was, for people.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	s := now.Sub(t)
	switch {
	case s < 0:
		return "just now"
	case s < time.Minute:
		return strconv.Itoa(int(s/time.Second)) + "s ago"
	case s < time.Hour:
		return strconv.Itoa(int(s/time.Minute)) + "m ago"
	case s < 48*time.Hour:
		return strconv.Itoa(int(s/time.Hour)) + "h ago"
	}
	return strconv.Itoa(int(s/(24*time.Hour))) + "d ago"
}

// dur is a duration rounded for reading: 850ms, 12.3s, 4m05s.
func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Second:
		return strconv.Itoa(int(d/time.Millisecond)) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	}
	return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
}
