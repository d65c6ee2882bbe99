package main

import (
	"log/slog"
	"runtime/debug"
)

// ownRuntime is set by main: the process is the bot's own binary, so it
// may tune the Go runtime. Tests that run `serve` in-process leave their
// test binary's runtime alone.
var ownRuntime bool

// embeddedGCPercent is the collector's GOGC with the embedded store. One
// process takes the deliveries, stores them and runs their jobs, and every
// job decompresses a payload of tens of kilobytes: the heap turns over
// fast while the live heap stays a few megabytes, so at Go's default
// (GOGC=100) the collector runs several times a second. At 200 the heap
// may grow to three times the live data between collections; with no
// memory limit beside it, a large live heap (a big backlog's index) never
// makes the collector run back to back.
//
// `bot serve` on the embedded store at full rate (64 connections, 24 KB
// pushes, 2 cores), three rounds: 6,771 / 6,905 / 7,119 req/s at 100,
// 7,150 / 7,468 / 7,344 at 200, 7,295 / 7,320 / 7,170 at 400 (under a
// 160 MiB limit); RSS after the load 65–71, 78–81 and 100–105 MB. With
// Redis, GOGC=400 gained nothing measurable (the bot's CPU per delivery
// stayed 101 µs), so Redis keeps Go's default.
const embeddedGCPercent = 200

// tuneGC applies the embedded store's collector setting, unless GOGC or
// GOMEMLIMIT is set: the operator's choice wins.
func tuneGC(getenv func(string) string, log *slog.Logger) {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetGCPercent(embeddedGCPercent)
	log.Debug("garbage collector tuned for the embedded store", "gogc", embeddedGCPercent)
}
