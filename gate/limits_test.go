package gate

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// rawRequest sends req on a new connection to addr and returns the status
// line of the answer.
func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(line)
}

func TestOversizedHeadersAre431(t *testing.T) {
	s := serveGen(t, "port: 0\naddress: 127.0.0.1\nmaxHeaderBytes: 1024\nrules: [{paths: [{backend: p}]}]\n", nil, "ok")
	t.Cleanup(func() { s.Close() })
	// net/http allows 4096 bytes over MaxHeaderBytes.
	big := "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8000) + "\r\n\r\n"
	if got := rawRequest(t, s.Addr(), big); !strings.HasPrefix(got, "HTTP/1.1 431 ") {
		t.Errorf("oversized headers: %q, want 431", got)
	}
	if got := rawRequest(t, s.Addr(), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 200 ") {
		t.Errorf("small headers: %q, want 200", got)
	}
}

// bodyReader answers the length of the body it read, or 413 when the read
// failed on the limit (as the Proxy filter should).
var bodyReader = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
		return
	}
	fmt.Fprint(w, len(b))
})

func TestClientMaxBodySize(t *testing.T) {
	const y = `
clientMaxBodySize: 10
rules:
  - paths:
      - path: /small
        clientMaxBodySize: 5
        backend: p
      - path: /unlimited
        clientMaxBodySize: -1
        backend: p
      - pathPrefix: /
        backend: p
`
	var reached sync.Map
	s, err := New("s", mustSpec(t, y), Options{Resolve: func(string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			reached.Store(r.URL.Path, true)
			bodyReader(w, r)
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	tests := []struct {
		path      string
		size      int
		streaming bool // no Content-Length: chunked
		code      int
		reached   bool
	}{
		{"/default", 10, false, 200, true},
		{"/default", 11, false, 413, false},
		{"/default", 10, true, 200, true},
		{"/default", 11, true, 413, true},
		{"/small", 5, false, 200, true},
		{"/small", 6, false, 413, false},
		{"/small", 6, true, 413, true},
		{"/unlimited", 1 << 16, false, 200, true},
		{"/unlimited", 1 << 16, true, 200, true},
	}
	for _, tt := range tests {
		name := tt.path + "/" + strconv.Itoa(tt.size)
		if tt.streaming {
			name += "/streaming"
		}
		t.Run(name, func(t *testing.T) {
			reached.Clear()
			req, _ := http.NewRequest("POST", ts.URL+tt.path, strings.NewReader(strings.Repeat("x", tt.size)))
			if tt.streaming {
				req.ContentLength = -1
				req.Body = io.NopCloser(strings.NewReader(strings.Repeat("x", tt.size)))
			}
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.code {
				t.Errorf("status %d (%s), want %d", resp.StatusCode, b, tt.code)
			}
			if tt.code == 200 && string(b) != strconv.Itoa(tt.size) {
				t.Errorf("backend read %s bytes, want %d", b, tt.size)
			}
			if _, ok := reached.Load(tt.path); ok != tt.reached {
				t.Errorf("backend reached: %v, want %v", ok, tt.reached)
			}
		})
	}
	if got := s.Status().BodyTooLarge; got != 2 {
		t.Errorf("bodyTooLarge = %d, want 2", got)
	}
}

func TestMaxConnections(t *testing.T) {
	var mu sync.Mutex
	var events []string
	event := func(e string) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	s, err := New("s", mustSpec(t, "port: 0\naddress: 127.0.0.1\nmaxConnections: 2\nrules: [{paths: [{backend: p}]}]\n"), Options{
		Resolve: func(string) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				event("served " + r.Header.Get("X-Conn"))
				io.WriteString(w, "ok")
			})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	t.Cleanup(func() { s.Close() })

	type conn struct {
		net.Conn
		r *bufio.Reader
	}
	dial := func() *conn {
		c, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return &conn{c, bufio.NewReader(c)}
	}
	send := func(c *conn, name string) {
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Conn: %s\r\n\r\n", name)
	}
	recv := func(c *conn, name string) {
		resp, err := http.ReadResponse(c.r, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", name, resp.StatusCode)
		}
	}
	a, b := dial(), dial()
	send(a, "a")
	recv(a, "a")
	send(b, "b")
	recv(b, "b")
	// The third connection is accepted by the kernel, not by the server.
	c := dial()
	send(c, "c")
	// a and b, kept alive, are still served meanwhile.
	send(a, "a2")
	recv(a, "a2")
	send(b, "b2")
	recv(b, "b2")
	event("closing a")
	a.Close()
	recv(c, "c")
	mu.Lock()
	defer mu.Unlock()
	want := []string{"served a", "served b", "served a2", "served b2", "closing a", "served c"}
	if strings.Join(events, ",") != strings.Join(want, ",") {
		t.Errorf("events %q, want %q", events, want)
	}
}

func TestListenerSettingsPendingRestart(t *testing.T) {
	const y = "port: 0\naddress: 127.0.0.1\nrules: [{paths: [{backend: p}]}]\n"
	g1 := serveGen(t, y, nil, "one")
	if g1.Status().PendingRestart {
		t.Error("a fresh listener is pending a restart")
	}
	// Port 0 again: the same listen address, so the listener is handed over.
	same := y + "keepAliveTimeout: 60s\nclientMaxBodySize: 5\n"
	g2 := serveGen(t, same, g1, "two")
	if g2.Status().PendingRestart {
		t.Error("the same listener settings (defaults spelled out) are pending a restart")
	}
	other := y + "readTimeout: 5s\n"
	g3 := serveGen(t, other, g2, "three")
	if g3.Addr() != g1.Addr() {
		t.Fatalf("not handed over: %s -> %s", g1.Addr(), g3.Addr())
	}
	if !g3.Status().PendingRestart {
		t.Error("a changed readTimeout on a running listener is not reported")
	}
	g1.Close()
	g2.Close()
	if err := g3.Close(); err != nil {
		t.Fatal(err)
	}
}
