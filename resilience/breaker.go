package resilience

import (
	"encoding"
	"sync"
	"sync/atomic"
	"time"
)

// State is a circuit breaker's state.
type State uint8

// The states of a Breaker; see the package documentation for the machine.
const (
	// Closed lets every call through and watches their outcomes.
	Closed State = iota
	// Open refuses every call until waitDurationInOpenState has passed.
	Open
	// HalfOpen lets a limited number of trial calls through; their outcomes
	// decide between Closed and Open.
	HalfOpen
)

// String returns "closed", "open" or "half-open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "unknown"
}

// MarshalText makes a State show by name in JSON and YAML status output.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// WindowType chooses how a Breaker's sliding window is measured.
type WindowType string

// Sliding window types, spelled as in Easegress and Resilience4j.
const (
	// CountBased keeps the outcomes of the last slidingWindowSize calls.
	CountBased WindowType = "COUNT_BASED"
	// TimeBased keeps the outcomes of the last slidingWindowSize seconds,
	// in one bucket per second.
	TimeBased WindowType = "TIME_BASED"
)

// Defaults of a BreakerSpec, set by SetDefaults.
const (
	DefaultFailureRateThreshold      = 50
	DefaultSlowCallRateThreshold     = 100
	DefaultSlowCallDurationThreshold = 60 * time.Second
	DefaultSlidingWindowSize         = 100
	DefaultMinimumNumberOfCalls      = 100
	DefaultPermittedCallsInHalfOpen  = 10
	DefaultWaitDurationInOpenState   = 60 * time.Second
)

// Upper bounds of slidingWindowSize, which sizes the window's memory.
const (
	maxCountWindow = 1_000_000 // calls: one byte each
	maxTimeWindow  = 86_400    // seconds: one bucket each
)

// BreakerSpec configures a circuit breaker, with the field names of an
// Easegress v2 CircuitBreaker policy:
//
//	slidingWindowType: COUNT_BASED
//	failureRateThreshold: 50
//	slowCallRateThreshold: 100
//	slowCallDurationThreshold: 60s
//	slidingWindowSize: 100
//	minimumNumberOfCalls: 100
//	permittedNumberOfCallsInHalfOpenState: 10
//	waitDurationInOpenState: 60s
//	maxWaitDurationInHalfOpenState: 0s
//
// SetDefaults sets every field to its default; call it on a fresh spec
// before decoding YAML or setting fields in Go. NewBreaker takes the spec as
// it is: a zero threshold or size is an error, not a default.
type BreakerSpec struct {
	// SlidingWindowType is COUNT_BASED (the default; also meant by "") or
	// TIME_BASED.
	SlidingWindowType WindowType `yaml:"slidingWindowType,omitempty"`
	// FailureRateThreshold is the percentage of failed calls in the window,
	// in (0, 100], at or above which the breaker opens. Default 50.
	FailureRateThreshold float64 `yaml:"failureRateThreshold"`
	// SlowCallRateThreshold is the percentage of slow calls in the window,
	// in (0, 100], at or above which the breaker opens. Default 100 (open
	// only when every call is slow).
	SlowCallRateThreshold float64 `yaml:"slowCallRateThreshold"`
	// SlowCallDurationThreshold is the duration from Acquire to Done at or
	// above which a call counts as slow, whether it failed or not; more
	// than 0. Default 60s.
	SlowCallDurationThreshold time.Duration `yaml:"slowCallDurationThreshold"`
	// SlidingWindowSize is the number of calls (COUNT_BASED, at most
	// 1,000,000) or of seconds (TIME_BASED, at most 86,400) the window
	// holds; at least 1. Default 100.
	SlidingWindowSize int `yaml:"slidingWindowSize"`
	// MinimumNumberOfCalls is how many calls the window must hold before
	// the thresholds are evaluated; at least 1. Default 100. With a
	// COUNT_BASED window a value above slidingWindowSize means
	// slidingWindowSize, as in Resilience4j.
	MinimumNumberOfCalls int `yaml:"minimumNumberOfCalls"`
	// PermittedNumberOfCallsInHalfOpenState is the number of trial calls
	// let through in the half-open state; the breaker decides when all of
	// them are done. At least 1. Default 10.
	PermittedNumberOfCallsInHalfOpenState int `yaml:"permittedNumberOfCallsInHalfOpenState"`
	// WaitDurationInOpenState is how long the breaker stays open before the
	// next Acquire moves it to half-open; more than 0. Default 60s.
	WaitDurationInOpenState time.Duration `yaml:"waitDurationInOpenState"`
	// MaxWaitDurationInHalfOpenState bounds the half-open state: the first
	// Acquire after it has passed without a decision opens the breaker
	// again. 0 (the default) means stay half-open until the permitted
	// calls are done.
	MaxWaitDurationInHalfOpenState time.Duration `yaml:"maxWaitDurationInHalfOpenState,omitempty"`
}

