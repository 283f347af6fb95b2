package requestadaptor_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/filters/requestadaptor"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

func TestHandle(t *testing.T) {
	tests := []struct {
		name   string
		spec   string
		method string
		target string
		header http.Header
		body   string

		wantMethod     string
		wantHost       string
		wantPath       string
		wantEscaped    string // URL.EscapedPath(); defaults to wantPath
		wantRequestURI string
		wantHeader     http.Header // checked when not nil
		wantBody       *string
	}{
		{
			name: "method and host", spec: "method: PUT\nhost: backend.internal:8080", target: "http://example.com/a",
			wantMethod: "PUT", wantHost: "backend.internal:8080", wantPath: "/a", wantRequestURI: "http://example.com/a",
		},
		{
			name: "replace path keeps the query", spec: "path: { replace: /new }", target: "/old/x?q=1",
			wantPath: "/new", wantRequestURI: "/new?q=1",
		},
		{
			name: "add prefix", spec: "path: { addPrefix: /v2 }", target: "/users",
			wantPath: "/v2/users", wantRequestURI: "/v2/users",
		},
		{
			name: "add prefix with a trailing slash", spec: "path: { addPrefix: /v2/ }", target: "/users",
			wantPath: "/v2/users", wantRequestURI: "/v2/users",
		},
		{
			name: "trim prefix", spec: "path: { trimPrefix: /public }", target: "/public/users?x=%20",
			wantPath: "/users", wantRequestURI: "/users?x=%20",
		},
		{
			name: "trim the whole path leaves /", spec: "path: { trimPrefix: /public }", target: "/public",
			wantPath: "/", wantRequestURI: "/",
		},
		{
			name: "trim is a string prefix", spec: "path: { trimPrefix: /api }", target: "/apiv2/x",
			wantPath: "/v2/x", wantRequestURI: "/v2/x",
		},
		{
			name: "trim prefix that is not there", spec: "path: { trimPrefix: /public }", target: "/private/x",
			wantPath: "/private/x", wantRequestURI: "/private/x",
		},
		{
			name: "regexp replace with groups", spec: "path: { regexpReplace: { regExp: '^/users/([0-9]+)$', replace: '/u/$1/profile' } }", target: "/users/42",
			wantPath: "/u/42/profile", wantRequestURI: "/u/42/profile",
		},
		{
			name: "regexp replace that deletes", spec: "path: { regexpReplace: { regExp: '/+$' } }", target: "/a/b//",
			wantPath: "/a/b", wantRequestURI: "/a/b",
		},
		{
			name: "add prefix keeps an encoded slash", spec: "path: { addPrefix: /api }", target: "/files/a%2Fb?x=1",
			wantPath: "/api/files/a/b", wantEscaped: "/api/files/a%2Fb", wantRequestURI: "/api/files/a%2Fb?x=1",
		},
		{
			name: "trim prefix keeps an encoded slash", spec: "path: { trimPrefix: /api }", target: "/api/files/a%2Fb",
			wantPath: "/files/a/b", wantEscaped: "/files/a%2Fb", wantRequestURI: "/files/a%2Fb",
		},
		{
			name: "trim prefix across an encoded slash clears the raw path", spec: "path: { trimPrefix: /api/v1 }", target: "/api%2Fv1/x",
			wantPath: "/x", wantRequestURI: "/x",
		},
		{
			name: "replace clears the raw path", spec: "path: { replace: /flat }", target: "/a%2Fb",
			wantPath: "/flat", wantRequestURI: "/flat",
		},
		{
			name: "header ops", spec: "header: { del: [Cookie, x-drop], set: { X-Gateway: sluice, Accept: '*/*' }, add: { Via: 1.1 sluice } }",
			target: "/", header: http.Header{"Cookie": {"secret"}, "X-Drop": {"1"}, "Accept": {"a", "b"}, "Via": {"1.0 edge"}, "Keep": {"k"}},
			wantPath: "/", wantRequestURI: "/",
			wantHeader: http.Header{"X-Gateway": {"sluice"}, "Accept": {"*/*"}, "Via": {"1.0 edge", "1.1 sluice"}, "Keep": {"k"}},
		},
		{
			name: "body", spec: "body: '{\"a\": 1}'", method: http.MethodPost, target: "/", body: "original body",
			header:     http.Header{"Content-Length": {"13"}, "Transfer-Encoding": {"chunked"}},
			wantMethod: "POST", wantPath: "/", wantRequestURI: "/",
			wantHeader: http.Header{"Content-Length": {"8"}},
			wantBody:   ptr(`{"a": 1}`),
		},
		{
			name: "empty spec changes nothing", spec: "{}", method: http.MethodPost, target: "/a%2Fb?q", body: "keep",
			wantMethod: "POST", wantPath: "/a/b", wantEscaped: "/a%2Fb", wantRequestURI: "/a%2Fb?q", wantBody: ptr("keep"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := filtertest.New(t, requestadaptor.Kind, tt.spec)
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req := httptest.NewRequest(method, tt.target, body)
			for k, vv := range tt.header {
				req.Header[k] = vv
			}
			orig := snapshot(req)

			out := h.Do(req)
			if out.Result != pipeline.Continue {
				t.Errorf("result = %q, want continue", out.Result)
			}
			if out.Response != nil {
				t.Errorf("set a response")
			}
			got := out.Request
			if tt.wantMethod == "" {
				tt.wantMethod = http.MethodGet
			}
			if tt.wantHost == "" {
				tt.wantHost = "example.com" // httptest.NewRequest's default
			}
			if tt.wantEscaped == "" {
				tt.wantEscaped = tt.wantPath
			}
			if got.Method != tt.wantMethod || got.Host != tt.wantHost {
				t.Errorf("method, host = %s %s, want %s %s", got.Method, got.Host, tt.wantMethod, tt.wantHost)
			}
			if got.URL.Path != tt.wantPath || got.URL.EscapedPath() != tt.wantEscaped || got.RequestURI != tt.wantRequestURI {
				t.Errorf("path, escaped path, request URI = %q %q %q, want %q %q %q",
					got.URL.Path, got.URL.EscapedPath(), got.RequestURI, tt.wantPath, tt.wantEscaped, tt.wantRequestURI)
			}
			if tt.wantHeader != nil && !reflect.DeepEqual(got.Header, tt.wantHeader) {
				t.Errorf("header = %v, want %v", got.Header, tt.wantHeader)
			}
			if tt.wantBody != nil {
				checkBody(t, got, *tt.wantBody)
			}
			if now := snapshot(req); !reflect.DeepEqual(now, orig) {
				t.Errorf("the original request changed:\n got %+v\nwant %+v", now, orig)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// reqSnapshot is what a filter must not change in the original request.
type reqSnapshot struct {
	Method, Host, RequestURI string
	URL                      string
	Path, RawPath            string
	Header                   http.Header
	ContentLength            int64
}

func snapshot(r *http.Request) reqSnapshot {
	return reqSnapshot{
		Method: r.Method, Host: r.Host, RequestURI: r.RequestURI,
		URL: r.URL.String(), Path: r.URL.Path, RawPath: r.URL.RawPath,
		Header: r.Header.Clone(), ContentLength: r.ContentLength,
	}
}

func checkBody(t *testing.T, r *http.Request, want string) {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil || string(b) != want {
		t.Errorf("body = %q (%v), want %q", b, err, want)
	}
	if r.ContentLength != int64(len(want)) {
		t.Errorf("ContentLength = %d, want %d", r.ContentLength, len(want))
	}
	if len(r.TransferEncoding) != 0 {
		t.Errorf("TransferEncoding = %v, want none", r.TransferEncoding)
	}
	if r.GetBody != nil {
		rc, err := r.GetBody()
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(rc); string(b) != want {
			t.Errorf("GetBody gives %q, want %q", b, want)
		}
	}
}

// TestBodyReachesBackend sends the adapted request to a real server, to
// check that net/http's client agrees with the length the filter set.
func TestBodyReachesBackend(t *testing.T) {
	backend := filtertest.NewBackend(t, nil)
	h := filtertest.New(t, requestadaptor.Kind, `
method: PUT
path: { addPrefix: /v2 }
header: { set: { X-Gateway: sluice } }
body: replaced
`)
	in, err := http.NewRequest(http.MethodPost, backend.URL+"/items/a%2Fb?x=1", strings.NewReader("a much longer original body"))
	if err != nil {
		t.Fatal(err)
	}
	out := h.Do(in)
	resp, err := backend.Client().Do(out.Request)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	seen := backend.Requests()
	if len(seen) != 1 {
		t.Fatalf("backend saw %d requests", len(seen))
	}
	s := seen[0]
	if s.Method != "PUT" || s.URL != "/v2/items/a%2Fb?x=1" || s.Body != "replaced" || s.Header.Get("X-Gateway") != "sluice" || s.Header.Get("Content-Length") != "8" {
		t.Errorf("backend saw %s %s %q, X-Gateway %q, Content-Length %q",
			s.Method, s.URL, s.Body, s.Header.Get("X-Gateway"), s.Header.Get("Content-Length"))
	}
}

func TestEmptySpecKeepsTheRequest(t *testing.T) {
	h := filtertest.New(t, requestadaptor.Kind, "")
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	if out := h.Do(req); out.Request != req {
		t.Error("an adaptor that changes nothing replaced the request")
	}
}

func TestConcurrent(t *testing.T) {
	h := filtertest.New(t, requestadaptor.Kind, "path: { addPrefix: /v2 }\nheader: { add: { X-A: a } }\nbody: b")
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 20 {
				req := httptest.NewRequest(http.MethodGet, "/x", nil)
				out := h.Do(req)
				if out.Request.URL.Path != "/v2/x" || len(out.Request.Header["X-A"]) != 1 {
					t.Errorf("got %s %v", out.Request.URL.Path, out.Request.Header)
				}
				checkBody(t, out.Request, "b")
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
		{"unknown field", "path:\n  trimprefix: /a\n", `^line 2: field "path\.trimprefix": unknown field`},
		{"unknown header op", "header:\n  remove: [A]\n", `^line 2: field "header\.remove": unknown field`},
		{"bad method", "host: a\nmethod: 'GET /'\n", `^line 2: field "method": not a valid HTTP method`},
		{"bad host", "host: 'a/b'\n", `^line 1: field "host": not a valid host`},
		{"bad regexp", "path:\n  regexpReplace:\n    regExp: '(a'\n", `^line 3: field "path\.regexpReplace\.regExp": error parsing regexp`},
		{"replace without regexp", "path:\n  regexpReplace:\n    replace: /x\n", `^line 2: field "path\.regexpReplace\.regExp": required with replace`},
		{"two path rules", "method: GET\npath:\n  replace: /a\n  addPrefix: /b\n", `^line 2: field "path": set only one of`},
		{"prefix without slash", "path:\n  addPrefix: v2\n", `^line 2: field "path\.addPrefix": must start with /`},
		{"bad header name", "header:\n  set:\n    'X A': v\n", `^line 3: field "header\.set\.X A": "X A" is not a valid header name`},
		{"header value injection", "header:\n  add:\n    X-A: \"v\\r\\nX-B: w\"\n", `^line 3: field "header\.add\.X-A": header value contains a control character$`},
		{"host header", "header:\n  set: { host: evil }\n", `^line 1: field "header": the Host header is set with host`},
		{"wrong type", "body: [a]\n", `^line 1: field "body.*": cannot unmarshal`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			filtertest.ExpectBuildError(t, requestadaptor.Kind, tt.spec, tt.want)
		})
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	for _, in := range []requestadaptor.Spec{
		{
			Method: "PATCH",
			Host:   "api.internal",
			Path:   requestadaptor.PathSpec{TrimPrefix: "/public"},
			Header: requestadaptor.HeaderSpec{
				Del: []string{"Cookie"},
				Set: map[string]string{"X-A": "a"},
				Add: map[string]string{"Via": "sluice"},
			},
			Body: "body",
		},
		{Path: requestadaptor.PathSpec{RegexpReplace: requestadaptor.RegexpReplace{Regexp: "^/a/(.*)", Replace: "/b/$1"}}},
	} {
		filtertest.RoundTrip(t, requestadaptor.Kind, in)
	}
	if b, _ := yaml.Marshal(requestadaptor.Spec{}); strings.TrimSpace(string(b)) != "{}" {
		t.Errorf("zero spec encodes as %q, want {}", b)
	}
}
