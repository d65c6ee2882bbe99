//go:build pprof

package main

// Built only with `-tags pprof` (bench/intake.sh PPROF=1): serves
// net/http/pprof on PPROF_ADDR for profiling under load. Never in releases.

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("PPROF_ADDR"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
