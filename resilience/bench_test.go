package resilience

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/clock"
)

// frozenClock always tells the same time (a reading with a monotonic
// clock, like the real one) without locking: benchmarks with
// it measure a policy's own cost apart from the clock read (time.Now costs
// 20-80ns depending on the machine).
type frozenClock struct{ t time.Time }

func (c frozenClock) Now() time.Time                     { return c.t }
func (c frozenClock) NewTimer(time.Duration) clock.Timer { panic("not in benchmarks") }

// benchBreaker never leaves the closed state: the thresholds cannot be
// reached by successes.
func benchBreaker(tb testing.TB, typ WindowType) *Breaker {
	return benchBreakerOn(tb, typ, clock.Real())
}

func benchBreakerOn(tb testing.TB, typ WindowType, clk Clock) *Breaker {
	var s BreakerSpec
	s.SetDefaults()
	s.SlidingWindowType = typ
	s.SlidingWindowSize = 100
	b, err := NewBreaker(s, clk, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func benchLimiter(tb testing.TB) *Limiter { return benchLimiterOn(tb, clock.Real()) }

// benchLimiterOn admits a billion requests a second, so that Reserve keeps
// updating the TAT (a refused Reserve would not write).
func benchLimiterOn(tb testing.TB, clk Clock) *Limiter {
	l, err := NewLimiter(LimiterSpec{LimitRefreshPeriod: time.Second, LimitForPeriod: 1_000_000_000, Burst: 1000, TimeoutDuration: time.Hour}, clk)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

func benchKeyed(tb testing.TB) (*KeyedLimiter, []string) {
	var s LimiterSpec
	s.SetDefaults()
	k, err := NewKeyedLimiter(s, clock.Real(), 10_000)
	if err != nil {
		tb.Fatal(err)
	}
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("10.0.%d.%d", i/256, i%256)
	}
	return k, keys
}

func benchBudget(tb testing.TB) *Budget {
	b, err := NewBudget(0.2, 3, 10*time.Second, clock.Real())
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestZeroAllocs makes the benchmarks' 0 allocs/op a test.
func TestZeroAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	b := benchBreaker(t, CountBased)
	tb := benchBreaker(t, TimeBased)
	open := benchBreaker(t, CountBased)
	for range 100 {
		p, _ := open.Acquire()
		p.Done(true)
	}
	l := benchLimiter(t)
	k, keys := benchKeyed(t)
	churn, err := NewKeyedLimiter(LimiterSpec{LimitRefreshPeriod: time.Second, LimitForPeriod: 10}, clock.Real(), 64)
	if err != nil {
		t.Fatal(err)
	}
	bud := benchBudget(t)
	i := 0
	for name, f := range map[string]func(){
		"breaker count":   func() { p, _ := b.Acquire(); p.Done(false) },
		"breaker time":    func() { p, _ := tb.Acquire(); p.Done(false) },
		"breaker open":    func() { open.Acquire() },
		"limiter":         func() { l.Reserve() },
		"keyed":           func() { i++; k.Reserve(keys[i%len(keys)]) },
		"keyed evictions": func() { i++; churn.Reserve(keys[i%len(keys)]) },
		"budget":          func() { bud.Request(); bud.TryRetry() },
	} {
		for range 1000 { // warm up: fill maps and windows
			f()
		}
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocs/op", name, n)
		}
	}
}

func BenchmarkBreakerAcquireDone(b *testing.B) {
	for _, c := range []struct {
		name string
		typ  WindowType
		clk  Clock
	}{
		{"count", CountBased, clock.Real()},
		{"time", TimeBased, clock.Real()},
		{"count-frozenclock", CountBased, frozenClock{time.Now()}},
		{"time-frozenclock", TimeBased, frozenClock{time.Now()}},
	} {
		b.Run(c.name, func(b *testing.B) {
			br := benchBreakerOn(b, c.typ, c.clk)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					p, ok := br.Acquire()
					if !ok {
						b.Error("refused")
						return
					}
					p.Done(false)
				}
			})
		})
	}
	b.Run("open", func(b *testing.B) {
		br := benchBreaker(b, CountBased)
		for range 100 {
			p, _ := br.Acquire()
			p.Done(true)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, ok := br.Acquire(); ok {
					b.Error("an open breaker let a call through")
					return
				}
			}
		})
	})
}

func BenchmarkLimiterReserve(b *testing.B) {
	for name, clk := range map[string]Clock{"realclock": clock.Real(), "frozenclock": frozenClock{time.Now()}} {
		b.Run(name, func(b *testing.B) {
			l := benchLimiterOn(b, clk)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					l.Reserve()
				}
			})
		})
	}
}

func BenchmarkKeyedLimiterReserve(b *testing.B) {
	k, keys := benchKeyed(b)
	for _, key := range keys {
		k.Reserve(key)
	}
	var seq atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1)) * 7919
		for pb.Next() {
			i++
			k.Reserve(keys[i%len(keys)])
		}
	})
}

func BenchmarkBudget(b *testing.B) {
	bud := benchBudget(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			bud.Request()
			if i++; i%8 == 0 { // a retry every eighth request
				bud.TryRetry()
			}
		}
	})
}
