package main

import (
	"os"
	"runtime/debug"
)

// defaultGCPercent is the reference binary's GOGC when the environment
// sets none. A gateway's live heap is small (connection buffers, compiled
// routes: a few MiB) while every request allocates a few KiB, so with Go's
// default of 100 the collector runs every few thousand requests and its
// marking and assists are a tenth of the CPU a proxied request costs. At
// 400 it runs a quarter as often for a few more MiB of heap. GOGC (and
// GOMEMLIMIT, as a ceiling) in the environment win.
const defaultGCPercent = 400

func init() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}
