package resilience

import (
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// transitions records a breaker's onChange calls.
type transitions struct {
	mu  sync.Mutex
	got []string
}

func (r *transitions) on(from, to State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, from.String()+"->"+to.String())
}

func (r *transitions) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// breakerSpec is a small count-based breaker: 10 calls, 50% failures or
// slow calls (1s or longer), 3 trial calls, 1 minute open.
func breakerSpec() BreakerSpec {
	var s BreakerSpec
	s.SetDefaults()
	s.SlidingWindowSize = 10
	s.MinimumNumberOfCalls = 10
	s.SlowCallRateThreshold = 50
	s.SlowCallDurationThreshold = time.Second
	s.PermittedNumberOfCallsInHalfOpenState = 3
	s.WaitDurationInOpenState = time.Minute
	return s
}

func newBreaker(t *testing.T, spec BreakerSpec, clk Clock) (*Breaker, *transitions) {
	t.Helper()
	tr := &transitions{}
	b, err := NewBreaker(spec, clk, tr.on)
	if err != nil {
		t.Fatal(err)
	}
	return b, tr
}

// call makes one call that must be let through.
func call(t *testing.T, b *Breaker, failed bool) {
	t.Helper()
	p, ok := b.Acquire()
	if !ok {
		t.Fatalf("Acquire refused in state %v", b.State())
	}
	p.Done(failed)
}

func calls(t *testing.T, b *Breaker, n int, failed bool) {
	t.Helper()
	for range n {
		call(t, b, failed)
	}
}

func wantState(t *testing.T, b *Breaker, want State) {
	t.Helper()
	if got := b.State(); got != want {
		t.Fatalf("state = %v, want %v", got, want)
	}
}

func wantTransitions(t *testing.T, tr *transitions, want ...string) {
	t.Helper()
	if got := tr.list(); !slices.Equal(got, want) {
		t.Fatalf("transitions = %q, want %q", got, want)
	}
}

// trip opens b with failures.
func trip(t *testing.T, b *Breaker) {
	t.Helper()
	calls(t, b, 10, true)
	wantState(t, b, Open)
}

func TestBreakerClosedToOpenOnFailureRate(t *testing.T) {
	b, tr := newBreaker(t, breakerSpec(), newFake())
	calls(t, b, 5, false)
	calls(t, b, 4, true)
	wantState(t, b, Closed) // 9 calls: fewer than minimumNumberOfCalls
	call(t, b, true)        // 5 of 10 failed: 50% reaches the threshold
	wantState(t, b, Open)
	wantTransitions(t, tr, "closed->open")
	if _, ok := b.Acquire(); ok {
		t.Fatal("open breaker let a call through")
	}
	m := b.Metrics()
	if m.State != Open || m.Calls != 10 || m.FailedCalls != 5 || m.FailureRate != 50 {
		t.Fatalf("metrics = %+v", m)
	}
}

func TestBreakerStaysClosedBelowThreshold(t *testing.T) {
	b, tr := newBreaker(t, breakerSpec(), newFake())
	for range 10 { // 4 of every 10 fail: 40% < 50%
		calls(t, b, 6, false)
		calls(t, b, 4, true)
	}
	wantState(t, b, Closed)
	wantTransitions(t, tr)
}

func TestBreakerNotBeforeMinimumNumberOfCalls(t *testing.T) {
	spec := breakerSpec()
	spec.SlidingWindowSize = 100
	spec.MinimumNumberOfCalls = 20
	b, tr := newBreaker(t, spec, newFake())
	calls(t, b, 19, true) // 100% failures, but only 19 calls
	wantState(t, b, Closed)
	call(t, b, true)
	wantState(t, b, Open)
	wantTransitions(t, tr, "closed->open")
}

func TestBreakerMinimumCallsCappedByCountWindow(t *testing.T) {
	spec := breakerSpec()
	spec.SlidingWindowSize = 5
	spec.MinimumNumberOfCalls = 100 // more than the window can hold: means 5
	b, _ := newBreaker(t, spec, newFake())
	calls(t, b, 4, true)
	wantState(t, b, Closed)
	call(t, b, true)
	wantState(t, b, Open)
}

