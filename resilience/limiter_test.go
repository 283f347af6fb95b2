package resilience

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// limiterSpec admits one request per 10ms with a burst of 3 and waits up to
// 25ms.
func limiterSpec() LimiterSpec {
	return LimiterSpec{LimitRefreshPeriod: 10 * time.Millisecond, LimitForPeriod: 1, TimeoutDuration: 25 * time.Millisecond, Burst: 3}
}

func newLimiter(t *testing.T, spec LimiterSpec, clk Clock) *Limiter {
	t.Helper()
	l, err := NewLimiter(spec, clk)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func wantReserve(t *testing.T, got time.Duration, gotOK bool, want time.Duration, wantOK bool) {
	t.Helper()
	if got != want || gotOK != wantOK {
		t.Fatalf("Reserve = %v, %v; want %v, %v", got, gotOK, want, wantOK)
	}
}

func TestLimiterBurstThenWaitThenReject(t *testing.T) {
	f := newFake()
	l := newLimiter(t, limiterSpec(), f)
	for range 3 {
		w, ok := l.Reserve()
		wantReserve(t, w, ok, 0, true)
	}
	w, ok := l.Reserve()
	wantReserve(t, w, ok, 10*time.Millisecond, true)
	w, ok = l.Reserve()
	wantReserve(t, w, ok, 20*time.Millisecond, true)
	// The next would wait 30ms > 25ms: rejected, nothing taken.
	for range 3 {
		w, ok = l.Reserve()
		wantReserve(t, w, ok, 30*time.Millisecond, false)
	}
	if got := l.RetryAfter(); got != 30*time.Millisecond {
		t.Fatalf("RetryAfter = %v, want 30ms", got)
	}
	f.Advance(30 * time.Millisecond)
	if got := l.RetryAfter(); got != 0 {
		t.Fatalf("RetryAfter after the wait = %v, want 0", got)
	}
	w, ok = l.Reserve()
	wantReserve(t, w, ok, 0, true)
	// A long idle spell refills the bucket to the burst, not beyond.
	f.Advance(time.Hour)
	for range 3 {
		w, ok = l.Reserve()
		wantReserve(t, w, ok, 0, true)
	}
	w, ok = l.Reserve()
	wantReserve(t, w, ok, 10*time.Millisecond, true)
}

func TestLimiterZeroTimeoutRejectsAtOnce(t *testing.T) {
	f := newFake()
	spec := limiterSpec()
	spec.TimeoutDuration = 0
	l := newLimiter(t, spec, f)
	for range 3 {
		l.Reserve()
	}
	w, ok := l.Reserve()
	wantReserve(t, w, ok, 10*time.Millisecond, false)
	f.Advance(4 * time.Millisecond)
	w, ok = l.Reserve()
	wantReserve(t, w, ok, 6*time.Millisecond, false)
}

func TestLimiterDefaultBurstIsLimitForPeriod(t *testing.T) {
	var spec LimiterSpec
	spec.SetDefaults() // 50 per 10ms, burst 50
	l := newLimiter(t, spec, newFake())
	for i := range 50 {
		if w, ok := l.Reserve(); !ok || w != 0 {
			t.Fatalf("request %d: %v, %v", i, w, ok)
		}
	}
	if w, ok := l.Reserve(); !ok || w != 200*time.Microsecond {
		t.Fatalf("request 51: %v, %v; want a wait of one interval, 200µs", w, ok)
	}
}

// TestLimiterProperty checks the limiter's contract on random traffic: in
// any window of length t, at most rate×t + burst requests are admitted,
// counting a request that waits at the end of its wait. It also checks that
// the limiter is not stingier than that: a request is only refused when the
// wait it needs exceeds the timeout.
func TestLimiterProperty(t *testing.T) {
	specs := []LimiterSpec{
		limiterSpec(),
		{LimitRefreshPeriod: 10 * time.Millisecond, LimitForPeriod: 3, TimeoutDuration: 0, Burst: 1},        // 3.33ms: rounded
		{LimitRefreshPeriod: time.Second, LimitForPeriod: 7, TimeoutDuration: time.Second, Burst: 20},       // wide waits
		{LimitRefreshPeriod: time.Millisecond, LimitForPeriod: 50, TimeoutDuration: 100 * time.Microsecond}, // 20µs
		{LimitRefreshPeriod: 3 * time.Nanosecond, LimitForPeriod: 7, TimeoutDuration: 5},                    // below 1ns: capped
	}
	for i, spec := range specs {
		for seed := range uint64(20) {
			t.Run(fmt.Sprintf("spec%d/seed%d", i, seed), func(t *testing.T) {
				checkLimiterProperty(t, spec, seed)
			})
		}
	}
}

func checkLimiterProperty(t *testing.T, spec LimiterSpec, seed uint64) {
	f := newFake()
	l := newLimiter(t, spec, f)
	r := rand.New(rand.NewPCG(seed, 42))
	interval := float64(spec.LimitRefreshPeriod) / float64(spec.LimitForPeriod)
	burst := spec.burst()
	var admitted []time.Duration // admission times since t0
	for range 1500 {
		// Idle gaps from nothing to several bucket lengths, then a burst.
		switch r.IntN(4) {
		case 0:
		case 1:
			f.Advance(time.Duration(r.Float64() * interval))
		case 2:
			f.Advance(time.Duration(r.Float64() * 3 * interval))
		case 3:
			f.Advance(time.Duration(r.Float64() * float64(burst+2) * interval))
		}
		now := f.Now().Sub(t0)
		for range 1 + r.IntN(burst+3) {
			w, ok := l.Reserve()
			if !ok {
				if w <= spec.TimeoutDuration {
					t.Fatalf("refused with a wait of %v ≤ timeout %v", w, spec.TimeoutDuration)
				}
				continue
			}
			if w > spec.TimeoutDuration {
				t.Fatalf("admitted with a wait of %v > timeout %v", w, spec.TimeoutDuration)
			}
			admitted = append(admitted, now+w)
		}
	}
	slices.Sort(admitted)
	if len(admitted) < 100 {
		t.Fatalf("only %d admissions: the test exercises too little", len(admitted))
	}
	// The window [a_i, a_j] holds j-i+1 admissions, which must be at most
	// (a_j-a_i)/interval + burst. With v_k = k - a_k/interval that is
	// v_j - v_i ≤ burst - 1 for all i ≤ j: compare each v_j with the least
	// v_i before it.
	least := 0.0
	for j, a := range admitted {
		v := float64(j) - float64(a)/interval
		if j == 0 || v < least {
			least = v
		}
		if v-least > float64(burst-1)+1e-6 {
			for i := range j {
				span := admitted[j] - admitted[i]
				if float64(j-i+1) > float64(span)/interval+float64(burst)+1e-6 {
					t.Fatalf("%d admissions in a window of %v; rate×t + burst = %.3f", j-i+1, span, float64(span)/interval+float64(burst))
				}
			}
			t.Fatalf("admission %d breaks the bound", j)
		}
	}
}

func TestLimiterWaitSleepsOnTheClock(t *testing.T) {
	f := newFake()
	l := newLimiter(t, limiterSpec(), f)
	for range 3 {
		if ok, _ := l.Wait(context.Background()); !ok {
			t.Fatal("Wait refused within the burst")
		}
	}
	done := make(chan bool)
	go func() {
		ok, _ := l.Wait(context.Background())
		done <- ok
	}()
	waitForTimer(t, f, 1)
	f.Advance(10 * time.Millisecond)
	if !<-done {
		t.Fatal("Wait refused a request within the timeout")
	}
	// The next request needs 10ms more: it sleeps exactly that long.
	go func() {
		ok, _ := l.Wait(context.Background())
		done <- ok
	}()
	waitForTimer(t, f, 1)
	f.Advance(10*time.Millisecond - 1)
	select {
	case <-done:
		t.Fatal("Wait returned before its wait had passed on the clock")
	default:
	}
	f.Advance(1)
	if !<-done {
		t.Fatal("Wait refused a request within the timeout")
	}
}

func TestLimiterWaitRejectsBeyondTimeout(t *testing.T) {
	f := newFake()
	spec := limiterSpec()
	spec.TimeoutDuration = 5 * time.Millisecond
	l := newLimiter(t, spec, f)
	for range 3 {
		l.Reserve()
	}
	ok, retry := l.Wait(context.Background())
	if ok || retry != 10*time.Millisecond {
		t.Fatalf("Wait = %v, %v; want false, 10ms", ok, retry)
	}
	if f.Waiters() != 0 {
		t.Fatal("a rejected Wait left a timer")
	}
}

func TestLimiterWaitCancelledHandsThePermitBack(t *testing.T) {
	f := newFake()
	l := newLimiter(t, limiterSpec(), f)
	for range 3 {
		l.Reserve()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool)
	go func() {
		ok, _ := l.Wait(ctx)
		done <- ok
	}()
	waitForTimer(t, f, 1)
	cancel()
	if <-done {
		t.Fatal("Wait succeeded after its context was cancelled")
	}
	if got := l.RetryAfter(); got != 10*time.Millisecond {
		t.Fatalf("RetryAfter = %v, want 10ms: the cancelled permit was not handed back", got)
	}
}

func TestLimiterWaitRespectsContextDeadline(t *testing.T) {
	f := newFake()
	l := newLimiter(t, limiterSpec(), f)
	for range 3 {
		l.Reserve()
	}
	ctx, cancel := WithTimeout(context.Background(), f, 5*time.Millisecond)
	defer cancel()
	// The wait (10ms) fits the timeout (25ms) but not the context (5ms):
	// refuse at once and take nothing.
	ok, retry := l.Wait(ctx)
	if ok || retry != 10*time.Millisecond {
		t.Fatalf("Wait = %v, %v; want false, 10ms", ok, retry)
	}
	if got := l.RetryAfter(); got != 10*time.Millisecond {
		t.Fatalf("RetryAfter = %v: the refused Wait took a permit", got)
	}
}

func TestLimiterConcurrentNeverOverAdmits(t *testing.T) {
	f := newFake()
	spec := LimiterSpec{LimitRefreshPeriod: time.Second, LimitForPeriod: 100, Burst: 50}
	l := newLimiter(t, spec, f)
	var mu sync.Mutex
	admitted := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			n := 0
			for range 1000 {
				if _, ok := l.Reserve(); ok {
					n++
				}
			}
			mu.Lock()
			admitted += n
			mu.Unlock()
		})
	}
	wg.Wait()
	if admitted != 50 {
		t.Fatalf("admitted %d at one instant, want the burst, 50", admitted)
	}
}

