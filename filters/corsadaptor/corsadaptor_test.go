package corsadaptor_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/filters/corsadaptor"
	"github.com/sluicegw/sluice/filters/mock"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

const spec = `
allowedOrigins: [https://app.example.com, "https://*.example.org"]
allowedMethods: [GET, POST, PUT]
allowedHeaders: [Content-Type, X-Api-Key]
allowCredentials: true
exposedHeaders: [X-Request-Id, X-Total]
maxAge: 600
supportCORSRequest: true
`

func preflight(origin, method, headers string) *http.Request {
	req := httptest.NewRequest(http.MethodOptions, "/items", nil)
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if method != "" {
		req.Header.Set("Access-Control-Request-Method", method)
	}
	if headers != "" {
		req.Header.Set("Access-Control-Request-Headers", headers)
	}
	return req
}

func TestPreflight(t *testing.T) {
	h := filtertest.New(t, corsadaptor.Kind, spec)
	tests := []struct {
		name, origin, method, headers string
		want                          pipeline.Result
		wantHeaders                   string // Access-Control-Allow-Headers
	}{
		{name: "allowed", origin: "https://app.example.com", method: "PUT", headers: "content-type, X-API-KEY", want: corsadaptor.Preflighted, wantHeaders: "content-type, x-api-key"},
		{name: "no headers requested", origin: "https://app.example.com", method: "GET", want: corsadaptor.Preflighted},
		{name: "origin case-insensitive", origin: "HTTPS://APP.example.com", method: "GET", want: corsadaptor.Preflighted},
		{name: "wildcard subdomain", origin: "https://a.b.example.org", method: "POST", want: corsadaptor.Preflighted},
		{name: "wildcard needs a label", origin: "https://.example.org", method: "POST", want: corsadaptor.Rejected},
		{name: "wildcard is not the apex", origin: "https://example.org", method: "POST", want: corsadaptor.Rejected},
		{name: "wildcard path trick", origin: "https://evil.com/.example.org", method: "POST", want: corsadaptor.Rejected},
		{name: "wildcard suffix trick", origin: "https://a.example.org.evil.com", method: "POST", want: corsadaptor.Rejected},
		{name: "other scheme", origin: "http://app.example.com", method: "GET", want: corsadaptor.Rejected},
		{name: "null origin", origin: "null", method: "GET", want: corsadaptor.Rejected},
		{name: "method not allowed", origin: "https://app.example.com", method: "DELETE", want: corsadaptor.Rejected},
		{name: "method is case-sensitive", origin: "https://app.example.com", method: "put", want: corsadaptor.Rejected},
		{name: "header not allowed", origin: "https://app.example.com", method: "GET", headers: "content-type, authorization", want: corsadaptor.Rejected},
		{name: "unknown origin", origin: "https://evil.example.com", method: "GET", want: corsadaptor.Rejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := h.Do(preflight(tt.origin, tt.method, tt.headers))
			if out.Result != tt.want {
				t.Fatalf("result %q, want %q", out.Result, tt.want)
			}
			hd := out.Response.Header
			if vary := hd.Get("Vary"); !strings.Contains(vary, "Origin") {
				t.Errorf("Vary %q lacks Origin", vary)
			}
			if tt.want == corsadaptor.Rejected {
				if out.Response.StatusCode != http.StatusForbidden || out.Body != "CORS preflight refused\n" {
					t.Errorf("refusal %d %q", out.Response.StatusCode, out.Body)
				}
				for k := range hd {
					if strings.HasPrefix(k, "Access-Control-") {
						t.Errorf("refusal carries %s", k)
					}
				}
				return
			}
			want := map[string]string{
				"Access-Control-Allow-Origin":      tt.origin,
				"Access-Control-Allow-Methods":     tt.method,
				"Access-Control-Allow-Headers":     tt.wantHeaders,
				"Access-Control-Allow-Credentials": "true",
				"Access-Control-Max-Age":           "600",
				"Access-Control-Expose-Headers":    "",
				"Content-Length":                   "",
			}
			for k, v := range want {
				if got := hd.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if out.Response.StatusCode != http.StatusNoContent || out.Body != "" {
				t.Errorf("answer %d %q, want 204 without a body", out.Response.StatusCode, out.Body)
			}
		})
	}
}

func TestNotCORS(t *testing.T) {
	h := filtertest.New(t, corsadaptor.Kind, spec)
	// An OPTIONS without Origin or without Access-Control-Request-Method
	// is not a preflight.
	for _, req := range []*http.Request{preflight("", "GET", ""), preflight("https://app.example.com", "", "")} {
		if out := h.Do(req); out.Result != pipeline.Continue || out.Response != nil {
			t.Errorf("%v: %q %v", req.Header, out.Result, out.Response)
		}
	}
}

