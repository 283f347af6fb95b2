package gate

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// syncBuffer is a bytes.Buffer safe for the log handler and the test.
// Each line written is signalled on wrote.
type syncBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case b.wrote <- struct{}{}:
	default:
	}
	return b.b.Write(p)
}

func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.b.Bytes()))
	for sc.Scan() {
		m := map[string]any{}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func accessServer(t *testing.T, extra string, h http.Handler) (*Server, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{wrote: make(chan struct{}, 1000)}
	y := extra + `
trustedProxies: [127.0.0.1]
rules:
  - paths:
      - path: /nope
        methods: [POST]
        backend: p
      - pathPrefix: /api
        backend: api
`
	s, err := New("s", mustSpec(t, y), Options{
		Logger:       slog.New(slog.DiscardHandler),
		AccessLogger: slog.New(slog.NewJSONHandler(buf, nil)),
		Resolve:      func(string) http.Handler { return h },
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, buf
}

func TestAccessLogLine(t *testing.T) {
	s, buf := accessServer(t, "accessLog: {enabled: true}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "hello")
	}))
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	req, _ := http.NewRequest("POST", ts.URL+"/api/x", strings.NewReader("0123456789"))
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	req.Header.Set("X-Request-Id", "req-1")
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	resp, err = ts.Client().Get(ts.URL + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	lines := buf.lines(t)
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	want := map[string]any{
		"msg": "access", "level": "INFO", "server": "s",
		"method": "POST", "path": "/api/x", "proto": "HTTP/1.1", "status": 201.0,
		"requestBytes": 10.0, "responseBytes": 5.0, "clientIP": "198.51.100.7",
		"route": "rules[0].paths[1]", "backend": "api", "requestID": "req-1",
	}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("%s = %v (%T), want %v", k, lines[0][k], lines[0][k], v)
		}
	}
	for _, k := range []string{"time", "host", "duration"} {
		if _, ok := lines[0][k]; !ok {
			t.Errorf("no %s", k)
		}
	}
	if l := lines[1]; l["status"] != 405.0 || l["route"] != "" || l["backend"] != "" || len(l["requestID"].(string)) != 32 {
		t.Errorf("405 line: %v", l)
	}
}

func TestAccessLogSampling(t *testing.T) {
	for _, tt := range []struct {
		spec string
		want int
	}{
		{"accessLog: {enabled: true, sampling: 0}", 0},
		{"accessLog: {enabled: true, sampling: 1}", 100},
		{"accessLog: {enabled: true, sampling: 0.25}", 25},
		{"accessLog: {enabled: false}", 0},
	} {
		t.Run(tt.spec, func(t *testing.T) {
			s, buf := accessServer(t, tt.spec, named("ok"))
			for range 100 {
				s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/api", nil))
			}
			if got := len(buf.lines(t)); got != tt.want {
				t.Errorf("%d lines, want %d", got, tt.want)
			}
		})
	}
}

func TestAccessLogOffHasNoWrapper(t *testing.T) {
	var w http.ResponseWriter
	s, _ := accessServer(t, "", http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { w = rw }))
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/api", nil))
	if w != rec {
		t.Errorf("the backend got %T, want the server's own writer", w)
	}
}

// The wrapper keeps Flush, Hijack and http.ResponseController working.
func TestAccessLogWriterControls(t *testing.T) {
	s, buf := accessServer(t, "accessLog: {enabled: true}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/hijack" {
			c, rw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
			rw.Flush()
			c.Close()
			return
		}
		io.WriteString(w, "a")
		w.(http.Flusher).Flush()
		rc := http.NewResponseController(w)
		if err := rc.EnableFullDuplex(); err != nil {
			t.Errorf("EnableFullDuplex through the wrapper: %v", err)
		}
		if err := rc.Flush(); err != nil {
			t.Errorf("ResponseController.Flush: %v", err)
		}
		io.WriteString(w, "b")
	}))
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	for _, p := range []string{"/api/flush", "/api/hijack"} {
		c, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", p)
		b, _ := io.ReadAll(c)
		c.Close()
		want := "\r\n\r\n1\r\na\r\n1\r\nb\r\n0\r\n" // two flushed chunks
		if p == "/api/hijack" {
			want = "\r\n\r\nhijacked"
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s: %q", p, b)
		}
	}
	<-buf.wrote // the hijacked request's line may come after its client read
	<-buf.wrote
	lines := buf.lines(t)
	if len(lines) != 2 || lines[0]["responseBytes"] != 2.0 || lines[1]["status"] != 101.0 {
		t.Errorf("lines %v", lines)
	}
}
