package resilience

import (
	"context"
	"math"
	"sync/atomic"
	"time"

	"github.com/sluicegw/sluice/internal/clock"
)

// Defaults of a LimiterSpec, set by SetDefaults.
const (
	DefaultLimitRefreshPeriod = 10 * time.Millisecond
	DefaultLimitForPeriod     = 50
	DefaultTimeoutDuration    = 100 * time.Millisecond
)

// LimiterSpec configures a rate limiter, with the field names of an
// Easegress v2 RateLimiter policy plus burst:
//
//	limitRefreshPeriod: 10ms
//	limitForPeriod: 50
//	timeoutDuration: 100ms
//	burst: 50
//
// The rate is limitForPeriod per limitRefreshPeriod. SetDefaults sets every
// field to its default; call it on a fresh spec before decoding YAML or
// setting fields in Go. NewLimiter takes the spec as it is.
type LimiterSpec struct {
	// LimitRefreshPeriod is the period of limitForPeriod; more than 0.
	// Default 10ms.
	LimitRefreshPeriod time.Duration `yaml:"limitRefreshPeriod"`
	// LimitForPeriod is the number of requests admitted per
	// limitRefreshPeriod on average; at least 1. Default 50.
	LimitForPeriod int `yaml:"limitForPeriod"`
	// TimeoutDuration is how long a request may wait for a permit: a
	// request that would have to wait longer is rejected at once. 0 means
	// reject whenever a wait would be needed. Default 100ms.
	TimeoutDuration time.Duration `yaml:"timeoutDuration"`
	// Burst is how many requests may be admitted at once after an idle
	// spell (the bucket's capacity); at least 1. 0, the default, means
	// limitForPeriod. Not an Easegress field.
	Burst int `yaml:"burst,omitempty"`
}

// SetDefaults sets every field of s to its default.
func (s *LimiterSpec) SetDefaults() {
	*s = LimiterSpec{
		LimitRefreshPeriod: DefaultLimitRefreshPeriod,
		LimitForPeriod:     DefaultLimitForPeriod,
		TimeoutDuration:    DefaultTimeoutDuration,
	}
}

// Validate checks s. Errors are *yamlx.FieldError values that name the
// field and wrap ErrInvalidSpec.
func (s *LimiterSpec) Validate() error {
	if s.LimitRefreshPeriod <= 0 {
		return invalid("limitRefreshPeriod", "must be more than 0, got %v", s.LimitRefreshPeriod)
	}
	if s.LimitForPeriod < 1 {
		return invalid("limitForPeriod", "must be at least 1, got %d", s.LimitForPeriod)
	}
	if s.TimeoutDuration < 0 {
		return invalid("timeoutDuration", "must not be negative, got %v", s.TimeoutDuration)
	}
	if s.Burst < 0 {
		return invalid("burst", "must not be negative, got %d", s.Burst)
	}
	if iv := s.gcra().interval; float64(iv)*float64(s.burst()) >= math.MaxInt64/4 {
		return invalid("burst", "%d requests at one per %v make too long a bucket", s.burst(), time.Duration(iv))
	}
	return nil
}

func (s *LimiterSpec) burst() int {
	if s.Burst == 0 {
		return s.LimitForPeriod
	}
	return s.Burst
}

// gcra returns the limiter parameters of s.
func (s *LimiterSpec) gcra() gcra {
	// The emission interval is rounded up, so that the limiter never admits
	// more than the nominal rate.
	period, n := int64(s.LimitRefreshPeriod), int64(s.LimitForPeriod)
	interval := max((period+n-1)/n, 1)
	return gcra{interval: interval, tau: interval * int64(s.burst()), timeout: int64(s.TimeoutDuration)}
}

// gcra holds the parameters of the generic cell rate algorithm. Its state
// is one number, the theoretical arrival time (TAT): the time at which the
// bucket will be full again if no more requests come. A request at now
// moves TAT to max(TAT, now) + interval; it conforms when the new TAT is at
// most tau = burst × interval ahead of now, and otherwise may be admitted
// after waiting until it is.
type gcra struct {
	interval int64 // ns between requests at the nominal rate
	tau      int64 // burst × interval
	timeout  int64 // longest wait granted, ns
}

