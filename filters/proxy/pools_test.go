package proxy_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicegw/sluice/filters/proxy"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

// twoPools is a spec with a candidate pool of canary (with the filter
// given as YAML lines indented for a pool) and a main pool of main.
func twoPools(canary, main, filter string) string {
	return fmt.Sprintf("pools:\n- servers:\n  - url: %s\n  filter:\n%s- servers:\n  - url: %s\n", canary, filter, main)
}

func request(method, target string, header ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

func TestCandidatePoolGeneral(t *testing.T) {
	t.Parallel()
	canary, main := filtertest.NewBackend(t, named("canary")), filtertest.NewBackend(t, named("main"))
	tests := []struct {
		name   string
		filter string
		req    *http.Request
		want   string
	}{
		{"header exact", "    headers: {X-Canary: {exact: \"yes\"}}\n", request("GET", "/", "X-Canary", "yes"), "canary"},
		{"header exact, other value", "    headers: {X-Canary: {exact: \"yes\"}}\n", request("GET", "/", "X-Canary", "no"), "main"},
		{"header absent", "    headers: {X-Canary: {exact: \"yes\"}}\n", request("GET", "/"), "main"},
		{"header second value", "    headers: {X-Canary: {exact: \"yes\"}}\n", request("GET", "/", "X-Canary", "no", "X-Canary", "yes"), "canary"},
		{"header prefix", "    headers: {X-User: {prefix: beta-}}\n", request("GET", "/", "X-User", "beta-7"), "canary"},
		{"header regex", "    headers: {X-User: {regex: \"^u[0-9]+$\"}}\n", request("GET", "/", "X-User", "u42"), "canary"},
		{"header regex miss", "    headers: {X-User: {regex: \"^u[0-9]+$\"}}\n", request("GET", "/", "X-User", "u42x"), "main"},
		{"header empty matches absent", "    headers: {X-User: {empty: true}}\n", request("GET", "/"), "canary"},
		{"header empty, present", "    headers: {X-User: {empty: true}}\n", request("GET", "/", "X-User", "a"), "main"},
		{"one of two headers", "    headers: {X-A: {exact: a}, X-B: {exact: b}}\n", request("GET", "/", "X-B", "b"), "canary"},
		{"all headers, one", "    headers: {X-A: {exact: a}, X-B: {exact: b}}\n    matchAllHeaders: true\n", request("GET", "/", "X-B", "b"), "main"},
		{"all headers, both", "    headers: {X-A: {exact: a}, X-B: {exact: b}}\n    matchAllHeaders: true\n", request("GET", "/", "X-A", "a", "X-B", "b"), "canary"},
		{"url prefix", "    urls: [{url: {prefix: /api/}}]\n", request("GET", "/api/x"), "canary"},
		{"url prefix miss", "    urls: [{url: {prefix: /api/}}]\n", request("GET", "/web/x"), "main"},
		{"url exact and method", "    urls: [{methods: [POST], url: {exact: /login}}]\n", request("POST", "/login"), "canary"},
		{"url wrong method", "    urls: [{methods: [POST], url: {exact: /login}}]\n", request("GET", "/login"), "main"},
		{"url regex", "    urls: [{url: {regex: \"^/v[0-9]/\"}}]\n", request("GET", "/v2/x"), "canary"},
		{"all urls", "    urls: [{url: {prefix: /a}}, {url: {regex: b$}}]\n    matchAllURLs: true\n", request("GET", "/a/b"), "canary"},
		{"all urls, one", "    urls: [{url: {prefix: /a}}, {url: {regex: b$}}]\n    matchAllURLs: true\n", request("GET", "/a/c"), "main"},
		{"header and url", "    headers: {X-A: {exact: a}}\n    urls: [{url: {prefix: /a}}]\n", request("GET", "/a", "X-A", "a"), "canary"},
		{"header but not url", "    headers: {X-A: {exact: a}}\n    urls: [{url: {prefix: /a}}]\n", request("GET", "/b", "X-A", "a"), "main"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := filtertest.New(t, proxy.Kind, twoPools(canary.URL, main.URL, tt.filter))
			out := h.Do(tt.req)
			if out.Result != pipeline.Continue || out.Body != tt.want {
				t.Errorf("result %q, body %q, want %q", out.Result, out.Body, tt.want)
			}
		})
	}
}

