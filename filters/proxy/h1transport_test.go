package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is a real backend that counts the connections it
// accepted.
func countingServer(t testing.TB, h http.Handler) (*httptest.Server, *atomic.Int64) {
	var conns atomic.Int64
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s, &conns
}

func newTestH1(t testing.TB, ts transportSettings) *h1Transport {
	if ts.maxIdleConnsPerHost == 0 {
		ts.maxIdleConnsPerHost = 16
	}
	if ts.connectTimeout == 0 {
		ts.connectTimeout = 5 * time.Second
	}
	fb := &http.Transport{}
	tr := newH1Transport(ts, fb)
	t.Cleanup(tr.Close)
	return tr
}

func roundTrip(t testing.TB, rt http.RoundTripper, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestH1TransportReusesConnections(t *testing.T) {
	s, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-T")
		io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+string(b)+" "+r.Header.Get("User-Agent"))
		w.Header().Set("X-T", "trailer")
	}))
	tr := newTestH1(t, transportSettings{})
	for i := range 5 {
		req, _ := http.NewRequest("POST", s.URL+"/p?q=1", strings.NewReader("body"))
		resp, body := roundTrip(t, tr, req)
		if body != "POST /p?q=1 body Go-http-client/1.1" || resp.Trailer.Get("X-T") != "trailer" {
			t.Fatalf("request %d: %q, trailer %q", i, body, resp.Trailer.Get("X-T"))
		}
	}
	// HEAD and 204 have no body: the connection goes back at once.
	req, _ := http.NewRequest("HEAD", s.URL+"/", nil)
	if resp, body := roundTrip(t, tr, req); resp.StatusCode != 200 || body != "" {
		t.Errorf("HEAD: %d %q", resp.StatusCode, body)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 6 sequential requests, want 1", n)
	}
}

// oneShotServer answers each request on a connection and then closes the
// connection without saying so (no Connection: close): the next request
// on it finds it dead.
func oneShotServer(t *testing.T) (addr string, accepted *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = &atomic.Int64{}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			br := bufio.NewReader(c)
			if req, err := http.ReadRequest(br); err == nil {
				io.Copy(io.Discard, req.Body)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
			// Let the client take the response and pool the connection.
			time.Sleep(20 * time.Millisecond)
			c.Close()
		}
	}()
	return ln.Addr().String(), accepted
}

func TestH1TransportRetriesADeadReusedConnection(t *testing.T) {
	addr, accepted := oneShotServer(t)
	tr := newTestH1(t, transportSettings{})
	for i := range 3 {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		if _, body := roundTrip(t, tr, req); body != "ok" {
			t.Fatalf("GET %d: %q", i, body)
		}
		time.Sleep(50 * time.Millisecond) // the server has closed it by now
	}
	if n := accepted.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
	// A POST whose body cannot be produced again is not retried.
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	roundTrip(t, tr, req)
	time.Sleep(50 * time.Millisecond)
	req, _ = http.NewRequest("POST", "http://"+addr+"/", io.NopCloser(strings.NewReader("x")))
	req.ContentLength = 1
	if _, err := tr.RoundTrip(req); err == nil {
		t.Error("POST on a dead connection: no error")
	} else if !errors.As(err, new(*staleConnError)) {
		t.Errorf("POST on a dead connection: %v", err)
	}
}

func TestH1TransportEarlyCloseDropsTheConnection(t *testing.T) {
	s, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 1<<20))
	}))
	tr := newTestH1(t, transportSettings{})
	for range 2 {
		req, _ := http.NewRequest("GET", s.URL, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.CopyN(io.Discard, resp.Body, 10)
		resp.Body.Close()
		if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
			t.Error("read after Close succeeded")
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2: a body closed early must not be reused", n)
	}
}

func TestH1TransportTimeoutsAndCancel(t *testing.T) {
	release := make(chan struct{})
	s, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)

	tr := newTestH1(t, transportSettings{responseHeaderTimeout: 50 * time.Millisecond})
	req, _ := http.NewRequest("GET", s.URL, nil)
	_, err := tr.RoundTrip(req)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("response header timeout: %v", err)
	}

	tr = newTestH1(t, transportSettings{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ = http.NewRequestWithContext(ctx, "GET", s.URL, nil)
	done := make(chan error, 1)
	go func() {
		_, err := tr.RoundTrip(req)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestH1TransportHostileResponses(t *testing.T) {
	for _, tt := range []struct {
		name, resp string
	}{
		{"huge head", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 2<<20) + "\r\n\r\n"},
		{"garbage", "NOT HTTP\r\n\r\n"},
		{"101 unasked", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				http.ReadRequest(bufio.NewReader(c))
				io.WriteString(c, tt.resp)
			}()
			tr := newTestH1(t, transportSettings{})
			req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/", nil)
			if resp, err := tr.RoundTrip(req); err == nil {
				resp.Body.Close()
				t.Errorf("got %d, want an error", resp.StatusCode)
			}
		})
	}
}

func TestH1TransportInterimAndCleaning(t *testing.T) {
	s, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, r.Header.Get("X-Bad"))
	}))
	tr := newTestH1(t, transportSettings{})
	var got []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, h.Get("Link"))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", s.URL, nil)
	// A value with a line break goes through net/http's writer, which
	// cleans it: no header can be injected.
	req.Header.Set("X-Bad", "a\r\nX-Injected: 1")
	resp, body := roundTrip(t, tr, req)
	if len(got) != 1 || got[0] != "</a.css>; rel=preload" || resp.StatusCode != 200 || body != "a  X-Injected: 1" {
		t.Errorf("1xx %q, final %d %q", got, resp.StatusCode, body)
	}
}

func TestH1TransportFallsBack(t *testing.T) {
	s, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, strings.Join(r.TransferEncoding, ",")+" "+string(b))
	}))
	tr := newTestH1(t, transportSettings{})
	// A body of unknown length is sent chunked by the fallback.
	req, _ := http.NewRequest("POST", s.URL, io.NopCloser(strings.NewReader("streamed")))
	req.ContentLength = -1
	if _, body := roundTrip(t, tr, req); body != "chunked streamed" {
		t.Errorf("unknown length: %q", body)
	}
	// A body longer than its Content-Length is an error, not a smuggled
	// request.
	req, _ = http.NewRequest("POST", s.URL, io.NopCloser(strings.NewReader("12345GET / HTTP/1.1\r\n\r\n")))
	req.ContentLength = 5
	if resp, err := tr.RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Error("a body longer than its Content-Length was sent")
	}
}

// BenchmarkTransport compares the lean HTTP/1.1 transport with
// http.Transport tuned the same way, many goroutines sharing one backend.
func BenchmarkTransport(b *testing.B) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	defer s.Close()
	ts := transportSettings{maxIdleConns: 1024, maxIdleConnsPerHost: 1024, connectTimeout: time.Second}
	std := newHTTPTransport(ts, nil, false)
	defer std.CloseIdleConnections()
	for _, c := range []struct {
		name string
		rt   http.RoundTripper
	}{{"h1", newH1Transport(ts, std)}, {"std", std}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest("GET", s.URL+"/bench", nil)
				for pb.Next() {
					resp, err := c.rt.RoundTrip(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}
