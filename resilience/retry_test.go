package resilience

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func retrySpec() RetrySpec {
	var s RetrySpec
	s.SetDefaults()
	return s
}

func newRetry(t *testing.T, spec RetrySpec, clk Clock, rnd func() float64) *Retry {
	t.Helper()
	r, err := NewRetry(spec, clk, rnd)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// failing is an attempt that always fails and asks to retry, counting its
// calls and checking the attempt numbers.
type failing struct {
	t     *testing.T
	calls int
}

func (f *failing) attempt(_ context.Context, n int) (bool, error) {
	f.calls++
	if n != f.calls {
		f.t.Errorf("attempt number %d, want %d", n, f.calls)
	}
	return true, fmt.Errorf("attempt %d failed", n)
}

func TestRetryAttemptsCount(t *testing.T) {
	for _, attempts := range []int{1, 2, 3, 7} {
		t.Run(fmt.Sprint(attempts), func(t *testing.T) {
			spec := retrySpec()
			spec.MaxAttempts = attempts
			clk := newAuto()
			r := newRetry(t, spec, clk, rand.New(rand.NewPCG(1, 2)).Float64)
			f := &failing{t: t}
			err := r.Do(context.Background(), true, f.attempt)
			if f.calls != attempts {
				t.Fatalf("%d attempts, want %d", f.calls, attempts)
			}
			if want := fmt.Sprintf("attempt %d failed", attempts); err == nil || err.Error() != want {
				t.Fatalf("Do = %v, want the last error %q", err, want)
			}
			// No sleep after the last attempt: one timer per retry.
			if got := len(clk.timers()); got != attempts-1 {
				t.Fatalf("%d timers for %d attempts, want %d", got, attempts, attempts-1)
			}
		})
	}
}

func TestRetryStopsOnSuccessOrNoRetry(t *testing.T) {
	clk := newAuto()
	r := newRetry(t, retrySpec(), clk, nil)
	n := 0
	err := r.Do(context.Background(), true, func(context.Context, int) (bool, error) {
		n++
		if n == 2 {
			return false, nil
		}
		return true, errors.New("boom")
	})
	if err != nil || n != 2 {
		t.Fatalf("Do = %v after %d attempts, want nil after 2", err, n)
	}
	permanent := errors.New("permanent")
	n = 0
	err = r.Do(context.Background(), true, func(context.Context, int) (bool, error) {
		n++
		return false, permanent
	})
	if err != permanent || n != 1 {
		t.Fatalf("Do = %v after %d attempts, want the permanent error after 1", err, n)
	}
}

func TestRetryNonReplayableNeverRetried(t *testing.T) {
	clk := newAuto()
	spec := retrySpec()
	spec.MaxAttempts = 10
	r := newRetry(t, spec, clk, nil)
	for range 100 {
		f := &failing{t: t}
		if err := r.Do(context.Background(), false, f.attempt); err == nil || f.calls != 1 {
			t.Fatalf("a non-replayable request was attempted %d times (err %v)", f.calls, err)
		}
	}
	if len(clk.timers()) != 0 {
		t.Fatal("a non-replayable request slept")
	}
	if req, ret := r.Budget().Counts(); req != 100 || ret != 0 {
		t.Fatalf("budget counts = %d requests, %d retries; want 100, 0", req, ret)
	}
}

func TestBackoffFullJitterBounds(t *testing.T) {
	spec := retrySpec()
	spec.WaitDuration = 100 * time.Millisecond
	spec.MaxWaitDuration = 3 * time.Second
	r := newRetry(t, spec, newFake(), rand.New(rand.NewPCG(7, 7)).Float64)
	for n := 1; n <= 70; n++ {
		ceil := 100 * time.Millisecond
		for i := 1; i < n && ceil < 3*time.Second; i++ {
			ceil *= 2
		}
		ceil = min(ceil, 3*time.Second)
		var lo, hi time.Duration = ceil, 0
		for range 2000 {
			d := r.Backoff(n)
			if d < 0 || d >= ceil {
				t.Fatalf("Backoff(%d) = %v, outside [0, %v)", n, d, ceil)
			}
			lo, hi = min(lo, d), max(hi, d)
		}
		// Full jitter spreads over the whole range, not a band near the top.
		if lo > ceil/20 || hi < ceil-ceil/20 {
			t.Fatalf("Backoff(%d) spans [%v, %v] of [0, %v): not full jitter", n, lo, hi, ceil)
		}
	}
}

func TestBackoffCapAndExtremes(t *testing.T) {
	spec := retrySpec()
	spec.WaitDuration = time.Second
	spec.MaxWaitDuration = 10 * time.Second
	one := func() float64 { return 0.999999999 }
	r := newRetry(t, spec, newFake(), one)
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 1000: 10 * time.Second} {
		if d := r.Backoff(n); d > want || d < want-want/1000 {
			t.Errorf("Backoff(%d) with rnd≈1 = %v, want just under %v", n, d, want)
		}
	}
	spec.MaxWaitDuration = 0 // no cap: must not overflow
	r = newRetry(t, spec, newFake(), one)
	for _, n := range []int{30, 62, 63, 64, 1 << 30} {
		if d := r.Backoff(n); d <= 0 {
			t.Errorf("uncapped Backoff(%d) = %v", n, d)
		}
	}
	r = newRetry(t, spec, newFake(), func() float64 { return 0 })
	if d := r.Backoff(5); d != 0 {
		t.Errorf("Backoff with rnd=0 = %v", d)
	}
}

