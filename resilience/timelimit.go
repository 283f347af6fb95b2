package resilience

import (
	"context"
	"time"
)

// TimeLimitSpec bounds a request in time:
//
//	timeout: 5s        # the whole request, across retries
//	perTryTimeout: 1s  # each attempt
//
// Zero values mean no limit. Derive the per-try context from the overall
// one, so a try never outlives the request.
type TimeLimitSpec struct {
	// Timeout bounds the whole request, retries and backoffs included;
	// 0 (the default) means no limit.
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// PerTryTimeout bounds each attempt; 0 (the default) means no limit
	// beyond timeout.
	PerTryTimeout time.Duration `yaml:"perTryTimeout,omitempty"`
}

// SetDefaults sets every field of s to its default: no limits.
func (s *TimeLimitSpec) SetDefaults() { *s = TimeLimitSpec{} }

// Validate checks s. Errors are *yamlx.FieldError values that name the
// field and wrap ErrInvalidSpec.
func (s *TimeLimitSpec) Validate() error {
	if s.Timeout < 0 {
		return invalid("timeout", "must not be negative, got %v", s.Timeout)
	}
	if s.PerTryTimeout < 0 {
		return invalid("perTryTimeout", "must not be negative, got %v", s.PerTryTimeout)
	}
	return nil
}

// Overall returns ctx bounded by Timeout on clk (see WithTimeout); with no
// Timeout it returns ctx itself and a no-op cancel.
func (s TimeLimitSpec) Overall(ctx context.Context, clk Clock) (context.Context, context.CancelFunc) {
	return limit(ctx, clk, s.Timeout)
}

// PerTry returns ctx bounded by PerTryTimeout on clk (see WithTimeout); with
// no PerTryTimeout it returns ctx itself and a no-op cancel. Pass the
// context from Overall, so a try also ends with the request.
func (s TimeLimitSpec) PerTry(ctx context.Context, clk Clock) (context.Context, context.CancelFunc) {
	return limit(ctx, clk, s.PerTryTimeout)
}

func limit(ctx context.Context, clk Clock, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return ctx, func() {}
	}
	return WithTimeout(ctx, clk, d)
}

// clockDeadline is the context key of a deadline on a clock other than the
// real one.
type clockDeadline struct{}

// WithTimeout returns a copy of parent that is cancelled, with
// context.Cause ErrTimeout, when d has passed on clk (nil means the real
// clock), or when parent is done, or when cancel is called. Call cancel as
// soon as the work is done, as with context.WithTimeout.
//
// With the real clock it is context.WithTimeoutCause: Err reports
// context.DeadlineExceeded and Deadline the deadline. With another clock (a
// fake one in tests) a timer on that clock cancels the context through a
// goroutine that cancel stops and waits for, so nothing is left running
// after cancel returns; Err then reports context.Canceled (test the cause),
// and Deadline reports only the parent's deadline, since a fake time means
// nothing to code that compares deadlines with the wall clock. The policies
// of this package still see the clock's deadline.
func WithTimeout(parent context.Context, clk Clock, d time.Duration) (context.Context, context.CancelFunc) {
	if isReal(clk) {
		return context.WithTimeoutCause(parent, d, ErrTimeout)
	}
	deadline := clk.Now().Add(d)
	if pd, ok := parent.Value(clockDeadline{}).(time.Time); ok && !pd.After(deadline) {
		return context.WithCancel(parent) // the parent's limit comes first
	}
	ctx, cancel := context.WithCancelCause(parent)
	vctx := context.WithValue(ctx, clockDeadline{}, deadline)
	if d <= 0 {
		cancel(ErrTimeout)
		return vctx, func() { cancel(context.Canceled) }
	}
	t := clk.NewTimer(d)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-t.C():
			cancel(ErrTimeout)
		case <-ctx.Done():
			t.Stop()
		}
	}()
	return vctx, func() {
		cancel(context.Canceled)
		<-exited
	}
}

// remaining returns how much time ctx has left on clk, and false when it
// has no deadline. A deadline set by WithTimeout on a non-real clock is
// measured on clk; an ordinary deadline is wall-clock time.
func remaining(ctx context.Context, clk Clock) (time.Duration, bool) {
	if d, ok := ctx.Value(clockDeadline{}).(time.Time); ok {
		return d.Sub(clk.Now()), true
	}
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d), true
	}
	return 0, false
}

var _ specType = (*TimeLimitSpec)(nil)
