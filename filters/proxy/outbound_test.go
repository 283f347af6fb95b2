package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
)

func mustServer(t testing.TB, u string) *Server {
	t.Helper()
	s, err := newServer(ServerSpec{URL: u})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestJoinPathMatchesReverseProxy checks the path rules against
// httputil.ProxyRequest.SetURL, whose semantics the Proxy follows.
func TestJoinPathMatchesReverseProxy(t *testing.T) {
	servers := []string{"http://b", "http://b/", "http://b/api", "http://b/api/", "http://b/a%2Fb", "http://b/a%2Fb/", "http://b/caf%C3%A9"}
	targets := []string{"/", "/x", "/x/", "/a%2Fb", "/x?q=1", "/%7Euser", "/a//b", "/caf%C3%A9"}
	for _, su := range servers {
		s := mustServer(t, su)
		target, _ := url.Parse(su)
		for _, tg := range targets {
			in := httptest.NewRequest(http.MethodGet, tg, nil)
			pr := &httputil.ProxyRequest{In: in, Out: in.Clone(context.Background())}
			pr.SetURL(target)
			out, _ := s.outbound(context.Background(), in)
			if out.URL.String() != pr.Out.URL.String() || out.URL.Path != pr.Out.URL.Path || out.URL.RawPath != pr.Out.URL.RawPath {
				t.Errorf("%s + %s: got %s (%q, %q), ReverseProxy %s (%q, %q)", su, tg,
					out.URL, out.URL.Path, out.URL.RawPath, pr.Out.URL, pr.Out.URL.Path, pr.Out.URL.RawPath)
			}
		}
	}
}

func TestOutboundLeavesInboundAlone(t *testing.T) {
	s := mustServer(t, "http://b/api")
	in := httptest.NewRequest(http.MethodGet, "/x?y=1", nil)
	in.Header.Set("Accept", "a")
	in.Header.Set("X-Forwarded-For", "203.0.113.1")
	in.Header.Set("Connection", "close")
	in.Close = true
	out, _ := s.outbound(context.Background(), in)
	out.Header["Accept"][0] = "changed"
	out.Header["X-Forwarded-For"] = append(out.Header["X-Forwarded-For"], "more")
	out.Header["X-Forwarded-Host"] = append(out.Header["X-Forwarded-Host"], "more")
	if in.Header.Get("Accept") != "a" || in.Header.Get("X-Forwarded-For") != "203.0.113.1" || in.Header.Get("Connection") != "close" ||
		in.URL.Path != "/x" || in.RequestURI != "/x?y=1" || !in.Close {
		t.Errorf("inbound request changed: %+v", in)
	}
	if got := out.Header["X-Forwarded-Proto"]; len(got) != 1 || got[0] != "http" {
		t.Errorf("X-Forwarded-Proto %q: an append to another header overwrote it", got)
	}
	if out.RequestURI != "" || out.Close || out.Host != "" || out.Body != http.NoBody {
		t.Errorf("outbound request: RequestURI %q, Close %v, Host %q, Body %T", out.RequestURI, out.Close, out.Host, out.Body)
	}
}

func TestOmitXForwardedFor(t *testing.T) {
	s := mustServer(t, "http://b")
	in := httptest.NewRequest(http.MethodGet, "/", nil)
	in.Header["X-Forwarded-For"] = nil
	out, _ := s.outbound(context.Background(), in)
	if v, ok := out.Header["X-Forwarded-For"]; !ok || v != nil {
		t.Errorf("X-Forwarded-For %q, want it left nil (not sent)", v)
	}
}

// TestOutboundAllocs pins the cost of building a request, which is what
// http.Request.Clone costs: the request, the URL, the header's map (one
// allocation up to 8 keys, four beyond) and one slice for all its values.
// "Connection: keep-alive" costs one more, in httpx.RemoveHopByHop, which
// canonicalizes the name "keep-alive".
func TestOutboundAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	s := mustServer(t, "http://b")
	curl := httptest.NewRequest(http.MethodGet, "/x", nil)
	curl.Header.Set("User-Agent", "curl/8.5.0")
	curl.Header.Set("Accept", "*/*")
	for _, tt := range []struct {
		name string
		in   *http.Request
		max  float64
	}{
		{"curl", curl, 5},
		{"browser", benchRequest(), 8},
	} {
		ctx := context.Background()
		n := testing.AllocsPerRun(1000, func() { s.outbound(ctx, tt.in) })
		if n > tt.max {
			t.Errorf("%s: outbound allocates %v times per request, want at most %v", tt.name, n, tt.max)
		}
	}
}

func TestCodeSet(t *testing.T) {
	var cs codeSet
	for _, c := range []int{100, 500, 503, 599} {
		cs.add(c)
	}
	for c := -1; c < 700; c++ {
		want := c == 100 || c == 500 || c == 503 || c == 599
		if cs.has(c) != want {
			t.Errorf("has(%d) = %v", c, !want)
		}
	}
}

func TestHasToken(t *testing.T) {
	for _, tt := range []struct {
		v    []string
		want bool
	}{
		{nil, false},
		{[]string{"trailers"}, true},
		{[]string{"deflate;q=0.5, Trailers"}, true},
		{[]string{"gzip", " trailers ;q=1"}, true},
		{[]string{"trailersx"}, false},
	} {
		if got := hasToken(tt.v, "trailers"); got != tt.want {
			t.Errorf("hasToken(%q) = %v", tt.v, got)
		}
	}
}

// benchRequest is a typical browser-like GET as the server hands it over.
func benchRequest() *http.Request {
	in := httptest.NewRequest(http.MethodGet, "/api/users/42?fields=name", nil)
	in.Header.Set("Accept", "application/json")
	in.Header.Set("Accept-Encoding", "gzip, deflate, br")
	in.Header.Set("Accept-Language", "en-GB,en;q=0.9")
	in.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64)")
	in.Header.Set("Cookie", "session=abc")
	in.Header.Set("Connection", "keep-alive")
	return in
}

func BenchmarkOutbound(b *testing.B) {
	s := mustServer(b, "http://127.0.0.1:8080")
	in := benchRequest()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		s.outbound(ctx, in)
	}
}