func TestBreakerClosedToOpenOnSlowCallRate(t *testing.T) {
	f := newFake()
	b, tr := newBreaker(t, breakerSpec(), f)
	slow := func() {
		p, ok := b.Acquire()
		if !ok {
			t.Fatal("refused")
		}
		f.Advance(time.Second) // exactly the threshold: slow
		p.Done(false)
	}
	for range 4 {
		slow()
	}
	p, _ := b.Acquire()
	f.Advance(time.Second - 1) // just under: not slow
	p.Done(false)
	calls(t, b, 4, false)
	wantState(t, b, Closed) // 9 calls, 4 slow
	slow()                  // 10 calls, 5 slow: 50%
	wantState(t, b, Open)
	wantTransitions(t, tr, "closed->open")
	if m := b.Metrics(); m.SlowCalls != 5 || m.FailedCalls != 0 || m.SlowCallRate != 50 {
		t.Fatalf("metrics = %+v", m)
	}
}

func TestBreakerCountWindowSlides(t *testing.T) {
	b, _ := newBreaker(t, breakerSpec(), newFake())
	calls(t, b, 4, true)
	calls(t, b, 6, false) // 40%
	calls(t, b, 4, false) // the 4 failures leave the ring
	if m := b.Metrics(); m.Calls != 10 || m.FailedCalls != 0 {
		t.Fatalf("metrics = %+v", m)
	}
	calls(t, b, 4, true) // 40% again
	wantState(t, b, Closed)
	call(t, b, true) // 50%
	wantState(t, b, Open)
}

func TestBreakerOpenToHalfOpenAfterWait(t *testing.T) {
	f := newFake()
	b, tr := newBreaker(t, breakerSpec(), f)
	trip(t, b)
	f.Advance(time.Minute - 1)
	if _, ok := b.Acquire(); ok {
		t.Fatal("let a call through before waitDurationInOpenState")
	}
	f.Advance(1)
	wantState(t, b, Open) // no background goroutine: the next Acquire moves it
	p, ok := b.Acquire()
	if !ok {
		t.Fatal("refused the first call after waitDurationInOpenState")
	}
	wantState(t, b, HalfOpen)
	wantTransitions(t, tr, "closed->open", "open->half-open")
	p.Done(false)
}

func TestBreakerHalfOpenToClosed(t *testing.T) {
	f := newFake()
	b, tr := newBreaker(t, breakerSpec(), f)
	trip(t, b)
	f.Advance(time.Minute)
	calls(t, b, 2, false)
	wantState(t, b, HalfOpen)
	call(t, b, true) // 1 of 3 failed: 33% < 50%
	wantState(t, b, Closed)
	wantTransitions(t, tr, "closed->open", "open->half-open", "half-open->closed")
	if m := b.Metrics(); m.Calls != 0 {
		t.Fatalf("closing did not empty the window: %+v", m)
	}
	calls(t, b, 9, true) // a fresh window: needs the minimum again
	wantState(t, b, Closed)
}

func TestBreakerHalfOpenToOpen(t *testing.T) {
	f := newFake()
	b, tr := newBreaker(t, breakerSpec(), f)
	trip(t, b)
	f.Advance(time.Minute)
	call(t, b, true)
	call(t, b, false)
	wantState(t, b, HalfOpen)
	if m := b.Metrics(); m.State != HalfOpen || m.Calls != 2 || m.FailedCalls != 1 {
		t.Fatalf("half-open metrics = %+v", m)
	}
	call(t, b, true) // 2 of 3: 67%
	wantState(t, b, Open)
	wantTransitions(t, tr, "closed->open", "open->half-open", "half-open->open")
	f.Advance(time.Minute - 1) // a new full wait
	if _, ok := b.Acquire(); ok {
		t.Fatal("reopened breaker let a call through")
	}
	f.Advance(1)
	if _, ok := b.Acquire(); !ok {
		t.Fatal("reopened breaker did not half-open after the wait")
	}
}

func TestBreakerHalfOpenToOpenOnSlowTrials(t *testing.T) {
	f := newFake()
	b, _ := newBreaker(t, breakerSpec(), f)
	trip(t, b)
	f.Advance(time.Minute)
	var ps []Permit
	for range 3 {
		p, ok := b.Acquire()
		if !ok {
			t.Fatal("refused a trial call")
		}
		ps = append(ps, p)
	}
	f.Advance(2 * time.Second)
	for _, p := range ps {
		p.Done(false)
	}
	wantState(t, b, Open)
}

