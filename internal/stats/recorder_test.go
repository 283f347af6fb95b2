package stats_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/clock"
	"github.com/sluicegw/sluice/internal/stats"
)

var start = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// TestPercentiles records known latency distributions and checks every
// reported percentile against the exact value of its rank, within the
// documented RelativeError, and the exact minimum, mean and maximum.
func TestPercentiles(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	tests := []struct {
		name string
		gen  func(i int) time.Duration
	}{
		{"uniform 1µs to 10ms", func(int) time.Duration { return time.Microsecond + time.Duration(r.Int64N(int64(10*time.Millisecond))) }},
		{"lognormal around 20ms", func(int) time.Duration {
			return time.Duration(math.Exp(math.Log(20e6) + r.NormFloat64()))
		}},
		{"sequence 1..5000ns", func(i int) time.Duration { return time.Duration(i + 1) }},
		{"constant 3ms", func(int) time.Duration { return 3 * time.Millisecond }},
		{"bimodal 50µs and 2s", func(i int) time.Duration {
			if i%10 == 0 {
				return 2 * time.Second
			}
			return 50 * time.Microsecond
		}},
	}
	quantiles := []struct {
		q   float64
		get func(stats.Latency) time.Duration
	}{
		{0.25, func(l stats.Latency) time.Duration { return l.P25 }},
		{0.50, func(l stats.Latency) time.Duration { return l.P50 }},
		{0.75, func(l stats.Latency) time.Duration { return l.P75 }},
		{0.95, func(l stats.Latency) time.Duration { return l.P95 }},
		{0.98, func(l stats.Latency) time.Duration { return l.P98 }},
		{0.99, func(l stats.Latency) time.Duration { return l.P99 }},
		{0.999, func(l stats.Latency) time.Duration { return l.P999 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clock.NewFake(start)
			rec := stats.New(clk)
			const n = 5000
			durs := make([]time.Duration, n)
			var sum time.Duration
			for i := range durs {
				durs[i] = tt.gen(i)
				sum += durs[i]
				rec.Record(200, durs[i], 0, 0)
			}
			slices.Sort(durs)
			s := rec.Snapshot(clk.Now())
			for _, l := range []struct {
				name string
				lat  stats.Latency
			}{{"lifetime", s.Latency}, {"recent", s.Recent}} {
				if l.lat.Count != n {
					t.Errorf("%s count = %d, want %d", l.name, l.lat.Count, n)
				}
				for _, q := range quantiles {
					want := durs[int(math.Ceil(q.q*n))-1]
					checkClose(t, l.name+" p"+fmtQ(q.q), q.get(l.lat), want)
				}
				checkClose(t, l.name+" min", l.lat.Min, durs[0])
				checkClose(t, l.name+" max", l.lat.Max, durs[n-1])
				checkClose(t, l.name+" mean", l.lat.Mean, sum/n)
			}
			if s.Latency.Min != durs[0] || s.Latency.Max != durs[n-1] || s.Latency.Mean != sum/n {
				t.Errorf("lifetime min/mean/max = %v/%v/%v, want exactly %v/%v/%v",
					s.Latency.Min, s.Latency.Mean, s.Latency.Max, durs[0], sum/n, durs[n-1])
			}
		})
	}
}

func fmtQ(q float64) string {
	b, _ := json.Marshal(q * 100)
	return string(b)
}

func checkClose(t *testing.T, what string, got, want time.Duration) {
	t.Helper()
	if math.Abs(float64(got-want)) > stats.RelativeError*float64(want) {
		t.Errorf("%s = %v, want %v within %.2f%%", what, got, want, 100*stats.RelativeError)
	}
}

// TestLongDurations checks that durations beyond the histogram's range keep
// an exact maximum and percentiles that do not exceed it.
func TestLongDurations(t *testing.T) {
	clk := clock.NewFake(start)
	rec := stats.New(clk)
	rec.Record(200, time.Hour, 0, 0)
	rec.Record(200, 2*time.Hour, 0, 0)
	s := rec.Snapshot(clk.Now())
	if s.Latency.Max != 2*time.Hour || s.Latency.Min != time.Hour {
		t.Errorf("min/max = %v/%v, want 1h0m0s/2h0m0s", s.Latency.Min, s.Latency.Max)
	}
	if s.Latency.P999 > 2*time.Hour || s.Latency.P25 < time.Hour {
		t.Errorf("p25/p999 = %v/%v, want within [1h, 2h]", s.Latency.P25, s.Latency.P999)
	}
}

