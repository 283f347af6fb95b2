package resilience

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/sluicegw/sluice/internal/clock"
)

// Backoff policies of a RetrySpec.
const (
	// BackOffExponential waits a random time in [0, min(maxWaitDuration,
	// waitDuration × 2^(n-1))) before retry n: exponential backoff with
	// full jitter.
	BackOffExponential = "exponential"
	// BackOffRandom waits waitDuration × (1 ± randomizationFactor), at
	// most maxWaitDuration, before every retry, as in Easegress.
	BackOffRandom = "random"
)

// Defaults of a RetrySpec, set by SetDefaults.
const (
	DefaultMaxAttempts         = 3
	DefaultWaitDuration        = 500 * time.Millisecond
	DefaultRandomizationFactor = 0.5
	DefaultMaxWaitDuration     = 10 * time.Second
	DefaultBudgetRatio         = 0.2
	DefaultMinRetriesPerSecond = 3
	DefaultBudgetWindow        = 10 * time.Second
)

// RetrySpec configures retries, with the field names of an Easegress v2
// Retry policy plus a cap and a retry budget:
//
//	maxAttempts: 3
//	waitDuration: 500ms
//	backOffPolicy: exponential
//	maxWaitDuration: 10s
//	budgetRatio: 0.2
//	minRetriesPerSecond: 3
//	budgetWindow: 10s
//
// SetDefaults sets every field to its default; call it on a fresh spec
// before decoding YAML or setting fields in Go. NewRetry takes the spec as
// it is.
type RetrySpec struct {
	// MaxAttempts is the number of attempts including the first; at least
	// 1 (1 means never retry). Default 3.
	MaxAttempts int `yaml:"maxAttempts"`
	// WaitDuration is the base backoff; 0 or more. Default 500ms.
	WaitDuration time.Duration `yaml:"waitDuration"`
	// BackOffPolicy is exponential (the default; also meant by "") or
	// random; case does not matter.
	BackOffPolicy string `yaml:"backOffPolicy,omitempty"`
	// RandomizationFactor, in [0, 1], spreads the random policy's waits
	// over waitDuration × (1 ± factor). Default 0.5. The exponential policy
	// ignores it: its jitter is always full.
	RandomizationFactor float64 `yaml:"randomizationFactor,omitempty"`
	// MaxWaitDuration caps every wait; 0 means no cap. Default 10s.
	MaxWaitDuration time.Duration `yaml:"maxWaitDuration,omitempty"`
	// BudgetRatio is the share of the recent request volume that retries
	// may add, in [0, 100]. Default 0.2 (20%).
	BudgetRatio float64 `yaml:"budgetRatio"`
	// MinRetriesPerSecond is the budget's floor: retries allowed per second
	// of budgetWindow whatever the volume; 0 or more. Default 3.
	MinRetriesPerSecond int `yaml:"minRetriesPerSecond"`
	// BudgetWindow is how far back the budget counts requests and retries;
	// at least 10ms. Default 10s.
	BudgetWindow time.Duration `yaml:"budgetWindow"`
}

// SetDefaults sets every field of s to its default.
func (s *RetrySpec) SetDefaults() {
	*s = RetrySpec{
		MaxAttempts:         DefaultMaxAttempts,
		WaitDuration:        DefaultWaitDuration,
		BackOffPolicy:       BackOffExponential,
		RandomizationFactor: DefaultRandomizationFactor,
		MaxWaitDuration:     DefaultMaxWaitDuration,
		BudgetRatio:         DefaultBudgetRatio,
		MinRetriesPerSecond: DefaultMinRetriesPerSecond,
		BudgetWindow:        DefaultBudgetWindow,
	}
}

// Validate checks s. Errors are *yamlx.FieldError values that name the
// field and wrap ErrInvalidSpec.
func (s *RetrySpec) Validate() error {
	if s.MaxAttempts < 1 {
		return invalid("maxAttempts", "must be at least 1, got %d", s.MaxAttempts)
	}
	if s.WaitDuration < 0 {
		return invalid("waitDuration", "must not be negative, got %v", s.WaitDuration)
	}
	switch strings.ToLower(s.BackOffPolicy) {
	case "", BackOffExponential, BackOffRandom:
	default:
		return invalid("backOffPolicy", "%q is not exponential or random", s.BackOffPolicy)
	}
	if !(s.RandomizationFactor >= 0 && s.RandomizationFactor <= 1) {
		return invalid("randomizationFactor", "must be in [0, 1], got %v", s.RandomizationFactor)
	}
	if s.MaxWaitDuration < 0 {
		return invalid("maxWaitDuration", "must not be negative, got %v", s.MaxWaitDuration)
	}
	return validateBudget(s.BudgetRatio, s.MinRetriesPerSecond, s.BudgetWindow)
}

