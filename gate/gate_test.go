package gate

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func mustSpec(t testing.TB, y string) *Spec {
	t.Helper()
	s := &Spec{}
	s.SetDefaults()
	if err := yaml.Unmarshal([]byte(y), s); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

func named(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
}

const rulesYAML = `
port: 0
address: 127.0.0.1
rules:
  - host: api.example.com
    paths:
      - path: /exact
        backend: exact
      - pathPrefix: /v1/
        methods: [GET, PURGE]
        backend: v1
  - hostRegexp: '^[a-z]+\.example\.org$'
    paths:
      - pathRegexp: '^/items/[0-9]+$'
        backend: items
  - paths:
      - pathPrefix: /
        methods: [POST]
        backend: catchall-post
`

func TestRouter(t *testing.T) {
	s, err := New("s", mustSpec(t, rulesYAML), Options{Resolve: named})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, host, path string
		code               int
		backend            string
	}{
		{"GET", "api.example.com", "/exact", 200, "exact"},
		{"GET", "API.example.com:8080", "/exact", 200, "exact"},
		{"GET", "api.example.com", "/exact/no", 405, ""}, // falls to the catch-all rule, POST only
		{"GET", "api.example.com", "/v1/users", 200, "v1"},
		{"PURGE", "api.example.com", "/v1/users", 200, "v1"},
		{"DELETE", "api.example.com", "/v1/users", 405, ""},
		{"GET", "shop.example.org", "/items/42", 200, "items"},
		{"GET", "shop.example.org", "/items/x", 405, ""},
		{"POST", "other.test", "/anything", 200, "catchall-post"},
		{"GET", "other.test", "/anything", 405, ""},
		{"GET", "[::1]:80", "/exact", 405, ""},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(tt.method, "http://"+tt.host+tt.path, nil)
		s.ServeHTTP(rec, r)
		if rec.Code != tt.code || (tt.backend != "" && rec.Body.String() != tt.backend) {
			t.Errorf("%s %s%s = %d %q, want %d %q", tt.method, tt.host, tt.path, rec.Code, rec.Body.String(), tt.code, tt.backend)
		}
	}
	none, _ := New("none", mustSpec(t, "port: 0\nrules: [{host: a.test, paths: [{path: /x, backend: b}]}]"), Options{Resolve: named})
	rec := httptest.NewRecorder()
	none.ServeHTTP(rec, httptest.NewRequest("GET", "http://b.test/x", nil))
	if rec.Code != 404 {
		t.Errorf("no rule for the host: %d", rec.Code)
	}
}

func TestRouterMatchDoesNotAllocate(t *testing.T) {
	s, _ := New("s", mustSpec(t, rulesYAML), Options{Resolve: named})
	allocs := testing.AllocsPerRun(100, func() {
		if rt, _ := s.router.match("api.example.com", "/v1/users", "GET"); rt == nil {
			t.Fatal("no match")
		}
	})
	if allocs != 0 {
		t.Errorf("match allocates %v times", allocs)
	}
}

func TestSpecValidate(t *testing.T) {
	tests := []struct{ yaml, field string }{
		{"https: true", "certs"},
		{"https: true\nh2c: true", "h2c"},
		{"address: not-an-ip", "address"},
		{"rules: [{host: 'a*b'}]", "rules[0].host"},
		{"rules: [{hostRegexp: '('}]", "rules[0].hostRegexp"},
		{"rules: [{paths: [{path: /a, pathPrefix: /b, backend: x}]}]", "rules[0].paths[0]"},
		{"rules: [{paths: [{path: a, backend: x}]}]", "rules[0].paths[0].path"},
		{"rules: [{paths: [{pathRegexp: '[', backend: x}]}]", "rules[0].paths[0].pathRegexp"},
		{"rules: [{paths: [{methods: ['G T'], backend: x}]}]", "rules[0].paths[0].methods[0]"},
		{"rules: [{paths: [{path: /a}]}]", "rules[0].paths[0].backend"},
		{"rules: [{paths: [{path: /a, clientMaxBodySize: -2, backend: x}]}]", "rules[0].paths[0].clientMaxBodySize"},
		{"readHeaderTimeout: -1s", "readHeaderTimeout"},
		{"readTimeout: -1s", "readTimeout"},
		{"writeTimeout: -1s", "writeTimeout"},
		{"keepAliveTimeout: -1s", "keepAliveTimeout"},
		{"maxHeaderBytes: -1", "maxHeaderBytes"},
		{"maxConnections: -1", "maxConnections"},
		{"clientMaxBodySize: -2", "clientMaxBodySize"},
		{"trustedProxies: [10.0.0.0/33]", "trustedProxies[0]"},
		{"trustedProxies: [10.0.0.0/8, proxy.local]", "trustedProxies[1]"},
		{"trustedProxies: ['fe80::1%eth0']", "trustedProxies[0]"},
		{"requestIDHeader: 'X Id'", "requestIDHeader"},
		{"accessLog: {enabled: true, sampling: 1.5}", "accessLog.sampling"},
		{"accessLog: {sampling: -0.1}", "accessLog.sampling"},
		{"accessLog: {sampling: .nan}", "accessLog.sampling"},
	}
	for _, tt := range tests {
		s := &Spec{}
		if err := yaml.Unmarshal([]byte(tt.yaml), s); err != nil {
			t.Fatal(err)
		}
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), `"`+tt.field+`"`) {
			t.Errorf("%s: got %v, want an error on %s", tt.yaml, err, tt.field)
		}
	}
}

