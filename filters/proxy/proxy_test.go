package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/filters/proxy"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

// oneServer is a spec with one pool of one server.
func oneServer(url string, extra ...string) string {
	s := "pools:\n- servers:\n  - url: " + url + "\n"
	for _, e := range extra {
		s += "  " + e + "\n"
	}
	return s
}

// named answers with the backend's name and the client's address, to tell
// backends and connections apart.
func named(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Remote", r.RemoteAddr)
		io.WriteString(w, name)
	})
}

func status(t *testing.T, f pipeline.Filter) *proxy.Status {
	t.Helper()
	st, ok := f.(pipeline.Statuser).Status().(*proxy.Status)
	if !ok {
		t.Fatalf("Status() is %T, want *proxy.Status", f.(pipeline.Statuser).Status())
	}
	return st
}

func TestRoundRobin(t *testing.T) {
	t.Parallel()
	a, b, c := filtertest.NewBackend(t, named("a")), filtertest.NewBackend(t, named("b")), filtertest.NewBackend(t, named("c"))
	h := filtertest.New(t, proxy.Kind, fmt.Sprintf(`
pools:
- servers:
  - url: %s
  - url: %s
  - url: %s
  loadBalance:
    policy: roundRobin
`, a.URL, b.URL, c.URL))
	var got []string
	for range 6 {
		out := h.Get("/")
		if out.Result != pipeline.Continue || out.Response.StatusCode != 200 {
			t.Fatalf("result %q, status %d", out.Result, out.Response.StatusCode)
		}
		got = append(got, out.Body)
	}
	if s := strings.Join(got, ""); s != "abcabc" {
		t.Errorf("servers in order %q, want abcabc", s)
	}
	st := status(t, h.Filter)
	for i, s := range st.Pools[0].Servers {
		if s.Requests != 2 || s.Errors != 0 {
			t.Errorf("server %d: %+v, want 2 requests and no errors", i, s)
		}
	}
}

func TestRandom(t *testing.T) {
	t.Parallel()
	a, b := filtertest.NewBackend(t, named("a")), filtertest.NewBackend(t, named("b"))
	h := filtertest.New(t, proxy.Kind, fmt.Sprintf(`
pools:
- servers: [{url: %q}, {url: %q}]
  loadBalance: {policy: random}
`, a.URL, b.URL))
	seen := map[string]int{}
	for range 64 {
		seen[h.Get("/").Body]++
	}
	// Both appear unless the generator is broken (odds 2^-63).
	if seen["a"] == 0 || seen["b"] == 0 || seen["a"]+seen["b"] != 64 {
		t.Errorf("random spread %v", seen)
	}
}

func TestRewritesURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, prefix, target, want string
	}{
		{"no prefix", "", "/users/7?a=1&b=2", "/users/7?a=1&b=2"},
		{"root prefix", "/", "/users", "/users"},
		{"prefix", "/api", "/users?q=x", "/api/users?q=x"},
		{"prefix with slash", "/api/", "/users", "/api/users"},
		{"prefix and root", "/api", "/", "/api/"},
		{"escaped path", "/api", "/a%2Fb?x=%20", "/api/a%2Fb?x=%20"},
		{"escaped prefix", "/a%2Fb", "/c", "/a%2Fb/c"},
		{"empty query kept", "", "/x?", "/x?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			be := filtertest.NewBackend(t, nil)
			h := filtertest.New(t, proxy.Kind, oneServer(be.URL+tt.prefix))
			out := h.Get(tt.target)
			if out.Result != pipeline.Continue {
				t.Fatalf("result %q: %s", out.Result, out.Body)
			}
			seen := be.Requests()
			if len(seen) != 1 || seen[0].URL != tt.want {
				t.Errorf("backend saw %+v, want URL %q", seen, tt.want)
			}
		})
	}
}

func TestHost(t *testing.T) {
	t.Parallel()
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprint("keepHost=", keep), func(t *testing.T) {
			t.Parallel()
			be := filtertest.NewBackend(t, nil)
			h := filtertest.New(t, proxy.Kind, fmt.Sprintf("pools:\n- servers:\n  - url: %s\n    keepHost: %v\n", be.URL, keep))
			h.Get("http://client.example/x")
			want := strings.TrimPrefix(be.URL, "http://")
			if keep {
				want = "client.example"
			}
			if got := be.Requests()[0].Host; got != want {
				t.Errorf("backend saw Host %q, want %q", got, want)
			}
		})
	}
}

