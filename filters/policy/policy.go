// Package policy holds the built-in resilience policy kinds of a
// pipeline's `resilience:` section, in Easegress v2's shape:
//
//	resilience:
//	  - name: backend-breaker
//	    kind: CircuitBreaker
//	    slidingWindowType: COUNT_BASED
//	    failureRateThreshold: 50
//	    slidingWindowSize: 100
//	    minimumNumberOfCalls: 20
//	    waitDurationInOpenState: 30s
//	  - name: backend-retry
//	    kind: Retry
//	    maxAttempts: 3
//	    waitDuration: 100ms
//
// Filters find a policy by name with pipeline.Lookup (a Proxy pool's
// circuitBreakerPolicy and retryPolicy). A policy is built once per
// pipeline generation and shared by its filters. When a reload leaves a
// policy's name, kind and spec unchanged, the new generation takes the old
// one's state over: a breaker stays open, a retry budget keeps its counts.
// The filters hold a *Breaker or *Retry handle that follows that hand-over,
// so they need no rebuild.
package policy

import (
	"sync/atomic"

	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/resilience"
)

// The policy kind names.
const (
	KindCircuitBreaker = "CircuitBreaker"
	KindRetry          = "Retry"
)

// Kinds returns the built-in policy kinds.
func Kinds() []pipeline.PolicyKind {
	return []pipeline.PolicyKind{
		{
			Name:        KindCircuitBreaker,
			Description: "opens after a failure or slow-call rate, fails fast while open, probes half-open",
			DefaultSpec: func() any { s := &resilience.BreakerSpec{}; s.SetDefaults(); return s },
			Build: func(env pipeline.Env, raw pipeline.Raw) (any, error) {
				var s resilience.BreakerSpec
				if err := pipeline.DecodeSpec(raw, &s); err != nil {
					return nil, err
				}
				return NewBreaker(s, env)
			},
		},
		{
			Name:        KindRetry,
			Description: "retries failed idempotent or replayable requests with full-jitter backoff within a retry budget",
			DefaultSpec: func() any { s := &resilience.RetrySpec{}; s.SetDefaults(); return s },
			Build: func(env pipeline.Env, raw pipeline.Raw) (any, error) {
				var s resilience.RetrySpec
				if err := pipeline.DecodeSpec(raw, &s); err != nil {
					return nil, err
				}
				return NewRetry(s, env)
			},
		},
	}
}

// Breaker is a CircuitBreaker policy: a handle on a resilience.Breaker that
// a reload with the same spec hands over.
type Breaker struct {
	b atomic.Pointer[resilience.Breaker]
}

// NewBreaker builds a breaker policy; state changes are logged.
func NewBreaker(spec resilience.BreakerSpec, env pipeline.Env) (*Breaker, error) {
	logger := env.Logger
	onChange := func(from, to resilience.State) {
		if logger != nil {
			logger.Warn("circuit breaker changed state", "from", from.String(), "to", to.String())
		}
	}
	rb, err := resilience.NewBreaker(spec, env.Clock, onChange)
	if err != nil {
		return nil, err
	}
	b := &Breaker{}
	b.b.Store(rb)
	return b, nil
}

// Get returns the current breaker.
func (b *Breaker) Get() *resilience.Breaker { return b.b.Load() }

// Inherit takes over the previous generation's breaker and its state.
func (b *Breaker) Inherit(prev any) error {
	if p, ok := prev.(*Breaker); ok {
		b.b.Store(p.b.Load())
	}
	return nil
}

// Status reports the breaker's state and window.
func (b *Breaker) Status() any { return b.Get().Metrics() }

// Retry is a Retry policy: a handle on a resilience.Retry (and its budget)
// that a reload with the same spec hands over.
type Retry struct {
	r atomic.Pointer[resilience.Retry]
}

// NewRetry builds a retry policy.
func NewRetry(spec resilience.RetrySpec, env pipeline.Env) (*Retry, error) {
	rr, err := resilience.NewRetry(spec, env.Clock, nil)
	if err != nil {
		return nil, err
	}
	r := &Retry{}
	r.r.Store(rr)
	return r, nil
}

// Get returns the current retry policy.
func (r *Retry) Get() *resilience.Retry { return r.r.Load() }

// Inherit takes over the previous generation's retry budget.
func (r *Retry) Inherit(prev any) error {
	if p, ok := prev.(*Retry); ok {
		r.r.Store(p.r.Load())
	}
	return nil
}