// step computes a reservation at now against tat with the longest
// acceptable wait timeout. It returns the wait, the new TAT, and whether
// the reservation fits.
func (g gcra) step(tat, now, timeout int64) (wait, next int64, ok bool) {
	next = max(tat, now) + g.interval
	wait = max(next-g.tau-now, 0)
	return wait, next, wait <= timeout
}

// retryAfter returns how long from now until a request at tat would be
// admitted without waiting.
func (g gcra) retryAfter(tat, now int64) int64 { return max(max(tat, now)+g.interval-g.tau-now, 0) }

// Limiter is a rate limiter using GCRA with a burst. It is lock-free: a
// reservation is one compare-and-swap of the TAT. In any window of length t
// it admits at most rate × t + burst requests, counting a request admitted
// after a wait at the end of its wait.
//
// A Limiter is safe for concurrent use.
type Limiter struct {
	tat   atomic.Int64 // clock ns since epoch
	g     gcra
	clk   Clock
	epoch time.Time
}

// NewLimiter returns a limiter configured by spec, timed by clk (nil means
// the real clock). It starts with a full bucket.
func NewLimiter(spec LimiterSpec, clk Clock) (*Limiter, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	clk = orReal(clk)
	return &Limiter{g: spec.gcra(), clk: clk, epoch: clk.Now()}, nil
}

// Reserve takes a permit. ok is true when the request is admitted: at once
// when wait is 0, or after the caller has waited wait (at most
// timeoutDuration), for which the permit is already taken. ok is false when
// the request would have to wait longer than timeoutDuration; then nothing
// is taken and wait is how long until a permit is free without waiting (a
// Retry-After).
func (l *Limiter) Reserve() (wait time.Duration, ok bool) {
	w, _, ok := l.reserve(since(l.clk, l.epoch), l.g.timeout)
	return time.Duration(w), ok
}

func (l *Limiter) reserve(now, timeout int64) (wait, next int64, ok bool) {
	for {
		tat := l.tat.Load()
		wait, next, ok = l.g.step(tat, now, timeout)
		if !ok {
			return l.g.retryAfter(tat, now), 0, false
		}
		if l.tat.CompareAndSwap(tat, next) {
			return wait, next, true
		}
	}
}

// RetryAfter returns how long until a request would be admitted without
// waiting; 0 when one would be now.
func (l *Limiter) RetryAfter() time.Duration {
	return time.Duration(l.g.retryAfter(l.tat.Load(), since(l.clk, l.epoch)))
}

// Wait takes a permit, sleeping on the clock for it when a wait of at most
// timeoutDuration is needed. It returns ok false with a Retry-After when the
// wait would be longer than timeoutDuration or than ctx has left, and ok
// false when ctx is done during the wait; then the permit is handed back
// unless later reservations were stacked on it.
func (l *Limiter) Wait(ctx context.Context) (ok bool, retryAfter time.Duration) {
	now := since(l.clk, l.epoch)
	wait, next, ok := l.reserve(now, waitBound(ctx, l.clk, l.g.timeout))
	if !ok {
		return false, time.Duration(wait)
	}
	if wait == 0 {
		return true, 0
	}
	if clock.Sleep(l.clk, time.Duration(wait), ctx.Done()) {
		return true, 0
	}
	l.tat.CompareAndSwap(next, next-l.g.interval)
	return false, l.RetryAfter()
}

// waitBound returns the longest wait worth granting: timeout, or less when
// ctx ends sooner.
func waitBound(ctx context.Context, clk Clock, timeout int64) int64 {
	if rem, ok := remaining(ctx, clk); ok && int64(rem) < timeout {
		return max(int64(rem)-1, -1)
	}
	return timeout
}

var _ specType = (*LimiterSpec)(nil)
