package resilience

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/internal/clock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func newFake() *clock.Fake { return clock.NewFake(t0) }

// autoClock is a fake clock whose timers fire at once: NewTimer advances
// the time by d. It records every timer it made, so tests see each sleep
// without running a second goroutine.
type autoClock struct {
	*clock.Fake
	mu     sync.Mutex
	sleeps []time.Duration
}

func newAuto() *autoClock { return &autoClock{Fake: newFake()} }

func (c *autoClock) NewTimer(d time.Duration) clock.Timer {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.mu.Unlock()
	t := c.Fake.NewTimer(d)
	c.Fake.Advance(d)
	return t
}

func (c *autoClock) timers() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// waitForTimer blocks until some goroutine waits on f. It yields instead of
// sleeping and asserts nothing about time.
func waitForTimer(t *testing.T, f *clock.Fake, n int) {
	t.Helper()
	for f.Waiters() < n {
		runtime.Gosched()
	}
}