// Retry runs an attempt again when it fails, with backoff on the clock and
// within a retry budget. A Retry is safe for concurrent use when its random
// source is.
type Retry struct {
	attempts int
	base     int64
	ceiling  int64 // the cap, or MaxInt64 for none
	random   bool
	factor   float64
	rnd      func() float64
	clk      Clock
	budget   *Budget
}

// NewRetry returns a Retry configured by spec, timed by clk (nil means the
// real clock). rnd returns uniform numbers in [0, 1) for the jitter; nil
// means math/rand/v2's Float64. Pass a seeded source for determinism; it
// must be safe for concurrent use if Do is called concurrently.
func NewRetry(spec RetrySpec, clk Clock, rnd func() float64) (*Retry, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	clk = orReal(clk)
	budget, err := NewBudget(spec.BudgetRatio, spec.MinRetriesPerSecond, spec.BudgetWindow, clk)
	if err != nil {
		return nil, err
	}
	if rnd == nil {
		rnd = rand.Float64
	}
	r := &Retry{
		attempts: spec.MaxAttempts,
		base:     int64(spec.WaitDuration),
		ceiling:  int64(spec.MaxWaitDuration),
		random:   strings.EqualFold(spec.BackOffPolicy, BackOffRandom),
		factor:   spec.RandomizationFactor,
		rnd:      rnd,
		clk:      clk,
		budget:   budget,
	}
	if r.ceiling == 0 {
		r.ceiling = math.MaxInt64
	}
	return r, nil
}

// Budget returns the retry's budget, to read its counts or to count
// requests that bypass Do.
func (r *Retry) Budget() *Budget { return r.budget }

// Backoff returns the wait before retry n, that is after attempt n failed
// (n ≥ 1): for the exponential policy a uniformly random duration from 0 up
// to min(maxWaitDuration, waitDuration × 2^(n-1)) (full jitter); for the
// random policy waitDuration × (1 ± randomizationFactor), at most
// maxWaitDuration. It draws from the Retry's random source.
func (r *Retry) Backoff(n int) time.Duration {
	if r.random {
		return r.clamp(float64(r.base) * (1 + r.factor*(2*r.rnd()-1)))
	}
	ceil := r.ceiling
	if shift := max(n-1, 0); shift < 63 && r.base <= r.ceiling>>shift {
		ceil = r.base << shift
	}
	return r.clamp(r.rnd() * float64(ceil))
}

// clamp converts d to a duration in [0, cap].
func (r *Retry) clamp(d float64) time.Duration {
	switch {
	case !(d > 0):
		return 0
	case d >= float64(r.ceiling):
		return time.Duration(r.ceiling)
	}
	return time.Duration(d)
}

// Do calls attempt with n = 1, 2, … until it returns retry false, and
// returns the error of the last attempt made. After an attempt that asks to
// retry, Do makes another only when replayable is true (the caller knows the
// request can be sent again: an idempotent method, a body it can replay),
// attempts remain, ctx is not done and has more time left than the backoff,
// and the budget grants a retry; then it waits the backoff on the clock
// first. It never waits after the last attempt, and stops waiting when ctx
// is done. Each Do counts one request in the budget.
func (r *Retry) Do(ctx context.Context, replayable bool, attempt func(ctx context.Context, n int) (retry bool, err error)) error {
	r.budget.Request()
	for n := 1; ; n++ {
		retry, err := attempt(ctx, n)
		if !retry || !replayable || n >= r.attempts || ctx.Err() != nil {
			return err
		}
		d := r.Backoff(n)
		if rem, ok := remaining(ctx, r.clk); ok && rem <= d {
			return err
		}
		if !r.budget.TryRetry() {
			return err
		}
		if !clock.Sleep(r.clk, d, ctx.Done()) {
			return err
		}
	}
}

var _ specType = (*RetrySpec)(nil)