func newKeyed(t *testing.T, spec LimiterSpec, clk Clock, maxKeys int) *KeyedLimiter {
	t.Helper()
	k, err := NewKeyedLimiter(spec, clk, maxKeys)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyedLimiterKeysAreIndependent(t *testing.T) {
	f := newFake()
	spec := limiterSpec()
	spec.TimeoutDuration = 0
	k := newKeyed(t, spec, f, 100)
	for range 3 {
		if _, ok := k.Reserve("a"); !ok {
			t.Fatal("refused within a's burst")
		}
	}
	if w, ok := k.Reserve("a"); ok || w != 10*time.Millisecond {
		t.Fatalf("a beyond its burst: %v, %v", w, ok)
	}
	if _, ok := k.Reserve("b"); !ok {
		t.Fatal("b was limited by a's traffic")
	}
	f.Advance(10 * time.Millisecond)
	if _, ok := k.Reserve("a"); !ok {
		t.Fatal("a did not refill")
	}
}

func TestKeyedLimiterNeverExceedsMaxKeys(t *testing.T) {
	for _, maxKeys := range []int{1, 3, 100, 1000, 5000} {
		t.Run(fmt.Sprint(maxKeys), func(t *testing.T) {
			k := newKeyed(t, limiterSpec(), newFake(), maxKeys)
			if k.MaxKeys() != maxKeys {
				t.Fatalf("MaxKeys = %d", k.MaxKeys())
			}
			total := 0
			for i := range k.shards {
				total += k.shards[i].cap
			}
			if total != maxKeys {
				t.Fatalf("shard capacities add up to %d, want %d", total, maxKeys)
			}
			for i := range 3 * maxKeys {
				k.Reserve(fmt.Sprint("key-", i))
				if n := k.Len(); n > maxKeys {
					t.Fatalf("holds %d keys after %d inserts, max %d", n, i+1, maxKeys)
				}
			}
			if n := k.Len(); maxKeys <= 128 && n != maxKeys {
				t.Fatalf("holds %d keys, want a full %d", n, maxKeys)
			}
			for i := range k.shards {
				sh := &k.shards[i]
				n := 0
				for e := sh.root.next; e != &sh.root; e = e.next {
					if sh.m[e.key] != e {
						t.Fatalf("LRU list and map disagree on %q", e.key)
					}
					n++
				}
				if n != len(sh.m) {
					t.Fatalf("LRU list has %d entries, map %d", n, len(sh.m))
				}
			}
		})
	}
}

func TestKeyedLimiterEvictsLeastRecentlyUsed(t *testing.T) {
	f := newFake()
	spec := limiterSpec()
	spec.TimeoutDuration = 0
	spec.Burst = 1
	k := newKeyed(t, spec, f, 3) // one shard
	for _, key := range []string{"a", "b", "c"} {
		k.Reserve(key) // each key's bucket is now empty
	}
	k.Reserve("a") // a is the most recent; b the least
	k.Reserve("d") // evicts b
	if _, ok := k.shards[0].m["b"]; ok {
		t.Fatal("b, the least recently used key, was kept")
	}
	for _, key := range []string{"a", "c", "d"} {
		if _, ok := k.Reserve(key); ok {
			t.Fatalf("%s was evicted or reset: its empty bucket admitted", key)
		}
	}
	if _, ok := k.Reserve("b"); !ok {
		t.Fatal("b came back with an empty bucket; an evicted key starts full")
	}
	if k.Len() != 3 {
		t.Fatalf("Len = %d", k.Len())
	}
}

func TestKeyedLimiterWaitCancelled(t *testing.T) {
	f := newFake()
	k := newKeyed(t, limiterSpec(), f, 10)
	for range 3 {
		k.Reserve("a")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan bool)
	go func() {
		ok, _ := k.Wait(ctx, "a")
		done <- ok
	}()
	waitForTimer(t, f, 1)
	cancel()
	if <-done {
		t.Fatal("Wait succeeded after cancel")
	}
	if w, ok := k.Reserve("a"); !ok || w != 10*time.Millisecond {
		t.Fatalf("Reserve after a cancelled Wait = %v, %v; want the handed-back slot, 10ms", w, ok)
	}

	go func() {
		ok, _ := k.Wait(context.Background(), "b")
		done <- ok
	}()
	if !<-done {
		t.Fatal("Wait refused a fresh key")
	}
	for range 2 {
		k.Reserve("b")
	}
	go func() {
		ok, _ := k.Wait(context.Background(), "b")
		done <- ok
	}()
	waitForTimer(t, f, 1)
	f.Advance(10 * time.Millisecond)
	if !<-done {
		t.Fatal("Wait refused within the timeout")
	}
	if ok, retry := k.Wait(context.Background(), "missing-burst"); !ok || retry != 0 {
		t.Fatalf("Wait on a new key = %v, %v", ok, retry)
	}
}

func TestKeyedLimiterConcurrent(t *testing.T) {
	f := newFake()
	k := newKeyed(t, limiterSpec(), f, 500)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for i := range 5000 {
				k.Reserve(fmt.Sprint(r.IntN(2000)))
				if i%100 == 0 {
					f.Advance(time.Millisecond)
					if n := k.Len(); n > 500 {
						t.Errorf("holds %d keys", n)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
