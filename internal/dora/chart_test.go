package dora

import (
	"encoding/xml"
	"strings"
	"testing"

	"github.com/shipbot/shipbot/internal/store/record"
)

type svgDoc struct {
	XMLName xml.Name `xml:"svg"`
	ViewBox string   `xml:"viewBox,attr"`
	Role    string   `xml:"role,attr"`
	Label   string   `xml:"aria-label,attr"`
	Lines   []struct {
		Y1 int `xml:"y1,attr"`
	} `xml:"line"`
	Bars []struct {
		Title string    `xml:"title"`
		Rects []svgRect `xml:"rect"`
	} `xml:"g"`
}

type svgRect struct {
	Class  string `xml:"class,attr"`
	X      int    `xml:"x,attr"`
	Y      int    `xml:"y,attr"`
	Width  int    `xml:"width,attr"`
	Height int    `xml:"height,attr"`
	Fill   string `xml:"fill,attr"`
}

func parseChart(t *testing.T, s string) svgDoc {
	t.Helper()
	var doc svgDoc
	if err := xml.Unmarshal([]byte(s), &doc); err != nil {
		t.Fatalf("not well-formed SVG: %v\n%s", err, s)
	}
	return doc
}

func TestChart(t *testing.T) {
	h := History{Releases: []record.Release{
		// May 2: 4 deploys, 1 failed (the busiest day); May 3: 1 deploy;
		// May 4: 2 deploys, both failed; May 30: 1 deploy, 1 rolled back
		rel("a", ok, at(5, 2, 9, 0)), rel("b", ok, at(5, 2, 10, 0)), rel("c", failed, at(5, 2, 11, 0)), rel("c", ok, at(5, 2, 12, 0)),
		rel("d", ok, at(5, 3, 9, 0)),
		rel("e", failed, at(5, 4, 9, 0)), rel("e", failed, at(5, 4, 10, 0)),
		rel("f", rolledBk, at(5, 30, 9, 0)),
	}}
	out := string(Chart(Compute(h, Window{}, now).Days))
	if strings.Contains(out, "<script") || strings.Contains(out, " on") {
		t.Errorf("the chart carries script: %s", out)
	}
	doc := parseChart(t, out)
	if doc.ViewBox != "0 0 238 49" || doc.Role != "img" {
		t.Errorf("viewBox %q, role %q", doc.ViewBox, doc.Role)
	}
	if want := "Deploys per day over 30 days: 8 deploys, 4 failed"; doc.Label != want {
		t.Errorf("aria-label %q, want %q", doc.Label, want)
	}
	if len(doc.Lines) != 1 || doc.Lines[0].Y1 != chartHeight {
		t.Errorf("want one baseline at %d, got %+v", chartHeight, doc.Lines)
	}
	if len(doc.Bars) != 30 {
		t.Fatalf("%d bars, want 30", len(doc.Bars))
	}
	for i, want := range []struct {
		day   int
		title string
		rects []svgRect // success then failure, bottom-aligned at 48
	}{
		{1, "May 1: 0 deploys", nil},
		{2, "May 2: 4 deploys, 1 failed", []svgRect{
			{"success", 8, 0, 6, 36, colourSuccess}, {"failure", 8, 36, 6, 12, colourFailure}}},
		{3, "May 3: 1 deploy", []svgRect{{"success", 16, 36, 6, 12, colourSuccess}}},
		{4, "May 4: 2 deploys, 2 failed", []svgRect{{"failure", 24, 24, 6, 24, colourFailure}}},
		{30, "May 30: 1 deploy, 1 failed", []svgRect{{"failure", 232, 36, 6, 12, colourFailure}}},
	} {
		bar := doc.Bars[want.day-1]
		if bar.Title != want.title {
			t.Errorf("case %d: title %q, want %q", i, bar.Title, want.title)
		}
		if len(bar.Rects) != len(want.rects) {
			t.Errorf("%s: rects %+v, want %+v", want.title, bar.Rects, want.rects)
			continue
		}
		for j := range want.rects {
			if bar.Rects[j] != want.rects[j] {
				t.Errorf("%s: rect %d = %+v, want %+v", want.title, j, bar.Rects[j], want.rects[j])
			}
		}
	}
}

// A day of one deploy beside a day of a hundred is still visible, and a
// day with a success among many failures keeps some green.
func TestChartSmallBars(t *testing.T) {
	days := []Day{{Start: at(5, 1, 0, 0), Deploys: 100, Failures: 0}, {Start: at(5, 2, 0, 0), Deploys: 2, Failures: 1}}
	doc := parseChart(t, string(Chart(days)))
	if len(doc.Bars) != 2 || len(doc.Bars[1].Rects) != 2 {
		t.Fatalf("bars %+v", doc.Bars)
	}
	ok, bad := doc.Bars[1].Rects[0], doc.Bars[1].Rects[1]
	if ok.Class != "success" || ok.Height < 1 || bad.Class != "failure" || bad.Height < 1 || ok.Y+ok.Height != bad.Y || bad.Y+bad.Height != chartHeight {
		t.Errorf("small day drawn as %+v and %+v", ok, bad)
	}
}

func TestChartEmpty(t *testing.T) {
	doc := parseChart(t, string(Chart(Compute(History{}, Window{}, now).Days)))
	if len(doc.Bars) != 30 || doc.Label != "Deploys per day over 30 days: 0 deploys, 0 failed" {
		t.Fatalf("bars %d, label %q", len(doc.Bars), doc.Label)
	}
	for _, b := range doc.Bars {
		if len(b.Rects) != 0 {
			t.Errorf("a day without deploys has a bar: %+v", b)
		}
	}
	if doc := parseChart(t, string(Chart(nil))); len(doc.Bars) != 0 {
		t.Errorf("no days drew bars")
	}
}