// TestCounts checks the counters, the error definition and the handling of
// odd input: negative durations and sizes, statuses outside 100..599.
func TestCounts(t *testing.T) {
	clk := clock.NewFake(start)
	rec := stats.New(clk)
	records := []struct {
		status      int
		dur         time.Duration
		req, resp   int64
		wantIsError bool
	}{
		{200, time.Millisecond, 100, 1000, false},
		{200, 2 * time.Millisecond, 0, 500, false},
		{204, time.Millisecond, 50, 0, false},
		{404, time.Millisecond, 0, 20, false},
		{499, time.Millisecond, 0, 0, false},
		{500, time.Millisecond, 10, 30, true},
		{503, time.Millisecond, 0, 0, true},
		{599, time.Millisecond, 0, 0, true},
		{0, -time.Second, -1, -1, true}, // no response written; unknown sizes
		{600, time.Millisecond, 0, 0, true},
		{99, time.Millisecond, 0, 0, true},
	}
	for _, r := range records {
		if got := stats.IsError(r.status); got != r.wantIsError {
			t.Errorf("IsError(%d) = %v, want %v", r.status, got, r.wantIsError)
		}
		rec.Record(r.status, r.dur, r.req, r.resp)
	}
	s := rec.Snapshot(clk.Now())
	if s.Total != 11 || s.Errors != 6 {
		t.Errorf("total/errors = %d/%d, want 11/6", s.Total, s.Errors)
	}
	if want := 100 * 6.0 / 11; math.Abs(s.ErrorPercent-want) > 1e-9 {
		t.Errorf("errorPercent = %v, want %v", s.ErrorPercent, want)
	}
	wantCodes := map[int]uint64{200: 2, 204: 1, 404: 1, 499: 1, 500: 1, 503: 1, 599: 1}
	if len(s.Codes) != len(wantCodes) {
		t.Errorf("codes = %v, want %v", s.Codes, wantCodes)
	}
	for c, n := range wantCodes {
		if s.Codes[c] != n {
			t.Errorf("codes[%d] = %d, want %d", c, s.Codes[c], n)
		}
	}
	if s.OtherCodes != 3 {
		t.Errorf("otherCodes = %d, want 3", s.OtherCodes)
	}
	if s.RequestSize.Total != 160 || s.ResponseSize.Total != 1550 {
		t.Errorf("request/response bytes = %d/%d, want 160/1550", s.RequestSize.Total, s.ResponseSize.Total)
	}
	if want := 1550.0 / 11; math.Abs(s.ResponseSize.Mean-want) > 1e-9 {
		t.Errorf("response mean = %v, want %v", s.ResponseSize.Mean, want)
	}
	if s.Latency.Min != 0 || s.Latency.Max != 2*time.Millisecond {
		t.Errorf("min/max = %v/%v, want 0s/2ms (a negative duration counts as 0)", s.Latency.Min, s.Latency.Max)
	}
}

// TestEmpty checks a Snapshot before any request: zeros, no NaN, and JSON
// that encodes.
func TestEmpty(t *testing.T) {
	clk := clock.NewFake(start)
	rec := stats.New(clk)
	s := rec.Snapshot(clk.Now())
	if s.Total != 0 || s.ErrorPercent != 0 || s.Latency != (stats.Latency{}) || s.Recent != (stats.Latency{}) ||
		s.Rate != (stats.Rates{}) || s.Codes != nil || s.RequestSize.Mean != 0 {
		t.Errorf("empty snapshot = %+v, want zeros", s)
	}
	if _, err := json.Marshal(s); err != nil {
		t.Fatal(err)
	}
}

