package ratelimiter_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/filters/mock"
	"github.com/sluicegw/sluice/filters/ratelimiter"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

const gatewayServer = `
kind: HTTPServer
name: server
port: 10080
rules:
  - paths:
      - pathPrefix: /
        backend: api
`

// gatewayPipeline lets each client IP make two requests at once and one a
// second after that; BODY is the backend's answer, BURST the bucket.
const gatewayPipeline = `
kind: Pipeline
name: api
flow:
  - filter: limiter
    jumpIf: { rateLimited: END }
  - filter: backend
filters:
  - name: limiter
    kind: RateLimiter
    policies:
      - name: perClient
        key: clientIP
        limitForPeriod: 1
        limitRefreshPeriod: 1s
        timeoutDuration: 0s
        burst: BURST
    defaultPolicyRef: perClient
  - name: backend
    kind: Mock
    rules:
      - body: BODY
`

func pipelineYAML(body, burst string) string {
	return strings.NewReplacer("BODY", body, "BURST", burst).Replace(gatewayPipeline)
}

// TestGateway runs the filter in a real gateway, behind a real HTTP server
// on loopback, and checks what the client gets, across reloads.
func TestGateway(t *testing.T) {
	clk := filtertest.NewFakeClock(start)
	// The gateway's registry is built from the kinds given here alone, so
	// the test holds whether or not RateLimiter is among the built-ins.
	g, err := sluice.New(sluice.WithoutBuiltinFilters(), sluice.WithFilterKinds(ratelimiter.Kind, mock.Kind), sluice.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	apply := func(y string) {
		t.Helper()
		if err := g.ApplyYAML(context.Background(), strings.NewReader(y)); err != nil {
			t.Fatal(err)
		}
	}
	apply(gatewayServer + "---\n" + pipelineYAML("hello", "2"))
	h, err := g.Handler("server")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	type answer struct {
		code       int
		retryAfter string
		body       string
	}
	get := func() answer {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + "/v1/things")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return answer{resp.StatusCode, resp.Header.Get("Retry-After"), string(b)}
	}
	ok := answer{http.StatusOK, "", "hello"}
	limited := answer{http.StatusTooManyRequests, "1", "rate limit exceeded\n"}
	expect := func(step string, want ...answer) {
		t.Helper()
		for i, w := range want {
			if got := get(); got != w {
				t.Fatalf("%s, request %d: got %+v, want %+v", step, i+1, got, w)
			}
		}
	}

	expect("the burst, then the limit", ok, ok, limited, limited)
	clk.Advance(time.Second)
	expect("a second later", ok, limited)

	// A reload that leaves the limiter's spec alone keeps its buckets.
	ok.body = "hello again"
	apply(pipelineYAML(ok.body, "2"))
	expect("after a reload of the backend", limited)
	clk.Advance(time.Second)
	expect("after a reload, a second later", ok, limited)

	// Changing the policy starts it afresh.
	apply(pipelineYAML(ok.body, "3"))
	expect("after a policy change", ok, ok, ok, limited)

	// The gateway's status shows the counts of the new policy.
	for _, o := range g.Status().Objects {
		if o.Name != "api" {
			continue
		}
		ps, _ := o.Status.(pipeline.Status)
		st, _ := ps.Filters["limiter"].(ratelimiter.Status)
		want := []ratelimiter.PolicyStatus{{Name: "perClient", Admitted: 3, Rejected: 1, Keys: 1}}
		if !reflect.DeepEqual(st.Policies, want) {
			t.Errorf("limiter status %+v, want %+v (pipeline status %+v)", st, want, o.Status)
		}
		return
	}
	t.Error("no status for pipeline api")
}
