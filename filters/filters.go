// Package filters lists Sluice's built-in filter kinds. Each kind lives in
// its own subpackage (filters/proxy, filters/validator, ...), which a
// program may also import alone to use the kind with its own registry.
//
//	CORSAdaptor      answers CORS preflights, adds CORS headers      results: preflighted rejected
//	Fallback         answers with a fixed response on a jump         results: none
//	IPFilter         allows or blocks clients by IP address and CIDR  results: blocked
//	Mock             answers with a canned response per rule      results: mocked
//	Proxy            forwards to a pool of backend servers        results: internalError clientError serverError failureCode timeout shortCircuited
//	RateLimiter      limits request rates per policy, url and key    results: rateLimited
//	RequestAdaptor   rewrites method, host, path, headers, body   results: none
//	ResponseAdaptor  rewrites response headers and body           results: none
//	Validator        checks headers, JWT, signatures, OAuth2, basic auth  results: invalid
package filters

import (
	"github.com/sluicegw/sluice/filters/corsadaptor"
	"github.com/sluicegw/sluice/filters/fallback"
	"github.com/sluicegw/sluice/filters/ipfilter"
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
		corsadaptor.Kind,
		fallback.Kind,
		ipfilter.Kind,
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