func TestRemovesHopByHopHeaders(t *testing.T) {
	t.Parallel()
	be := filtertest.NewBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Connection", "X-Resp-Hop")
		h.Set("X-Resp-Hop", "hop")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("Proxy-Authenticate", "Basic")
		h.Set("X-End", "kept")
		io.WriteString(w, "ok")
	}))
	h := filtertest.New(t, proxy.Kind, oneServer(be.URL))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Connection", "close, X-Req-Hop")
	r.Header.Set("X-Req-Hop", "secret")
	r.Header.Set("Keep-Alive", "300")
	r.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Te", "trailers, deflate")
	r.Header.Set("X-End", "kept")
	r.Close = true
	out := h.Do(r)
	if out.Result != pipeline.Continue {
		t.Fatalf("result %q", out.Result)
	}

	got := be.Requests()[0].Header
	for _, k := range []string{"Connection", "X-Req-Hop", "Keep-Alive", "Proxy-Authorization", "Upgrade"} {
		if v, ok := got[k]; ok {
			t.Errorf("backend got hop-by-hop header %s: %q", k, v)
		}
	}
	if v := got.Get("X-End"); v != "kept" {
		t.Errorf("backend got X-End %q, want kept", v)
	}
	if v := got.Get("Te"); v != "trailers" {
		t.Errorf("backend got Te %q, want trailers", v)
	}
	if r.Header.Get("X-Req-Hop") != "secret" || r.Header.Get("Connection") == "" {
		t.Error("the client's request was changed")
	}

	for _, k := range []string{"Connection", "X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate"} {
		if v, ok := out.Response.Header[k]; ok {
			t.Errorf("response has hop-by-hop header %s: %q", k, v)
		}
	}
	if v := out.Response.Header.Get("X-End"); v != "kept" {
		t.Errorf("response X-End %q, want kept", v)
	}
}

func TestForwardedHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		target string
		header http.Header
		want   http.Header
	}{
		{
			name:   "none before",
			target: "http://shop.example/",
			want: http.Header{
				"X-Forwarded-For":   {"192.0.2.1"},
				"X-Forwarded-Host":  {"shop.example"},
				"X-Forwarded-Proto": {"http"},
			},
		},
		{
			name:   "appends to one",
			target: "https://shop.example/",
			header: http.Header{"X-Forwarded-For": {"203.0.113.9"}},
			want: http.Header{
				"X-Forwarded-For":   {"203.0.113.9, 192.0.2.1"},
				"X-Forwarded-Proto": {"https"},
			},
		},
		{
			name:   "appends to several",
			target: "/",
			header: http.Header{"X-Forwarded-For": {"203.0.113.9, 198.51.100.1", "198.51.100.2"}},
			want:   http.Header{"X-Forwarded-For": {"203.0.113.9, 198.51.100.1, 198.51.100.2, 192.0.2.1"}},
		},
		{
			name:   "keeps host and proto",
			target: "/",
			header: http.Header{"X-Forwarded-Host": {"outer.example"}, "X-Forwarded-Proto": {"https"}},
			want:   http.Header{"X-Forwarded-Host": {"outer.example"}, "X-Forwarded-Proto": {"https"}},
		},
		{
			name:   "no Go user agent",
			target: "/",
			want:   http.Header{"User-Agent": nil},
		},
		{
			name:   "user agent kept",
			target: "/",
			header: http.Header{"User-Agent": {"curl/8"}},
			want:   http.Header{"User-Agent": {"curl/8"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			be := filtertest.NewBackend(t, nil)
			h := filtertest.New(t, proxy.Kind, oneServer(be.URL))
			r := httptest.NewRequest(http.MethodGet, tt.target, nil)
			for k, vv := range tt.header {
				r.Header[k] = vv
			}
			h.Do(r)
			got := be.Requests()[0].Header
			for k, want := range tt.want {
				if g := got[k]; strings.Join(g, "|") != strings.Join(want, "|") {
					t.Errorf("%s: got %q, want %q", k, g, want)
				}
			}
		})
	}
}