// TestRates drives a steady stream through the fake clock and checks the
// moving averages against the closed forms: they converge to the rate, jump
// toward a new rate by 1-e^(-t/period), and decay by e^(-t/period) when the
// traffic stops.
func TestRates(t *testing.T) {
	clk := clock.NewFake(start)
	rec := stats.New(clk)
	// run records perSecond requests a second, evenly spaced, for d; every
	// tenth one fails.
	n := 0
	run := func(perSecond int, d time.Duration) {
		step := time.Second / time.Duration(perSecond)
		for range int(d / step) {
			status := 200
			if n%10 == 0 {
				status = 503
			}
			n++
			rec.Record(status, time.Millisecond, 0, 0)
			clk.Advance(step)
		}
	}
	closeTo := func(what string, got, want, tol float64) {
		t.Helper()
		if math.Abs(got-want) > tol*want {
			t.Errorf("%s = %.4f, want %.4f within %.1f%%", what, got, want, 100*tol)
		}
	}

	run(10, 5*time.Minute)
	s := rec.Snapshot(clk.Now())
	closeTo("m1", s.Rate.M1, 10, 0.01)
	closeTo("m5", s.Rate.M5, 10, 0.01)
	closeTo("m15", s.Rate.M15, 10, 0.01)
	closeTo("mean", s.Rate.Mean, 10, 0.01)
	closeTo("error m1", s.ErrorRate.M1, 1, 0.01)
	closeTo("error m15", s.ErrorRate.M15, 1, 0.01)
	closeTo("errorPercent", s.ErrorPercent, 10, 0.01)

	// One minute at twice the rate: each average moves 1-e^(-1/period) of
	// the way from 10 to 20.
	run(20, time.Minute)
	s = rec.Snapshot(clk.Now())
	closeTo("m1 after a minute at 20/s", s.Rate.M1, 20-10*math.Exp(-1), 0.01)
	closeTo("m5 after a minute at 20/s", s.Rate.M5, 20-10*math.Exp(-1.0/5), 0.01)
	closeTo("m15 after a minute at 20/s", s.Rate.M15, 20-10*math.Exp(-1.0/15), 0.01)

	// Five idle minutes, seen by one Snapshot: the averages decay over every
	// missed tick at once.
	m1, m5, m15 := s.Rate.M1, s.Rate.M5, s.Rate.M15
	clk.Advance(5 * time.Minute)
	s = rec.Snapshot(clk.Now())
	closeTo("m1 after 5 idle minutes", s.Rate.M1, m1*math.Exp(-5), 1e-6)
	closeTo("m5 after 5 idle minutes", s.Rate.M5, m5*math.Exp(-1), 1e-6)
	closeTo("m15 after 5 idle minutes", s.Rate.M15, m15*math.Exp(-1.0/3), 1e-6)
}

// TestRecentWindow checks that the recent latency covers the current and
// the previous 30-second window only, while the lifetime figures keep
// everything.
func TestRecentWindow(t *testing.T) {
	clk := clock.NewFake(start)
	rec := stats.New(clk)
	for range 1000 {
		rec.Record(200, time.Millisecond, 0, 0)
	}
	clk.Advance(70 * time.Second) // window 2: windows 0 and 1 are gone
	for range 100 {
		rec.Record(200, 100*time.Millisecond, 0, 0)
	}
	steps := []struct {
		advance            time.Duration
		recent             uint64
		recentP50, lifeP50 time.Duration
	}{
		{0, 100, 100 * time.Millisecond, time.Millisecond},
		{30 * time.Second, 100, 100 * time.Millisecond, time.Millisecond}, // window 3: window 2 is the previous one
		{30 * time.Second, 0, 0, time.Millisecond},                        // window 4: window 2 is gone
		{time.Hour, 0, 0, time.Millisecond},
	}
	for i, st := range steps {
		clk.Advance(st.advance)
		s := rec.Snapshot(clk.Now())
		if s.Recent.Count != st.recent || s.Latency.Count != 1100 {
			t.Errorf("step %d: recent/lifetime count = %d/%d, want %d/1100", i, s.Recent.Count, s.Latency.Count, st.recent)
		}
		checkClose(t, "recent p50", s.Recent.P50, st.recentP50)
		checkClose(t, "lifetime p50", s.Latency.P50, st.lifeP50)
	}
	// Recording resumes into a fresh window.
	rec.Record(200, 5*time.Millisecond, 0, 0)
	s := rec.Snapshot(clk.Now())
	if s.Recent.Count != 1 {
		t.Errorf("recent count = %d, want 1", s.Recent.Count)
	}
	checkClose(t, "recent min", s.Recent.Min, 5*time.Millisecond)
	checkClose(t, "recent max", s.Recent.Max, 5*time.Millisecond)
}

