package stats

import (
	"math"
	"math/bits"
	"sync/atomic"
)

// The histogram is log-linear: values below 2^subBits nanoseconds each get
// their own bucket, and every power-of-two range [2^k, 2^(k+1)) above that is
// split into subCount equal buckets. A bucket's width is therefore at most
// 1/subCount of its lower bound, and reporting its midpoint is off by at most
// half of that: 1/(2*subCount) = 1/128 ≈ 0.78% of the true value.
//
// Values at or above 2^maxBits ns (about 18.3 minutes) share the last
// bucket; the exact minimum and maximum are kept separately, so quantiles
// are clamped to them.
const (
	subBits    = 6
	subCount   = 1 << subBits
	maxBits    = 40
	maxValue   = 1<<maxBits - 1
	numBuckets = (maxBits - subBits + 1) * subCount

	// RelativeError is the largest relative error of a latency quantile
	// reported by a Snapshot, for values below about 18 minutes: 1/128.
	RelativeError = 1.0 / (2 * subCount)
)

// bucketOf returns the bucket index of v nanoseconds.
func bucketOf(v uint64) int {
	if v > maxValue {
		v = maxValue
	}
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - 1 - subBits
	return (shift+1)*subCount + int(v>>shift) - subCount
}

// bucketRange returns the smallest value of bucket i and its width.
func bucketRange(i int) (lo, width uint64) {
	if i < subCount {
		return uint64(i), 1
	}
	shift := i/subCount - 1
	return uint64(i%subCount+subCount) << shift, 1 << shift
}

// bucketMid returns the value reported for bucket i: its midpoint.
func bucketMid(i int) uint64 {
	lo, w := bucketRange(i)
	return lo + (w-1)/2
}

// histogram counts latencies in nanoseconds with atomic adds. The zero value
// is empty and ready to use.
type histogram struct {
	counts [numBuckets]atomic.Uint64
}

// load adds the histogram's counts into dst and returns how many it added.
// Counts recorded concurrently may or may not be included.
func (h *histogram) load(dst *[numBuckets]uint64) uint64 {
	var n uint64
	for i := range h.counts {
		c := h.counts[i].Load()
		dst[i] += c
		n += c
	}
	return n
}

// quantile returns the value at quantile q (0 < q ≤ 1) of counts, which hold
// total values: the midpoint of the bucket holding the value of rank
// ceil(q*total). It returns 0 when total is 0.
func quantile(counts *[numBuckets]uint64, total uint64, q float64) uint64 {
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank {
			return bucketMid(i)
		}
	}
	return bucketMid(numBuckets - 1)
}

// window is a histogram with 32-bit counters, for the short recent windows:
// half the memory, and a window would need over 4 billion requests in one
// bucket to overflow.
type window struct {
	counts [numBuckets]atomic.Uint32
}

func (w *window) load(dst *[numBuckets]uint64) uint64 {
	var n uint64
	for i := range w.counts {
		c := uint64(w.counts[i].Load())
		dst[i] += c
		n += c
	}
	return n
}

func (w *window) reset() {
	for i := range w.counts {
		w.counts[i].Store(0)
	}
}
