package resilience

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluicegw/sluice/internal/clock"
	"github.com/sluicegw/sluice/internal/yamlx"
)

// Errors of the package; test with errors.Is.
var (
	// ErrInvalidSpec is wrapped by every validation error of a spec (a
	// *yamlx.FieldError that names the field) and by the constructors'
	// errors for a bad argument.
	ErrInvalidSpec = errors.New("invalid resilience spec")
	// ErrTimeout is the cause (context.Cause) of a context that WithTimeout,
	// TimeLimitSpec.Overall or TimeLimitSpec.PerTry cancelled because its time
	// limit passed. It wraps context.DeadlineExceeded, so
	// errors.Is(context.Cause(ctx), context.DeadlineExceeded) holds with any
	// clock.
	ErrTimeout = fmt.Errorf("time limit exceeded: %w", context.DeadlineExceeded)
)

// Clock is the time source of every policy: clock.Real() in production, a
// *clock.Fake in tests. A nil Clock passed to a constructor means the real
// clock.
type Clock = clock.Clock

// specType is what every spec implements: the shapes of pipeline.Defaulter
// and pipeline.Validator, so that pipeline.Define and DecodeSpec fill in its
// defaults and validate it.
type specType interface {
	SetDefaults()
	Validate() error
}

// orReal returns c, or the real clock when c is nil.
func orReal(c Clock) Clock {
	if c == nil {
		return clock.Real()
	}
	return c
}

// isReal reports whether c is the system clock, whose times are comparable
// with the deadlines of ordinary contexts.
func isReal(c Clock) bool { return c == nil || c == clock.Real() }

// invalid returns a validation error that names the YAML field field and
// wraps ErrInvalidSpec.
func invalid(field, format string, args ...any) error {
	return &yamlx.FieldError{Field: field, Err: fmt.Errorf("%w: "+format, append([]any{ErrInvalidSpec}, args...)...)}
}

// since returns the clock time elapsed since epoch in nanoseconds. With the
// real clock it uses the monotonic reading, so wall-clock steps do not
// disturb windows and rates.
func since(c Clock, epoch time.Time) int64 { return int64(c.Now().Sub(epoch)) }
