package resilience

import (
	"sync"
	"sync/atomic"
	"time"
)

// budgetBuckets is the number of buckets a Budget's window is cut into; the
// window slides by one bucket (a tenth of it) at a time.
const budgetBuckets = 10

// Budget is a retry budget: it lets retries add at most a ratio of the
// recent request volume, plus a small floor so that a quiet service can
// still retry:
//
//	retries in the window ≤ ratio × requests in the window + minRetriesPerSecond × window
//
// Requests and retries are counted in a sliding window on the clock, cut
// into ten buckets. Counting a request is lock-free (one compare-and-swap
// on the current bucket); granting a retry takes a small mutex, so the
// bound holds exactly under concurrency. Neither allocates.
//
// A Budget is safe for concurrent use; one may be shared by several Retry
// policies in front of the same backend.
type Budget struct {
	reqs [budgetBuckets]atomic.Uint64 // tick<<32 | count

	clk     Clock
	epoch   time.Time
	width   int64   // bucket width, ns
	ratio   float64 // budgetRatio
	reserve float64 // minRetriesPerSecond × window in seconds

	mu   sync.Mutex
	rets [budgetBuckets]uint64 // tick<<32 | count, under mu
}

// NewBudget returns a budget that allows ratio retries per request and
// minRetriesPerSecond on top, over a sliding window of the given length,
// timed by clk (nil means the real clock). Errors name the RetrySpec field
// (budgetRatio, minRetriesPerSecond, budgetWindow) and wrap ErrInvalidSpec.
func NewBudget(ratio float64, minRetriesPerSecond int, window time.Duration, clk Clock) (*Budget, error) {
	if err := validateBudget(ratio, minRetriesPerSecond, window); err != nil {
		return nil, err
	}
	clk = orReal(clk)
	return &Budget{
		clk:     clk,
		epoch:   clk.Now(),
		width:   int64(window) / budgetBuckets,
		ratio:   ratio,
		reserve: float64(minRetriesPerSecond) * window.Seconds(),
	}, nil
}

func validateBudget(ratio float64, minPerSecond int, window time.Duration) error {
	if !(ratio >= 0 && ratio <= 100) {
		return invalid("budgetRatio", "must be in [0, 100], got %v", ratio)
	}
	if minPerSecond < 0 {
		return invalid("minRetriesPerSecond", "must not be negative, got %d", minPerSecond)
	}
	if ratio == 0 && minPerSecond == 0 {
		return invalid("budgetRatio", "is 0 and so is minRetriesPerSecond: no retry could ever be made")
	}
	if window < budgetBuckets*time.Millisecond {
		return invalid("budgetWindow", "must be at least %v, got %v", budgetBuckets*time.Millisecond, window)
	}
	return nil
}

// Request counts one request (a first attempt, retried or not).
func (b *Budget) Request() {
	tick := b.tick()
	add(&b.reqs[tick%budgetBuckets], tick)
}

// TryRetry reports whether a retry fits in the budget and, if it does,
// counts it.
func (b *Budget) TryRetry() bool {
	tick := b.tick()
	b.mu.Lock()
	defer b.mu.Unlock()
	var reqs, rets uint64
	for i := range budgetBuckets {
		reqs += live(b.reqs[i].Load(), tick)
		rets += live(b.rets[i], tick)
	}
	if float64(rets+1) > b.ratio*float64(reqs)+b.reserve {
		return false
	}
	w := &b.rets[tick%budgetBuckets]
	if uint32(*w>>32) == uint32(tick) {
		*w++
	} else {
		*w = tick<<32 | 1
	}
	return true
}

// Counts returns the requests and retries counted in the current window.
func (b *Budget) Counts() (requests, retries int64) {
	tick := b.tick()
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range budgetBuckets {
		requests += int64(live(b.reqs[i].Load(), tick))
		retries += int64(live(b.rets[i], tick))
	}
	return requests, retries
}

// tick returns the number of the current bucket since the epoch.
func (b *Budget) tick() uint64 { return uint64(max(since(b.clk, b.epoch), 0) / b.width) }

// add increments the count of the bucket word w for tick, restarting it when
// it still holds an older tick.
func add(w *atomic.Uint64, tick uint64) {
	for {
		old := w.Load()
		next := tick<<32 | 1
		if uint32(old>>32) == uint32(tick) {
			next = old + 1
		}
		if w.CompareAndSwap(old, next) {
			return
		}
	}
}

// live returns the count of bucket word w if its tick is within the window
// that ends at tick, else 0.
func live(w, tick uint64) uint64 {
	if uint32(tick)-uint32(w>>32) < budgetBuckets {
		return w & (1<<32 - 1)
	}
	return 0
}
