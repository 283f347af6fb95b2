package mock_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/filters/mock"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

const rulesSpec = `
rules:
  - match: { path: /exact }
    code: 201
    body: exact
  - match: { pathPrefix: /pre/ }
    headers: { x-mock: prefix, Content-Type: text/plain }
    body: prefix
  - match: { pathRegexp: '^/re/[0-9]+$' }
    code: 418
  - match:
      headers:
        X-Env: { exact: test }
        X-Tier: { prefix: gold }
    body: any-header
  - match:
      matchAllHeaders: true
      headers:
        X-A: { regex: '^a+$' }
        X-B: { empty: true }
    body: all-headers
  - path: /v1
    code: 202
    body: v1-path
  - pathPrefix: /v1prefix/
    match: { headers: { X-Only: { exact: "yes" } } }
    body: v1-prefix-and-header
`

func TestHandle(t *testing.T) {
	tests := []struct {
		name       string
		spec       string
		method     string
		target     string
		header     http.Header
		wantResult pipeline.Result
		wantCode   int
		wantBody   string
		wantHeader http.Header // checked when not nil
	}{
		{name: "exact path", spec: rulesSpec, target: "/exact", wantResult: mock.Mocked, wantCode: 201, wantBody: "exact",
			wantHeader: http.Header{"Content-Length": {"5"}}},
		{name: "exact path does not match a longer path", spec: rulesSpec, target: "/exact/more", wantResult: pipeline.Continue},
		{name: "prefix with response headers", spec: rulesSpec, target: "/pre/x?q=1", wantResult: mock.Mocked, wantCode: 200, wantBody: "prefix",
			wantHeader: http.Header{"X-Mock": {"prefix"}, "Content-Type": {"text/plain"}, "Content-Length": {"6"}}},
		{name: "prefix needs its trailing slash", spec: rulesSpec, target: "/pre", wantResult: pipeline.Continue},
		{name: "regexp", spec: rulesSpec, target: "/re/123", wantResult: mock.Mocked, wantCode: 418, wantBody: ""},
		{name: "regexp is matched against the path only", spec: rulesSpec, target: "/re/12a", wantResult: pipeline.Continue},
		{name: "any header: exact", spec: rulesSpec, target: "/h", header: http.Header{"X-Env": {"prod", "test"}},
			wantResult: mock.Mocked, wantCode: 200, wantBody: "any-header"},
		{name: "any header: prefix", spec: rulesSpec, target: "/h", header: http.Header{"X-Tier": {"golden"}},
			wantResult: mock.Mocked, wantCode: 200, wantBody: "any-header"},
		{name: "any header: none holds", spec: rulesSpec, target: "/h", header: http.Header{"X-Env": {"prod"}, "X-Tier": {"silver"}},
			wantResult: pipeline.Continue},
		{name: "all headers hold", spec: rulesSpec, target: "/h", header: http.Header{"X-A": {"aaa"}},
			wantResult: mock.Mocked, wantCode: 200, wantBody: "all-headers"},
		{name: "all headers: empty value counts as empty", spec: rulesSpec, target: "/h", header: http.Header{"X-A": {"a"}, "X-B": {""}},
			wantResult: mock.Mocked, wantCode: 200, wantBody: "all-headers"},
		{name: "all headers: one fails", spec: rulesSpec, target: "/h", header: http.Header{"X-A": {"aaa"}, "X-B": {"set"}},
			wantResult: pipeline.Continue},
		{name: "all headers: regex fails", spec: rulesSpec, target: "/h", header: http.Header{"X-A": {"ab"}},
			wantResult: pipeline.Continue},
		{name: "v1 rule-level path", spec: rulesSpec, target: "/v1", wantResult: mock.Mocked, wantCode: 202, wantBody: "v1-path"},
		{name: "v1 rule-level pathPrefix with match headers", spec: rulesSpec, target: "/v1prefix/a", header: http.Header{"X-Only": {"yes"}},
			wantResult: mock.Mocked, wantCode: 200, wantBody: "v1-prefix-and-header"},
		{name: "v1 rule-level pathPrefix, header missing", spec: rulesSpec, target: "/v1prefix/a", wantResult: pipeline.Continue},
		{name: "empty match matches everything", spec: "rules: [ { match: {} , code: 503, body: down } ]", method: http.MethodPost, target: "/any/thing",
			wantResult: mock.Mocked, wantCode: 503, wantBody: "down"},
		{name: "rule without match matches everything", spec: "rules: [ { body: hi } ]", target: "/",
			wantResult: mock.Mocked, wantCode: 200, wantBody: "hi"},
		{name: "first matching rule wins", spec: "rules: [ { match: { pathPrefix: /a }, body: first }, { match: { path: /a/b }, body: second } ]",
			target: "/a/b", wantResult: mock.Mocked, wantCode: 200, wantBody: "first"},
		{name: "path conditions are alternatives", spec: "rules: [ { match: { path: /x, pathPrefix: /y/, pathRegexp: '^/z$' }, body: alt } ]",
			target: "/y/1", wantResult: mock.Mocked, wantCode: 200, wantBody: "alt"},
		{name: "the Host header is the request host", spec: "rules: [ { match: { headers: { Host: { exact: api.example.com } } }, body: host } ]",
			target: "http://api.example.com/", wantResult: mock.Mocked, wantCode: 200, wantBody: "host"},
		{name: "no content type is invented", spec: "rules: [ { code: 204 } ]", target: "/",
			wantResult: mock.Mocked, wantCode: 204, wantHeader: http.Header{"Content-Length": {"0"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := filtertest.New(t, mock.Kind, tt.spec)
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			req := httptest.NewRequest(method, tt.target, nil)
			for k, vv := range tt.header {
				req.Header[k] = vv
			}
			out := h.Do(req)
			if out.Result != tt.wantResult {
				t.Fatalf("result = %q, want %q", out.Result, tt.wantResult)
			}
			if tt.wantResult == pipeline.Continue {
				if out.Response != nil {
					t.Fatalf("no rule matched but a response was set: %d", out.Response.StatusCode)
				}
				return
			}
			if out.Response == nil {
				t.Fatal("no response")
			}
			if out.Response.StatusCode != tt.wantCode || out.Body != tt.wantBody {
				t.Errorf("response = %d %q, want %d %q", out.Response.StatusCode, out.Body, tt.wantCode, tt.wantBody)
			}
			if out.Response.ContentLength != int64(len(tt.wantBody)) {
				t.Errorf("ContentLength = %d, want %d", out.Response.ContentLength, len(tt.wantBody))
			}
			if tt.wantHeader != nil && !reflect.DeepEqual(out.Response.Header, tt.wantHeader) {
				t.Errorf("header = %v, want %v", out.Response.Header, tt.wantHeader)
			}
		})
	}
}

// TestResponsesAreIndependent checks that a later filter changing one
// response does not change the next one.
func TestResponsesAreIndependent(t *testing.T) {
	h := filtertest.New(t, mock.Kind, `rules: [ { headers: { X-A: one } } ]`)
	first := h.Get("/")
	first.Response.Header["X-A"][0] = "changed"
	first.Response.Header.Add("X-A", "two")
	if got := h.Get("/").Response.Header["X-A"]; !reflect.DeepEqual(got, []string{"one"}) {
		t.Errorf("second response X-A = %q, want [one]", got)
	}
}

func waitForTimer(t *testing.T, clk *filtertest.FakeClock) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for clk.Waiters() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the filter never started a timer")
		}
		time.Sleep(time.Millisecond)
	}
}

