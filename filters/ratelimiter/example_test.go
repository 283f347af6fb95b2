package ratelimiter_test

import (
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/sluicegw/sluice/filters/mock"
	"github.com/sluicegw/sluice/filters/ratelimiter"
	"github.com/sluicegw/sluice/pipeline"
)

// A pipeline that lets each client make two requests at once and one a
// minute after that, and answers the rest 429 without calling the backend
// (a Mock here). The spec is a Go value; in YAML it is the same fields:
//
//	policies:
//	  - name: perClient
//	    key: clientIP
//	    limitForPeriod: 1
//	    limitRefreshPeriod: 1m
//	    burst: 2
//	    timeoutDuration: 0s
//	defaultPolicyRef: perClient
func Example() {
	perClient := ratelimiter.Policy{Name: "perClient", Key: ratelimiter.KeyClientIP}
	perClient.SetDefaults()
	perClient.LimitForPeriod = 1
	perClient.LimitRefreshPeriod = time.Minute
	perClient.Burst = 2
	perClient.TimeoutDuration = 0 // reject at once instead of waiting

	reg, err := pipeline.NewRegistry(ratelimiter.Kind, mock.Kind)
	if err != nil {
		panic(err)
	}
	p, err := pipeline.NewBuilder("api").
		Filter("limiter", "RateLimiter", ratelimiter.Spec{
			Policies:         []ratelimiter.Policy{perClient},
			DefaultPolicyRef: "perClient",
		}).JumpIf(ratelimiter.RateLimited, pipeline.End).
		Filter("backend", "Mock", mock.Spec{Rules: []mock.Rule{{Body: "hello\n"}}}).
		Build(reg, pipeline.Env{})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	for _, client := range []string{"192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.2"} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = client + ":50000"
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, r)
		fmt.Printf("%s: %d Retry-After=%q %q\n", client, rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	// Output:
	// 192.0.2.1: 200 Retry-After="" "hello\n"
	// 192.0.2.1: 200 Retry-After="" "hello\n"
	// 192.0.2.1: 429 Retry-After="60" "rate limit exceeded\n"
	// 192.0.2.2: 200 Retry-After="" "hello\n"
}
