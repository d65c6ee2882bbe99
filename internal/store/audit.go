package store

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/shipbot/shipbot/internal/store/record"
)

// The audit log is the same on both stores on top of one primitive each:
// append an entry (assigning its ID under the store's own sequence, after
// removing some aged entries) and read a range of IDs, newest first
// (auditRangeFunc). Paging, filters and streaming are written once here.
//
// An entry's ID is its time to the microsecond, fixed-width, then a
// sequence number of the store's: "20261206T101500.123456Z-000000000042".
// IDs sort as entries were made, so the ID is the position in the log: the
// stores keep entries under it, Since and Before become ID bounds, and a
// page's cursor is the ID of its last entry.

const (
	auditIDTime = "20060102T150405.000000Z"
	// auditIDLen is the time, a dash and 12 digits of sequence (Redis
	// builds the same with string.format('%s-%012d')).
	auditIDLen = len(auditIDTime) + 1 + 12
	// auditBatch is how many entries one read fetches: enough that a
	// stream of 100,000 is a hundred round trips, few enough that a batch
	// is a fraction of a megabyte.
	auditBatch = 1000
	// auditTrimBatch bounds how many aged entries one append removes, so
	// an append stays short however long the log went untrimmed; appends
	// come far faster than entries age, so the log keeps up.
	auditTrimBatch = 100
	maxAuditActor  = 100
	maxAuditLink   = 2048
)

var (
	// The times an ID can hold: four-digit years.
	auditMinTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	auditMaxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
)

func auditIDPrefix(t time.Time) string { return t.UTC().Format(auditIDTime) }

func auditID(at time.Time, seq uint64) string {
	return fmt.Sprintf("%s-%012d", auditIDPrefix(at), seq)
}

// validAuditID reports whether id is one the store could have assigned.
func validAuditID(id string) bool {
	if len(id) != auditIDLen || id[len(auditIDTime)] != '-' {
		return false
	}
	if strings.Trim(id[len(auditIDTime)+1:], "0123456789") != "" {
		return false
	}
	_, err := time.Parse(auditIDTime, id[:len(auditIDTime)])
	return err == nil
}

// auditCutoff is the ID prefix below which entries are older than the
// retention at now.
func auditCutoff(now time.Time) string { return auditIDPrefix(now.Add(-record.AuditRetention)) }

// prepareAudit checks e and makes it what the store keeps: At set and cut
// to the microsecond in UTC, Text bounded.
func prepareAudit(e *record.AuditEntry, now time.Time) error {
	if e.ID != "" {
		return fmt.Errorf("store: audit entry %q: the store assigns IDs; append it with an empty ID", e.ID)
	}
	if e.At.IsZero() {
		e.At = now
	}
	e.At = e.At.UTC().Truncate(time.Microsecond)
	if e.At.Before(auditMinTime) || e.At.After(auditMaxTime) {
		return fmt.Errorf("store: audit entry at %v: not a time between 1970 and 9999", e.At)
	}
	what := fmt.Sprintf("audit entry %s by %q", e.Action, e.Actor)
	switch {
	case e.Actor == "" || len(e.Actor) > maxAuditActor || !printable(e.Actor):
		return fmt.Errorf("store: %s: the actor must be a GitHub login, %q or cli:USER", what, record.ActorShipbot)
	case !oneOf(e.Action, record.AuditActions()):
		return fmt.Errorf("store: %s: action %q is not one of %s", what, e.Action, strings.Join(record.AuditActions(), ", "))
	case !oneOf(e.Outcome, record.AuditOutcomes()):
		return fmt.Errorf("store: %s: outcome %q is not one of %s", what, e.Outcome, strings.Join(record.AuditOutcomes(), ", "))
	case e.Env != "" && e.Repo == "":
		return fmt.Errorf("store: %s: environment %q without a repository", what, e.Env)
	case len(e.Link) > maxAuditLink:
		return fmt.Errorf("store: %s: link longer than %d bytes", what, maxAuditLink)
	}
	if e.Repo != "" {
		if err := record.ValidateRepo(e.Repo); err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
	}
	if e.Env != "" {
		if err := (record.EnvKey{Repo: e.Repo, Name: e.Env}).Validate(); err != nil {
			return fmt.Errorf("store: %s: %w", what, err)
		}
	}
	if e.Link != "" {
		if u, err := url.Parse(e.Link); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("store: %s: link %q is not an http(s) URL", what, e.Link)
		}
	}
	e.Text = textHead(e.Text, record.MaxAuditText)
	return nil
}

func printable(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0
}