func TestBackoffRandomPolicy(t *testing.T) {
	spec := retrySpec()
	spec.BackOffPolicy = "RANDOM"
	spec.WaitDuration = time.Second
	spec.RandomizationFactor = 0.25
	spec.MaxWaitDuration = 1200 * time.Millisecond
	r := newRetry(t, spec, newFake(), rand.New(rand.NewPCG(3, 4)).Float64)
	for n := 1; n <= 5; n++ {
		for range 500 {
			d := r.Backoff(n)
			if d < 750*time.Millisecond || d > 1200*time.Millisecond {
				t.Fatalf("Backoff(%d) = %v, outside [750ms, 1.2s]", n, d)
			}
		}
	}
}

func TestRetrySleepsTheBackoff(t *testing.T) {
	clk := newAuto()
	seq := []float64{0.5, 0.25, 0.75}
	i := 0
	rnd := func() float64 { v := seq[i%len(seq)]; i++; return v }
	spec := retrySpec()
	spec.MaxAttempts = 4
	r := newRetry(t, spec, clk, rnd)
	f := &failing{t: t}
	r.Do(context.Background(), true, f.attempt)
	want := []time.Duration{250 * time.Millisecond, 250 * time.Millisecond, 1500 * time.Millisecond}
	if got := clk.timers(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("slept %v, want %v", got, want)
	}
}

func TestRetryContextCancelStopsWaiting(t *testing.T) {
	f := newFake()
	r := newRetry(t, retrySpec(), f, func() float64 { return 0.5 })
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	done := make(chan error)
	go func() {
		done <- r.Do(ctx, true, func(context.Context, int) (bool, error) {
			calls.Add(1)
			return true, errors.New("boom")
		})
	}()
	waitForTimer(t, f, 1) // Do sleeps its first backoff
	cancel()
	if err := <-done; err == nil || err.Error() != "boom" {
		t.Fatalf("Do = %v, want the last attempt's error", err)
	}
	if calls.Load() != 1 {
		t.Fatalf("%d attempts after cancel during the first backoff", calls.Load())
	}
	if f.Waiters() != 0 {
		t.Fatal("the backoff timer was not stopped")
	}
}

func TestRetryDoesNotWaitPastTheDeadline(t *testing.T) {
	f := newFake()
	spec := retrySpec()
	spec.BackOffPolicy = BackOffRandom
	spec.RandomizationFactor = 0 // a fixed 500ms
	r := newRetry(t, spec, f, nil)
	ctx, cancel := WithTimeout(context.Background(), f, 400*time.Millisecond)
	defer cancel()
	n := 0
	err := r.Do(ctx, true, func(context.Context, int) (bool, error) {
		n++
		return true, errors.New("boom")
	})
	if err == nil || n != 1 {
		t.Fatalf("Do = %v after %d attempts; a 500ms backoff cannot fit in 400ms", err, n)
	}
	if f.Waiters() != 1 { // only WithTimeout's own timer
		t.Fatalf("%d timers pending, want only the context's", f.Waiters())
	}
	if _, ret := r.Budget().Counts(); ret != 0 {
		t.Fatal("a retry that was not made was charged to the budget")
	}

	// A done context stops retries too.
	cancel()
	n = 0
	r.Do(ctx, true, func(context.Context, int) (bool, error) {
		n++
		return true, errors.New("boom")
	})
	if n != 1 {
		t.Fatalf("%d attempts with a done context", n)
	}
}

