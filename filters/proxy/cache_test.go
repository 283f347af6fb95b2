package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicegw/sluice/filters/proxy"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

// countingServer answers "n:PATH" with n the number of requests so far
// and the headers its query asks for (?h=Name:Value, ?status=code).
func countingServer() (http.Handler, *atomic.Int64) {
	var n atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := n.Add(1)
		q := r.URL.Query()
		for _, hv := range q["h"] {
			name, v, _ := strings.Cut(hv, ":")
			w.Header().Add(name, v)
		}
		if code, err := strconv.Atoi(q.Get("status")); err == nil {
			w.WriteHeader(code)
		}
		if r.Method != http.MethodHead {
			fmt.Fprintf(w, "%d:%s", k, r.URL.Path)
		}
	}), &n
}

func cacheHarness(t *testing.T, cache string) (*filtertest.Harness, *filtertest.FakeClock, *atomic.Int64) {
	t.Helper()
	handler, n := countingServer()
	be := filtertest.NewBackend(t, handler)
	clk := filtertest.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	h := filtertest.New(t, proxy.Kind, oneServer(be.URL, "memoryCache: "+cache), filtertest.WithClock(clk))
	return h, clk, n
}

func cacheGet(t *testing.T, h *filtertest.Harness, method, target string, header ...string) *filtertest.Outcome {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	out := h.Do(r)
	if out.Result != pipeline.Continue {
		t.Fatalf("%s %s: result %q", method, target, out.Result)
	}
	return out
}