func receive(t *testing.T, done <-chan *filtertest.Outcome) *filtertest.Outcome {
	t.Helper()
	select {
	case out := <-done:
		return out
	case <-time.After(10 * time.Second):
		t.Fatal("Handle did not return")
		return nil
	}
}

func TestDelay(t *testing.T) {
	clk := filtertest.NewFakeClock(time.Unix(1_700_000_000, 0))
	h := filtertest.New(t, mock.Kind, `
rules:
  - match: { path: /slow }
    delay: 500ms
    body: slow
  - body: fast
`, filtertest.WithClock(clk))

	if out := h.Get("/fast"); out.Body != "fast" || clk.Waiters() != 0 {
		t.Fatalf("rule without delay: body %q, %d timers", out.Body, clk.Waiters())
	}

	done := make(chan *filtertest.Outcome, 1)
	go func() { done <- h.Get("/slow") }()
	waitForTimer(t, clk)
	clk.Advance(499 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("answered before the delay had passed")
	default:
	}
	clk.Advance(time.Millisecond)
	out := receive(t, done)
	if out.Result != mock.Mocked || out.Body != "slow" {
		t.Errorf("after delay: %q %q", out.Result, out.Body)
	}
}

func TestDelayCancelled(t *testing.T) {
	clk := filtertest.NewFakeClock(time.Unix(1_700_000_000, 0))
	h := filtertest.New(t, mock.Kind, `rules: [ { delay: 1h, body: slow } ]`, filtertest.WithClock(clk))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan *filtertest.Outcome, 1)
	go func() { done <- h.Do(httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx)) }()
	waitForTimer(t, clk)
	cancel()
	out := receive(t, done) // returns without the clock moving
	if out.Result != mock.Mocked {
		t.Errorf("result = %q, want %q", out.Result, mock.Mocked)
	}
	if n := clk.Waiters(); n != 0 {
		t.Errorf("%d timers left pending after cancellation", n)
	}
}

func TestConcurrent(t *testing.T) {
	h := filtertest.New(t, mock.Kind, rulesSpec)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			for range 20 {
				target, want := "/exact", "exact"
				if i%2 == 1 {
					target, want = "/pre/x", "prefix"
				}
				if out := h.Get(target); out.Body != want {
					t.Errorf("GET %s: body %q, want %q", target, out.Body, want)
				}
			}
		})
	}
	wg.Wait()
}

