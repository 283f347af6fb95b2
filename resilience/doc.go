// Package resilience holds the policies that keep a failing backend from
// taking the gateway down with it: circuit breaker, rate limiter, retry and
// time limit.
//
// Scope (not built yet): pure Go with an injected clock and no HTTP, so that
// the policies are usable on their own and testable with a fake clock. The
// circuit breaker has count- and time-based sliding windows, failure-rate
// and slow-call-rate thresholds, and observable state changes; the rate
// limiter is a token bucket (or GCRA) with burst, keyed by client IP,
// header or route with bounded key memory; retry uses exponential backoff
// with full jitter and a retry budget; the time limit bounds a request
// across retries and each try. Pipelines reference named policies from
// their resilience section.
package resilience
