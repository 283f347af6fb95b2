// Package resilience holds the policies that keep a failing backend from
// taking the gateway down with it: a circuit breaker, a rate limiter, retry
// with a budget, and time limits. It is pure Go with no HTTP: the caller
// decides what a failure is, whether a request may be sent again and what
// to answer when a policy says no. Every policy takes an injected Clock, so
// tests advance a clock.Fake instead of sleeping, and none starts a
// background goroutine (WithTimeout on a non-real clock runs one per
// context, ended by cancel).
//
// # Specs
//
// Each policy has a spec struct with the field names of the Easegress v2
// resilience policies (plus a few of ours, marked on the field), a
// SetDefaults method that sets every field to its default (call it on a
// fresh spec, before YAML decoding or Go assignments), and a Validate
// method whose errors are *yamlx.FieldError values naming the YAML field,
// so that the caller can add its line. Constructors validate the spec and
// use it as given: a zero threshold or size is an error, not a default.
//
// # Circuit breaker
//
// A Breaker is a state machine with three states and four transitions:
//
//	Closed   → Open      the failure or slow-call rate reaches its threshold,
//	                     once the window holds minimumNumberOfCalls
//	Open     → HalfOpen  the first Acquire after waitDurationInOpenState
//	HalfOpen → Closed    the trial calls are done, both rates below threshold
//	HalfOpen → Open      the trial calls are done, a rate at or above its
//	                     threshold; or the first Acquire after
//	                     maxWaitDurationInHalfOpenState without a decision
//
// Closed lets every call through and records each outcome (failed, and
// slow when it took slowCallDurationThreshold or longer) in a sliding
// window: a ring of the last slidingWindowSize calls (COUNT_BASED) or one
// bucket per second over the last slidingWindowSize seconds (TIME_BASED).
// The rates are evaluated after every recorded call, once the window holds
// minimumNumberOfCalls. Open refuses every call; the first Acquire after
// waitDurationInOpenState moves to half-open, which hands out
// permittedNumberOfCallsInHalfOpenState trial permits and refuses the rest;
// when all the trial calls are done their rates decide between closed (with
// an empty window) and open. Every transition starts a new generation, and
// the outcome of a permit granted in an older generation is ignored, so a
// slow call from before the breaker opened cannot close or reopen it.
// onChange observes the transitions in order.
//
// Acquire in the closed and open states is a clock read and an atomic
// load. Done on a COUNT_BASED window is lock-free too: a ticket, a swap into
// the ring and, only when the outcome differs from the one it replaces, an
// atomic add to a total. A TIME_BASED window takes a short mutex. Only
// transitions and the half-open state lock. Nothing allocates per call.
//
// # Rate limiter
//
// Limiter implements GCRA, the generic cell rate algorithm, which is a
// token bucket kept as one number: the theoretical arrival time (TAT) at
// which the bucket would be full again. With an emission interval
// T = limitRefreshPeriod / limitForPeriod and a burst B, a request at time
// now moves TAT to max(TAT, now) + T and conforms if the new TAT is at most
// B·T ahead of now; otherwise it would conform after waiting until it is.
// A request that would wait up to timeoutDuration takes its slot and waits;
// a longer wait rejects it without taking anything, with a Retry-After. The
// state is one int64, updated by compare-and-swap, so the limiter is
// lock-free; in any window of length t it admits at most rate·t + B
// requests. KeyedLimiter keeps one TAT per key in sharded LRU maps of
// bounded size.
//
// # Retry, full jitter and budgets
//
// Retry.Do calls an attempt until it succeeds or gives up. Only a request
// the caller marks replayable is retried. Waits use exponential backoff with
// full jitter: before retry n it sleeps a uniformly random time in
// [0, min(maxWaitDuration, waitDuration·2^(n-1))), which spreads the retries
// of many clients that failed together instead of sending them back in
// waves (the random policy of Easegress, waitDuration·(1 ± factor), is also
// there). Backoff alone does not stop a retry storm: when a backend fails,
// every request becomes maxAttempts requests. A Budget caps retries at
// budgetRatio of the requests seen in the last budgetWindow, plus a floor
// of minRetriesPerSecond so that low traffic can still retry; a retry it
// refuses ends the request with the last error. Do never sleeps after the
// last attempt, nor when the context has less time left than the wait.
//
// # Deadlines
//
// TimeLimitSpec has an overall timeout, which bounds the request across all
// attempts and backoffs, and a per-try timeout, which bounds each attempt;
// derive the per-try context from the overall one so that a try never
// outlives its request. WithTimeout makes such contexts on any Clock: with
// the real clock it is context.WithTimeoutCause, with a fake one a timer on
// that clock cancels it. Either way context.Cause reports ErrTimeout when
// the limit is what ended it.
//
// # Composition
//
// A pipeline uses them in this order: a rate limiter in front; then for
// each request the overall time limit, and inside Retry.Do for each attempt
// the breaker's Acquire (refused: do not call the backend), the per-try
// limit, the call, and Permit.Done with the outcome.
package resilience