// TestConcurrent records from many goroutines while others advance the
// clock and take snapshots, then checks that nothing was lost. Run it with
// -race.
func TestConcurrent(t *testing.T) {
	clk := clock.NewFake(start)
	rec := stats.New(clk)
	const workers, each = 8, 5000
	codes := []int{200, 201, 404, 500, 503}
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				clk.Advance(time.Second)
			}
		}
	})
	bg.Go(func() {
		var last uint64
		for {
			select {
			case <-stop:
				return
			default:
			}
			s := rec.Snapshot(clk.Now())
			if s.Total < last {
				t.Errorf("total went back from %d to %d", last, s.Total)
				return
			}
			last = s.Total
		}
	})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				rec.Record(codes[(w+i)%len(codes)], time.Duration(i+1)*time.Microsecond, 10, 100)
			}
		})
	}
	wg.Wait()
	close(stop)
	bg.Wait()

	s := rec.Snapshot(clk.Now())
	const total = workers * each
	if s.Total != total || s.Latency.Count != total {
		t.Errorf("total/latency count = %d/%d, want %d", s.Total, s.Latency.Count, total)
	}
	for _, c := range codes {
		if s.Codes[c] != total/uint64(len(codes)) {
			t.Errorf("codes[%d] = %d, want %d", c, s.Codes[c], total/len(codes))
		}
	}
	if s.Errors != 2*total/uint64(len(codes)) {
		t.Errorf("errors = %d, want %d", s.Errors, 2*total/len(codes))
	}
	if s.RequestSize.Total != 10*total || s.ResponseSize.Total != 100*total {
		t.Errorf("sizes = %d/%d, want %d/%d", s.RequestSize.Total, s.ResponseSize.Total, 10*total, 100*total)
	}
	if s.Latency.Min != time.Microsecond || s.Latency.Max != each*time.Microsecond {
		t.Errorf("min/max = %v/%v, want 1µs/%v", s.Latency.Min, s.Latency.Max, each*time.Microsecond)
	}
}

// TestJSON checks the field names the admin API shows.
func TestJSON(t *testing.T) {
	clk := clock.NewFake(start)
	rec := stats.New(clk)
	rec.Record(200, time.Millisecond, 1, 2)
	rec.Record(0, time.Millisecond, 1, 2)
	b, err := json.Marshal(rec.Snapshot(clk.Now()))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "total", "errors", "errorPercent", "rate", "errorRate", "latency",
		"recentLatency", "requestSize", "responseSize", "codes", "otherCodes"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON has no %q: %s", k, b)
		}
	}
	lat := m["latency"].(map[string]any)
	for _, k := range []string{"count", "min", "mean", "max", "p25", "p50", "p75", "p95", "p98", "p99", "p999"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("latency JSON has no %q: %s", k, b)
		}
	}
	if lat["p50"] != float64(time.Millisecond) {
		t.Errorf("latency.p50 = %v, want %d (nanoseconds)", lat["p50"], time.Millisecond)
	}
	if c := m["codes"].(map[string]any); c["200"] != 1.0 {
		t.Errorf("codes = %v, want {\"200\": 1}", c)
	}
	for _, k := range []string{"m1", "m5", "m15", "mean"} {
		if _, ok := m["rate"].(map[string]any)[k]; !ok {
			t.Errorf("rate JSON has no %q: %s", k, b)
		}
	}
}

// TestRecordAllocs checks that Record does not allocate, including the
// calls that run a tick and rotate the recent windows.
func TestRecordAllocs(t *testing.T) {
	clk := clock.NewFake(start)
	rec := stats.New(clk)
	if n := testing.AllocsPerRun(1000, func() {
		rec.Record(200, time.Millisecond, 10, 100)
		clk.Advance(time.Second)
	}); n != 0 {
		t.Errorf("Record allocates %.1f times per call, want 0", n)
	}
}
