package resilience

import "sync/atomic"

// outcome is one call's result in a breaker window.
type outcome uint32

const (
	outFailed  outcome = 1 << iota
	outSlow            // took slowCallDurationThreshold or longer
	outPresent         // marks a used ring slot
)

func (o outcome) failed() int64 { return int64(o & outFailed) }
func (o outcome) slow() int64   { return int64(o & outSlow >> 1) }

// countWindow is the COUNT_BASED sliding window of one closed generation of
// a breaker: a ring of the outcomes of the last len(ring) calls with running
// totals. It is lock-free: recording takes a ticket (one atomic add on a
// shared counter), swaps the outcome into its slot and adjusts the totals
// by the difference to the outcome it replaced, which is zero while the
// backend behaves. The totals always equal the ring's contents once the
// recordings in flight have finished; a reader may see them off by those
// few. A new closed generation gets a new window, so that late writers of
// an old one cannot disturb it.
type countWindow struct {
	gen    uint64 // the breaker's state word of the generation
	ring   []atomic.Uint32
	size   uint64
	stride uint64 // ticket i goes to slot i×stride mod size
	_      [64]byte
	ticket atomic.Uint64 // calls recorded so far; on a cache line of its own
	_      [56]byte
	failed atomic.Int64
	slow   atomic.Int64
}

func newCountWindow(size int, gen uint64) *countWindow {
	return &countWindow{gen: gen, ring: make([]atomic.Uint32, size), size: uint64(size), stride: stride(uint64(size))}
}

// stride returns a step coprime with size and more than a cache line's
// worth of slots, so that calls recorded one after the other write to
// different cache lines while every size consecutive tickets still fill
// every slot once: i ↦ i×stride mod size is a permutation of each block of
// size tickets, and tickets i and i+size share a slot, as in a plain ring.
func stride(size uint64) uint64 {
	if size <= 16 {
		return 1 // the whole ring fits in one cache line
	}
	for _, p := range []uint64{17, 19, 23, 29, 31, 37} {
		if size%p != 0 {
			return p
		}
	}
	return 1 // size is a multiple of all of them: at least 17×19×23×29×31×37
}

// record adds an outcome and returns the window's totals after it.
func (w *countWindow) record(o outcome) (calls, failed, slow int64) {
	i := w.ticket.Add(1)
	old := outcome(w.ring[(i-1)*w.stride%w.size].Swap(uint32(o | outPresent)))
	if d := o.failed() - old.failed(); d != 0 {
		failed = w.failed.Add(d)
	} else {
		failed = w.failed.Load()
	}
	if d := o.slow() - old.slow(); d != 0 {
		slow = w.slow.Add(d)
	} else {
		slow = w.slow.Load()
	}
	return int64(min(i, w.size)), max(failed, 0), max(slow, 0)
}

// totals returns the window's calls, failed calls and slow calls.
func (w *countWindow) totals() (calls, failed, slow int64) {
	calls = int64(min(w.ticket.Load(), uint64(len(w.ring))))
	return calls, max(w.failed.Load(), 0), max(w.slow.Load(), 0)
}

// timeWindow is the TIME_BASED sliding window: one bucket per second over
// the last len(buckets) seconds, with running totals. Recording and reading
// are O(1), apart from clearing the buckets of seconds skipped since the
// last call (at most len(buckets)). It is guarded by its Breaker's mutex.
type timeWindow struct {
	buckets             []bucket
	head                int64 // the latest second (since the breaker's epoch) accounted for
	idx                 int   // head's bucket
	calls, failed, slow int64
}

type bucket struct{ calls, failed, slow int64 }

// record adds an outcome at clock time now (ns since the epoch).
func (w *timeWindow) record(now int64, o outcome) {
	w.expire(now)
	b := &w.buckets[w.idx]
	b.calls++
	b.failed += o.failed()
	b.slow += o.slow()
	w.calls++
	w.failed += o.failed()
	w.slow += o.slow()
}

// expire drops the buckets of the seconds that have left the window at
// clock time now.
func (w *timeWindow) expire(now int64) {
	sec := now / 1e9
	if sec <= w.head {
		return
	}
	if sec-w.head >= int64(len(w.buckets)) {
		w.reset(now)
		return
	}
	for ; w.head < sec; w.head++ {
		if w.idx++; w.idx == len(w.buckets) {
			w.idx = 0
		}
		b := &w.buckets[w.idx]
		w.calls -= b.calls
		w.failed -= b.failed
		w.slow -= b.slow
		*b = bucket{}
	}
}

// reset empties the window at clock time now.
func (w *timeWindow) reset(now int64) {
	clear(w.buckets)
	w.calls, w.failed, w.slow = 0, 0, 0
	w.head = max(now/1e9, w.head)
	w.idx = int(w.head % int64(len(w.buckets)))
}
