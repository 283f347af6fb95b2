package sluice_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingBackend records every request it parses: a smuggled request
// would show up here as one the client did not send as such.
type recordingBackend struct {
	mu   sync.Mutex
	seen []*http.Request
	body []string
}

func (b *recordingBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	b.seen = append(b.seen, r)
	b.body = append(b.body, string(body))
	b.mu.Unlock()
	io.WriteString(w, "backend")
}

func (b *recordingBackend) take() ([]*http.Request, []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	seen, body := b.seen, b.body
	b.seen, b.body = nil, nil
	return seen, body
}

// exchange writes raw on a new connection and reads every response until
// the server closes the connection or stays silent for a while; it
// returns their status codes.
func exchange(t *testing.T, addr, raw string) []int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, raw)
	br := bufio.NewReader(c)
	var codes []int
	for {
		c.SetReadDeadline(time.Now().Add(time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return codes
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
}

// TestSmuggling sends request-smuggling and request-confusion attempts on
// raw connections through an HTTPServer and a Proxy to a recording
// backend. Each gets its defined answer, and the backend never sees a
// request the client hid in another one (every smuggled request here asks
// for /smuggled).
func TestSmuggling(t *testing.T) {
	rb := &recordingBackend{}
	backend := httptest.NewServer(rb)
	defer backend.Close()
	g := newGateway(t)
	apply(t, g, `
kind: HTTPServer
name: server
port: 0
address: 127.0.0.1
maxHeaderBytes: 4096
rules:
  - paths:
    - pathPrefix: /
      backend: p
---
kind: Pipeline
name: p
filters:
  - name: proxy
    kind: Proxy
    pools: [{servers: [{url: `+backend.URL+`}]}]
`)
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := serverAddr(t, g, "server")
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tt := range []struct {
		name  string
		raw   string
		codes []int // the answers on the connection, in order
		check func(t *testing.T, seen []*http.Request, bodies []string)
	}{
		{
			name:  "Content-Length with Transfer-Encoding",
			raw:   "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			codes: []int{400},
		},
		{
			name:  "Transfer-Encoding with Content-Length",
			raw:   "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n" + smuggled,
			codes: []int{400},
		},
		{
			name:  "duplicate Content-Length",
			raw:   "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc" + smuggled,
			codes: []int{400},
		},
		{
			name:  "Content-Length list",
			raw:   "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 40\r\n\r\nabc" + smuggled,
			codes: []int{400},
		},
		{
			name:  "signed Content-Length",
			raw:   "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc" + smuggled,
			codes: []int{400},
		},
		{
			name:  "obfuscated Transfer-Encoding",
			raw:   "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled,
			codes: []int{501},
		},
		{
			name:  "two Transfer-Encodings",
			raw:   "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + smuggled,
			codes: []int{501},
		},
		{
			name:  "space before the colon",
			raw:   "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc" + smuggled,
			codes: []int{400},
		},
		{
			name:  "obsolete line folding",
			raw:   "POST /a HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc" + smuggled,
			codes: []int{400},
		},
		{
			name:  "bad chunk size",
			raw:   "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3x\r\nabc\r\n0\r\n\r\n" + smuggled,
			codes: []int{400},
		},
		{
			name:  "bare LF",
			raw:   "GET /a HTTP/1.1\nHost: x\nX-A: 1\n\n",
			codes: []int{400},
		},
		{
			name:  "bare CR",
			raw:   "GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\rTransfer-Encoding: chunked\r\n\r\n",
			codes: []int{400},
		},
		{
			name:  "NUL in a header value",
			raw:   "GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
			codes: []int{400},
		},
		{
			name:  "oversized headers",
			raw:   "GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 9000) + "\r\n\r\n",
			codes: []int{431},
		},
		{
			name:  "two Host headers",
			raw:   "GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
			codes: []int{400},
		},
		{
			name:  "dot segments",
			raw:   "GET /a/../b/./c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			codes: []int{200},
			check: wantPath("/b/c"),
		},
		{
			name:  "encoded dot segments",
			raw:   "GET /a/%2e%2E/b/%2e/c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			codes: []int{200},
			check: wantPath("/b/c"),
		},
		{
			name:  "repeated slashes",
			raw:   "GET //a///b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			codes: []int{200},
			check: wantPath("/a/b"),
		},
		{
			name:  "encoded slash",
			raw:   "GET /a%2fb HTTP/1.1\r\nHost: x\r\n\r\n",
			codes: []int{400},
		},
		{
			name:  "encoded backslash",
			raw:   "GET /a%5c..%5cb HTTP/1.1\r\nHost: x\r\n\r\n",
			codes: []int{400},
		},
		{
			name:  "dot segments above the root",
			raw:   "GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			codes: []int{200},
			check: wantPath("/etc/passwd"),
		},
		{
			name: "h2c Upgrade on a rule that does not allow it",
			raw:  "GET /a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n" + smuggled,
			// Served as HTTP/1.1, then the request the client sent after
			// it.
			codes: []int{200, 200},
			check: func(t *testing.T, seen []*http.Request, _ []string) {
				for _, r := range seen {
					if r.Header.Get("Upgrade") != "" || r.Header.Get("Http2-Settings") != "" || r.Header.Get("Connection") != "" {
						t.Errorf("the backend saw the upgrade offer: %v", r.Header)
					}
				}
			},
		},
		{
			name:  "Connection naming the headers the gateway adds",
			raw:   "GET /a HTTP/1.1\r\nHost: x\r\nConnection: X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, X-Request-Id, close\r\n\r\n",
			codes: []int{200},
			check: func(t *testing.T, seen []*http.Request, _ []string) {
				h := seen[0].Header
				for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-Id"} {
					if h.Get(k) == "" {
						t.Errorf("the backend did not get %s: %v", k, h)
					}
				}
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rb.take()
			codes := exchange(t, addr, tt.raw)
			if !equalInts(codes, tt.codes) {
				t.Errorf("answers %v, want %v", codes, tt.codes)
			}
			seen, bodies := rb.take()
			for _, r := range seen {
				if r.URL.Path == "/smuggled" && !strings.HasPrefix(tt.name, "h2c") {
					t.Errorf("the backend saw a smuggled request")
				}
			}
			if tt.check != nil {
				if len(seen) == 0 {
					t.Fatal("the backend saw no request")
				}
				tt.check(t, seen, bodies)
			}
		})
	}
}

func wantPath(p string) func(*testing.T, []*http.Request, []string) {
	return func(t *testing.T, seen []*http.Request, _ []string) {
		if len(seen) != 1 || seen[0].URL.Path != p {
			t.Errorf("the backend saw %d requests, first for %q; want one for %q", len(seen), seen[0].URL.Path, p)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