func TestStreamsRequestBody(t *testing.T) {
	t.Parallel()
	gotFirst := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := make([]byte, len("part1"))
		if _, err := io.ReadFull(r.Body, first); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		close(gotFirst)
		rest, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s+%s", r.Method, first, rest)
	}))
	t.Cleanup(be.Close)
	h := filtertest.New(t, proxy.Kind, oneServer(be.URL))

	// The second part is written only once the backend has the first: a
	// proxy that buffered the body would never send it.
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("part1"))
		select {
		case <-gotFirst:
			pw.Write([]byte("part2"))
			pw.Close()
		case <-time.After(10 * time.Second):
			pw.CloseWithError(errors.New("the backend did not get the first part: the body was not streamed"))
		}
	}()
	r := httptest.NewRequest(http.MethodPost, "/upload", pr)
	r.ContentLength = -1
	out := h.Do(r)
	if out.Result != pipeline.Continue || out.Body != "POST part1+part2" {
		t.Errorf("result %q, body %q", out.Result, out.Body)
	}
}

func TestPostWithLength(t *testing.T) {
	t.Parallel()
	be := filtertest.NewBackend(t, nil)
	h := filtertest.New(t, proxy.Kind, oneServer(be.URL))
	out := h.Do(httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"a":1}`)))
	seen := be.Requests()
	if out.Result != pipeline.Continue || len(seen) != 1 || seen[0].Body != `{"a":1}` || seen[0].Header.Get("Content-Length") != "7" {
		t.Errorf("result %q, backend saw %+v", out.Result, seen)
	}
}

// closedAddr returns the address of a listener that is closed again, so
// connecting to it is refused.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestServerError(t *testing.T) {
	t.Parallel()
	h := filtertest.New(t, proxy.Kind, oneServer("http://"+closedAddr(t)))
	out := h.Get("/")
	if out.Result != proxy.ResultServerError || out.Response.StatusCode != http.StatusBadGateway {
		t.Errorf("result %q, status %d, want serverError and 502", out.Result, out.Response.StatusCode)
	}
	if s := status(t, h.Filter).Pools[0].Servers[0]; s.Requests != 1 || s.Errors != 1 {
		t.Errorf("status %+v, want 1 request, 1 error", s)
	}
}

// blocking starts a backend that answers only when its client goes away or
// the test ends; arrived gets a value per request.
func blocking(t *testing.T) (url string, arrived chan struct{}) {
	t.Helper()
	release := make(chan struct{})
	arrived = make(chan struct{}, 16)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(be.Close)
	t.Cleanup(func() { close(release) }) // runs first: unblocks handlers before Close waits for them
	return be.URL, arrived
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	url, _ := blocking(t)
	h := filtertest.New(t, proxy.Kind, oneServer(url, "timeout: 50ms"))
	out := h.Get("/")
	if out.Result != proxy.ResultTimeout || out.Response.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("result %q, status %d, want timeout and 504", out.Result, out.Response.StatusCode)
	}
	if s := status(t, h.Filter).Pools[0].Servers[0]; s.Errors != 1 {
		t.Errorf("status %+v, want 1 error", s)
	}
}

func TestTimeoutLetsBodyStream(t *testing.T) {
	t.Parallel()
	be := filtertest.NewBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 100<<10))
	}))
	h := filtertest.New(t, proxy.Kind, oneServer(be.URL, "timeout: 10s"))
	out := h.Get("/")
	if out.Result != pipeline.Continue || len(out.Body) != 100<<10 {
		t.Errorf("result %q, %d bytes", out.Result, len(out.Body))
	}
}

func TestFailureCodes(t *testing.T) {
	t.Parallel()
	be := filtertest.NewBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := 200
		fmt.Sscan(r.URL.Query().Get("code"), &code)
		w.WriteHeader(code)
		fmt.Fprint(w, "code ", code)
	}))
	h := filtertest.New(t, proxy.Kind, oneServer(be.URL, "failureCodes: [500, 503]"))
	for _, tt := range []struct {
		code int
		want pipeline.Result
	}{
		{200, pipeline.Continue},
		{503, proxy.ResultFailureCode},
		{500, proxy.ResultFailureCode},
		{502, pipeline.Continue},
	} {
		out := h.Get(fmt.Sprint("/?code=", tt.code))
		if out.Result != tt.want || out.Response.StatusCode != tt.code || out.Body != fmt.Sprint("code ", tt.code) {
			t.Errorf("code %d: result %q, status %d, body %q; want result %q and the server's response", tt.code, out.Result, out.Response.StatusCode, out.Body, tt.want)
		}
	}
	if s := status(t, h.Filter).Pools[0].Servers[0]; s.Requests != 4 || s.Errors != 2 {
		t.Errorf("status %+v, want 4 requests, 2 errors", s)
	}
}

func TestClientError(t *testing.T) {
	t.Parallel()
	t.Run("cancelled", func(t *testing.T) {
		t.Parallel()
		url, arrived := blocking(t)
		h := filtertest.New(t, proxy.Kind, oneServer(url))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			<-arrived
			cancel()
		}()
		out := h.Do(httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx))
		if out.Result != proxy.ResultClientError || out.Response.StatusCode != http.StatusBadRequest || out.Body != "" {
			t.Errorf("result %q, status %d, body %q; want clientError, a bare 400", out.Result, out.Response.StatusCode, out.Body)
		}
		if s := status(t, h.Filter).Pools[0].Servers[0]; s.Errors != 0 {
			t.Errorf("a client's cancel counted as a server error: %+v", s)
		}
	})
	t.Run("body read error", func(t *testing.T) {
		t.Parallel()
		be := filtertest.NewBackend(t, nil)
		h := filtertest.New(t, proxy.Kind, oneServer(be.URL))
		body := io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(errors.New("connection reset by client")))
		r := httptest.NewRequest(http.MethodPost, "/", body)
		r.ContentLength = -1
		out := h.Do(r)
		if out.Result != proxy.ResultClientError || out.Response.StatusCode != http.StatusBadRequest {
			t.Errorf("result %q, status %d; want clientError and 400", out.Result, out.Response.StatusCode)
		}
	})
	t.Run("body too large", func(t *testing.T) {
		t.Parallel()
		be := filtertest.NewBackend(t, nil)
		h := filtertest.New(t, proxy.Kind, oneServer(be.URL))
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.Body = http.MaxBytesReader(nil, io.NopCloser(strings.NewReader(strings.Repeat("x", 100))), 10)
		r.ContentLength = -1
		out := h.Do(r)
		if out.Result != proxy.ResultClientError || out.Response.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("result %q, status %d; want clientError and 413", out.Result, out.Response.StatusCode)
		}
	})
}

func TestInternalError(t *testing.T) {
	t.Parallel()
	be := filtertest.NewBackend(t, nil)
	h := filtertest.New(t, proxy.Kind, oneServer(be.URL))
	bad := httptest.NewRequest(http.MethodGet, "/", nil)
	bad.Method = "BAD METHOD" // as an earlier filter might leave it
	noURL := httptest.NewRequest(http.MethodGet, "/", nil)
	noURL.URL = nil
	for name, r := range map[string]*http.Request{"bad method": bad, "no url": noURL, "no request": nil} {
		out := h.Do(r)
		if out.Result != proxy.ResultInternalError || out.Response.StatusCode != http.StatusInternalServerError {
			t.Errorf("%s: result %q, status %d; want internalError and 500", name, out.Result, out.Response.StatusCode)
		}
	}
	if n := len(be.Requests()); n != 0 {
		t.Errorf("the backend got %d requests", n)
	}
}

func TestMainPoolAlias(t *testing.T) {
	t.Parallel()
	be := filtertest.NewBackend(t, named("main"))
	h := filtertest.New(t, proxy.Kind, fmt.Sprintf(`
mainPool:
  servers:
  - url: %s/v1
  failureCodes: [503]
`, be.URL))
	out := h.Get("/x")
	if out.Result != pipeline.Continue || out.Body != "main" || be.Requests()[0].URL != "/v1/x" {
		t.Errorf("result %q, body %q, backend saw %+v", out.Result, out.Body, be.Requests())
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, spec string
		field      string
		line       int
		err        error
	}{
		{"bad scheme", "pools:\n- servers:\n  - url: ftp://x\n", "pools[0].servers[0].url", 3, proxy.ErrBadURL},
		{"no host", "pools:\n- servers:\n  - url: http://\n", "pools[0].servers[0].url", 3, proxy.ErrBadURL},
		{"relative", "pools:\n- servers:\n  - url: /x\n", "pools[0].servers[0].url", 3, proxy.ErrBadURL},
		{"unparsable", "pools:\n- servers:\n  - url: \"http://a b\"\n", "pools[0].servers[0].url", 3, proxy.ErrBadURL},
		{"query", "pools:\n- servers:\n  - url: http://a/?x=1\n", "pools[0].servers[0].url", 3, proxy.ErrBadURL},
		{"credentials", "pools:\n- servers:\n  - url: http://u:pw@a/\n", "pools[0].servers[0].url", 3, proxy.ErrBadURL},
		{"second server", "pools:\n- servers:\n  - url: http://a\n  - url: b\n", "pools[0].servers[1].url", 4, proxy.ErrBadURL},
		{"negative weight", "pools:\n- servers:\n  - url: http://a\n    weight: -1\n", "pools[0].servers[0].weight", 4, proxy.ErrBadValue},
		{"unknown policy", "pools:\n- servers:\n  - url: http://a\n  loadBalance:\n    policy: leastConn\n", "pools[0].loadBalance.policy", 5, proxy.ErrUnknownPolicy},
		{"both pools", "pools:\n- servers:\n  - url: http://a\nmainPool:\n  servers:\n  - url: http://b\n", "mainPool", 4, proxy.ErrTooManyPools},
		{"two pools", "pools:\n- servers:\n  - url: http://a\n- servers:\n  - url: http://b\n", "pools[1]", 4, proxy.ErrTooManyPools},
		{"no pool", "maxIdleConns: 5\n", "pools", 1, proxy.ErrNoPool},
		{"no server", "pools:\n- timeout: 1s\n", "pools[0].servers", 2, proxy.ErrNoServer},
		{"unknown field", "pools:\n- servers:\n  - url: http://a\n    keephost: true\n", "pools[0].servers[0].keephost", 4, pipeline.ErrUnknownField},
		{"negative timeout", "pools:\n- servers:\n  - url: http://a\n  timeout: -1s\n", "pools[0].timeout", 4, proxy.ErrBadValue},
		{"negative per-try timeout", "pools:\n- servers:\n  - url: http://a\n  timeout: 1s\n  perTryTimeout: -1s\n", "pools[0].perTryTimeout", 5, proxy.ErrBadValue},
		{"number timeout", "pools:\n- servers:\n  - url: http://a\n  timeout: 30\n", "pools[0].timeout", 4, nil},
		{"failure code", "pools:\n- servers:\n  - url: http://a\n  failureCodes: [500, 42]\n", "pools[0].failureCodes[1]", 4, proxy.ErrBadValue},
		{"body size", "mainPool:\n  servers:\n  - url: http://a\n  serverMaxBodySize: -2\n", "mainPool.serverMaxBodySize", 4, proxy.ErrBadValue},
		{"idle conns", "maxIdleConnsPerHost: -1\npools:\n- servers:\n  - url: http://a\n", "maxIdleConnsPerHost", 1, proxy.ErrBadValue},
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
			if strings.Contains(msg, "pw") {
				t.Errorf("error %q shows the URL's password", msg)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	_, err := proxy.New(pipeline.Env{}, &proxy.Spec{Pools: []proxy.PoolSpec{{Servers: []proxy.ServerSpec{{URL: "http://a"}}, LoadBalance: proxy.LoadBalanceSpec{Policy: "sticky"}}}})
	var fe *pipeline.FieldError
	if !errors.As(err, &fe) || fe.Field != "pools[0].loadBalance.policy" || !errors.Is(err, proxy.ErrUnknownPolicy) {
		t.Errorf("New: %v", err)
	}
	if _, err := proxy.New(pipeline.Env{}, nil); err == nil {
		t.Error("New(nil spec): no error")
	}
}

func TestSpecRoundTrip(t *testing.T) {
	t.Parallel()
	const in = `
pools:
- servers:
  - url: http://127.0.0.1:9095/api
    tags: [a, b]
    weight: 3
    keepHost: true
  - url: https://backend.example
  loadBalance:
    policy: random
  timeout: 1m30s
  perTryTimeout: 10s
  retryPolicy: backend-retry
  circuitBreakerPolicy: backend-cb
  failureCodes: [500, 503]
  serverMaxBodySize: -1
maxIdleConns: 100
maxIdleConnsPerHost: 10
`
	var s1 proxy.Spec
	raw, err := pipeline.ParseRaw([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if err := pipeline.DecodeSpec(raw, &s1); err != nil {
		t.Fatal(err)
	}
	if got := s1.Pools[0]; got.Timeout != 90*time.Second || got.PerTryTimeout != 10*time.Second || got.RetryPolicy != "backend-retry" || got.CircuitBreakerPolicy != "backend-cb" {
		t.Errorf("pool %+v", got)
	}
	out, err := yaml.Marshal(&s1)
	if err != nil {
		t.Fatal(err)
	}
	var s2 proxy.Spec
	raw2, err := pipeline.ParseRaw(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := pipeline.DecodeSpec(raw2, &s2); err != nil {
		t.Fatalf("decoding %s: %v", out, err)
	}
	out2, _ := yaml.Marshal(&s2)
	if string(out) != string(out2) {
		t.Errorf("round trip changed the spec:\n%s\n---\n%s", out, out2)
	}
	if !strings.Contains(string(out), "timeout: 1m30s") {
		t.Errorf("timeout not written as a duration string:\n%s", out)
	}

	// The Go path: a spec value through RawOf builds like YAML (without the
	// policies, which only a pipeline has).
	s1.Pools[0].RetryPolicy, s1.Pools[0].CircuitBreakerPolicy = "", ""
	f, err := proxy.Kind.Build(pipeline.Env{}, pipeline.RawOf(s1))
	if err != nil {
		t.Fatal(err)
	}
	f.(pipeline.Closer).Close()

	def := proxy.Kind.DefaultSpec().(*proxy.Spec)
	if def.MaxIdleConns != proxy.DefaultMaxIdleConns || def.MaxIdleConnsPerHost != proxy.DefaultMaxIdleConnsPerHost {
		t.Errorf("DefaultSpec %+v", def)
	}
}

func TestInherit(t *testing.T) {
	t.Parallel()
	a, b, c := filtertest.NewBackend(t, named("a")), filtertest.NewBackend(t, named("b")), filtertest.NewBackend(t, named("c"))
	spec := fmt.Sprintf("pools:\n- servers: [{url: %q}, {url: %q}, {url: %q}]\n", a.URL, b.URL, c.URL)
	remote := func(out *filtertest.Outcome) string { return out.Body + " " + out.Response.Header.Get("X-Remote") }

	old := filtertest.New(t, proxy.Kind, spec)
	toA, toB := remote(old.Get("/")), remote(old.Get("/"))

	t.Run("same settings share the transport", func(t *testing.T) {
		next := filtertest.New(t, proxy.Kind, spec)
		if err := next.Filter.(pipeline.Inheritor).Inherit(old.Filter); err != nil {
			t.Fatal(err)
		}
		// The old generation keeps working until it is closed, on the
		// same connections.
		if got := remote(old.Get("/")); !strings.HasPrefix(got, "c ") {
			t.Errorf("old generation after Inherit: %q", got)
		}
		old.Filter.(pipeline.Closer).Close()

		// The turn goes on at a, over the connection the old one opened.
		if got := remote(next.Get("/")); got != toA {
			t.Errorf("next request %q, want %q (same server and connection)", got, toA)
		}
		if got := remote(next.Get("/")); got != toB {
			t.Errorf("next request %q, want %q", got, toB)
		}
		st := status(t, next.Filter).Pools[0].Servers
		if st[0].Requests != 2 || st[1].Requests != 2 || st[2].Requests != 1 {
			t.Errorf("counters not carried over: %+v", st)
		}
	})
}

func TestInheritOtherSettings(t *testing.T) {
	t.Parallel()
	be := filtertest.NewBackend(t, named("a"))
	old := filtertest.New(t, proxy.Kind, oneServer(be.URL))
	first := old.Get("/").Response.Header.Get("X-Remote")

	next := filtertest.New(t, proxy.Kind, oneServer(be.URL)+"maxIdleConnsPerHost: 7\n")
	if err := next.Filter.(pipeline.Inheritor).Inherit(old.Filter); err != nil {
		t.Fatal(err)
	}
	old.Filter.(pipeline.Closer).Close()
	if got := next.Get("/").Response.Header.Get("X-Remote"); got == first {
		t.Errorf("a Proxy with other transport settings reused connection %s", got)
	}
}

func TestInheritDiscarded(t *testing.T) {
	t.Parallel()
	be := filtertest.NewBackend(t, named("a"))
	old := filtertest.New(t, proxy.Kind, oneServer(be.URL))
	first := old.Get("/").Response.Header.Get("X-Remote")

	// A new generation that is built, inherits and is then thrown away (the
	// rest of its update failed) must not take the old one's connections.
	next, err := filtertest.Build(proxy.Kind, oneServer(be.URL))
	if err != nil {
		t.Fatal(err)
	}
	if err := next.(pipeline.Inheritor).Inherit(old.Filter); err != nil {
		t.Fatal(err)
	}
	next.(pipeline.Closer).Close()
	if got := old.Get("/").Response.Header.Get("X-Remote"); got != first {
		t.Errorf("old generation lost its connection: %s, then %s", first, got)
	}
}

type countingTransport struct {
	http.RoundTripper
	n atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.RoundTripper.RoundTrip(r)
}

func TestEnvTransport(t *testing.T) {
	t.Parallel()
	be := filtertest.NewBackend(t, nil)
	base := &http.Transport{}
	t.Cleanup(base.CloseIdleConnections)
	rt := &countingTransport{RoundTripper: base}
	h := filtertest.New(t, proxy.Kind, oneServer(be.URL), filtertest.WithTransport(rt))
	if out := h.Get("/"); out.Result != pipeline.Continue || rt.n.Load() != 1 {
		t.Errorf("result %q, %d round trips through the Env's transport", out.Result, rt.n.Load())
	}
}

func TestStatusMarshals(t *testing.T) {
	t.Parallel()
	be := filtertest.NewBackend(t, nil)
	h := filtertest.New(t, proxy.Kind, oneServer(be.URL))
	h.Get("/")
	st := h.Filter.(pipeline.Statuser).Status()
	j, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`{"pools":[{"field":"pools[0]","main":true,"servers":[{"url":%q,"requests":1,"errors":0,"healthy":true}]}]}`, be.URL)
	if string(j) != want {
		t.Errorf("JSON %s, want %s", j, want)
	}
	y, err := yaml.Marshal(st)
	if err != nil || !strings.Contains(string(y), "requests: 1") {
		t.Errorf("YAML %s, %v", y, err)
	}
}

func TestInPipeline(t *testing.T) {
	t.Parallel()
	be := filtertest.NewBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Keep-Alive", "timeout=5")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "busy")
	}))
	reg, err := pipeline.NewRegistry(proxy.Kind)
	if err != nil {
		t.Fatal(err)
	}
	var spec pipeline.Spec
	if err := yaml.Unmarshal(fmt.Appendf(nil, `
flow:
- filter: proxy
  jumpIf: {failureCode: END, serverError: END}
filters:
- name: proxy
  kind: Proxy
  pools:
  - servers: [{url: %q}]
    failureCodes: [503]
`, be.URL), &spec); err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.New(spec, reg, pipeline.Env{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusServiceUnavailable || rec.Body.String() != "busy" || rec.Header().Get("Keep-Alive") != "" {
		t.Errorf("got %d %q %v", rec.Code, rec.Body, rec.Header())
	}
}

// TestCloseClosesIdleConnections shows that Close closes the Proxy's idle
// keep-alive connections to a backend that is still up: the backend sees
// them close. It is not parallel, so no other test's goroutines come and
// go meanwhile.
func TestCloseClosesIdleConnections(t *testing.T) {
	var open atomic.Int64
	be := httptest.NewUnstartedServer(named("a"))
	be.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	be.Start()
	defer be.Close()
	ignore := goleak.IgnoreCurrent()

	f, err := filtertest.Build(proxy.Kind, oneServer(be.URL))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c := pipeline.NewContext(httptest.NewRequest(http.MethodGet, "/", nil))
		if res := f.Handle(c); res != pipeline.Continue {
			t.Fatalf("result %q", res)
		}
		io.Copy(io.Discard, c.Response().Body)
		c.Response().Body.Close()
	}
	if n := open.Load(); n != 1 {
		t.Fatalf("%d connections open before Close, want the one kept alive", n)
	}
	f.(pipeline.Closer).Close()
	for i := 0; open.Load() != 0; i++ {
		if i == 500 {
			t.Fatalf("%d connections still open after Close", open.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	goleak.VerifyNone(t, ignore)
}

// TestSpecFieldNames guards the YAML names, which must stay Easegress's.
func TestSpecFieldNames(t *testing.T) {
	t.Parallel()
	want := map[string][]string{
		"Spec":                    {"pools", "mainPool", "candidatePools", "maxIdleConns", "maxIdleConnsPerHost", "connectTimeout", "responseHeaderTimeout", "mtls", "tls", "mirrorPool", "mirrorQueueSize", "mirrorWorkers", "compression"},
		"PoolSpec":                {"servers", "serviceRegistry", "serviceName", "loadBalance", "timeout", "perTryTimeout", "retryPolicy", "circuitBreakerPolicy", "failureCodes", "serverMaxBodySize", "filter", "serverTags", "setUpstreamHost", "healthCheck", "outlierDetection", "protocol", "memoryCache"},
		"MTLSSpec":                {"certBase64", "keyBase64", "rootCertBase64"},
		"TLSSpec":                 {"caFiles", "caBase64", "certFile", "keyFile", "serverName", "insecureSkipVerify", "minVersion"},
		"RequestMatcherSpec":      {"policy", "headers", "urls", "matchAllHeaders", "matchAllURLs", "headerHashKey", "permil"},
		"StringMatcherSpec":       {"exact", "prefix", "regex", "empty"},
		"MethodAndURLMatcherSpec": {"methods", "url"},
		"URLMatcherSpec":          {"exact", "prefix", "regex"},
		"HealthCheckSpec":         {"interval", "timeout", "path", "method", "expectedStatus", "expectedBody", "fails", "passes"},
		"OutlierDetectionSpec":    {"consecutive5xx", "consecutiveConnectErrors", "ejectionTime", "maxEjectionPercent"},
		"ServerSpec":              {"url", "tags", "weight", "keepHost"},
		"LoadBalanceSpec":         {"policy", "headerHashKey", "cookieName", "hashing", "ewmaDecay", "stickySession"},
		"MemoryCacheSpec":         {"codes", "expiration", "maxEntryBytes", "methods", "maxTotalBytes"},
		"CompressionSpec":         {"minLength", "algorithms", "contentTypes"},
		"StickySessionSpec":       {"mode", "appCookieName", "lbCookieName", "lbCookieExpire"},
	}
	seen := map[string]bool{}
	var walk func(rt reflect.Type)
	walk = func(rt reflect.Type) {
		for rt.Kind() == reflect.Pointer || rt.Kind() == reflect.Slice || rt.Kind() == reflect.Map {
			rt = rt.Elem()
		}
		if rt.Kind() != reflect.Struct || rt.PkgPath() != reflect.TypeFor[proxy.Spec]().PkgPath() || seen[rt.Name()] {
			return
		}
		seen[rt.Name()] = true
		var names []string
		for f := range rt.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			names = append(names, name)
			walk(f.Type)
		}
		if fmt.Sprint(names) != fmt.Sprint(want[rt.Name()]) {
			t.Errorf("%s has YAML fields %q, want %q", rt.Name(), names, want[rt.Name()])
		}
	}
	walk(reflect.TypeFor[proxy.Spec]())
	if len(seen) != len(want) {
		t.Errorf("spec types %v, want %d", seen, len(want))
	}
}