func TestBreakerHalfOpenPermitsLimited(t *testing.T) {
	f := newFake()
	b, _ := newBreaker(t, breakerSpec(), f)
	trip(t, b)
	f.Advance(time.Minute)
	var ps []Permit
	for range 3 {
		p, ok := b.Acquire()
		if !ok {
			t.Fatal("refused a trial call")
		}
		ps = append(ps, p)
	}
	for range 5 {
		if _, ok := b.Acquire(); ok {
			t.Fatal("let more than permittedNumberOfCallsInHalfOpenState through")
		}
	}
	ps[0].Release() // gives the trial slot back
	p, ok := b.Acquire()
	if !ok {
		t.Fatal("a released trial slot was not reusable")
	}
	if _, ok := b.Acquire(); ok {
		t.Fatal("Release freed more than one slot")
	}
	ps[0].Release() // a second Release of the same permit cannot free another slot past the limit
	ps[1].Done(false)
	ps[2].Done(false)
	wantState(t, b, HalfOpen) // two of three done
	p.Done(false)
	wantState(t, b, Closed)
}

func TestBreakerHalfOpenMaxWait(t *testing.T) {
	f := newFake()
	spec := breakerSpec()
	spec.MaxWaitDurationInHalfOpenState = 10 * time.Second
	b, tr := newBreaker(t, spec, f)
	trip(t, b)
	f.Advance(time.Minute)
	p, ok := b.Acquire() // half-open; this trial call hangs
	if !ok {
		t.Fatal("refused")
	}
	f.Advance(10*time.Second - 1)
	if _, ok := b.Acquire(); !ok {
		t.Fatal("refused a trial call before maxWaitDurationInHalfOpenState")
	}
	f.Advance(1)
	if _, ok := b.Acquire(); ok {
		t.Fatal("let a call through after maxWaitDurationInHalfOpenState")
	}
	wantState(t, b, Open)
	wantTransitions(t, tr, "closed->open", "open->half-open", "half-open->open")
	f.Advance(time.Minute)
	if _, ok := b.Acquire(); !ok {
		t.Fatal("did not half-open again after the wait")
	}
	p.Done(true) // stale: from the previous half-open generation
	p.Release()
	if m := b.Metrics(); m.State != HalfOpen || m.Calls != 0 {
		t.Fatalf("a stale half-open permit counted in the next trial: %+v", m)
	}
	for range 2 {
		if _, ok := b.Acquire(); !ok {
			t.Fatal("a stale Release or Done took a trial slot")
		}
	}
	if _, ok := b.Acquire(); ok {
		t.Fatal("a stale Release freed a trial slot")
	}
}

func TestBreakerHalfOpenWithoutMaxWaitStays(t *testing.T) {
	f := newFake()
	b, _ := newBreaker(t, breakerSpec(), f)
	trip(t, b)
	f.Advance(time.Minute)
	for range 3 {
		if _, ok := b.Acquire(); !ok {
			t.Fatal("refused")
		}
	}
	f.Advance(24 * time.Hour)
	if _, ok := b.Acquire(); ok {
		t.Fatal("let a fourth call through")
	}
	wantState(t, b, HalfOpen)
}

func TestBreakerStalePermitsIgnored(t *testing.T) {
	f := newFake()
	b, tr := newBreaker(t, breakerSpec(), f)
	old, _ := b.Acquire() // closed generation
	trip(t, b)
	f.Advance(time.Minute)
	old.Done(true) // would be a trial failure if it counted
	calls(t, b, 3, false)
	wantState(t, b, Closed)

	// A permit from a closed generation must not count in the next one.
	old, _ = b.Acquire()
	trip(t, b)
	f.Advance(time.Minute)
	calls(t, b, 3, false)
	wantState(t, b, Closed)
	for range 9 {
		call(t, b, true)
	}
	old.Done(true) // would be the 10th failure in the window
	wantState(t, b, Closed)
	if m := b.Metrics(); m.Calls != 9 {
		t.Fatalf("a stale permit was counted: %+v", m)
	}

	wantTransitions(t, tr,
		"closed->open", "open->half-open", "half-open->closed",
		"closed->open", "open->half-open", "half-open->closed")
}

func TestBreakerZeroPermit(t *testing.T) {
	var p Permit
	p.Done(true)
	p.Release()
}

func TestBreakerTimeBasedWindow(t *testing.T) {
	f := newFake()
	spec := breakerSpec()
	spec.SlidingWindowType = TimeBased
	spec.SlidingWindowSize = 10 // seconds
	spec.MinimumNumberOfCalls = 4
	b, tr := newBreaker(t, spec, f)

	calls(t, b, 3, true) // second 0
	f.Advance(9 * time.Second)
	if m := b.Metrics(); m.Calls != 3 {
		t.Fatalf("calls of second 0 expired at second 9: %+v", m)
	}
	f.Advance(time.Second) // second 10: second 0 has left the window
	if m := b.Metrics(); m.Calls != 0 {
		t.Fatalf("calls of second 0 still counted at second 10: %+v", m)
	}
	calls(t, b, 3, true)
	wantState(t, b, Closed) // the expired failures do not add up
	f.Advance(5 * time.Second)
	call(t, b, false) // second 15: 4 calls, 3 failed
	wantState(t, b, Open)
	wantTransitions(t, tr, "closed->open")
	if m := b.Metrics(); m.Calls != 4 || m.FailedCalls != 3 || m.FailureRate != 75 {
		t.Fatalf("metrics = %+v", m)
	}
}

