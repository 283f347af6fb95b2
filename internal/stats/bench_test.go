package stats_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/clock"
	"github.com/sluicegw/sluice/internal/stats"
)

// BenchmarkRecord measures Record on the real clock, from one goroutine and
// from GOMAXPROCS goroutines sharing one Recorder (the worst case: every
// counter's cache line moves between cores); "at" is RecordAt, without the
// clock read.
func BenchmarkRecord(b *testing.B) {
	durs := make([]time.Duration, 1024)
	r := rand.New(rand.NewPCG(1, 1))
	for i := range durs {
		durs[i] = time.Duration(r.Int64N(int64(50 * time.Millisecond)))
	}
	b.Run("serial", func(b *testing.B) {
		rec := stats.New(clock.Real())
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			rec.Record(200, durs[i&1023], 100, 1000)
			i++
		}
	})
	b.Run("at/serial", func(b *testing.B) {
		rec := stats.New(clock.Real())
		now := time.Now()
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			rec.RecordAt(now, 200, durs[i&1023], 100, 1000)
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		rec := stats.New(clock.Real())
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				rec.Record(200, durs[i&1023], 100, 1000)
				i++
			}
		})
	})
}

// BenchmarkSnapshot measures Snapshot of a Recorder that has seen a spread
// of latencies and status codes.
func BenchmarkSnapshot(b *testing.B) {
	rec := stats.New(clock.Real())
	for i := range 100000 {
		rec.Record(200+i%5*100, time.Duration(i)*time.Microsecond, 0, 0)
	}
	b.ReportAllocs()
	for b.Loop() {
		rec.Snapshot(time.Now())
	}
}

// BenchmarkTopN measures Add with capacity 1000: "tracked" cycles over 500
// keys that are all tracked (the common case for a server's paths);
// "zipf" draws from 100000 distinct keys with a skewed distribution, so some
// Adds evict a key and copy the new one.
func BenchmarkTopN(b *testing.B) {
	tracked := make([]string, 500)
	for i := range tracked {
		tracked[i] = fmt.Sprintf("/api/v1/items/%d", i)
	}
	zipf, _ := zipfStream(9, 1<<16, 100000)
	for _, tc := range []struct {
		name string
		keys []string
	}{{"tracked", tracked}, {"zipf", zipf}} {
		newTop := func(b *testing.B) *stats.TopN {
			top, err := stats.NewTopN(1000)
			if err != nil {
				b.Fatal(err)
			}
			for _, k := range tc.keys {
				top.Add(k)
			}
			b.ReportAllocs()
			return top
		}
		b.Run(tc.name+"/serial", func(b *testing.B) {
			top := newTop(b)
			i := 0
			for b.Loop() {
				top.Add(tc.keys[i%len(tc.keys)])
				i++
			}
		})
		b.Run(tc.name+"/parallel", func(b *testing.B) {
			top := newTop(b)
			b.RunParallel(func(pb *testing.PB) {
				i := rand.IntN(len(tc.keys))
				for pb.Next() {
					top.Add(tc.keys[i%len(tc.keys)])
					i++
				}
			})
		})
	}
}