func TestActualRequest(t *testing.T) {
	backend := func() *http.Response {
		r := pipeline.NewResponse(nil, http.StatusOK, "text/plain", []byte("ok"))
		r.Header.Set("Vary", "Accept-Encoding")
		return r
	}
	tests := []struct {
		name, spec, origin string
		wantOrigin         string
		wantCreds          string
		wantExpose         string
		wantVary           []string
	}{
		{"allowed, with credentials: echoed", spec, "https://app.example.com", "https://app.example.com", "true", "X-Request-Id, X-Total", []string{"Accept-Encoding", "Origin"}},
		{"not allowed: no CORS headers", spec, "https://evil.com", "", "", "", []string{"Accept-Encoding", "Origin"}},
		{"any origin without credentials: *", "supportCORSRequest: true", "https://x.test", "*", "", "", []string{"Accept-Encoding"}},
		{"any origin with credentials: echoed, never *", "supportCORSRequest: true\nallowCredentials: true\nallowedOrigins: ['*']", "https://x.test", "https://x.test", "true", "", []string{"Accept-Encoding", "Origin"}},
		{"supportCORSRequest off", "allowedOrigins: [https://x.test]", "https://x.test", "", "", "", []string{"Accept-Encoding"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := filtertest.New(t, corsadaptor.Kind, tt.spec)
			req := httptest.NewRequest(http.MethodGet, "/items", nil)
			req.Header.Set("Origin", tt.origin)
			// Before the backend: nothing to do yet.
			if out := h.Do(req); out.Result != pipeline.Continue || out.Response != nil {
				t.Fatalf("request phase: %q %v", out.Result, out.Response)
			}
			out := h.DoWith(req, backend())
			if out.Result != pipeline.Continue {
				t.Fatalf("result %q", out.Result)
			}
			hd := out.Response.Header
			if got := hd.Get("Access-Control-Allow-Origin"); got != tt.wantOrigin {
				t.Errorf("Allow-Origin %q, want %q", got, tt.wantOrigin)
			}
			if got := hd.Get("Access-Control-Allow-Credentials"); got != tt.wantCreds {
				t.Errorf("Allow-Credentials %q, want %q", got, tt.wantCreds)
			}
			if got := hd.Get("Access-Control-Expose-Headers"); got != tt.wantExpose {
				t.Errorf("Expose-Headers %q, want %q", got, tt.wantExpose)
			}
			if got := hd.Values("Vary"); strings.Join(got, "|") != strings.Join(tt.wantVary, "|") {
				t.Errorf("Vary %q, want %q", got, tt.wantVary)
			}
		})
	}
}

func TestBadSpec(t *testing.T) {
	tests := []struct{ name, spec, want string }{
		{"two wildcards", `allowedOrigins: ["https://*.*.example.com"]`, `field "allowedOrigins\[0\]": .*more than one wildcard`},
		{"wildcard in the scheme", `allowedOrigins: ["*://example.com"]`, `field "allowedOrigins\[0\]": .*after the scheme`},
		{"not an origin", `allowedOrigins: [example.com]`, `field "allowedOrigins\[0\]": "example.com" is not an origin`},
		{"bad method", `allowedMethods: ["GE T"]`, `field "allowedMethods\[0\]"`},
		{"bad header", `allowedHeaders: ["X:Y"]`, `field "allowedHeaders\[0\]"`},
		{"negative max age", `maxAge: -1`, `line 1: field "maxAge": must not be negative`},
		{"unknown field", `allowOrigins: [x]`, `field "allowOrigins": unknown field`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { filtertest.ExpectBuildError(t, corsadaptor.Kind, tt.spec, tt.want) })
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	filtertest.RoundTrip(t, corsadaptor.Kind, corsadaptor.Spec{
		AllowedOrigins: []string{"https://a.test", "https://*.b.test"}, AllowedMethods: []string{"GET"},
		AllowedHeaders: []string{"X-A"}, AllowCredentials: true, ExposedHeaders: []string{"X-B"}, MaxAge: 5, SupportCORSRequest: true,
	})
}

// TestGateway runs the documented two-step flow behind a real gate: a
// browser's preflight, then its actual request, as a real HTTP client
// sends them.
func TestGateway(t *testing.T) {
	const objects = `
kind: HTTPServer
name: server
port: 10080
rules:
  - paths:
      - pathPrefix: /
        backend: api
---
kind: Pipeline
name: api
flow:
  - filter: cors
    jumpIf: { preflighted: END, rejected: END }
  - filter: backend
    jumpIf: { mocked: corsResponse }
  - filter: cors
    alias: corsResponse
filters:
  - name: cors
    kind: CORSAdaptor
    allowedOrigins: [https://app.example.com]
    allowedMethods: [GET, DELETE]
    allowCredentials: true
    exposedHeaders: [X-Total]
    supportCORSRequest: true
  - name: backend
    kind: Mock
    rules: [{ body: items, headers: { X-Total: "3" } }]
`
	g, err := sluice.New(sluice.WithoutBuiltinFilters(), sluice.WithFilterKinds(corsadaptor.Kind, mock.Kind))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	if err := g.ApplyYAML(context.Background(), strings.NewReader(objects)); err != nil {
		t.Fatal(err)
	}
	h, err := g.Handler("server")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	do := func(method, origin, acrm string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+"/items", nil)
		req.Header.Set("Origin", origin)
		if acrm != "" {
			req.Header.Set("Access-Control-Request-Method", acrm)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := do(http.MethodOptions, "https://app.example.com", "DELETE")
	if resp.StatusCode != http.StatusNoContent || body != "" || resp.Header.Get("Access-Control-Allow-Methods") != "DELETE" || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("preflight: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, _ = do(http.MethodOptions, "https://evil.example.com", "DELETE")
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("refused preflight: %d %v", resp.StatusCode, resp.Header)
	}
	resp, body = do(http.MethodGet, "https://app.example.com", "")
	if resp.StatusCode != http.StatusOK || body != "items" || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		resp.Header.Get("Access-Control-Allow-Credentials") != "true" || resp.Header.Get("Access-Control-Expose-Headers") != "X-Total" {
		t.Errorf("actual request: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, body = do(http.MethodGet, "https://evil.example.com", "")
	if resp.StatusCode != http.StatusOK || body != "items" || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("actual request from another origin: %d %q %v", resp.StatusCode, body, resp.Header)
	}
}
