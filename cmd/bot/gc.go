package main

import (
	"log/slog"
	"runtime/debug"
)

// ownRuntime is set by main: the process is the bot's own binary, so it
// may tune the Go runtime. Tests that run `serve` in-process leave their
// test binary's runtime alone.
var ownRuntime bool

// With the embedded store one process takes the deliveries, stores them
// and runs their jobs, and every job decompresses a payload of tens of
// kilobytes: the heap turns over fast while the live heap stays a few
// megabytes, so at Go's default (GOGC=100) the collector runs several
// times a second. embeddedGCPercent lets the heap grow to five times the
// live data between collections, and embeddedMemoryLimit keeps that from
// growing past SPEC §11's memory budget when the live heap is large: near
// the limit the collector runs as often as it must. Measured with
// `bot serve` on the embedded store at full rate (64 connections, 24 KB
// pushes, 2 cores), six A/B pairs: about 10% more req/s (5,900–6,400 →
// 6,600–7,100), RSS after the load 62 → 97 MB. GOGC=800 added little more
// for 140 MB.
// With Redis the same setting gained nothing measurable (the bot's CPU per
// delivery stayed 101 µs) and cost 30 MB, so it is left at Go's default.
const (
	embeddedGCPercent   = 400
	embeddedMemoryLimit = 160 << 20
)

// tuneGC applies the embedded store's collector settings, unless GOGC or
// GOMEMLIMIT is set: the operator's choice wins.
func tuneGC(getenv func(string) string, log *slog.Logger) {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetGCPercent(embeddedGCPercent)
	debug.SetMemoryLimit(embeddedMemoryLimit)
	log.Debug("garbage collector tuned for the embedded store", "gogc", embeddedGCPercent, "memory_limit_bytes", embeddedMemoryLimit)
}
