package stats

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/internal/clock"
)

const (
	// tickInterval is how often the rate averages are updated.
	tickInterval = int64(5 * time.Second)
	// windowLength is the length of one recent-latency window; the recent
	// figures cover the current window and the one before it.
	windowLength = int64(30 * time.Second)
	// codeMin and codeMax bound the status codes counted one by one.
	codeMin, codeMax = 100, 599
)

// alphas are the smoothing factors of the 1, 5 and 15 minute averages for a
// tick of tickInterval: 1 - e^(-tick/period). They are never changed.
var alphas = [3]float64{
	1 - math.Exp(-5.0/60/1),
	1 - math.Exp(-5.0/60/5),
	1 - math.Exp(-5.0/60/15),
}

// IsError reports whether a response with this status counts as an error:
// a 5xx (the gateway or its backend failed), or a status outside 100..599,
// such as 0 when no response was written. A 4xx is the client's mistake and
// does not count.
func IsError(status int) bool { return status >= 500 || status < codeMin }

// Recorder records the traffic of one object (a server, a pipeline, a
// backend). Record and Snapshot are safe for concurrent use; Record takes no
// lock and does not allocate. Create it with New.
type Recorder struct {
	clk    clock.Clock
	origin time.Time

	// The total and the errors are sums of the status counters, which
	// saves two atomic adds per request.
	reqBytes  atomic.Uint64
	respBytes atomic.Uint64
	durSum    atomic.Uint64 // nanoseconds
	minDur    atomic.Uint64 // nanoseconds; math.MaxUint64 until the first record
	maxDur    atomic.Uint64 // nanoseconds
	other     atomic.Uint64 // statuses outside codeMin..codeMax
	codes     [codeMax - codeMin + 1]atomic.Uint64

	lastTick atomic.Int64  // nanoseconds since origin of the last tick
	cur      atomic.Uint32 // index in recent of the window being filled

	// mu serialises ticks (rates and window rotation) and Snapshot. Record
	// only ever tries it, once per tick interval, and goes on without
	// waiting if another goroutine holds it.
	mu         sync.Mutex
	ticked     bool       // the rates have had their first tick
	rates      [3]float64 // requests per second: 1, 5, 15 minutes
	errRates   [3]float64 // errors per second: 1, 5, 15 minutes
	tickTotal  uint64     // total at the last tick
	tickErrors uint64     // errors at the last tick
	curWindow  int64      // number of the window recent[cur] holds

	life   histogram
	recent [2]window
}

// New returns an empty Recorder that reads the time from c; nil means
// clock.Real(). It starts no goroutine: the averages advance when Record or
// Snapshot is called.
func New(c clock.Clock) *Recorder {
	if c == nil {
		c = clock.Real()
	}
	r := &Recorder{clk: c, origin: c.Now()}
	r.minDur.Store(math.MaxUint64)
	return r
}

// Record counts one request that got status after dur, with reqBytes of
// request body and respBytes of response body, as finished now by the
// Recorder's clock. Negative durations and sizes count as 0. It is safe for
// concurrent use, takes no lock and does not allocate.
func (r *Recorder) Record(status int, dur time.Duration, reqBytes, respBytes int64) {
	r.RecordAt(r.clk.Now(), status, dur, reqBytes, respBytes)
}

// RecordAt is Record for a caller that already read the Recorder's clock
// when the request finished (to compute dur, say): it saves a clock read,
// about a third of Record's cost.
func (r *Recorder) RecordAt(now time.Time, status int, dur time.Duration, reqBytes, respBytes int64) {
	if t := int64(now.Sub(r.origin)); t-r.lastTick.Load() >= tickInterval && r.mu.TryLock() {
		r.advance(t)
		r.mu.Unlock()
	}
	if status >= codeMin && status <= codeMax {
		r.codes[status-codeMin].Add(1)
	} else {
		r.other.Add(1)
	}
	if reqBytes > 0 {
		r.reqBytes.Add(uint64(reqBytes))
	}
	if respBytes > 0 {
		r.respBytes.Add(uint64(respBytes))
	}
	ns := uint64(max(dur, 0))
	r.durSum.Add(ns)
	for m := r.minDur.Load(); ns < m && !r.minDur.CompareAndSwap(m, ns); m = r.minDur.Load() {
	}
	for m := r.maxDur.Load(); ns > m && !r.maxDur.CompareAndSwap(m, ns); m = r.maxDur.Load() {
	}
	b := bucketOf(ns)
	r.life.counts[b].Add(1)
	r.recent[r.cur.Load()].counts[b].Add(1)
}