func TestMemoryCache(t *testing.T) {
	t.Parallel()
	t.Run("hit, then expiry on the clock", func(t *testing.T) {
		t.Parallel()
		h, clk, n := cacheHarness(t, "{expiration: 10s}")
		if b := cacheGet(t, h, "GET", "/a?x=1").Body; b != "1:/a" {
			t.Fatalf("first %q", b)
		}
		clk.Advance(9 * time.Second)
		out := cacheGet(t, h, "GET", "/a?x=1")
		if out.Body != "1:/a" || out.Response.Header.Get("Age") != "9" {
			t.Fatalf("second %q, Age %q: want the cached answer, 9s old", out.Body, out.Response.Header.Get("Age"))
		}
		if b := cacheGet(t, h, "GET", "/a?x=2").Body; b != "2:/a" {
			t.Errorf("another query got %q, want a fresh answer", b)
		}
		clk.Advance(time.Second)
		if b := cacheGet(t, h, "GET", "/a?x=1").Body; b != "3:/a" {
			t.Errorf("after expiry got %q, want a fresh answer", b)
		}
		st := status(t, h.Filter).Pools[0].MemoryCache
		if st.Hits != 1 || st.Misses != 3 || st.Entries != 2 || n.Load() != 3 {
			t.Errorf("status %+v, server calls %d", st, n.Load())
		}
	})
	t.Run("methods and codes", func(t *testing.T) {
		t.Parallel()
		h, _, n := cacheHarness(t, "{expiration: 1m, codes: [200, 404]}")
		for range 2 {
			cacheGet(t, h, "POST", "/p")
			cacheGet(t, h, "GET", "/missing?status=404")
			cacheGet(t, h, "GET", "/err?status=500")
			cacheGet(t, h, "HEAD", "/h")
		}
		// POST and 500 twice each; 404 and HEAD once.
		if n.Load() != 6 {
			t.Errorf("server saw %d requests, want 6", n.Load())
		}
		if out := cacheGet(t, h, "GET", "/h"); out.Body == "" {
			t.Error("a GET was answered from the HEAD's entry")
		}
	})
	t.Run("request cache-control", func(t *testing.T) {
		t.Parallel()
		h, _, n := cacheHarness(t, "{expiration: 1m}")
		cacheGet(t, h, "GET", "/")
		for _, hdr := range [][]string{
			{"Cache-Control", "no-cache"}, {"Pragma", "no-cache"}, {"Cache-Control", "max-age=0"}, {"Authorization", "Bearer x"}, {"Cache-Control", "no-store"},
		} {
			before := n.Load()
			cacheGet(t, h, "GET", "/", hdr...)
			if n.Load() != before+1 {
				t.Errorf("%s: %s was answered from the cache", hdr[0], hdr[1])
			}
		}
		// no-cache refreshed the entry; no-store and Authorization did not
		// store: the entry is the third answer (max-age=0's).
		if b := cacheGet(t, h, "GET", "/").Body; b != "4:/" {
			t.Errorf("got %q, want the answer to the max-age=0 request", b)
		}
	})
	t.Run("response rules", func(t *testing.T) {
		t.Parallel()
		h, clk, n := cacheHarness(t, "{expiration: 1m}")
		for _, q := range []string{
			"h=Cache-Control:no-store", "h=Cache-Control:private", "h=Cache-Control:no-cache",
			"h=Set-Cookie:sid=1", "h=Vary:*", "h=Cache-Control:max-age=0",
		} {
			cacheGet(t, h, "GET", "/r?"+q)
			before := n.Load()
			cacheGet(t, h, "GET", "/r?"+q)
			if n.Load() != before+1 {
				t.Errorf("%s was cached", q)
			}
		}
		// max-age and s-maxage shorten the expiration; s-maxage wins.
		cacheGet(t, h, "GET", "/short?h=Cache-Control:max-age=5")
		cacheGet(t, h, "GET", "/shared?h=Cache-Control:max-age=1,s-maxage=30")
		clk.Advance(5 * time.Second)
		before := n.Load()
		cacheGet(t, h, "GET", "/short?h=Cache-Control:max-age=5")
		cacheGet(t, h, "GET", "/shared?h=Cache-Control:max-age=1,s-maxage=30")
		if n.Load() != before+1 {
			t.Errorf("server saw %d requests, want 1 (max-age=5 expired, s-maxage=30 not)", n.Load()-before)
		}
	})
	t.Run("vary", func(t *testing.T) {
		t.Parallel()
		h, _, n := cacheHarness(t, "{expiration: 1m}")
		cacheGet(t, h, "GET", "/v?h=Vary:Accept-Language", "Accept-Language", "en")
		cacheGet(t, h, "GET", "/v?h=Vary:Accept-Language", "Accept-Language", "en")
		if n.Load() != 1 {
			t.Errorf("same Accept-Language: %d server calls, want 1", n.Load())
		}
		cacheGet(t, h, "GET", "/v?h=Vary:Accept-Language", "Accept-Language", "de")
		if n.Load() != 2 {
			t.Errorf("other Accept-Language: %d server calls, want 2", n.Load())
		}
	})
	t.Run("size limits and LRU", func(t *testing.T) {
		t.Parallel()
		// Each entry costs its body, header and key plus 256 bytes: about
		// 400 bytes here, so three fit in 1300.
		h, _, n := cacheHarness(t, "{expiration: 1m, maxEntryBytes: 64, maxTotalBytes: 1300}")
		for _, p := range []string{"/1", "/2", "/3"} {
			cacheGet(t, h, "GET", p)
		}
		cacheGet(t, h, "GET", "/1") // /1 is now the most recently used
		cacheGet(t, h, "GET", "/4") // evicts /2
		before := n.Load()
		for _, p := range []string{"/1", "/3", "/4"} {
			cacheGet(t, h, "GET", p)
		}
		if n.Load() != before {
			t.Errorf("recently used entries were evicted")
		}
		cacheGet(t, h, "GET", "/2")
		if n.Load() != before+1 {
			t.Errorf("/2 should have been evicted")
		}
		st := status(t, h.Filter).Pools[0].MemoryCache
		if st.Evictions == 0 || st.Bytes > 1300 {
			t.Errorf("status %+v", st)
		}
		// A body over maxEntryBytes is not stored.
		cacheGet(t, h, "GET", "/"+strings.Repeat("x", 100))
		before = n.Load()
		if out := cacheGet(t, h, "GET", "/"+strings.Repeat("x", 100)); n.Load() != before+1 || !strings.HasSuffix(out.Body, "xxx") {
			t.Errorf("a large body was cached or cut: %q", out.Body)
		}
	})
	t.Run("incomplete body is not stored", func(t *testing.T) {
		t.Parallel()
		h, _, n := cacheHarness(t, "{expiration: 1m}")
		c := pipeline.NewContext(httptest.NewRequest(http.MethodGet, "/partial", nil))
		if res := h.Filter.Handle(c); res != pipeline.Continue {
			t.Fatal(res)
		}
		io.CopyN(io.Discard, c.Response().Body, 1)
		c.Response().Body.Close()
		cacheGet(t, h, "GET", "/partial")
		if n.Load() != 2 {
			t.Errorf("a body the client did not read to the end was cached")
		}
	})
}

