package gate

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicegw/sluice/pipeline"
	"gopkg.in/yaml.v3"
)

// echoRoutes is a Resolve that answers "backend path params": the
// backend's name, the path the pipeline sees and the path parameters.
func echoRoutes(backend string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ps []string
		if ri := pipeline.RequestInfoOf(r); ri != nil {
			for _, p := range ri.PathParams {
				ps = append(ps, p.Name+"="+p.Value)
			}
		}
		fmt.Fprintf(w, "%s %s %s", backend, r.URL.Path, strings.Join(ps, ","))
	})
}

// serveRoutes runs an HTTPServer with spec y on loopback, its backends
// answered by echoRoutes.
func serveRoutes(t *testing.T, y string) (addr string, c *http.Client) {
	t.Helper()
	s, err := New("s", mustSpec(t, y), Options{Resolve: echoRoutes})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	c = &http.Client{}
	t.Cleanup(func() {
		c.CloseIdleConnections()
		s.Close()
	})
	return s.Addr(), c
}

type routeCase struct {
	method, host, target string
	header               http.Header
	code                 int
	body                 string // "backend path params"; for a 405, the Allow header
}

func runRouteCases(t *testing.T, addr string, c *http.Client, cases []routeCase) {
	t.Helper()
	for _, tc := range cases {
		name := tc.method + " " + tc.host + tc.target
		req, err := http.NewRequest(tc.method, "http://"+addr+tc.target, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = tc.host
		for k, v := range tc.header {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got := strings.TrimSpace(string(b))
		if resp.StatusCode == http.StatusMethodNotAllowed {
			got = resp.Header.Get("Allow")
		}
		if resp.StatusCode != tc.code || (tc.body != "" && got != tc.body) {
			t.Errorf("%s: %d %q, want %d %q", name, resp.StatusCode, got, tc.code, tc.body)
		}
	}
}

// TestOrderedRules covers the Easegress rule semantics (routerKind
// Ordered): hosts, headers, queries and rewriteTarget, through a real
// server.
func TestOrderedRules(t *testing.T) {
	addr, c := serveRoutes(t, `
port: 0
address: 127.0.0.1
rules:
  - host: exact.test
    paths: [{path: /a, backend: exact-host}]
  - host: '*.wild.test'
    paths: [{backend: wild-suffix}]
  - host: 'www.prefix.*'
    paths: [{backend: wild-prefix}]
  - hosts: [{value: one.test}, {value: '^r[0-9]+\.test$', isRegexp: true}, {value: '*.more.test'}]
    paths: [{backend: hosts}]
  - host: both.test
    hostRegexp: '^either\.test$'
    paths: [{backend: host-or-regexp}]
  - host: cond.test
    paths:
      - pathPrefix: /h
        headers: [{key: X-Env, values: [canary]}, {key: x-user, regexp: '^admin-'}]
        matchAllHeader: true
        backend: header-all
      - pathPrefix: /h
        headers: [{key: x-env, values: [canary, beta]}, {key: X-User, regexp: '^admin-'}]
        backend: header-any
      - pathPrefix: /h/strict
        headers: [{key: X-Env, values: [prod]}]
        backend: header-strict
      - pathPrefix: /q
        queries: [{key: v, values: ['2']}, {key: tag, regexp: '^x'}]
        matchAllQuery: true
        backend: query-all
      - pathPrefix: /q
        queries: [{key: v, values: ['2']}, {key: tag, regexp: '^x'}]
        backend: query-any
      - pathPrefix: /q
        methods: [GET, PURGE]
        backend: query-none
  - host: rw.test
    paths:
      - path: /old
        rewriteTarget: /new
        backend: rw-exact
      - pathPrefix: /api/v1/
        rewriteTarget: /v2/
        backend: rw-prefix
      - pathRegexp: '^/user/([0-9]+)/profile$'
        rewriteTarget: '/profiles/$1'
        backend: rw-regexp
      - pathPrefix: /strip
        rewriteTarget: /
        backend: rw-strip
      - path: /users/{id}
        backend: literal-braces
`)
	h := func(kv ...string) http.Header {
		hd := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			hd.Add(kv[i], kv[i+1])
		}
		return hd
	}
	runRouteCases(t, addr, c, []routeCase{
		{"GET", "exact.test", "/a", nil, 200, "exact-host /a"},
		{"GET", "EXACT.test:80", "/a", nil, 200, "exact-host /a"},
		{"GET", "exact.test", "/b", nil, 404, ""},
		{"GET", "a.wild.test", "/", nil, 200, "wild-suffix /"},
		{"GET", "a.b.WILD.test", "/", nil, 200, "wild-suffix /"},
		{"GET", "wild.test", "/", nil, 404, ""},
		{"GET", "www.prefix.org", "/", nil, 200, "wild-prefix /"},
		{"GET", "one.test", "/", nil, 200, "hosts /"},
		{"GET", "r12.test", "/", nil, 200, "hosts /"},
		{"GET", "x.more.test", "/", nil, 200, "hosts /"},
		{"GET", "rx.test", "/", nil, 404, ""},
		{"GET", "both.test", "/", nil, 200, "host-or-regexp /"},
		{"GET", "either.test", "/", nil, 200, "host-or-regexp /"},

		{"GET", "cond.test", "/h", h("X-Env", "canary", "X-User", "admin-1"), 200, "header-all /h"},
		{"GET", "cond.test", "/h", h("X-Env", "canary", "X-User", "bob"), 200, "header-any /h"},
		{"GET", "cond.test", "/h", h("X-Env", "beta"), 200, "header-any /h"},
		{"GET", "cond.test", "/h", h("X-User", "admin-2"), 200, "header-any /h"},
		{"GET", "cond.test", "/h/strict", h("X-Env", "prod"), 200, "header-strict /h/strict"},
		{"GET", "cond.test", "/h", h("X-Env", "prod"), 404, ""},
		{"GET", "cond.test", "/h", nil, 404, ""},

		{"GET", "cond.test", "/q?v=2&tag=xy", nil, 200, "query-all /q"},
		{"GET", "cond.test", "/q?tag=xy&v=1&v=2", nil, 200, "query-any /q"}, // the first v counts
		{"GET", "cond.test", "/q?v=2", nil, 200, "query-any /q"},
		{"GET", "cond.test", "/q?t%61g=x%20y", nil, 200, "query-any /q"},
		{"GET", "cond.test", "/q?v=2;x=1", nil, 200, "query-none /q"}, // a pair with ; is no pair
		{"GET", "cond.test", "/q?v=%zz", nil, 200, "query-none /q"},
		{"GET", "cond.test", "/q?v=3", nil, 200, "query-none /q"},
		{"POST", "cond.test", "/q?v=3", nil, 405, "GET, HEAD, PURGE"},
		{"POST", "cond.test", "/q?v=2", nil, 200, "query-any /q"},

		{"GET", "rw.test", "/old", nil, 200, "rw-exact /new"},
		{"GET", "rw.test", "/api/v1/items/7", nil, 200, "rw-prefix /v2/items/7"},
		{"GET", "rw.test", "/user/42/profile", nil, 200, "rw-regexp /profiles/42"},
		{"GET", "rw.test", "/user/x/profile", nil, 404, ""},
		{"GET", "rw.test", "/strip/x/y", nil, 200, "rw-strip /x/y"},
		{"GET", "rw.test", "/strip", nil, 200, "rw-strip /"},
		{"GET", "rw.test", "/users/%7Bid%7D", nil, 200, "literal-braces /users/{id}"},
		{"GET", "rw.test", "/users/42", nil, 404, ""},
	})
}

const radixYAML = `
port: 0
address: 127.0.0.1
routerKind: RadixTree
rules:
  - host: api.test
    paths:
      - path: /users/{id}
        backend: user
      - path: /users/{id:[0-9]+}
        backend: user-num
      - path: /users/me
        methods: [GET]
        backend: me
      - path: /users/{id}/posts/{post}
        rewriteTarget: /v2/u/{id}/p/{post}
        backend: post
      - path: /{kind}/{id:[0-9]{2}}/posts/{post}
        backend: kind-post
      - path: /static/*
        rewriteTarget: /assets/{*}
        backend: static
      - path: /static/logo.png
        backend: logo
      - path: /files/*
        rewriteTarget: /f/{EG_WILDCARD}
        backend: files
      - pathPrefix: /users
        backend: users-prefix
      - pathPrefix: /users/admin
        backend: admin-prefix
      - pathRegexp: '^/users/.*/x$'
        backend: regexp-shadowed
      - pathRegexp: '^/re/([a-z]+)$'
        rewriteTarget: /regexp/$1
        backend: regexp
      - pathRegexp: '^/re/'
        backend: regexp-2
      - methods: [GET]
        backend: any
  - paths:
      - pathPrefix: /
        methods: [POST]
        backend: next-rule
`

// TestRadixTreeRules covers the RadixTree router kind through a real
// server: patterns, parameters, catch-alls, rewrites and the documented
// priority.
func TestRadixTreeRules(t *testing.T) {
	addr, c := serveRoutes(t, radixYAML)
	const host = "api.test"
	runRouteCases(t, addr, c, []routeCase{
		// An exact path beats every pattern; a regexp parameter beats a
		// plain one, whatever the order of declaration.
		{"GET", host, "/users/me", nil, 200, "me /users/me"},
		{"GET", host, "/users/42", nil, 200, "user-num /users/42 id=42"},
		{"GET", host, "/users/bob", nil, 200, "user /users/bob id=bob"},
		{"GET", host, "/users/a%20b", nil, 200, "user /users/a b id=a b"},
		// A path that matches but not for the method passes to the next
		// candidate.
		{"POST", host, "/users/me", nil, 200, "user /users/me id=me"},
		// Static segments before parameters, at each position.
		{"GET", host, "/users/42/posts/7", nil, 200, "post /v2/u/42/p/7 id=42,post=7"},
		{"GET", host, "/blogs/42/posts/7", nil, 200, "kind-post /blogs/42/posts/7 kind=blogs,id=42,post=7"},
		{"GET", host, "/blogs/423/posts/7", nil, 200, "any /blogs/423/posts/7"},
		// Catch-alls: after exact paths, possibly empty, never the bare
		// parent.
		{"GET", host, "/static/logo.png", nil, 200, "logo /static/logo.png"},
		{"GET", host, "/static/css/a.css", nil, 200, "static /assets/css/a.css *=css/a.css"},
		{"GET", host, "/static/", nil, 200, "static /assets/ *="},
		{"GET", host, "/static", nil, 200, "any /static"},
		{"GET", host, "/files/a/b", nil, 200, "files /f/a/b *=a/b"},
		// Prefixes after patterns, longest first; regexps after
		// prefixes, in order.
		{"GET", host, "/users", nil, 200, "users-prefix /users"},
		{"GET", host, "/users/", nil, 200, "users-prefix /users/"},
		{"GET", host, "/usersx", nil, 200, "users-prefix /usersx"},
		{"GET", host, "/users/admin/x", nil, 200, "admin-prefix /users/admin/x"},
		{"GET", host, "/users/a/b/x", nil, 200, "users-prefix /users/a/b/x"},
		{"GET", host, "/re/abc", nil, 200, "regexp /regexp/abc"},
		{"GET", host, "/re/123", nil, 200, "regexp-2 /re/123"},
		{"GET", host, "/elsewhere", nil, 200, "any /elsewhere"},
		// A rule whose paths all fail passes the request to the next
		// rule; when none takes it, 405 lists what would have.
		{"POST", host, "/elsewhere", nil, 200, "next-rule /elsewhere"},
		{"DELETE", host, "/elsewhere", nil, 405, "GET, HEAD, POST"},
		{"HEAD", host, "/elsewhere", nil, 200, ""},
		{"GET", "other.test", "/users/me", nil, 405, "POST"},
		{"POST", "other.test", "/users/me", nil, 200, "next-rule /users/me"},
		// Normalised before routing: the pattern sees the clean path.
		{"GET", host, "/users/x/../42", nil, 200, "user-num /users/42 id=42"},
	})
}

// TestPathParamAccessor checks what a filter reads with
// pipeline.PathParam.
func TestPathParamAccessor(t *testing.T) {
	s, err := New("s", mustSpec(t, "port: 0\nrouterKind: RadixTree\nrules: [{paths: [{path: '/a/{x}/{y:[0-9]+}/*', backend: b}]}]"), Options{Resolve: func(string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s|%s|%s|%s", pipeline.PathParam(r, "x"), pipeline.PathParam(r, "y"), pipeline.PathParam(r, "*"), pipeline.PathParam(r, "nope"))
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/a/one/2/three/four", nil))
	if got := rec.Body.String(); got != "one|2|three/four|" {
		t.Errorf("params: %q", got)
	}
	if got := pipeline.PathParam(httptest.NewRequest("GET", "/", nil), "x"); got != "" {
		t.Errorf("without a gate: %q", got)
	}
}

// TestRouteSpecErrors checks that a bad rule is refused with an error that
// names the field.
func TestRouteSpecErrors(t *testing.T) {
	tests := []struct{ yaml, field string }{
		{"routerKind: Radix", "routerKind"},
		{"rules: [{host: 'a.*.b'}]", "rules[0].host"},
		{"rules: [{host: '**.b'}]", "rules[0].host"},
		{"rules: [{hostRegexp: '('}]", "rules[0].hostRegexp"},
		{"rules: [{hosts: [{value: ok.test}, {value: '(', isRegexp: true}]}]", "rules[0].hosts[1].value"},
		{"rules: [{hosts: [{value: ''}]}]", "rules[0].hosts[0].value"},
		{"rules: [{paths: [{pathRegexp: '[', backend: x}]}]", "rules[0].paths[0].pathRegexp"},
		{"rules: [{paths: [{pathPrefix: a, backend: x}]}]", "rules[0].paths[0].pathPrefix"},
		{"rules: [{paths: [{backend: x}, {headers: [{key: X-A, values: [a]}, {key: X-B, regexp: '('}], backend: x}]}]", "rules[0].paths[1].headers[1].regexp"},
		{"rules: [{paths: [{headers: [{key: 'X A', values: [a]}], backend: x}]}]", "rules[0].paths[0].headers[0].key"},
		{"rules: [{paths: [{headers: [{key: X-A}], backend: x}]}]", "rules[0].paths[0].headers[0]"},
		{"rules: [{paths: [{queries: [{key: '', values: [a]}], backend: x}]}]", "rules[0].paths[0].queries[0].key"},
		{"rules: [{paths: [{queries: [{key: a, regexp: '(?<'}], backend: x}]}]", "rules[0].paths[0].queries[0].regexp"},
		{"rules: [{paths: [{rewriteTarget: /x, backend: x}]}]", "rules[0].paths[0].rewriteTarget"},
		{"rules: [{paths: [{pathPrefix: /a, rewriteTarget: x, backend: x}]}]", "rules[0].paths[0].rewriteTarget"},
		{"routerKind: RadixTree\nrules: [{paths: [{path: '/a/{id:[0-9}', backend: x}]}]", "rules[0].paths[0].path"},
		{"routerKind: RadixTree\nrules: [{paths: [{path: '/a/{id:(}', backend: x}]}]", "rules[0].paths[0].path"},
		{"routerKind: RadixTree\nrules: [{paths: [{path: '/a/x{id}', backend: x}]}]", "rules[0].paths[0].path"},
		{"routerKind: RadixTree\nrules: [{paths: [{path: '/a/{id}.json', backend: x}]}]", "rules[0].paths[0].path"},
		{"routerKind: RadixTree\nrules: [{paths: [{path: '/a/{id}/{id}', backend: x}]}]", "rules[0].paths[0].path"},
		{"routerKind: RadixTree\nrules: [{paths: [{path: '/a/{}', backend: x}]}]", "rules[0].paths[0].path"},
		{"routerKind: RadixTree\nrules: [{paths: [{path: '/a/{id:}', backend: x}]}]", "rules[0].paths[0].path"},
		{"routerKind: RadixTree\nrules: [{paths: [{path: '/a/*/b', backend: x}]}]", "rules[0].paths[0].path"},
		{"routerKind: RadixTree\nrules: [{paths: [{path: '/a}', backend: x}]}]", "rules[0].paths[0].path"},
		{"routerKind: RadixTree\nrules: [{paths: [{path: '/a/{id}', rewriteTarget: '/b/{name}', backend: x}]}]", "rules[0].paths[0].rewriteTarget"},
		{"routerKind: RadixTree\nrules: [{paths: [{path: '/a/*', rewriteTarget: '/b/*', backend: x}]}]", "rules[0].paths[0].rewriteTarget"},
		{"routerKind: RadixTree\nrules: [{paths: [{path: '/a', rewriteTarget: '/b/{id}', backend: x}]}]", "rules[0].paths[0].rewriteTarget"},
		{"routerKind: RadixTree\nrules: [{paths: [{path: '/a/{id}', rewriteTarget: '/b/{id', backend: x}]}]", "rules[0].paths[0].rewriteTarget"},
	}
	for _, tt := range tests {
		s := &Spec{}
		if err := decodeStrict(tt.yaml, s); err != nil {
			t.Fatalf("%s: %v", tt.yaml, err)
		}
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), `"`+tt.field+`"`) {
			t.Errorf("%s: got %v, want an error on %s", tt.yaml, err, tt.field)
		}
		if _, err := New("s", s, Options{}); err == nil {
			t.Errorf("%s: New accepted it", tt.yaml)
		}
	}
}

func decodeStrict(y string, v any) error {
	d := yaml.NewDecoder(strings.NewReader(y))
	d.KnownFields(true)
	return d.Decode(v)
}

// TestRadixTreeRouteSettings checks that the per-path settings that
// existed before patterns (clientMaxBodySize, allowUpgrade) hold on
// pattern routes, and that a rewrite keeps the query.
func TestRadixTreeRouteSettings(t *testing.T) {
	s, err := New("s", mustSpec(t, `
port: 0
routerKind: RadixTree
clientMaxBodySize: 100
rules:
  - paths:
      - path: /small/{id}
        clientMaxBodySize: 4
        rewriteTarget: /s/{id}
        backend: b
      - path: /ws/*
        allowUpgrade: true
        backend: b
`), Options{Resolve: func(string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ri := pipeline.RequestInfoOf(r)
			fmt.Fprintf(w, "%s?%s upgrade=%v %s", r.URL.Path, r.URL.RawQuery, ri.UpgradeAllowed, r.Header.Get("Upgrade"))
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, target, body string
		upgrade              bool
		code                 int
		want                 string
	}{
		{"POST", "/small/1", "0123456789", false, 413, ""},
		{"POST", "/small/1?a=b", "012", false, 200, "/s/1?a=b upgrade=false"},
		{"GET", "/small/1", "", true, 200, "/s/1? upgrade=false"},
		{"GET", "/ws/chat", "", true, 200, "/ws/chat? upgrade=true websocket"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
		if tt.upgrade {
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "websocket")
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		if got := strings.TrimSpace(rec.Body.String()); rec.Code != tt.code || (tt.want != "" && got != tt.want) {
			t.Errorf("%s %s: %d %q, want %d %q", tt.method, tt.target, rec.Code, got, tt.code, tt.want)
		}
	}
}