// advance runs the ticks due at t nanoseconds since origin. r.mu is held.
func (r *Recorder) advance(t int64) {
	last := r.lastTick.Load()
	n := (t - last) / tickInterval
	if n <= 0 {
		return
	}
	// Everything counted since the last tick goes into the first tick due;
	// the others, if the recorder was idle, saw nothing.
	total, errs := r.counts()
	secs := float64(tickInterval) / float64(time.Second)
	rate := float64(total-r.tickTotal) / secs
	errRate := float64(errs-r.tickErrors) / secs
	r.tickTotal, r.tickErrors = total, errs
	for i, a := range alphas {
		if r.ticked {
			r.rates[i] += a * (rate - r.rates[i])
			r.errRates[i] += a * (errRate - r.errRates[i])
		} else {
			r.rates[i], r.errRates[i] = rate, errRate
		}
		if n > 1 {
			d := math.Pow(1-a, float64(n-1))
			r.rates[i] *= d
			r.errRates[i] *= d
		}
	}
	r.ticked = true
	now := last + n*tickInterval
	r.lastTick.Store(now)

	// Rotate the recent windows. Windows start on tick boundaries, so the
	// first tick of a new window is the one that rotates.
	w := now / windowLength
	switch {
	case w == r.curWindow:
	case w == r.curWindow+1:
		next := 1 - r.cur.Load()
		r.recent[next].reset()
		r.cur.Store(next)
	default:
		r.recent[0].reset()
		r.recent[1].reset()
	}
	r.curWindow = w
}

// Snapshot returns the statistics as of now, which should come from the
// Recorder's clock. Counters recorded concurrently may or may not be
// included, so the figures of one Snapshot can disagree by the few requests
// in flight; they never go backwards.
func (r *Recorder) Snapshot(now time.Time) Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := int64(now.Sub(r.origin))
	r.advance(t)

	s := Snapshot{Time: now, OtherCodes: r.other.Load()}
	s.Total, s.Errors = r.counts()
	if s.Total > 0 {
		s.ErrorPercent = 100 * float64(s.Errors) / float64(s.Total)
	}
	if t > 0 {
		secs := float64(t) / float64(time.Second)
		s.Rate.Mean = float64(s.Total) / secs
		s.ErrorRate.Mean = float64(s.Errors) / secs
	}
	s.Rate.M1, s.Rate.M5, s.Rate.M15 = r.rates[0], r.rates[1], r.rates[2]
	s.ErrorRate.M1, s.ErrorRate.M5, s.ErrorRate.M15 = r.errRates[0], r.errRates[1], r.errRates[2]
	s.RequestSize = size(r.reqBytes.Load(), s.Total)
	s.ResponseSize = size(r.respBytes.Load(), s.Total)
	for i := range r.codes {
		if c := r.codes[i].Load(); c > 0 {
			if s.Codes == nil {
				s.Codes = make(map[int]uint64)
			}
			s.Codes[i+codeMin] = c
		}
	}

	counts := new([numBuckets]uint64)
	n := r.life.load(counts)
	lo, hi := r.minDur.Load(), r.maxDur.Load()
	s.Latency = latency(counts, n, lo, hi)
	if n > 0 {
		// Exact figures where we have them.
		s.Latency.Min = time.Duration(lo)
		s.Latency.Max = time.Duration(hi)
		s.Latency.Mean = time.Duration(r.durSum.Load() / n)
	}
	clear(counts[:])
	n = r.recent[0].load(counts) + r.recent[1].load(counts)
	s.Recent = latency(counts, n, lo, hi)
	return s
}

// counts returns the number of requests and of errors recorded so far.
func (r *Recorder) counts() (total, errs uint64) {
	errs = r.other.Load() // every status outside codeMin..codeMax is an error
	total = errs
	for i := range r.codes {
		c := r.codes[i].Load()
		total += c
		if IsError(i + codeMin) {
			errs += c
		}
	}
	return total, errs
}

