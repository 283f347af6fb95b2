package gate

// Tests of what the gate does with methods and paths before routing.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// RFC 9110 §15.5.6: a 405 response MUST carry an Allow header listing the
// methods the target supports. Server.ServeHTTP (server.go) answers 405
// with http.Error only.
func Test405HasAllowHeader(t *testing.T) {
	s, err := New("s", mustSpec(t, `
port: 0
rules:
  - paths:
      - path: /only-get
        methods: [GET]
        backend: a
`), Options{Resolve: named})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("POST", "/only-get", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("status %d", rec.Code)
	}
	if rec.Header().Get("Allow") == "" {
		t.Errorf("405 without an Allow header (headers: %v)", rec.Header())
	}
}

// DESIGN §4 "Bad input": path tricks (/a/../admin, %2e%2e, //) get a 4xx
// or are normalised before routing, and the backend sees exactly the path
// that was authorised. The router matches the raw r.URL.Path
// (server.go ServeHTTP → router.match), so a request for /x/../admin skips
// the rule for /admin and is routed — with its dot segments intact — to
// the catch-all backend, which (like most servers) resolves it to /admin.
func TestPathTricksAreNormalised(t *testing.T) {
	seen := make(chan string, 8)
	resolve := func(backend string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen <- backend + " " + r.URL.Path
			io.WriteString(w, backend)
		})
	}
	s, err := New("s", mustSpec(t, `
port: 0
address: 127.0.0.1
rules:
  - paths:
      - path: /admin
        backend: admin-guarded
      - pathPrefix: /
        backend: public
`), Options{Resolve: resolve})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	defer s.Close()
	for _, target := range []string{"/x/../admin", "/x/%2e%2e/admin", "//admin", "/./admin"} {
		conn, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", target)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		conn.Close()
		got := ""
		select {
		case got = <-seen:
		default:
		}
		if resp.StatusCode < 400 && !strings.HasPrefix(got, "admin-guarded /admin") {
			t.Errorf("GET %s: %d %q, routed as %q; want a 4xx, or the /admin rule with the path /admin", target, resp.StatusCode, b, got)
		}
	}
}

func TestAmbiguousPathsAre400AndHeadFollowsGet(t *testing.T) {
	s, err := New("s", mustSpec(t, "port: 0\nrules: [{paths: [{pathPrefix: /, methods: [GET], backend: a}]}]\n"), Options{Resolve: named})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		method, target string
		code           int
	}{
		{"GET", "/a%2fb", 400},
		{"GET", "/a%2Fb", 400},
		{"GET", "/a%5cb", 400},
		{"GET", "/a/b%2e", 200},
		{"HEAD", "/a", 200},
		{"POST", "/a", 405},
	} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.target, nil))
		if rec.Code != tt.code {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.target, rec.Code, tt.code)
		}
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("POST", "/a", nil))
	if got := rec.Header().Get("Allow"); got != "GET, HEAD" {
		t.Errorf("Allow = %q", got)
	}
}