func TestBreakerTimeBasedBucketsExpireOneByOne(t *testing.T) {
	f := newFake()
	spec := breakerSpec()
	spec.SlidingWindowType = TimeBased
	spec.SlidingWindowSize = 3
	spec.MinimumNumberOfCalls = 100
	b, _ := newBreaker(t, spec, f)
	for sec := range 3 {
		calls(t, b, sec+1, sec == 1) // 1 ok, 2 failed, 3 ok
		f.Advance(time.Second)
	}
	for _, want := range []struct{ calls, failed int64 }{{5, 2}, {3, 0}, {0, 0}} {
		if m := b.Metrics(); m.Calls != want.calls || m.FailedCalls != want.failed {
			t.Fatalf("metrics = %+v, want %d calls, %d failed", m, want.calls, want.failed)
		}
		f.Advance(time.Second)
	}
	f.Advance(time.Hour) // a long idle spell clears everything at once
	calls(t, b, 2, true)
	if m := b.Metrics(); m.Calls != 2 {
		t.Fatalf("metrics after idle = %+v", m)
	}
}

func TestBreakerOnChangeMayReadTheBreaker(t *testing.T) {
	var b *Breaker
	var seen []BreakerMetrics
	b, err := NewBreaker(breakerSpec(), newFake(), func(from, to State) {
		seen = append(seen, b.Metrics())
		if b.State() != to {
			t.Errorf("State() in onChange = %v, want %v", b.State(), to)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	trip(t, b)
	if len(seen) != 1 || seen[0].State != Open {
		t.Fatalf("onChange saw %+v", seen)
	}
}

func TestBreakerNilClockAndCallback(t *testing.T) {
	b, err := NewBreaker(breakerSpec(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	trip(t, b)
}

// TestBreakerConcurrent runs many goroutines through a breaker while they
// move the clock, for the race detector, and checks that the transitions
// reported form a valid sequence.
func TestBreakerConcurrent(t *testing.T) {
	f := newFake()
	spec := breakerSpec()
	spec.WaitDurationInOpenState = time.Second
	b, tr := newBreaker(t, spec, f)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 2000 {
				if i%20 == 0 {
					f.Advance(50 * time.Millisecond)
				}
				p, ok := b.Acquire()
				if !ok {
					continue
				}
				if r.IntN(10) == 0 {
					p.Release()
				} else {
					p.Done(r.IntN(2) == 0)
				}
				_ = b.Metrics()
			}
		})
	}
	wg.Wait()
	valid := map[string]bool{"closed->open": true, "open->half-open": true, "half-open->closed": true, "half-open->open": true}
	prev := "closed"
	for _, s := range tr.list() {
		from, to, _ := strings.Cut(s, "->")
		if !valid[s] || from != prev {
			t.Fatalf("invalid transition sequence %q", tr.list())
		}
		prev = to
	}
	if prev != b.State().String() {
		t.Fatalf("last transition to %v, state %v", prev, b.State())
	}
	if len(tr.list()) < 4 {
		t.Fatalf("the run exercised too few transitions: %q", tr.list())
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Closed: "closed", Open: "open", HalfOpen: "half-open", 7: "unknown"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q", s, s.String())
		}
		if b, _ := s.MarshalText(); string(b) != want {
			t.Errorf("%d.MarshalText() = %q", s, b)
		}
	}
}

// TestCountWindowStrideIsARing checks that the strided slot order keeps the
// ring's meaning: every size consecutive tickets use every slot once.
func TestCountWindowStrideIsARing(t *testing.T) {
	sizes := []int{1, 2, 16, 17, 18, 100, 17 * 19, 17 * 19 * 23 * 29, 1_000_000}
	for _, size := range sizes {
		w := newCountWindow(size, 0)
		if size > 16 && w.stride == 1 {
			t.Errorf("size %d: no stride", size)
		}
		seen := make([]bool, size)
		for _, start := range []uint64{0, 12345} {
			clear(seen)
			for i := start; i < start+uint64(size); i++ {
				slot := i * w.stride % w.size
				if seen[slot] {
					t.Fatalf("size %d: slot %d used twice in one round", size, slot)
				}
				seen[slot] = true
			}
		}
	}
}