func size(total, n uint64) Size {
	s := Size{Total: total}
	if n > 0 {
		s.Mean = float64(total) / float64(n)
	}
	return s
}

// latency summarises n values counted in counts, estimating each figure by
// its bucket's midpoint clamped to [lo, hi], the exact lifetime extremes.
func latency(counts *[numBuckets]uint64, n, lo, hi uint64) Latency {
	l := Latency{Count: n}
	if n == 0 {
		return l
	}
	q := func(f float64) time.Duration {
		return time.Duration(min(max(quantile(counts, n, f), lo), hi))
	}
	var sum float64
	first, last := -1, 0
	for i, c := range counts {
		if c > 0 {
			if first < 0 {
				first = i
			}
			last = i
			sum += float64(c) * float64(bucketMid(i))
		}
	}
	l.Min = time.Duration(min(max(bucketMid(first), lo), hi))
	l.Max = time.Duration(min(max(bucketMid(last), lo), hi))
	l.Mean = time.Duration(sum / float64(n))
	l.P25, l.P50, l.P75 = q(0.25), q(0.50), q(0.75)
	l.P95, l.P98, l.P99, l.P999 = q(0.95), q(0.98), q(0.99), q(0.999)
	return l
}

// Snapshot is the statistics of a Recorder at one moment. It encodes to JSON
// as the admin API shows it.
type Snapshot struct {
	// Time is the moment of the snapshot.
	Time time.Time `json:"time"`
	// Total counts every request recorded.
	Total uint64 `json:"total"`
	// Errors counts the requests whose status IsError.
	Errors uint64 `json:"errors"`
	// ErrorPercent is 100*Errors/Total, or 0 before the first request.
	ErrorPercent float64 `json:"errorPercent"`
	// Rate is the rate of requests, per second.
	Rate Rates `json:"rate"`
	// ErrorRate is the rate of errors, per second.
	ErrorRate Rates `json:"errorRate"`
	// Latency covers every request since the Recorder was created.
	Latency Latency `json:"latency"`
	// Recent covers the requests of the last 30 to 60 seconds: the current
	// 30-second window and the one before it.
	Recent Latency `json:"recentLatency"`
	// RequestSize is the request body bytes.
	RequestSize Size `json:"requestSize"`
	// ResponseSize is the response body bytes.
	ResponseSize Size `json:"responseSize"`
	// Codes counts the requests by status code, for the codes from 100 to
	// 599 that were seen; nil if none was.
	Codes map[int]uint64 `json:"codes,omitempty"`
	// OtherCodes counts the requests with a status outside 100..599.
	OtherCodes uint64 `json:"otherCodes,omitempty"`
}

// Rates are events per second.
type Rates struct {
	// Mean is the average over the Recorder's whole life.
	Mean float64 `json:"mean"`
	// M1, M5 and M15 are exponentially weighted moving averages over 1, 5
	// and 15 minutes, updated every 5 seconds. They are 0 until the first
	// 5 seconds have passed; the first update sets them to the rate of
	// those 5 seconds.
	M1  float64 `json:"m1"`
	M5  float64 `json:"m5"`
	M15 float64 `json:"m15"`
}

// Latency summarises request durations. In JSON the durations are integer
// nanoseconds. Quantiles are within RelativeError of the true value (for
// durations under about 18 minutes), and never below Min or above Max.
type Latency struct {
	// Count is how many durations the figures cover.
	Count uint64 `json:"count"`
	// Min, Mean and Max are exact for the lifetime figures; for the recent
	// ones they are estimated from the histogram, within RelativeError.
	Min  time.Duration `json:"min"`
	Mean time.Duration `json:"mean"`
	Max  time.Duration `json:"max"`
	// P25 to P999 are the 25th to 99.9th percentiles.
	P25  time.Duration `json:"p25"`
	P50  time.Duration `json:"p50"`
	P75  time.Duration `json:"p75"`
	P95  time.Duration `json:"p95"`
	P98  time.Duration `json:"p98"`
	P99  time.Duration `json:"p99"`
	P999 time.Duration `json:"p999"`
}

// Size summarises body sizes in bytes.
type Size struct {
	// Total is the sum of the sizes.
	Total uint64 `json:"total"`
	// Mean is Total divided by the number of requests.
	Mean float64 `json:"mean"`
}
