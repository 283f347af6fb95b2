// Package filters lists Sluice's built-in filter kinds. Each kind lives in
// its own subpackage (filters/proxy, filters/validator, ...), which a
// program may also import alone to use the kind with its own registry.
//
//	Fallback         answers with a fixed response on a jump         results: none
//	Mock             answers with a canned response per rule      results: mocked
//	Proxy            forwards to a pool of backend servers        results: internalError clientError serverError failureCode timeout shortCircuited
//	RateLimiter      limits request rates per policy, url and key    results: rateLimited
//	RequestAdaptor   rewrites method, host, path, headers, body   results: none
//	ResponseAdaptor  rewrites response headers and body           results: none
//	Validator        checks request headers                       results: invalid
package filters

import (
	"github.com/sluicegw/sluice/filters/fallback"
	"github.com/sluicegw/sluice/filters/mock"
	"github.com/sluicegw/sluice/filters/policy"
	"github.com/sluicegw/sluice/filters/proxy"
	"github.com/sluicegw/sluice/filters/ratelimiter"
	"github.com/sluicegw/sluice/filters/requestadaptor"
	"github.com/sluicegw/sluice/filters/responseadaptor"
	"github.com/sluicegw/sluice/filters/validator"
	"github.com/sluicegw/sluice/pipeline"
)

// Builtin returns every built-in filter kind.
func Builtin() []pipeline.Kind {
	return []pipeline.Kind{
		fallback.Kind,
		mock.Kind,
		proxy.Kind,
		ratelimiter.Kind,
		requestadaptor.Kind,
		responseadaptor.Kind,
		validator.Kind,
	}
}

// BuiltinPolicies returns every built-in resilience policy kind
// (CircuitBreaker, Retry), for a pipeline's resilience section.
func BuiltinPolicies() []pipeline.PolicyKind { return policy.Kinds() }
