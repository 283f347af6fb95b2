package stats

import (
	"testing"
	"time"

	"github.com/sluicegw/sluice/internal/clock"
)

func TestCumulativeAndClasses(t *testing.T) {
	r := New(clock.NewFake(time.Unix(0, 0)))
	for _, d := range []time.Duration{900 * time.Microsecond, 3 * time.Millisecond, 3 * time.Millisecond, 20 * time.Millisecond, time.Minute} {
		r.Record(200, d, 0, 0)
	}
	r.Record(503, 2*time.Millisecond, 0, 0)
	r.Record(0, 0, 0, 0)
	c := r.Cumulative([]time.Duration{time.Millisecond, 5 * time.Millisecond, 50 * time.Millisecond, time.Second})
	want := []uint64{2, 5, 6, 6} // 0 and 0.9ms; +2ms, 3ms, 3ms; +20ms; the minute is above every bound
	for i, w := range want {
		if c.Counts[i] != w {
			t.Errorf("bucket %d: %d, want %d", i, c.Counts[i], w)
		}
	}
	if c.Count != 7 || c.Sum != time.Minute+28900*time.Microsecond {
		t.Errorf("count %d sum %v", c.Count, c.Sum)
	}
	if got := r.Classes(); got != [6]uint64{1, 0, 5, 0, 0, 1} {
		t.Errorf("classes %v", got)
	}
}