func TestBadSpec(t *testing.T) {
	tests := []struct {
		name string
		spec string
		want string // regexp the error must match
	}{
		{"unknown field", "rules:\n  - match:\n      paht: /x\n", `^line 3: field "rules\[0\]\.match\.paht": unknown field`},
		{"unknown field in header matcher", "rules:\n  - match:\n      headers:\n        X-A: { exat: a }\n", `^line 4: field "rules\[0\]\.match\.headers\.X-A\.exat": unknown field`},
		{"no rules", "rules: []\n", `^line 1: field "rules": at least one rule is required`},
		{"code too big", "rules:\n  - body: x\n  - code: 600\n", `^line 3: field "rules\[1\]\.code": must be between 200 and 599 \(a final status\), not 600`},
		{"code too small", "rules:\n  - code: 103\n", `^line 2: field "rules\[0\]\.code": must be between 200 and 599`},
		{"code not a number", "rules:\n  - code: ok\n", `^line 2: field "rules\[0\]\.code": .*cannot unmarshal`},
		{"body on 204", "rules:\n  - code: 204\n    body: x\n", `^line 3: field "rules\[0\]\.body": a 204 response cannot have a body`},
		{"bad path regexp", "rules:\n  - match:\n      pathRegexp: '(['\n", `^line 3: field "rules\[0\]\.match\.pathRegexp": error parsing regexp`},
		{"bad header regex", "rules:\n  - match:\n      headers:\n        X-A:\n          regex: 'a)'\n", `^line 5: field "rules\[0\]\.match\.headers\.X-A\.regex": error parsing regexp`},
		{"empty header matcher", "rules:\n  - match:\n      headers:\n        X-A: {}\n", `^line 4: field "rules\[0\]\.match\.headers\.X-A": set one of exact, prefix, regex or empty`},
		{"empty with exact", "rules:\n  - match:\n      headers:\n        X-A: { empty: true, exact: a }\n", `^line 4: field "rules\[0\]\.match\.headers\.X-A": empty cannot be combined`},
		{"bad match header name", "rules:\n  - match:\n      headers:\n        'X A': { exact: a }\n", `^line 4: field "rules\[0\]\.match\.headers\.X A": "X A" is not a valid header name`},
		{"path without slash", "rules:\n  - match:\n      path: x\n", `^line 3: field "rules\[0\]\.match\.path": must start with /`},
		{"v1 pathPrefix without slash", "rules:\n  - pathPrefix: x\n", `^line 2: field "rules\[0\]\.pathPrefix": must start with /`},
		{"v1 and v2 path", "rules:\n  - match: { path: /a }\n    path: /b\n", `^line 3: field "rules\[0\]\.path": set path or match\.path, not both`},
		{"negative delay", "rules:\n  - delay: -1s\n", `^line 2: field "rules\[0\]\.delay": must not be negative`},
		{"delay without unit", "rules:\n  - delay: 500\n", `^line 2: field "rules\[0\]\.delay": .*cannot unmarshal`},
		{"content-length header", "rules:\n  - headers:\n      content-length: '3'\n", `^line 3: field "rules\[0\]\.headers\.content-length": content-length is computed`},
		{"header value with newline", "rules:\n  - headers:\n      X-A: \"a\\r\\nX-Injected: 1\"\n", `^line 3: field "rules\[0\]\.headers\.X-A": header value contains a control character$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			filtertest.ExpectBuildError(t, mock.Kind, tt.spec, tt.want)
		})
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	in := mock.Spec{Rules: []mock.Rule{
		{
			Match: mock.Match{
				Path:       "/a",
				PathPrefix: "/b/",
				PathRegexp: "^/c$",
				Headers: map[string]mock.StringMatcher{
					"X-A": {Exact: "a", Prefix: "b", Regex: "c"},
					"X-B": {Empty: true},
				},
				MatchAllHeaders: true,
			},
			Code:    404,
			Headers: map[string]string{"Content-Type": "application/json"},
			Body:    `{"error": "not found"}`,
			Delay:   1500 * time.Millisecond,
		},
		{Path: "/v1", PathPrefix: "/v1/"},
	}}
	b, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "delay: 1.5s") {
		t.Errorf("delay is not written as a duration string:\n%s", b)
	}
	// The YAML a Go value encodes to builds: code and YAML take one path.
	filtertest.RoundTrip(t, mock.Kind, in)
}

func TestNewChecksSpec(t *testing.T) {
	if _, err := mock.New(pipeline.Env{}, &mock.Spec{Rules: []mock.Rule{{Code: 1000}}}); err == nil {
		t.Error("New accepted code 1000")
	}
	m, err := mock.New(pipeline.Env{}, &mock.Spec{Rules: []mock.Rule{{Body: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	c := pipeline.NewContext(httptest.NewRequest(http.MethodGet, "/", nil))
	if res := m.Handle(c); res != mock.Mocked || c.Response().StatusCode != 200 {
		t.Errorf("Handle with a nil Env clock: %q", res)
	}
}
