// Package stats records HTTP traffic statistics on the request path without
// locks or allocations, and summarises them on demand.
//
// # Model
//
// A Recorder belongs to one object (a server, a pipeline, a backend). Every
// finished request calls Record once with its status, duration and body
// sizes (or RecordAt, if the caller already has the finishing time); the
// admin API calls Snapshot, which returns a plain struct that encodes to
// JSON as is. Record only reads the clock and does atomic adds (and a
// compare-and-swap when it sees a new minimum or maximum), so concurrent
// requests never wait for each other or for a Snapshot.
//
// A Recorder keeps:
//
//   - counts: total, errors (see IsError: 5xx, or a status outside
//     100..599) and one counter per status code from 100 to 599;
//   - body sizes: request and response bytes, whose means are per request;
//   - rates: requests and errors per second as exponentially weighted
//     moving averages over 1, 5 and 15 minutes, like Unix load averages,
//     updated every 5 seconds;
//   - latency: exact minimum, mean and maximum over the whole life, and
//     percentiles from log-linear histograms, both over the whole life and
//     over the recent past (the current 30-second window and the one before
//     it, so 30 to 60 seconds).
//
// # Time
//
// No goroutine runs per Recorder, so thousands of them cost only memory.
// Time is read from the injected clock.Clock: the first Record or Snapshot
// after a 5-second boundary takes a mutex, without waiting if another
// goroutine holds it, and runs the ticks due: it updates the averages
// (decaying them over any idle ticks at once) and, on a 30-second boundary,
// clears the older recent window and makes it the current one. Tests drive
// it with clock.Fake.
//
// # Accuracy
//
// The histograms split each power-of-two range of nanoseconds into 64
// buckets (values under 64ns are exact) and report a bucket's midpoint, so a
// percentile is within RelativeError (1/128, under 0.8%) of the true value
// of its rank, clamped to the exact lifetime minimum and maximum. Durations
// of 2^40ns (about 18 minutes) and more share the last bucket. A Snapshot is
// not an atomic cut: requests recorded while it reads may be counted in some
// figures and not yet in others.
//
// # Memory
//
// A Recorder takes about 40 KiB: 17.5 KiB for the lifetime histogram (64-bit
// counters), 2 × 8.75 KiB for the recent windows (32-bit counters) and 4 KiB
// for the status codes.
//
// # Top keys
//
// TopN finds the most frequent keys of a stream, such as the request paths
// of a server, in fixed memory with the Space-Saving algorithm; its error
// bound is documented on the type. It is separate from Recorder: an object
// that wants its top paths keeps one TopN beside its Recorder.
package stats
