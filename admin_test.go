package sluice_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicegw/sluice"
)

type adminClient struct {
	t     *testing.T
	h     http.Handler
	token string
	addr  string
}

func (c adminClient) do(method, path, body string, hdr ...string) (int, string) {
	c.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, r)
	req.Host = "localhost" // the admin API refuses other names by default
	if c.addr != "" {
		req.RemoteAddr = c.addr
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	c.h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func TestAdminObjects(t *testing.T) {
	g := newGateway(t)
	c := adminClient{t: t, h: g.AdminHandler(), addr: "127.0.0.1:5555"}
	h := func() http.Handler { s, _ := g.Handler("server"); return s }

	steps := []struct {
		method, path, body string
		code               int
		contains           string
	}{
		{"GET", "/apis/v2/healthz", "", 200, `"ok"`},
		{"POST", "/apis/v2/objects", serverYAML + "---\n" + staticPipeline("one"), 201, `"server"`},
		{"POST", "/apis/v2/objects", staticPipeline("again"), 409, "already exists"},
		{"GET", "/apis/v2/objects", "", 200, `"Pipeline"`},
		{"GET", "/apis/v2/objects?kind=Pipeline", "", 200, `"p"`},
		{"GET", "/apis/v2/objects?kind=Nope", "", 400, "unknown object kind"},
		{"GET", "/apis/v2/objects/p", "", 200, `"filters"`},
		{"GET", "/apis/v2/objects/p?format=yaml", "", 200, "kind: Pipeline"},
		{"GET", "/apis/v2/objects/nope", "", 404, "not found"},
		{"PUT", "/apis/v2/objects/p", staticPipeline("two"), 200, `"p"`},
		{"PUT", "/apis/v2/objects/other", staticPipeline("two"), 400, "exactly the object"},
		{"PUT", "/apis/v2/objects/q", strings.Replace(staticPipeline("x"), "name: p", "name: q", 1), 404, "not found"},
		{"PUT", "/apis/v2/objects", strings.Replace(staticPipeline("x"), "name: p", "name: q", 1), 200, `"q"`},
		// JSON bodies work too.
		{"PUT", "/apis/v2/objects/q", `{"kind":"Pipeline","name":"q","filters":[{"name":"s","kind":"Static","body":"json"}]}`, 200, `"q"`},
		{"POST", "/apis/v2/objects", "kind: Pipeline\nname: bad\nfilters:\n  - name: s\n    kind: Static\n    nope: 1\n", 400, `line 6: field \"filters[0].nope\"`},
		{"POST", "/apis/v2/objects", "kind: Pipeline\nname: bad\nflow:\n  - filter: s\n    jumpIf: {nope: END}\nfilters: [{name: s, kind: Static}]\n", 400, `line 5: field \"flow[0].jumpIf.nope\"`},
		{"POST", "/apis/v2/objects", "kind: [", 400, "invalid spec"},
		{"POST", "/apis/v2/objects", "", 400, "no object"},
		{"GET", "/apis/v2/object-kinds", "", 200, `"HTTPServer"`},
		{"GET", "/apis/v2/filter-kinds", "", 200, `"Static"`},
		{"GET", "/apis/v2/status/objects", "", 200, `"requests"`},
		{"GET", "/apis/v2/status/objects/server", "", 200, `"HTTPServer"`},
		{"GET", "/apis/v2/status/objects/nope", "", 404, "not found"},
		{"DELETE", "/apis/v2/objects/q", "", 200, "deleted"},
		{"DELETE", "/apis/v2/objects/q", "", 404, "not found"},
		{"GET", "/apis/v2/nothing", "", 404, "no such admin endpoint"},
	}
	for _, s := range steps {
		code, body := c.do(s.method, s.path, s.body)
		if code != s.code || !strings.Contains(body, s.contains) {
			t.Errorf("%s %s = %d %s, want %d containing %q", s.method, s.path, code, body, s.code, s.contains)
		}
	}
	// The update took effect and the bad specs left it alone.
	if _, body := get(t, h(), "GET", "/p"); body != "two" {
		t.Errorf("served %q after the updates", body)
	}
	// Errors are JSON with code and message.
	_, body := c.do("GET", "/apis/v2/objects/nope", "")
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Code != 404 {
		t.Errorf("error body %q: %v", body, err)
	}
}

func TestAdminAuth(t *testing.T) {
	open := newGateway(t)
	c := adminClient{t: t, h: open.AdminHandler(), addr: "192.0.2.1:5555"}
	if code, _ := c.do("GET", "/apis/v2/healthz", ""); code != 403 {
		t.Errorf("non-loopback without a token: %d, want 403", code)
	}
	c.addr = "[::1]:5555"
	if code, _ := c.do("GET", "/apis/v2/healthz", ""); code != 200 {
		t.Errorf("IPv6 loopback: %d", code)
	}

	locked := newGateway(t, sluice.WithAdminToken("s3cret"))
	c = adminClient{t: t, h: locked.AdminHandler(), addr: "192.0.2.1:5555"}
	if code, body := c.do("GET", "/apis/v2/healthz", ""); code != 401 || strings.Contains(body, "s3cret") {
		t.Errorf("no token: %d %s", code, body)
	}
	c.token = "wrong"
	if code, _ := c.do("GET", "/apis/v2/healthz", ""); code != 401 {
		t.Errorf("wrong token: %d", code)
	}
	c.token = "s3cret"
	if code, _ := c.do("GET", "/apis/v2/healthz", ""); code != 200 {
		t.Errorf("right token from afar: %d", code)
	}
	c.token = ""
	if code, _ := c.do("GET", "/apis/v2/healthz", "", "Authorization", "bearer s3cret"); code != 200 {
		t.Errorf("the scheme is case-insensitive: %d", code)
	}
	// A RemoteAddr without a port (rewritten by middleware) is not trusted
	// as loopback.
	open2 := adminClient{t: t, h: open.AdminHandler(), addr: "127.0.0.1"}
	if code, _ := open2.do("GET", "/apis/v2/healthz", ""); code != 403 {
		t.Errorf("a port-less RemoteAddr: %d, want 403", code)
	}
}
