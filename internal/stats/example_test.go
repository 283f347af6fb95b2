package stats_test

import (
	"fmt"
	"time"

	"github.com/sluicegw/sluice/internal/clock"
	"github.com/sluicegw/sluice/internal/stats"
)

// A Recorder per object, fed once per finished request; a TopN beside it for
// the paths. The fake clock stands in for the real one. Percentiles are
// estimates within stats.RelativeError, hence the rounding.
func Example() {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	rec := stats.New(clk)
	paths, err := stats.NewTopN(100)
	if err != nil {
		panic(err)
	}
	// Two minutes at 10 requests a second; one in twenty fails.
	for i := range 1200 {
		status, path := 200, "/users"
		if i%20 == 0 {
			status, path = 502, "/orders"
		}
		rec.Record(status, time.Duration(1+i%10)*time.Millisecond, 0, 512)
		paths.Add(path)
		clk.Advance(100 * time.Millisecond)
	}
	s := rec.Snapshot(clk.Now())
	fmt.Printf("total %d, errors %d (%.0f%%), m1 %.1f/s\n", s.Total, s.Errors, s.ErrorPercent, s.Rate.M1)
	fmt.Printf("latency min %v, p50 %v, max %v\n", s.Latency.Min, s.Latency.P50.Round(100*time.Microsecond), s.Latency.Max)
	fmt.Printf("codes %v, mean response %.0f bytes\n", s.Codes, s.ResponseSize.Mean)
	for _, it := range paths.Top(2) {
		fmt.Println(it.Key, it.Count)
	}
	// Output:
	// total 1200, errors 60 (5%), m1 10.0/s
	// latency min 1ms, p50 5ms, max 10ms
	// codes map[200:1140 502:60], mean response 512 bytes
	// /users 1140
	// /orders 60
}