func TestCandidatePoolsInOrder(t *testing.T) {
	t.Parallel()
	a, b, main := filtertest.NewBackend(t, named("a")), filtertest.NewBackend(t, named("b")), filtertest.NewBackend(t, named("main"))
	// The main pool comes first in the spec; candidates are tried in order.
	h := filtertest.New(t, proxy.Kind, fmt.Sprintf(`
pools:
- servers: [{url: %s}]
- servers: [{url: %s}]
  filter: {urls: [{url: {prefix: /x}}]}
- servers: [{url: %s}]
  filter: {urls: [{url: {prefix: /}}]}
`, main.URL, a.URL, b.URL))
	for path, want := range map[string]string{"/x": "a", "/y": "b"} {
		if out := h.Get(path); out.Body != want {
			t.Errorf("%s went to %q, want %q", path, out.Body, want)
		}
	}
	st := status(t, h.Filter)
	var fields []string
	for _, p := range st.Pools {
		fields = append(fields, fmt.Sprintf("%s:%v", p.Field, p.Main))
	}
	if got := strings.Join(fields, " "); got != "pools[1]:false pools[2]:false pools[0]:true" {
		t.Errorf("pools in status: %s", got)
	}
}

func TestV1CandidatePools(t *testing.T) {
	t.Parallel()
	canary, main := filtertest.NewBackend(t, named("canary")), filtertest.NewBackend(t, named("main"))
	h := filtertest.New(t, proxy.Kind, fmt.Sprintf(`
mainPool:
  servers: [{url: %s}]
candidatePools:
- servers: [{url: %s}]
  filter: {headers: {X-Canary: {exact: "yes"}}}
`, main.URL, canary.URL))
	if out := h.Do(request("GET", "/", "X-Canary", "yes")); out.Body != "canary" {
		t.Errorf("with the header: %q", out.Body)
	}
	if out := h.Get("/"); out.Body != "main" {
		t.Errorf("without the header: %q", out.Body)
	}
}

// TestPermilShare sends 10,000 requests, each from its own client IP or
// with its own header value, to a candidate pool with permil 100, and
// wants 8–12% of them there; the hash policies must give the same answer
// to the same client every time.
func TestPermilShare(t *testing.T) {
	t.Parallel()
	canary, main := filtertest.NewBackend(t, named("canary")), filtertest.NewBackend(t, named("main"))
	tests := []struct {
		policy string
		req    func(i int) *http.Request
		sticky bool
	}{
		{"random", func(int) *http.Request { return request("GET", "/") }, false},
		{"ipHash", func(i int) *http.Request {
			r := request("GET", "/")
			r.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:5000", i>>16&255, i>>8&255, i&255)
			return r
		}, true},
		{"headerHash", func(i int) *http.Request { return request("GET", "/", "X-User", fmt.Sprint("user-", i)) }, true},
	}
	const n = 10000
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			t.Parallel()
			filter := "    policy: " + tt.policy + "\n    permil: 100\n"
			if tt.policy == "headerHash" {
				filter += "    headerHashKey: X-User\n"
			}
			h := filtertest.New(t, proxy.Kind, twoPools(canary.URL, main.URL, filter))
			hits := 0
			var first []string
			for i := range n {
				out := h.Do(tt.req(i))
				if out.Body == "canary" {
					hits++
				}
				if i < 200 {
					first = append(first, out.Body)
				}
			}
			t.Logf("%s permil 100: %d of %d requests (%.2f%%) to the candidate pool", tt.policy, hits, n, 100*float64(hits)/n)
			if hits < n*8/100 || hits > n*12/100 {
				t.Errorf("%d of %d requests to the candidate pool, want 8–12%%", hits, n)
			}
			if !tt.sticky {
				return
			}
			for i, want := range first {
				for range 2 {
					if out := h.Do(tt.req(i)); out.Body != want {
						t.Fatalf("client %d went to %q, then to %q", i, want, out.Body)
					}
				}
			}
		})
	}
}

func TestPermilEdges(t *testing.T) {
	t.Parallel()
	canary, main := filtertest.NewBackend(t, named("canary")), filtertest.NewBackend(t, named("main"))
	for permil, want := range map[int]string{0: "main", 1000: "canary"} {
		h := filtertest.New(t, proxy.Kind, twoPools(canary.URL, main.URL, fmt.Sprintf("    policy: random\n    permil: %d\n", permil)))
		for range 50 {
			if out := h.Get("/"); out.Body != want {
				t.Fatalf("permil %d: went to %q", permil, out.Body)
			}
		}
	}
}

func TestServerTags(t *testing.T) {
	t.Parallel()
	v1, v2a, v2b := filtertest.NewBackend(t, named("v1")), filtertest.NewBackend(t, named("v2a")), filtertest.NewBackend(t, named("v2b"))
	h := filtertest.New(t, proxy.Kind, fmt.Sprintf(`
pools:
- servers:
  - {url: %s, tags: [v1]}
  - {url: %s, tags: [v2, blue]}
  - {url: %s, tags: [v2]}
  serverTags: [v2, blue]
`, v1.URL, v2a.URL, v2b.URL))
	for range 4 {
		if out := h.Get("/"); out.Body != "v2a" {
			t.Fatalf("went to %q, want v2a only", out.Body)
		}
	}
	if st := status(t, h.Filter); len(st.Pools[0].Servers) != 1 || st.Pools[0].Servers[0].URL != v2a.URL {
		t.Errorf("status servers %+v", st.Pools[0].Servers)
	}
}