// textHead keeps the first max bytes of s, ending at a whole character
// with "…" to show it was cut.
func textHead(s string, max int) string {
	if len(s) <= max {
		return s
	}
	const more = "…"
	s = s[:max-len(more)]
	for range utf8.UTFMax - 1 { // the bytes of a character the cut split
		if r, size := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || size != 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return s + more
}

// auditBounds turns a filter into the IDs to read between: lo inclusive,
// hi exclusive, "" for no bound. Its errors are the ones a person can
// cause through a page's query, each saying what to do.
func auditBounds(f record.AuditFilter) (lo, hi string, err error) {
	if f.Repo != "" && record.ValidateRepo(f.Repo) != nil {
		return "", "", fmt.Errorf("store: audit filter: repository %q is not owner/name; write it as owner/name, such as octo/app", f.Repo)
	}
	if len(f.Env) > 255 || !printable(f.Env) {
		return "", "", fmt.Errorf("store: audit filter: environment %.40q is not an environment name; use one from the repository's .github/shipbot.yml", f.Env)
	}
	if f.Limit < 0 {
		return "", "", fmt.Errorf("store: audit filter: limit %d is negative; ask for 1 to %d entries", f.Limit, record.AuditPageMax)
	}
	if !f.Since.IsZero() && !f.Before.IsZero() && !f.Since.Before(f.Before) {
		return "", "", fmt.Errorf("store: audit filter: since %s is not before %s; pick a since earlier than the end",
			f.Since.UTC().Format(time.RFC3339), f.Before.UTC().Format(time.RFC3339))
	}
	if f.Cursor != "" && !validAuditID(f.Cursor) {
		return "", "", fmt.Errorf("store: audit cursor %.60q is not a position in the audit log; start again from the first page", f.Cursor)
	}
	// Stored times are whole microseconds, so At >= t is At >= t rounded
	// up, and At < t likewise.
	up := func(t time.Time) time.Time {
		if c := t.Truncate(time.Microsecond); c.Before(t) {
			return c.Add(time.Microsecond)
		}
		return t
	}
	switch {
	case f.Since.IsZero(), f.Since.Before(auditMinTime):
	case f.Since.After(auditMaxTime):
		lo = auditIDPrefix(auditMaxTime) + "~" // after every ID
	default:
		lo = auditIDPrefix(up(f.Since))
	}
	switch {
	case f.Before.IsZero(), f.Before.After(auditMaxTime):
	case f.Before.Before(auditMinTime):
		hi = auditIDPrefix(auditMinTime) // before every ID
	default:
		hi = auditIDPrefix(up(f.Before))
	}
	if f.Cursor != "" && (hi == "" || f.Cursor < hi) {
		hi = f.Cursor
	}
	return lo, hi, nil
}

// auditRangeFunc reads up to n entries of the whole log (repo "") or of
// one repository's, newest first, with lo <= ID < hi ("": no bound). Fewer
// than n means there are no more.
type auditRangeFunc func(ctx context.Context, repo, lo, hi string, n int) ([]record.AuditEntry, error)

func auditMatches(f record.AuditFilter, e record.AuditEntry) bool {
	return (f.Repo == "" || e.Repo == f.Repo) && (f.Env == "" || e.Env == f.Env) && (f.Actor == "" || e.Actor == f.Actor)
}

// eachAudit calls fn with the entries f picks, newest first, reading a
// batch at a time: memory stays a batch however long the log. fn runs
// outside any transaction, so a slow reader holds nothing up. An error
// from fn stops the walk and comes back as is.
func eachAudit(ctx context.Context, f record.AuditFilter, read auditRangeFunc, fn func(record.AuditEntry) error) error {
	lo, hi, err := auditBounds(f)
	if err != nil {
		return err
	}
	// The index of a repository holds only its entries; environment and
	// actor are checked here.
	exact := f.Env == "" && f.Actor == ""
	given := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := auditBatch
		if exact && f.Limit > 0 {
			n = min(n, f.Limit-given)
		}
		batch, err := read(ctx, f.Repo, lo, hi, n)
		if err != nil {
			return err
		}
		for _, e := range batch {
			if !auditMatches(f, e) {
				continue
			}
			if err := fn(e); err != nil {
				return err
			}
			if given++; given == f.Limit {
				return nil
			}
		}
		if len(batch) < n {
			return nil
		}
		hi = batch[len(batch)-1].ID
	}
}

// listAudit is one page of eachAudit, and where the next one starts.
func listAudit(ctx context.Context, f record.AuditFilter, read auditRangeFunc) (record.AuditPage, error) {
	if _, _, err := auditBounds(f); err != nil {
		return record.AuditPage{}, err
	}
	limit := f.Limit
	switch {
	case limit == 0:
		limit = record.AuditPageDefault
	case limit > record.AuditPageMax:
		return record.AuditPage{}, fmt.Errorf("store: audit filter: a page of %d entries is more than %d; ask for %d or fewer, or page on", limit, record.AuditPageMax, record.AuditPageMax)
	}
	f.Limit = limit + 1 // one more tells whether a next page exists
	var page record.AuditPage
	err := eachAudit(ctx, f, read, func(e record.AuditEntry) error {
		page.Entries = append(page.Entries, e)
		return nil
	})
	if err != nil {
		return record.AuditPage{}, err
	}
	if len(page.Entries) > limit {
		page.Entries = page.Entries[:limit]
		page.Next = page.Entries[limit-1].ID
	}
	return page, nil
}