// SetDefaults sets every field of s to its default.
func (s *BreakerSpec) SetDefaults() {
	*s = BreakerSpec{
		SlidingWindowType:                     CountBased,
		FailureRateThreshold:                  DefaultFailureRateThreshold,
		SlowCallRateThreshold:                 DefaultSlowCallRateThreshold,
		SlowCallDurationThreshold:             DefaultSlowCallDurationThreshold,
		SlidingWindowSize:                     DefaultSlidingWindowSize,
		MinimumNumberOfCalls:                  DefaultMinimumNumberOfCalls,
		PermittedNumberOfCallsInHalfOpenState: DefaultPermittedCallsInHalfOpen,
		WaitDurationInOpenState:               DefaultWaitDurationInOpenState,
	}
}

// Validate checks s. Errors are *yamlx.FieldError values that name the
// field and wrap ErrInvalidSpec.
func (s *BreakerSpec) Validate() error {
	switch s.SlidingWindowType {
	case "", CountBased, TimeBased:
	default:
		return invalid("slidingWindowType", "%q is not COUNT_BASED or TIME_BASED", s.SlidingWindowType)
	}
	if !(s.FailureRateThreshold > 0 && s.FailureRateThreshold <= 100) {
		return invalid("failureRateThreshold", "must be a percentage in (0, 100], got %v", s.FailureRateThreshold)
	}
	if !(s.SlowCallRateThreshold > 0 && s.SlowCallRateThreshold <= 100) {
		return invalid("slowCallRateThreshold", "must be a percentage in (0, 100], got %v", s.SlowCallRateThreshold)
	}
	if s.SlowCallDurationThreshold <= 0 {
		return invalid("slowCallDurationThreshold", "must be more than 0, got %v", s.SlowCallDurationThreshold)
	}
	limit := maxCountWindow
	if s.SlidingWindowType == TimeBased {
		limit = maxTimeWindow
	}
	if s.SlidingWindowSize < 1 || s.SlidingWindowSize > limit {
		return invalid("slidingWindowSize", "must be in 1..%d, got %d", limit, s.SlidingWindowSize)
	}
	if s.MinimumNumberOfCalls < 1 {
		return invalid("minimumNumberOfCalls", "must be at least 1, got %d", s.MinimumNumberOfCalls)
	}
	if s.PermittedNumberOfCallsInHalfOpenState < 1 {
		return invalid("permittedNumberOfCallsInHalfOpenState", "must be at least 1, got %d", s.PermittedNumberOfCallsInHalfOpenState)
	}
	if s.WaitDurationInOpenState <= 0 {
		return invalid("waitDurationInOpenState", "must be more than 0, got %v", s.WaitDurationInOpenState)
	}
	if s.MaxWaitDurationInHalfOpenState < 0 {
		return invalid("maxWaitDurationInHalfOpenState", "must not be negative, got %v", s.MaxWaitDurationInHalfOpenState)
	}
	return nil
}

// Breaker is a circuit breaker: it watches the outcomes of calls to a
// backend and, when too many fail or are slow, refuses calls for a while so
// the backend can recover. See the package documentation for the state
// machine.
//
// A Breaker is safe for concurrent use. Every granted Permit must end with
// exactly one call of Done or Release; a lost permit in the half-open state
// holds a trial slot until maxWaitDurationInHalfOpenState (or forever when
// that is 0).
type Breaker struct {
	// Read by every Acquire and Done; written only on a transition.
	state     atomic.Uint64               // generation<<2 | State
	openUntil atomic.Int64                // clock ns since epoch at which Open ends
	count     atomic.Pointer[countWindow] // COUNT_BASED: the window of the latest closed generation

	clk      Clock
	epoch    time.Time
	onChange func(from, to State)
	slow     int64 // slowCallDurationThreshold in ns
	waitOpen int64
	maxHalf  int64
	minCalls int64
	failThr  float64
	slowThr  float64
	permits  int
	size     int // slidingWindowSize
	timed    bool

	_         [64]byte // keep mu off the lines Acquire reads
	mu        sync.Mutex
	tw        timeWindow // TIME_BASED window
	halfLeft  int        // trial permits not yet handed out
	halfCalls int64      // trial calls done
	halfFail  int64      // … of which failed
	halfSlow  int64      // … of which slow
	halfSince int64      // when HalfOpen began

	// notify orders onChange calls: it is taken before mu is released and
	// held while onChange runs, so observers see transitions in order.
	notify sync.Mutex
}

