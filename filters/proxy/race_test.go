//go:build race

package proxy

// raceEnabled reports whether the race detector is on; it allocates.
const raceEnabled = true