// TestRetryBudgetDeniesAStorm sends 1000 requests that all fail to a
// backend: without a budget they would make 2000 retries.
func TestRetryBudgetDeniesAStorm(t *testing.T) {
	clk := newAuto()
	spec := retrySpec() // ratio 0.2, floor 3/s over 10s
	spec.WaitDuration = 0
	r := newRetry(t, spec, clk, nil)
	retries := 0
	for range 1000 {
		f := &failing{t: t}
		r.Do(context.Background(), true, f.attempt)
		retries += f.calls - 1
	}
	limit := int(0.2*1000 + 3*10)
	if retries > limit {
		t.Fatalf("%d retries for 1000 requests; the budget allows %d", retries, limit)
	}
	if retries < limit-1 {
		t.Fatalf("only %d retries; the budget allows %d", retries, limit)
	}
	if req, ret := r.Budget().Counts(); req != 1000 || ret != int64(retries) {
		t.Fatalf("budget counts = %d, %d", req, ret)
	}
}

func TestBudgetWindowSlides(t *testing.T) {
	f := newFake()
	b, err := NewBudget(0.5, 0, 10*time.Second, f)
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		b.Request()
	}
	granted := 0
	for b.TryRetry() {
		granted++
	}
	if granted != 5 {
		t.Fatalf("granted %d retries for 10 requests at ratio 0.5", granted)
	}
	f.Advance(9 * time.Second) // still in the window
	if b.TryRetry() {
		t.Fatal("granted a retry beyond the budget")
	}
	for range 2 {
		b.Request()
	}
	if !b.TryRetry() || b.TryRetry() {
		t.Fatal("two more requests should allow exactly one more retry")
	}
	f.Advance(time.Second) // the first bucket leaves: 10 requests, 5 retries gone
	if req, ret := b.Counts(); req != 2 || ret != 1 {
		t.Fatalf("counts after the window slid = %d, %d; want 2, 1", req, ret)
	}
	f.Advance(time.Hour)
	if req, ret := b.Counts(); req != 0 || ret != 0 {
		t.Fatalf("counts after an hour = %d, %d", req, ret)
	}
}

func TestBudgetFloor(t *testing.T) {
	f := newFake()
	b, err := NewBudget(0.1, 2, time.Second, f)
	if err != nil {
		t.Fatal(err)
	}
	granted := 0
	for b.TryRetry() { // no requests at all: the floor, 2/s × 1s
		granted++
	}
	if granted != 2 {
		t.Fatalf("granted %d retries on the floor, want 2", granted)
	}
}

func TestBudgetConcurrentBound(t *testing.T) {
	f := newFake()
	b, err := NewBudget(0.2, 1, 10*time.Second, f)
	if err != nil {
		t.Fatal(err)
	}
	var granted atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				b.Request()
				if b.TryRetry() {
					granted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if g := granted.Load(); g > 0.2*8000+10 {
		t.Fatalf("granted %d retries for 8000 requests; the bound is %v", g, 0.2*8000+10)
	}
}

func TestNewBudgetRejectsBadArguments(t *testing.T) {
	for _, c := range []struct {
		ratio  float64
		floor  int
		window time.Duration
		field  string
	}{
		{-1, 3, time.Second, "budgetRatio"},
		{0, 0, time.Second, "budgetRatio"},
		{0.2, -1, time.Second, "minRetriesPerSecond"},
		{0.2, 3, time.Millisecond, "budgetWindow"},
	} {
		_, err := NewBudget(c.ratio, c.floor, c.window, nil)
		wantFieldErr(t, err, c.field)
	}
}