const (
	stateMask = 3
	genShift  = 2
)

// NewBreaker returns a closed breaker configured by spec, timed by clk (nil
// means the real clock). onChange, if not nil, is called once for every
// transition, in order, by the goroutine whose Acquire or Done caused it,
// after the breaker's lock is released: it may call State and Metrics, but
// an Acquire or Done that causes another transition from inside onChange
// deadlocks.
func NewBreaker(spec BreakerSpec, clk Clock, onChange func(from, to State)) (*Breaker, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	clk = orReal(clk)
	b := &Breaker{
		clk:      clk,
		epoch:    clk.Now(),
		onChange: onChange,
		slow:     int64(spec.SlowCallDurationThreshold),
		waitOpen: int64(spec.WaitDurationInOpenState),
		maxHalf:  int64(spec.MaxWaitDurationInHalfOpenState),
		minCalls: int64(spec.MinimumNumberOfCalls),
		failThr:  spec.FailureRateThreshold,
		slowThr:  spec.SlowCallRateThreshold,
		permits:  spec.PermittedNumberOfCallsInHalfOpenState,
		size:     spec.SlidingWindowSize,
		timed:    spec.SlidingWindowType == TimeBased,
	}
	if b.timed {
		b.tw.buckets = make([]bucket, b.size)
	} else {
		b.minCalls = min(b.minCalls, int64(b.size))
		b.count.Store(newCountWindow(b.size, 0))
	}
	return b, nil
}

// Permit is a call let through by Acquire. It is a small value; pass it to
// where the call ends and call Done or Release once. The zero Permit is
// inert.
type Permit struct {
	b     *Breaker
	gen   uint64 // the breaker's state word when the permit was granted
	start int64  // clock ns since the breaker's epoch
}

// Done records the call's outcome: failed, and slow when it took
// slowCallDurationThreshold or longer since Acquire. A permit granted in an
// earlier state (before a transition since) is ignored.
func (p Permit) Done(failed bool) {
	if p.b != nil {
		p.b.done(p, failed)
	}
}

// Release returns the permit without recording an outcome, for a call that
// says nothing about the backend (the client went away, a later policy
// refused it). In the half-open state the trial slot becomes free again.
func (p Permit) Release() {
	if p.b != nil {
		p.b.release(p)
	}
}

// Acquire asks to make a call. It returns false (short-circuited) while the
// breaker is open, or half-open with every trial permit handed out. The
// first Acquire after waitDurationInOpenState moves an open breaker to
// half-open; there is no background goroutine.
func (b *Breaker) Acquire() (Permit, bool) {
	now := since(b.clk, b.epoch)
	s := b.state.Load()
	switch State(s & stateMask) {
	case Closed:
		return Permit{b: b, gen: s, start: now}, true
	case Open:
		if now < b.openUntil.Load() {
			return Permit{}, false
		}
	}
	return b.acquireSlow(now)
}

func (b *Breaker) acquireSlow(now int64) (Permit, bool) {
	b.mu.Lock()
	var tr transition
	s := b.state.Load()
	switch State(s & stateMask) {
	case Closed:
		b.mu.Unlock()
		return Permit{b: b, gen: s, start: now}, true
	case Open:
		if now < b.openUntil.Load() {
			b.mu.Unlock()
			return Permit{}, false
		}
		tr = b.toLocked(HalfOpen, now)
		s = b.state.Load()
	case HalfOpen:
		if b.maxHalf > 0 && now-b.halfSince >= b.maxHalf {
			b.unlock(b.toLocked(Open, now))
			return Permit{}, false
		}
	}
	if b.halfLeft == 0 {
		b.unlock(tr)
		return Permit{}, false
	}
	b.halfLeft--
	b.unlock(tr)
	return Permit{b: b, gen: s, start: now}, true
}