func TestMemoryCacheBadSpecs(t *testing.T) {
	t.Parallel()
	const head = "pools:\n- servers: [{url: http://a}]\n  memoryCache:\n"
	for _, tt := range []struct{ spec, field, msg string }{
		{"    codes: [200]\n", "expiration", "required"},
		{"    expiration: -1s\n", "expiration", "required"},
		{"    expiration: 1s\n    maxEntryBytes: -1\n", "maxEntryBytes", "0 or more"},
		{"    expiration: 1s\n    maxTotalBytes: -1\n", "maxTotalBytes", "0 or more"},
		{"    expiration: 1s\n    maxEntryBytes: 100\n    maxTotalBytes: 10\n", "maxTotalBytes", "less than maxEntryBytes"},
		{"    expiration: 1s\n    codes: [100]\n", `codes\[0\]`, "not in 200..599"},
		{"    expiration: 1s\n    methods: [\"G T\"]\n", `methods\[0\]`, "not a method"},
	} {
		t.Run(tt.field, func(t *testing.T) {
			filtertest.ExpectBuildError(t, proxy.Kind, head+tt.spec, `field "pools\[0\]\.memoryCache\.`+tt.field+`": .*`+tt.msg)
		})
	}
}

func TestMirrorBadSpecs(t *testing.T) {
	t.Parallel()
	const head = "pools:\n- servers: [{url: http://a}]\n"
	for _, tt := range []struct{ spec, field, msg string }{
		{"mirrorWorkers: 2\n", "mirrorWorkers", "only allowed with mirrorPool"},
		{"mirrorQueueSize: 2\n", "mirrorQueueSize", "only allowed with mirrorPool"},
		{"mirrorPool: {servers: [{url: http://m}]}\nmirrorWorkers: -1\n", "mirrorWorkers", "0 or more"},
		{"mirrorPool: {servers: [{url: http://m}]}\nmirrorQueueSize: -1\n", "mirrorQueueSize", "0 or more"},
		{"mirrorPool: {servers: []}\n", "mirrorPool.servers", "at least one server"},
		{"mirrorPool: {servers: [{url: ftp://m}]}\n", `mirrorPool.servers\[0\].url`, "scheme"},
		{"mirrorPool: {servers: [{url: http://m}], retryPolicy: r}\n", "mirrorPool.retryPolicy", "once"},
		{"mirrorPool: {servers: [{url: http://m}], circuitBreakerPolicy: c}\n", "mirrorPool.circuitBreakerPolicy", "not supported"},
		{"mirrorPool: {servers: [{url: http://m}], memoryCache: {expiration: 1s}}\n", "mirrorPool.memoryCache", "not supported"},
		{"mirrorPool: {servers: [{url: http://m}], healthCheck: {}}\n", "mirrorPool.healthCheck", "not supported"},
	} {
		t.Run(tt.field, func(t *testing.T) {
			filtertest.ExpectBuildError(t, proxy.Kind, head+tt.spec, `field "`+tt.field+`": .*`+tt.msg)
		})
	}
}

// TestReloadKeepsCacheAndMirror: a new generation with the same cache
// settings keeps the entries, and its mirror works on the transport it
// took over from the old generation, which is closed.
func TestReloadKeepsCacheAndMirror(t *testing.T) {
	t.Parallel()
	handler, n := countingServer()
	be := filtertest.NewBackend(t, handler)
	murl, got, _ := recordingMirror(t, false)
	spec := oneServer(be.URL, "memoryCache: {expiration: 1m}") + "mirrorPool: {servers: [{url: " + murl + "}]}\n"
	old := filtertest.New(t, proxy.Kind, spec)
	cacheGet(t, old, "GET", "/kept")
	wait(t, got, "the old generation's copy")

	h := filtertest.New(t, proxy.Kind, spec)
	if err := h.Filter.(pipeline.Inheritor).Inherit(old.Filter); err != nil {
		t.Fatal(err)
	}
	old.Filter.(pipeline.Closer).Close()
	if b := cacheGet(t, h, "GET", "/kept").Body; b != "1:/kept" || n.Load() != 1 {
		t.Errorf("after the reload got %q with %d server calls, want the cached answer", b, n.Load())
	}
	if s := wait(t, got, "the new generation's copy"); s.uri != "/kept" {
		t.Errorf("mirror got %s", s.uri)
	}
}
