package resilience_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluicegw/sluice/internal/clock"
	"github.com/sluicegw/sluice/resilience"
)

func ExampleBreaker() {
	clk := clock.NewFake(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	var spec resilience.BreakerSpec
	spec.SetDefaults()
	spec.SlidingWindowSize = 4
	spec.MinimumNumberOfCalls = 4
	spec.PermittedNumberOfCallsInHalfOpenState = 1
	spec.WaitDurationInOpenState = 30 * time.Second
	b, err := resilience.NewBreaker(spec, clk, func(from, to resilience.State) {
		fmt.Println(from, "->", to)
	})
	if err != nil {
		panic(err)
	}

	for _, failed := range []bool{false, true, false, true} { // 50% failed
		if p, ok := b.Acquire(); ok {
			p.Done(failed)
		}
	}
	_, ok := b.Acquire()
	fmt.Println("call allowed:", ok)

	clk.Advance(30 * time.Second)
	p, ok := b.Acquire() // the trial call
	fmt.Println("call allowed:", ok)
	p.Done(false)
	fmt.Println(b.Metrics().State)
	// Output:
	// closed -> open
	// call allowed: false
	// open -> half-open
	// call allowed: true
	// half-open -> closed
	// closed
}

func ExampleLimiter() {
	clk := clock.NewFake(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	l, err := resilience.NewLimiter(resilience.LimiterSpec{
		LimitRefreshPeriod: time.Second,
		LimitForPeriod:     10, // one every 100ms
		TimeoutDuration:    150 * time.Millisecond,
		Burst:              2,
	}, clk)
	if err != nil {
		panic(err)
	}
	for range 5 {
		wait, ok := l.Reserve()
		fmt.Println(ok, wait)
	}
	// Output:
	// true 0s
	// true 0s
	// true 100ms
	// false 200ms
	// false 200ms
}

func ExampleRetry_Do() {
	var spec resilience.RetrySpec
	spec.SetDefaults()
	spec.WaitDuration = 0 // no backoff, to keep the example short
	r, err := resilience.NewRetry(spec, nil, nil)
	if err != nil {
		panic(err)
	}
	errUnavailable := errors.New("503 service unavailable")
	err = r.Do(context.Background(), true, func(ctx context.Context, n int) (retry bool, err error) {
		fmt.Println("attempt", n)
		return true, errUnavailable // worth retrying
	})
	fmt.Println(err)
	// Output:
	// attempt 1
	// attempt 2
	// attempt 3
	// 503 service unavailable
}

func ExampleWithTimeout() {
	clk := clock.NewFake(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	spec := resilience.TimeLimitSpec{Timeout: 5 * time.Second, PerTryTimeout: time.Second}
	ctx, cancel := spec.Overall(context.Background(), clk)
	defer cancel()
	try, cancelTry := spec.PerTry(ctx, clk)
	defer cancelTry()

	clk.Advance(time.Second)
	<-try.Done()
	fmt.Println("try:", context.Cause(try) == resilience.ErrTimeout)
	fmt.Println("request still running:", ctx.Err() == nil)
	// Output:
	// try: true
	// request still running: true
}