func TestSetUpstreamHost(t *testing.T) {
	t.Parallel()
	be := filtertest.NewBackend(t, nil)
	keep := filtertest.NewBackend(t, nil)
	h := filtertest.New(t, proxy.Kind, fmt.Sprintf(`
pools:
- servers: [{url: %s}, {url: %s, keepHost: true}]
  setUpstreamHost: api.internal:8443
`, be.URL, keep.URL))
	h.Do(request("GET", "http://client.example/x"))
	h.Do(request("GET", "http://client.example/x"))
	for _, b := range []*filtertest.Backend{be, keep} {
		seen := b.Requests()
		if len(seen) != 1 || seen[0].Host != "api.internal:8443" || seen[0].Header.Get("X-Forwarded-Host") != "client.example" {
			t.Errorf("backend saw %+v", seen)
		}
	}
}

func TestPoolValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, spec string
		field      string
		line       int
		err        error
	}{
		{"two main pools", "pools:\n- servers: [{url: http://a}]\n- servers: [{url: http://b}]\n", "pools[1]", 3, proxy.ErrTooManyPools},
		{"no main pool", "pools:\n- servers: [{url: http://a}]\n  filter: {urls: [{url: {prefix: /}}]}\n", "pools", 1, proxy.ErrNoPool},
		{"main pool with filter", "mainPool:\n  servers: [{url: http://a}]\n  filter: {urls: [{url: {prefix: /}}]}\n", "mainPool.filter", 3, proxy.ErrBadValue},
		{"candidate without filter", "mainPool:\n  servers: [{url: http://a}]\ncandidatePools:\n- servers: [{url: http://b}]\n", "candidatePools[0].filter", 4, proxy.ErrBadValue},
		{"empty filter", "pools:\n- servers: [{url: http://a}]\n  filter: {}\n- servers: [{url: http://b}]\n", "pools[0].filter.headers", 3, proxy.ErrBadValue},
		{"unknown policy", "pools:\n- servers: [{url: http://a}]\n  filter: {policy: weighted, permil: 1}\n- servers: [{url: http://b}]\n", "pools[0].filter.policy", 3, proxy.ErrBadValue},
		{"permil too big", "pools:\n- servers: [{url: http://a}]\n  filter:\n    policy: random\n    permil: 1001\n- servers: [{url: http://b}]\n", "pools[0].filter.permil", 5, proxy.ErrBadValue},
		{"permil with general", "pools:\n- servers: [{url: http://a}]\n  filter:\n    headers: {X-A: {exact: a}}\n    permil: 10\n- servers: [{url: http://b}]\n", "pools[0].filter.permil", 5, proxy.ErrBadValue},
		{"headerHash without key", "pools:\n- servers: [{url: http://a}]\n  filter:\n    policy: headerHash\n- servers: [{url: http://b}]\n", "pools[0].filter.headerHashKey", 3, proxy.ErrBadValue},
		{"bad regex", "pools:\n- servers: [{url: http://a}]\n  filter:\n    headers:\n      X-A: {regex: \"(\"}\n- servers: [{url: http://b}]\n", "pools[0].filter.headers.X-A.regex", 5, proxy.ErrBadValue},
		{"empty and exact", "pools:\n- servers: [{url: http://a}]\n  filter:\n    headers:\n      X-A: {exact: a, empty: true}\n- servers: [{url: http://b}]\n", "pools[0].filter.headers.X-A.empty", 5, proxy.ErrBadValue},
		{"no string rule", "pools:\n- servers: [{url: http://a}]\n  filter:\n    headers:\n      X-A: {}\n- servers: [{url: http://b}]\n", "pools[0].filter.headers.X-A", 5, proxy.ErrBadValue},
		{"url without rule", "pools:\n- servers: [{url: http://a}]\n  filter:\n    urls:\n    - methods: [GET]\n- servers: [{url: http://b}]\n", "pools[0].filter.urls[0].url", 5, proxy.ErrBadValue},
		{"url two rules", "pools:\n- servers: [{url: http://a}]\n  filter:\n    urls:\n    - url: {exact: /a, prefix: /b}\n- servers: [{url: http://b}]\n", "pools[0].filter.urls[0].url", 5, proxy.ErrBadValue},
		{"bad method", "pools:\n- servers: [{url: http://a}]\n  filter:\n    urls:\n    - methods: [\"G T\"]\n      url: {prefix: /}\n- servers: [{url: http://b}]\n", "pools[0].filter.urls[0].methods[0]", 5, proxy.ErrBadValue},
		{"unknown filter field", "pools:\n- servers: [{url: http://a}]\n  filter:\n    header: {}\n- servers: [{url: http://b}]\n", "pools[0].filter.header", 4, pipeline.ErrUnknownField},
		{"no tagged server", "pools:\n- servers: [{url: http://a, tags: [x]}]\n  serverTags: [y]\n", "pools[0].serverTags", 3, proxy.ErrNoServer},
		{"bad upstream host", "pools:\n- servers: [{url: http://a}]\n  setUpstreamHost: a/b\n", "pools[0].setUpstreamHost", 3, proxy.ErrBadValue},
		{"health interval", "pools:\n- servers: [{url: http://a}]\n  healthCheck:\n    interval: -1s\n", "pools[0].healthCheck.interval", 4, proxy.ErrBadValue},
		{"health path", "pools:\n- servers: [{url: http://a}]\n  healthCheck:\n    path: health\n", "pools[0].healthCheck.path", 4, proxy.ErrBadValue},
		{"health status", "pools:\n- servers: [{url: http://a}]\n  healthCheck:\n    expectedStatus: [200, 700]\n", "pools[0].healthCheck.expectedStatus[1]", 4, proxy.ErrBadValue},
		{"health fails", "pools:\n- servers: [{url: http://a}]\n  healthCheck:\n    fails: -1\n", "pools[0].healthCheck.fails", 4, proxy.ErrBadValue},
		{"health method", "pools:\n- servers: [{url: http://a}]\n  healthCheck:\n    method: \"G T\"\n", "pools[0].healthCheck.method", 4, proxy.ErrBadValue},
		{"ejection percent", "pools:\n- servers: [{url: http://a}]\n  outlierDetection:\n    maxEjectionPercent: 101\n", "pools[0].outlierDetection.maxEjectionPercent", 4, proxy.ErrBadValue},
		{"ejection time", "mainPool:\n  servers: [{url: http://a}]\n  outlierDetection:\n    ejectionTime: -1s\n", "mainPool.outlierDetection.ejectionTime", 4, proxy.ErrBadValue},
		{"consecutive 5xx", "pools:\n- servers: [{url: http://a}]\n  outlierDetection:\n    consecutive5xx: -1\n", "pools[0].outlierDetection.consecutive5xx", 4, proxy.ErrBadValue},
		{"candidate pool server", "mainPool:\n  servers: [{url: http://a}]\ncandidatePools:\n- servers: [{url: ftp://b}]\n  filter: {urls: [{url: {prefix: /}}]}\n", "candidatePools[0].servers[0].url", 4, proxy.ErrBadURL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := filtertest.Build(proxy.Kind, tt.spec)
			if err == nil {
				f.(pipeline.Closer).Close()
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, fmt.Sprintf("line %d:", tt.line)) || !strings.Contains(msg, fmt.Sprintf("%q", tt.field)) {
				t.Errorf("error %q does not name line %d and field %q", msg, tt.line, tt.field)
			}
			if tt.err != nil && !errors.Is(err, tt.err) {
				t.Errorf("error %q is not %v", msg, tt.err)
			}
		})
	}
}

