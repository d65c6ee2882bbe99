package dashboard

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/shipbot/shipbot/internal/report"
	"github.com/shipbot/shipbot/internal/store/record"
)

// auditPageSize is how many entries /audit shows at a time.
const auditPageSize = 50

// auditFilter reads the filters of /audit and /audit.jsonl from the query:
// repo, environment, actor, since (a date, 2026-12-01, or an RFC 3339
// time) and, for the page, cursor. A filter that cannot be read is said in
// a sentence.
func auditFilter(q url.Values) (record.AuditFilter, error) {
	f := record.AuditFilter{Repo: q.Get("repo"), Env: q.Get("environment"), Actor: q.Get("actor"), Cursor: q.Get("cursor")}
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t, err = time.Parse(time.DateOnly, s)
		}
		if err != nil {
			return f, errors.New(report.AuditBadSince(s))
		}
		f.Since = t
	}
	return f, nil
}

// audit is the audit log, newest first, a page at a time, with filters.
// A viewer signed in with GitHub sees the entries of the repositories they
// can read; the operator every one.
func (d *Dashboard) audit(w http.ResponseWriter, r *http.Request) {
	v, ok := d.authenticate(w, r)
	if !ok {
		return
	}
	f, err := auditFilter(r.URL.Query())
	if err != nil {
		d.errorPage(w, r, http.StatusBadRequest, err.Error())
		return
	}
	if f.Repo != "" && !v.canSee(f.Repo) {
		d.errorPage(w, r, http.StatusNotFound, report.DashboardNoSuchRepo)
		return
	}
	f.Limit = auditPageSize
	var entries []record.AuditEntry
	next := ""
	// Entries of repositories the viewer cannot read are left out; read
	// on until a page is full or the log ends (a bounded number of reads).
	for range 20 {
		page, err := d.o.Store.ListAudit(r.Context(), f)
		if err != nil {
			if errors.Is(err, record.ErrUnavailable) || errors.Is(err, record.ErrNotFound) {
				d.storeError(w, r, err)
			} else {
				d.errorPage(w, r, http.StatusBadRequest, err.Error())
			}
			return
		}
		for _, e := range page.Entries {
			if v.canSee(e.Repo) && len(entries) < auditPageSize {
				entries = append(entries, e)
				next = e.ID
			}
		}
		if page.Next == "" || len(entries) >= auditPageSize {
			if page.Next == "" && len(entries) < auditPageSize {
				next = ""
			}
			break
		}
		f.Cursor = page.Next
	}
	nextURL := ""
	if next != "" {
		q := r.URL.Query()
		q.Set("cursor", next)
		nextURL = "/audit?" + q.Encode()
	}
	export := r.URL.Query()
	export.Del("cursor")
	d.render(w, r, http.StatusOK, "audit", map[string]any{
		"Entries": entries, "Filter": f, "Since": r.URL.Query().Get("since"), "Next": nextURL, "Export": "/audit.jsonl?" + export.Encode(),
	}, v)
}

// auditJSONL streams the audit log, newest first, one JSON object a line,
// with the same filters as /audit and without loading it into memory.
func (d *Dashboard) auditJSONL(w http.ResponseWriter, r *http.Request) {
	v, ok := d.authenticate(w, r)
	if !ok {
		return
	}
	f, err := auditFilter(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if f.Repo != "" && !v.canSee(f.Repo) {
		http.Error(w, report.DashboardNoSuchRepo, http.StatusNotFound)
		return
	}
	f.Cursor = ""
	w.Header().Set("Content-Type", "application/jsonl; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="shipbot-audit.jsonl"`)
	enc := json.NewEncoder(w)
	wrote := false
	err = d.o.Store.EachAudit(r.Context(), f, func(e record.AuditEntry) error {
		if !v.canSee(e.Repo) {
			return nil
		}
		wrote = true
		return enc.Encode(e)
	})
	if err != nil && !wrote {
		http.Error(w, report.DashboardStoreDown, http.StatusServiceUnavailable)
	}
}