func serveGen(t *testing.T, y string, prev *Server, body string) *Server {
	t.Helper()
	s, err := New("s", mustSpec(t, y), Options{Resolve: func(string) http.Handler { return named(body) }})
	if err != nil {
		t.Fatal(err)
	}
	s.Inherit(prev)
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	return s
}

func fetch(t *testing.T, c *http.Client, addr string) string {
	t.Helper()
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestListenerHandover(t *testing.T) {
	const y = "port: 0\naddress: 127.0.0.1\nrules: [{paths: [{backend: p}]}]\n"
	c := &http.Client{}
	defer c.CloseIdleConnections()

	g1 := serveGen(t, y, nil, "one")
	addr := g1.Addr()
	if fetch(t, c, addr) != "one" {
		t.Fatal("first generation")
	}
	// Same address (port 0 resolved to the bound one): the listener and
	// the kept-alive connection carry on.
	g2 := serveGen(t, y, g1, "two")
	if g2.Addr() != addr {
		t.Errorf("handover changed the address: %s -> %s", addr, g2.Addr())
	}
	if err := g1.Close(); err != nil {
		t.Fatal(err)
	}
	if got := fetch(t, c, addr); got != "two" {
		t.Errorf("after handover: %q", got)
	}

	// A new address: the new listener is bound; the old one drains a
	// request in flight, then closes.
	release := make(chan struct{})
	started := make(chan struct{})
	slow, err := New("s", mustSpec(t, y), Options{Resolve: func(string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-release
			io.WriteString(w, "slow")
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	slow.Inherit(g2)
	slow.Serve() // takes the listener: requests now route to slow
	var wg sync.WaitGroup
	wg.Add(1)
	var inflight string
	go func() {
		defer wg.Done()
		inflight = fetch(t, &http.Client{}, addr)
	}()
	<-started
	g4 := serveGen(t, strings.Replace(y, "port: 0", "port: 0\nkeepAlive: false", 1), nil, "four")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- slow.Shutdown(ctx)
	}()
	time.Sleep(20 * time.Millisecond) // let Shutdown begin; the request is still held
	close(release)
	if err := <-done; err != nil {
		t.Errorf("drain: %v", err)
	}
	wg.Wait()
	if inflight != "slow" {
		t.Errorf("the request in flight got %q", inflight)
	}
	if got := fetch(t, c, g4.Addr()); got != "four" {
		t.Errorf("new address: %q", got)
	}
	g2.Close() // handed over: closes nothing
	if err := g4.Close(); err != nil {
		t.Fatal(err)
	}
	c.CloseIdleConnections()
}

func TestListenWithoutServeCloses(t *testing.T) {
	s, _ := New("s", mustSpec(t, "port: 0\naddress: 127.0.0.1\n"), Options{})
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The port is free again.
	s2, _ := New("s", mustSpec(t, "port: "+addr[strings.LastIndexByte(addr, ':')+1:]+"\naddress: 127.0.0.1\n"), Options{})
	if err := s2.Listen(); err != nil {
		t.Fatalf("port not released: %v", err)
	}
	s2.Close()
}

func BenchmarkRouterMatch(b *testing.B) {
	s, _ := New("s", mustSpec(b, rulesYAML), Options{Resolve: named})
	b.ReportAllocs()
	for b.Loop() {
		s.router.match("shop.example.org", "/items/42", "GET")
	}
}
