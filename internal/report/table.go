package report

import (
	"fmt"
	"strings"
)

// batchWords is how a batch's state reads in the table, in the order the
// "… N more batches" rows count them.
var batchWords = []struct {
	state      BatchState
	icon, word string
}{
	{BatchDone, "✅", "done"},
	{BatchDraining, "⏳", "draining"},
	{BatchInstalling, "⏳", "installing"},
	{BatchChecking, "⏳", "health checks"},
	{BatchAdmitting, "⏳", "back into rotation"},
	{BatchBaking, "⏳", "baking"},
	{BatchFailed, "❌", "failed"},
	{BatchRollingBack, "↩️", "rolling back"},
	{BatchRolledBack, "↩️", "rolled back"},
	{BatchPending, "", "pending"},
}

func batchWord(s BatchState) string {
	for _, w := range batchWords {
		if w.state == s {
			return strings.TrimSpace(w.icon + " " + w.word)
		}
	}
	return cell(md(string(s)))
}

const (
	tableHead         = "### Batches\n\n| Batch | Zone | Instances | State | Duration |\n| --- | --- | --- | --- | --- |\n"
	tableHeadAnalysis = "### Batches\n\n| Batch | Zone | Instances | State | Duration | Traffic |\n| --- | --- | --- | --- | --- | --- |\n"
)

// analysed reports whether any batch of d was judged by its traffic: the
// table then has a Traffic column.
func analysed(d Deploy) bool {
	for _, b := range d.Batches {
		if b.Analysis != nil {
			return true
		}
	}
	return false
}

// batchTable is the check run's text: one row per batch. Past maxTableRows
// it shows the rows around the batch that matters (the failed one, else the
// one under way) and sums up the others in "… N more batches" rows; it
// also stops adding rows before GitHub's limit.
func batchTable(d Deploy) string {
	n := len(d.Batches)
	if n == 0 {
		return ""
	}
	lo, hi := 0, n
	if n > maxTableRows {
		w := maxTableRows - 2 // a "more" row above and below
		lo = min(max(focus(d)-w/2, 0), n-w)
		switch {
		case lo == 0:
			hi = maxTableRows - 1
		case lo == n-w:
			lo = n - (maxTableRows - 1)
		default:
			hi = lo + w
		}
	}

	var b strings.Builder
	traffic := analysed(d)
	if traffic {
		b.WriteString(tableHeadAnalysis)
	} else {
		b.WriteString(tableHead)
	}
	if lo > 0 {
		b.WriteString(moreRow(d.Batches, 0, lo, traffic))
	}
	// The "more" row for what does not fit is at most a few hundred bytes.
	const reserve = 512
	for i := lo; i < hi; i++ {
		row := batchRow(d, i, traffic)
		if b.Len()+len(row)+reserve > MaxCheckRunText {
			hi = i
			break
		}
		b.WriteString(row)
	}
	if hi < n {
		b.WriteString(moreRow(d.Batches, hi, n, traffic))
	}
	return b.String()
}

// focus is the batch the table must show: the failed one, else the first
// under way, else the first pending, else the last.
func focus(d Deploy) int {
	if i := failedBatch(d); i >= 0 {
		return i
	}
	for i, b := range d.Batches {
		if b.State != BatchDone && b.State != BatchPending {
			return i
		}
	}
	for i, b := range d.Batches {
		if b.State == BatchPending {
			return i
		}
	}
	return len(d.Batches) - 1
}

func batchRow(d Deploy, i int, traffic bool) string {
	b := d.Batches[i]
	num := fmt.Sprint(b.Index + 1)
	if b.Canary {
		num += " · canary"
	}
	zone := md(fit(oneLine(b.Zone), maxName))
	if zone == "" {
		zone = "—"
	}
	dur := ""
	if !b.Started.IsZero() && !b.Finished.IsZero() {
		dur = FormatDuration(b.Finished.Sub(b.Started))
	}
	cells := []string{num, cell(zone), cell(instanceCell(b.Instances, d.FailedInstance)), batchWord(b.State), dur}
	if traffic {
		cells = append(cells, cell(md(fit(oneLine(Figures(b.Analysis)), maxFigures))))
	}
	return "| " + strings.Join(cells, " | ") + " |\n"
}

// maxFigures bounds a batch's Traffic cell: a few dozen Prometheus checks
// must not push the table past GitHub's limit.
const maxFigures = 600

// instanceCell names a batch's instances, at most maxCellNames, keeping the
// failed one in view and marking it.
func instanceCell(ids []string, failed string) string {
	shown := ids
	if len(ids) > maxCellNames {
		shown = append([]string(nil), ids[:maxCellNames-1]...)
		for i, id := range ids {
			if id == failed && i >= maxCellNames-1 {
				shown[len(shown)-1] = id
			}
		}
	}
	out := make([]string, len(shown))
	for i, id := range shown {
		out[i] = md(fit(oneLine(id), maxName))
		if id == failed && failed != "" {
			out[i] = "**" + out[i] + "** (failed)"
		}
	}
	s := strings.Join(out, ", ")
	if len(shown) < len(ids) {
		s += fmt.Sprintf(" and %d more", len(ids)-len(shown))
	}
	return s
}

// moreRow sums up batches [from, to) in one row.
func moreRow(bs []Batch, from, to int, traffic bool) string {
	count := map[BatchState]int{}
	for _, b := range bs[from:to] {
		count[b.State]++
	}
	var states []string
	for _, w := range batchWords { // a fixed order, not the map's
		if c := count[w.state]; c > 0 {
			states = append(states, fmt.Sprintf("%d %s", c, w.word))
			delete(count, w.state)
		}
	}
	if len(count) > 0 { // states this package does not know: still counted
		other := 0
		for _, c := range count {
			other += c
		}
		states = append(states, fmt.Sprintf("%d other", other))
	}
	span := fmt.Sprintf("%d", bs[from].Index+1)
	if to-from > 1 {
		span += fmt.Sprintf("–%d", bs[to-1].Index+1)
	}
	row := fmt.Sprintf("| … | | … %s (%s) | %s | |", plural(to-from, "more batch", "more batches"), span, strings.Join(states, ", "))
	if traffic {
		row += " |"
	}
	return row + "\n"
}
