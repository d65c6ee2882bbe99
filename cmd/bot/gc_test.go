package main

import (
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
)

func TestTuneGCLeavesTheOperatorsSettings(t *testing.T) {
	percent := debug.SetGCPercent(100)
	limit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	for _, env := range []map[string]string{{"GOGC": "50"}, {"GOMEMLIMIT": "1GiB"}} {
		tuneGC(func(k string) string { return env[k] }, log)
		if p := debug.SetGCPercent(100); p != 100 {
			t.Fatalf("with %v set, GOGC became %d", env, p)
		}
		if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
			t.Fatalf("with %v set, the memory limit became %d", env, l)
		}
	}

	tuneGC(func(string) string { return "" }, log)
	if p := debug.SetGCPercent(100); p != embeddedGCPercent {
		t.Fatalf("GOGC is %d, want %d", p, embeddedGCPercent)
	}
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		t.Fatalf("the memory limit became %d; only GOGC is tuned", l)
	}
}