func TestPoolSpecRoundTrip(t *testing.T) {
	t.Parallel()
	filtertest.RoundTrip(t, proxy.Kind, proxy.Spec{
		Pools: []proxy.PoolSpec{
			{
				Servers: []proxy.ServerSpec{{URL: "http://a", Tags: []string{"x"}}},
				Filter: &proxy.RequestMatcherSpec{
					Headers: map[string]proxy.StringMatcherSpec{"X-A": {Prefix: "a"}},
					URLs:    []proxy.MethodAndURLMatcherSpec{{Methods: []string{"GET"}, URL: &proxy.URLMatcherSpec{Regex: "^/a"}}},
				},
				ServerTags:       []string{"x"},
				SetUpstreamHost:  "a.internal",
				HealthCheck:      &proxy.HealthCheckSpec{Interval: 5_000_000_000, Path: "/healthz", ExpectedStatus: []int{200}, ExpectedBody: "ok", Fails: 2, Passes: 1},
				OutlierDetection: &proxy.OutlierDetectionSpec{Consecutive5xx: 3, EjectionTime: 10_000_000_000, MaxEjectionPercent: 30},
			},
			{Servers: []proxy.ServerSpec{{URL: "http://b"}}},
		},
		CandidatePools: []proxy.PoolSpec{{
			Servers: []proxy.ServerSpec{{URL: "http://c"}},
			Filter:  &proxy.RequestMatcherSpec{Policy: proxy.MatchHeaderHash, HeaderHashKey: "X-User", Permil: 50},
		}},
	})
}
