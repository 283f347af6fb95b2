package proxy

import "errors"

// Errors in a Proxy spec. Validation errors are *pipeline.FieldError values
// that name the field and wrap one of these; test with errors.Is.
var (
	// ErrNoPool: the spec has neither pools nor mainPool, or every one of
	// its pools has a filter (none is the main pool).
	ErrNoPool = errors.New("no pool")
	// ErrTooManyPools: the spec has more than one pool without a filter, or
	// both pools and mainPool.
	ErrTooManyPools = errors.New("only one pool without a filter is allowed")
	// ErrNoServer: a pool has no servers, or none that carries all of its
	// serverTags.
	ErrNoServer = errors.New("no server")
	// ErrBadURL: a server URL is not an absolute http or https URL.
	ErrBadURL = errors.New("bad server url")
	// ErrUnknownPolicy: a load-balancing policy is not one this package knows.
	ErrUnknownPolicy = errors.New("unknown load-balancing policy")
	// ErrBadValue: a number or duration is out of range, or another field
	// (a filter, a host, a path) is malformed or missing.
	ErrBadValue = errors.New("value out of range")
	// ErrPolicyKind: a pool names a resilience policy of the wrong kind (a
	// Retry policy as its circuitBreakerPolicy, say). A name the pipeline
	// does not define is pipeline.ErrUnknownPolicy.
	ErrPolicyKind = errors.New("resilience policy of the wrong kind")
	// ErrBadTLS: a tls or mtls field is malformed or incomplete, or a file
	// or certificate it names cannot be read or parsed.
	ErrBadTLS = errors.New("bad tls setting")
)
