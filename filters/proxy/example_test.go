package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/filters/fallback"
	"github.com/sluicegw/sluice/filters/policy"
	"github.com/sluicegw/sluice/filters/proxy"
	"github.com/sluicegw/sluice/pipeline"
)

// A pipeline with one Proxy filter in front of a backend whose API lives
// under /v1. The same spec in YAML:
//
//	filters:
//	- name: proxy
//	  kind: Proxy
//	  pools:
//	  - servers: [{url: "http://127.0.0.1:9095/v1"}]
//	    timeout: 5s
func Example() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s for %s", r.Method, r.URL.RequestURI(), r.Header.Get("X-Forwarded-For"))
	}))
	defer backend.Close()

	reg, err := pipeline.NewRegistry(proxy.Kind)
	if err != nil {
		panic(err)
	}
	p, err := pipeline.NewBuilder("api").
		Filter("proxy", "Proxy", proxy.Spec{
			Pools: []proxy.PoolSpec{{
				Servers: []proxy.ServerSpec{{URL: backend.URL + "/v1"}},
				Timeout: 5e9,
			}},
		}).
		Build(reg, pipeline.Env{})
	if err != nil {
		panic(err)
	}
	defer p.Close() // closes the Proxy's idle connections

	req := httptest.NewRequest(http.MethodGet, "/users?id=7", nil)
	req.RemoteAddr = "198.51.100.7:51234"
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Body)
	fmt.Println(rec.Code, string(body))
	// Output: 200 GET /v1/users?id=7 for 198.51.100.7
}

// A pool with a circuit breaker from the pipeline's resilience section.
// While the breaker is open the Proxy returns shortCircuited without
// calling the backend, and the flow jumps to a Fallback filter. (The Done
// step, a filter that only ends the flow, keeps successful responses from
// falling through to the fallback.)
func Example_circuitBreaker() {
	calls := 0
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer backend.Close()

	done := pipeline.Define("Done", []pipeline.Result{"done"}, func(pipeline.Env, *struct{}) (pipeline.Filter, error) {
		return pipeline.FilterFunc(func(*pipeline.Context) pipeline.Result { return "done" }), nil
	})
	reg, err := pipeline.NewRegistry(proxy.Kind, fallback.Kind, done)
	if err != nil {
		panic(err)
	}
	if err := reg.RegisterPolicies(policy.Kinds()...); err != nil {
		panic(err)
	}
	var spec pipeline.Spec
	if err := yaml.Unmarshal([]byte(`
flow:
- filter: proxy
  jumpIf: {shortCircuited: fallback}
- filter: done
- filter: fallback
filters:
- name: proxy
  kind: Proxy
  pools:
  - servers: [{url: "`+backend.URL+`"}]
    failureCodes: [503]
    circuitBreakerPolicy: backend-cb
- name: done
  kind: Done
- name: fallback
  kind: Fallback
  mockBody: cached answer
resilience:
- name: backend-cb
  kind: CircuitBreaker
  slidingWindowSize: 2
  minimumNumberOfCalls: 2
  waitDurationInOpenState: 1m
`), &spec); err != nil {
		panic(err)
	}
	p, err := pipeline.New(spec, reg, pipeline.Env{})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	for range 4 {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		fmt.Printf("%d %q\n", rec.Code, rec.Body.String())
	}
	fmt.Println("backend calls:", calls)
	// Output:
	// 503 "down\n"
	// 503 "down\n"
	// 200 "cached answer"
	// 200 "cached answer"
	// backend calls: 2
}

// A canary: requests with X-Canary: yes, and 10% of the other clients (by
// client IP, so each client stays on its side), go to the canary pool;
// the rest to the main pool, the one without a filter. The same spec in
// YAML:
//
//	pools:
//	- servers: [{url: "http://10.0.0.2:8080"}]
//	  filter: {headers: {X-Canary: {exact: "yes"}}}
//	- servers: [{url: "http://10.0.0.2:8080"}]
//	  filter: {policy: ipHash, permil: 100}
//	- servers: [{url: "http://10.0.0.1:8080"}]
func Example_canary() {
	stable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "stable") }))
	defer stable.Close()
	canary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "canary") }))
	defer canary.Close()

	reg, err := pipeline.NewRegistry(proxy.Kind)
	if err != nil {
		panic(err)
	}
	p, err := pipeline.NewBuilder("api").
		Filter("proxy", "Proxy", proxy.Spec{
			Pools: []proxy.PoolSpec{
				{
					Servers: []proxy.ServerSpec{{URL: canary.URL}},
					Filter:  &proxy.RequestMatcherSpec{Headers: map[string]proxy.StringMatcherSpec{"X-Canary": {Exact: "yes"}}},
				},
				{
					Servers: []proxy.ServerSpec{{URL: canary.URL}},
					Filter:  &proxy.RequestMatcherSpec{Policy: proxy.MatchIPHash, Permil: 100},
				},
				{Servers: []proxy.ServerSpec{{URL: stable.URL}}},
			},
		}).
		Build(reg, pipeline.Env{})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	get := func(header string) string {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if header != "" {
			req.Header.Set("X-Canary", header)
		}
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		return rec.Body.String()
	}
	fmt.Println(get("yes"), get("no"))
	// Output: canary stable
}
