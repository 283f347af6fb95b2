package resilience

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicegw/sluice/internal/clock"
)

func isDone(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

func TestWithTimeoutFakeClockExpires(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFake()
	ctx, cancel := WithTimeout(context.Background(), f, time.Second)
	defer cancel()
	if rem, ok := remaining(ctx, f); !ok || rem != time.Second {
		t.Fatalf("remaining = %v, %v", rem, ok)
	}
	if _, ok := ctx.Deadline(); ok {
		t.Fatal("a fake-clock deadline leaked into Deadline, where wall-clock code would misread it")
	}
	f.Advance(time.Second - 1)
	if isDone(ctx) {
		t.Fatal("done before the timeout")
	}
	f.Advance(1)
	<-ctx.Done()
	if cause := context.Cause(ctx); cause != ErrTimeout {
		t.Fatalf("cause = %v, want ErrTimeout", cause)
	}
	if !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		t.Fatal("ErrTimeout does not wrap context.DeadlineExceeded")
	}
	cancel()
	if context.Cause(ctx) != ErrTimeout {
		t.Fatal("cancel after expiry changed the cause")
	}
}

func TestWithTimeoutFakeClockCancelLeavesNothing(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFake()
	ctx, cancel := WithTimeout(context.Background(), f, time.Second)
	cancel() // returns only after the timer goroutine has exited
	if f.Waiters() != 0 {
		t.Fatal("cancel did not stop the clock timer")
	}
	if !isDone(ctx) || context.Cause(ctx) != context.Canceled {
		t.Fatalf("after cancel: done %v, cause %v", isDone(ctx), context.Cause(ctx))
	}
	cancel() // idempotent
}

func TestWithTimeoutFakeClockParentCancel(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFake()
	parent, cancelParent := context.WithCancelCause(context.Background())
	ctx, cancel := WithTimeout(parent, f, time.Second)
	defer cancel()
	boom := errors.New("client went away")
	cancelParent(boom)
	<-ctx.Done()
	if context.Cause(ctx) != boom {
		t.Fatalf("cause = %v, want the parent's", context.Cause(ctx))
	}
}

func TestWithTimeoutFakeClockNonPositive(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFake()
	ctx, cancel := WithTimeout(context.Background(), f, 0)
	defer cancel()
	if !isDone(ctx) || context.Cause(ctx) != ErrTimeout {
		t.Fatal("a zero timeout did not expire at once")
	}
	if f.Waiters() != 0 {
		t.Fatal("a zero timeout made a timer")
	}
}

func TestWithTimeoutNestedKeepsTheEarlierDeadline(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFake()
	outer, cancelOuter := WithTimeout(context.Background(), f, time.Second)
	defer cancelOuter()
	inner, cancelInner := WithTimeout(outer, f, time.Minute)
	defer cancelInner()
	if f.Waiters() != 1 {
		t.Fatalf("%d timers; the inner limit is later and needs none", f.Waiters())
	}
	if rem, _ := remaining(inner, f); rem != time.Second {
		t.Fatalf("remaining = %v, want the outer 1s", rem)
	}
	shorter, cancelShorter := WithTimeout(outer, f, 100*time.Millisecond)
	defer cancelShorter()
	if rem, _ := remaining(shorter, f); rem != 100*time.Millisecond {
		t.Fatalf("remaining = %v, want 100ms", rem)
	}
	f.Advance(time.Second)
	<-inner.Done()
	<-shorter.Done()
	if context.Cause(inner) != ErrTimeout || context.Cause(shorter) != ErrTimeout {
		t.Fatalf("causes = %v, %v", context.Cause(inner), context.Cause(shorter))
	}
}

func TestWithTimeoutRealClock(t *testing.T) {
	defer goleak.VerifyNone(t)
	ctx, cancel := WithTimeout(context.Background(), clock.Real(), time.Hour)
	if _, ok := ctx.Deadline(); !ok {
		t.Fatal("no deadline with the real clock")
	}
	if rem, ok := remaining(ctx, clock.Real()); !ok || rem <= 0 || rem > time.Hour {
		t.Fatalf("remaining = %v, %v", rem, ok)
	}
	cancel()
	if context.Cause(ctx) != context.Canceled {
		t.Fatalf("cause = %v", context.Cause(ctx))
	}
	ctx, cancel = WithTimeout(context.Background(), nil, 0) // nil is the real clock
	defer cancel()
	<-ctx.Done()
	if context.Cause(ctx) != ErrTimeout || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatalf("cause %v, err %v", context.Cause(ctx), ctx.Err())
	}
}

func TestTimeLimitSpecOverallAndPerTry(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFake()
	spec := TimeLimitSpec{Timeout: 5 * time.Second, PerTryTimeout: 2 * time.Second}
	overall, cancel := spec.Overall(context.Background(), f)
	defer cancel()
	try1, cancel1 := spec.PerTry(overall, f)
	f.Advance(2 * time.Second)
	<-try1.Done()
	cancel1()
	if isDone(overall) {
		t.Fatal("a try's timeout ended the request")
	}
	try2, cancel2 := spec.PerTry(overall, f)
	defer cancel2()
	if rem, _ := remaining(try2, f); rem != 2*time.Second {
		t.Fatalf("second try has %v", rem)
	}
	f.Advance(time.Second)
	try3, cancel3 := spec.PerTry(overall, f) // 2s left overall: the per-try limit equals it
	defer cancel3()
	if rem, _ := remaining(try3, f); rem != 2*time.Second {
		t.Fatalf("third try has %v", rem)
	}
	f.Advance(2 * time.Second)
	<-overall.Done()
	<-try2.Done()
	<-try3.Done()
	if context.Cause(overall) != ErrTimeout {
		t.Fatalf("overall cause = %v", context.Cause(overall))
	}
}

func TestTimeLimitSpecZeroMeansNone(t *testing.T) {
	defer goleak.VerifyNone(t)
	var spec TimeLimitSpec
	spec.SetDefaults()
	parent := context.Background()
	ctx, cancel := spec.Overall(parent, newFake())
	cancel()
	if ctx != parent {
		t.Fatal("no timeout should return the parent itself")
	}
	if ctx, cancel := spec.PerTry(parent, nil); ctx != parent {
		t.Fatal("no per-try timeout should return the parent itself")
	} else {
		cancel()
	}
}