func (b *Breaker) done(p Permit, failed bool) {
	if b.state.Load() != p.gen {
		return // stale: the breaker has moved on
	}
	now := since(b.clk, b.epoch)
	var o outcome
	if failed {
		o |= outFailed
	}
	if now-p.start >= b.slow {
		o |= outSlow
	}
	if State(p.gen&stateMask) == Closed && !b.timed {
		// Lock-free: record in this generation's window, lock only to open.
		w := b.count.Load()
		if w.gen != p.gen {
			return
		}
		if calls, failed, slow := w.record(o); calls >= b.minCalls && b.tripped(calls, failed, slow) {
			b.mu.Lock()
			var tr transition
			if b.state.Load() == p.gen {
				tr = b.toLocked(Open, now)
			}
			b.unlock(tr)
		}
		return
	}
	b.mu.Lock()
	if b.state.Load() != p.gen {
		b.mu.Unlock()
		return
	}
	var tr transition
	switch State(p.gen & stateMask) {
	case Closed:
		b.tw.record(now, o)
		if b.tw.calls >= b.minCalls && b.tripped(b.tw.calls, b.tw.failed, b.tw.slow) {
			tr = b.toLocked(Open, now)
		}
	case HalfOpen:
		b.halfCalls++
		b.halfFail += o.failed()
		b.halfSlow += o.slow()
		if b.halfCalls >= int64(b.permits) {
			if b.tripped(b.halfCalls, b.halfFail, b.halfSlow) {
				tr = b.toLocked(Open, now)
			} else {
				tr = b.toLocked(Closed, now)
			}
		}
	}
	b.unlock(tr)
}

func (b *Breaker) release(p Permit) {
	if State(p.gen&stateMask) != HalfOpen || b.state.Load() != p.gen {
		return
	}
	b.mu.Lock()
	if b.state.Load() == p.gen && b.halfLeft < b.permits {
		b.halfLeft++
	}
	b.mu.Unlock()
}

// tripped reports whether the failure or slow-call rate of calls reaches
// its threshold.
func (b *Breaker) tripped(calls, failed, slow int64) bool {
	c := float64(calls)
	return float64(failed)*100 >= b.failThr*c || float64(slow)*100 >= b.slowThr*c
}

// transition is a state change to report after the lock is released.
type transition struct {
	from, to State
	ok       bool
}

// toLocked moves the breaker to state to, starting a new generation so
// that permits of the old one are ignored. b.mu must be held.
func (b *Breaker) toLocked(to State, now int64) transition {
	s := b.state.Load()
	from := State(s & stateMask)
	switch to {
	case Open:
		b.openUntil.Store(now + b.waitOpen)
	case HalfOpen:
		b.halfLeft, b.halfCalls, b.halfFail, b.halfSlow = b.permits, 0, 0, 0
		b.halfSince = now
	}
	next := (s>>genShift+1)<<genShift | uint64(to)
	if to == Closed {
		if b.timed {
			b.tw.reset(now)
		} else {
			b.count.Store(newCountWindow(b.size, next))
		}
	}
	b.state.Store(next)
	return transition{from: from, to: to, ok: true}
}

// unlock releases b.mu and reports tr, if any, to onChange.
func (b *Breaker) unlock(tr transition) {
	if !tr.ok || b.onChange == nil {
		b.mu.Unlock()
		return
	}
	b.notify.Lock()
	b.mu.Unlock()
	defer b.notify.Unlock()
	b.onChange(tr.from, tr.to)
}

// State returns the current state. It does not move an open breaker whose
// wait has passed to half-open; the next Acquire does.
func (b *Breaker) State() State { return State(b.state.Load() & stateMask) }

// BreakerMetrics is a snapshot of a Breaker.
type BreakerMetrics struct {
	State State `json:"state"`
	// Calls, FailedCalls and SlowCalls count the calls in the sliding
	// window (closed; while open, the window that opened the breaker) or
	// the trial calls done (half-open).
	Calls       int64 `json:"calls"`
	FailedCalls int64 `json:"failedCalls"`
	SlowCalls   int64 `json:"slowCalls"`
	// FailureRate and SlowCallRate are percentages of Calls; 0 when Calls
	// is 0.
	FailureRate  float64 `json:"failureRate"`
	SlowCallRate float64 `json:"slowCallRate"`
}

// Metrics returns a snapshot of the breaker's state and counts.
func (b *Breaker) Metrics() BreakerMetrics {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := BreakerMetrics{State: b.State()}
	switch {
	case m.State == HalfOpen:
		m.Calls, m.FailedCalls, m.SlowCalls = b.halfCalls, b.halfFail, b.halfSlow
	case !b.timed:
		m.Calls, m.FailedCalls, m.SlowCalls = b.count.Load().totals()
	default:
		if m.State == Closed {
			b.tw.expire(since(b.clk, b.epoch))
		}
		m.Calls, m.FailedCalls, m.SlowCalls = b.tw.calls, b.tw.failed, b.tw.slow
	}
	if m.Calls > 0 {
		m.FailureRate = 100 * float64(m.FailedCalls) / float64(m.Calls)
		m.SlowCallRate = 100 * float64(m.SlowCalls) / float64(m.Calls)
	}
	return m
}

var (
	_ specType               = (*BreakerSpec)(nil)
	_ encoding.TextMarshaler = State(0)
)
