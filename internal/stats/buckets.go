package stats

import "time"

// Cumulative is the lifetime latency histogram of a Recorder cut at fixed
// upper bounds, the shape Prometheus histograms take.
type Cumulative struct {
	// Counts[i] is the number of durations at or below Bounds[i]
	// (cumulative); durations above the last bound count only in Count.
	Counts []uint64
	// Count is the number of durations recorded.
	Count uint64
	// Sum is the sum of the durations.
	Sum time.Duration
}

// Cumulative returns the lifetime latency histogram cut at bounds, which
// must be ascending. A duration counts at or below a bound when the bucket
// of the fine histogram holding it lies at or below the bound, so a count
// is off by at most the durations within RelativeError of that bound.
// Like Snapshot it is not an atomic cut, and it may be called concurrently
// with Record.
func (r *Recorder) Cumulative(bounds []time.Duration) Cumulative {
	c := Cumulative{Counts: make([]uint64, len(bounds))}
	b := 0
	var seen uint64
	for i := range r.life.counts {
		n := r.life.counts[i].Load()
		if n == 0 {
			continue
		}
		lo, w := bucketRange(i)
		hi := lo + w - 1
		for b < len(bounds) && hi > uint64(max(bounds[b], 0)) {
			c.Counts[b] = seen
			b++
		}
		seen += n
	}
	for ; b < len(bounds); b++ {
		c.Counts[b] = seen
	}
	c.Count = seen
	c.Sum = time.Duration(r.durSum.Load())
	return c
}

// Classes returns the number of requests by status class: index 1 to 5
// for 1xx to 5xx, and index 0 for the statuses outside 100..599. It reads
// only the status counters, and may be called concurrently with Record.
func (r *Recorder) Classes() [6]uint64 {
	var c [6]uint64
	c[0] = r.other.Load()
	for i := range r.codes {
		c[(i+codeMin)/100] += r.codes[i].Load()
	}
	return c
}
