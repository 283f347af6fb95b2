package validator_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sluicegw/sluice/filters/validator"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

const spec = `
headers:
  Content-Type:
    values: [application/json, application/x-www-form-urlencoded]
  x-api-version:
    regexp: '^v[0-9]+$'
  X-Tenant:
    values: [root]
    regexp: '^t-[a-z]+$'
`

func TestHandle(t *testing.T) {
	valid := http.Header{
		"Content-Type":  {"application/json"},
		"X-Api-Version": {"v2"},
		"X-Tenant":      {"t-acme"},
	}
	with := func(k string, vv ...string) http.Header {
		h := valid.Clone()
		if vv == nil {
			delete(h, k)
		} else {
			h[k] = vv
		}
		return h
	}
	tests := []struct {
		name     string
		spec     string
		target   string
		header   http.Header
		wantBody string // "" means the request passes
	}{
		{name: "all rules hold", spec: spec, header: valid},
		{name: "second listed value", spec: spec, header: with("Content-Type", "application/x-www-form-urlencoded")},
		{name: "values are exact", spec: spec, header: with("Content-Type", "application/json; charset=utf-8"), wantBody: "invalid header Content-Type\n"},
		{name: "values are case-sensitive", spec: spec, header: with("Content-Type", "Application/JSON"), wantBody: "invalid header Content-Type\n"},
		{name: "one of several values passes", spec: spec, header: with("Content-Type", "text/plain", "application/json")},
		{name: "missing header", spec: spec, header: with("X-Api-Version"), wantBody: "missing header X-Api-Version\n"},
		{name: "empty value is present but invalid", spec: spec, header: with("X-Api-Version", ""), wantBody: "invalid header X-Api-Version\n"},
		{name: "regexp fails", spec: spec, header: with("X-Api-Version", "2"), wantBody: "invalid header X-Api-Version\n"},
		{name: "values or regexp: value", spec: spec, header: with("X-Tenant", "root")},
		{name: "values or regexp: regexp", spec: spec, header: with("X-Tenant", "t-x")},
		{name: "values or regexp: neither", spec: spec, header: with("X-Tenant", "admin"), wantBody: "invalid header X-Tenant\n"},
		{
			name: "first failing header by name is reported", spec: spec,
			header:   http.Header{"X-Api-Version": {"bad"}, "X-Tenant": {"bad"}},
			wantBody: "missing header Content-Type\n",
		},
		{name: "unanchored regexp matches inside", spec: "headers: { Authorization: { regexp: 'Bearer ' } }", header: http.Header{"Authorization": {"xBearer y"}}},
		{name: "host header", spec: "headers: { host: { values: [api.example.com] } }", target: "http://api.example.com/"},
		{name: "wrong host", spec: "headers: { host: { values: [api.example.com] } }", target: "http://evil.example.com/", wantBody: "invalid header Host\n"},
		{
			name: "the value is never echoed", spec: "headers: { Authorization: { regexp: '^Bearer [A-Za-z0-9]+$' } }",
			header: http.Header{"Authorization": {"Basic c2VjcmV0"}}, wantBody: "invalid header Authorization\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := filtertest.New(t, validator.Kind, tt.spec)
			target := tt.target
			if target == "" {
				target = "/"
			}
			req := httptest.NewRequest(http.MethodPost, target, nil)
			for k, vv := range tt.header {
				req.Header[k] = vv
			}
			out := h.Do(req)
			if tt.wantBody == "" {
				if out.Result != pipeline.Continue || out.Response != nil {
					t.Fatalf("rejected a valid request: %q %q", out.Result, out.Body)
				}
				return
			}
			if out.Result != validator.Invalid {
				t.Fatalf("result = %q, want %q", out.Result, validator.Invalid)
			}
			if out.Response.StatusCode != http.StatusBadRequest || out.Body != tt.wantBody {
				t.Errorf("response = %d %q, want 400 %q", out.Response.StatusCode, out.Body, tt.wantBody)
			}
			if ct := out.Response.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			for _, vv := range tt.header {
				for _, v := range vv {
					if len(v) > 3 && strings.Contains(out.Body, v) {
						t.Errorf("body %q echoes header value %q", out.Body, v)
					}
				}
			}
		})
	}
}

func TestConcurrent(t *testing.T) {
	h := filtertest.New(t, validator.Kind, spec)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			for range 20 {
				req := httptest.NewRequest(http.MethodGet, "/", nil)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Tenant", "root")
				want := pipeline.Continue
				if i%2 == 0 {
					req.Header.Set("X-Api-Version", "v1")
				} else {
					want = validator.Invalid
				}
				if out := h.Do(req); out.Result != want {
					t.Errorf("result %q, want %q", out.Result, want)
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
		{"unknown field", "headers:\n  X-A:\n    value: [a]\n", `^line 3: field "headers\.X-A\.value": unknown field`},
		{"unknown top-level field", "headers: { X-A: { values: [a] } }\njwtt: {}\n", `^line 2: field "jwtt": unknown field`},
		{"no rules", "headers: {}\n", `^line 1: field "headers": at least one header rule is required`},
		{"no checks at all", "{}\n", `^line 1: field "headers": configure at least one check: headers, jwt, signature, oauth2 or basicAuth`},
		{"empty rule", "headers:\n  X-A: {}\n  X-B: { values: [b] }\n", `^line 2: field "headers\.X-A": set values, regexp or both`},
		{"bad regexp", "headers:\n  X-A:\n    values: [a]\n    regexp: '[z-a]'\n", `^line 4: field "headers\.X-A\.regexp": error parsing regexp: invalid character class range`},
		{"bad header name", "headers:\n  'X-A:': { values: [a] }\n", `^line 2: field "headers\.X-A:": "X-A:" is not a valid header name`},
		{"same header twice", "headers:\n  X-A: { values: [a] }\n  x-a: { values: [b] }\n", `^line 3: field "headers\.x-a": "X-A" and "x-a" name the same header`},
		{"values not a list", "headers:\n  X-A:\n    values: a\n", `^line 3: field "headers\.X-A\.values": cannot unmarshal`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			filtertest.ExpectBuildError(t, validator.Kind, tt.spec, tt.want)
		})
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	in := validator.Spec{Headers: map[string]validator.HeaderRule{
		"Content-Type": {Values: []string{"application/json"}},
		"X-Version":    {Regexp: "^v[0-9]+$"},
		"X-Tenant":     {Values: []string{"root", "admin"}, Regexp: "^t-"},
	}}
	filtertest.RoundTrip(t, validator.Kind, in)
}
