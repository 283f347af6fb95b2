package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluicegw/sluice/filters/proxy"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

// mirrorSpec is a Proxy of main with the mirror pool mirror and the extra
// top-level fields.
func mirrorSpec(main, mirror, extra string) string {
	return fmt.Sprintf("pools:\n- servers: [{url: %s}]\nmirrorPool:\n  servers: [{url: %s}]\n%s", main, mirror, extra)
}

// seen is a request a mirror backend received.
type seen struct {
	method, uri, body string
	header            http.Header
}

// recordingMirror is a mirror backend that reports each request on a
// channel, and then, when release is not nil, blocks until release is
// closed. The cleanup releases it before the server closes.
func recordingMirror(t *testing.T, blocking bool) (url string, got chan seen, release chan struct{}) {
	t.Helper()
	got = make(chan seen, 100)
	release = make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.URL.RequestURI(), string(b), r.Header.Clone()}
		if blocking {
			<-release
		}
		io.WriteString(w, "mirror")
	}))
	t.Cleanup(be.Close)
	t.Cleanup(func() { close(release) }) // runs before be.Close
	return be.URL, got, release
}

func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("gave up waiting for %s", what)
		panic("unreachable")
	}
}

// TestMirrorGetsACopy: the mirror gets the request with its headers and
// body, as the main server does, and the client gets the main server's
// answer.
func TestMirrorGetsACopy(t *testing.T) {
	t.Parallel()
	main := filtertest.NewBackend(t, named("main"))
	murl, got, _ := recordingMirror(t, false)
	h := filtertest.New(t, proxy.Kind, mirrorSpec(main.URL, murl, ""))

	r := httptest.NewRequest(http.MethodPost, "/orders?id=7", strings.NewReader(`{"item":"tea"}`))
	r.Header.Set("X-Trace", "abc")
	r.Header.Set("Content-Type", "application/json")
	out := h.Do(r)
	if out.Result != pipeline.Continue || out.Body != "main" {
		t.Fatalf("got %q %q, want the main server's answer", out.Result, out.Body)
	}
	if b := main.Requests()[0].Body; b != `{"item":"tea"}` {
		t.Errorf("main server got body %q", b)
	}
	s := wait(t, got, "the mirror's copy")
	if s.method != http.MethodPost || s.uri != "/orders?id=7" || s.body != `{"item":"tea"}` {
		t.Errorf("mirror got %s %s %q", s.method, s.uri, s.body)
	}
	if s.header.Get("X-Trace") != "abc" || s.header.Get("Content-Type") != "application/json" || s.header.Get("X-Forwarded-For") == "" {
		t.Errorf("mirror got header %v", s.header)
	}

	// A request without a body is copied too.
	h.Do(httptest.NewRequest(http.MethodGet, "/ping", nil))
	if s := wait(t, got, "the copy of a GET"); s.method != http.MethodGet || s.uri != "/ping" || s.body != "" {
		t.Errorf("mirror got %s %s %q", s.method, s.uri, s.body)
	}
	waitFor(t, "the mirror's counters", func() bool {
		st := status(t, h.Filter).Mirror
		return st != nil && st.Sent == 2 && st.Queued == 2
	})
}

// TestMirrorDoesNotSlowTheMainPath: with the mirror's one worker stuck in
// a server that does not answer, every main request still completes; the
// copies beyond the queue's room are dropped rather than waited for.
func TestMirrorDoesNotSlowTheMainPath(t *testing.T) {
	t.Parallel()
	main := filtertest.NewBackend(t, named("main"))
	murl, got, _ := recordingMirror(t, true)
	h := filtertest.New(t, proxy.Kind, mirrorSpec(main.URL, murl, "mirrorWorkers: 1\nmirrorQueueSize: 2\n"))

	send := func(i int) {
		r := httptest.NewRequest(http.MethodPut, fmt.Sprintf("/item/%d", i), strings.NewReader("payload"))
		if out := h.Do(r); out.Result != pipeline.Continue || out.Body != "main" {
			t.Fatalf("request %d: %q %q", i, out.Result, out.Body)
		}
	}
	send(0)
	wait(t, got, "the worker to be stuck in the mirror") // the worker now blocks until the test ends
	for i := 1; i <= 10; i++ {
		send(i) // each returns although the mirror is stuck
	}
	st := status(t, h.Filter).Mirror
	if st.Queued != 3 || st.Dropped != 8 || st.Sent != 0 {
		t.Errorf("mirror status %+v, want 3 queued (1 taken, 2 waiting), 8 dropped, none sent", st)
	}
	if n := len(main.Requests()); n != 11 {
		t.Errorf("main server got %d requests, want 11", n)
	}
	select {
	case s := <-got:
		t.Errorf("the mirror got %s while its only worker was stuck", s.uri)
	default:
	}
}

// TestMirrorBodyLimit: a copy whose body exceeds the mirror pool's
// serverMaxBodySize is dropped, whether its length is announced or not;
// the main request is sent whole.
func TestMirrorBodyLimit(t *testing.T) {
	t.Parallel()
	main := filtertest.NewBackend(t, nil)
	murl, got, _ := recordingMirror(t, false)
	h := filtertest.New(t, proxy.Kind, fmt.Sprintf("pools:\n- servers: [{url: %s}]\nmirrorPool:\n  servers: [{url: %s}]\n  serverMaxBodySize: 8\n", main.URL, murl))

	big := strings.Repeat("x", 100)
	known := httptest.NewRequest(http.MethodPost, "/known", strings.NewReader(big))
	unknown := httptest.NewRequest(http.MethodPost, "/unknown", io.MultiReader(strings.NewReader(big)))
	unknown.ContentLength = -1
	small := httptest.NewRequest(http.MethodPost, "/small", strings.NewReader("12345678"))
	for _, r := range []*http.Request{known, unknown, small} {
		if out := h.Do(r); out.Result != pipeline.Continue {
			t.Fatalf("%s: result %q", r.URL, out.Result)
		}
	}
	for i, be := range main.Requests()[:2] {
		if be.Body != big {
			t.Errorf("main request %d got %d bytes, want %d", i, len(be.Body), len(big))
		}
	}
	if s := wait(t, got, "the small copy"); s.uri != "/small" || s.body != "12345678" {
		t.Errorf("mirror got %s %q, want only /small", s.uri, s.body)
	}
	if st := status(t, h.Filter).Mirror; st.TooLarge != 2 || st.Queued != 1 {
		t.Errorf("mirror status %+v, want 2 too large, 1 queued", st)
	}
}

// TestMirrorFilter: only the requests the mirror pool's filter matches
// are copied.
func TestMirrorFilter(t *testing.T) {
	t.Parallel()
	main := filtertest.NewBackend(t, nil)
	murl, got, _ := recordingMirror(t, false)
	h := filtertest.New(t, proxy.Kind, fmt.Sprintf(`pools:
- servers: [{url: %s}]
mirrorPool:
  servers: [{url: %s}]
  filter:
    headers: {X-Mirror: {exact: "yes"}}
`, main.URL, murl))
	h.Do(httptest.NewRequest(http.MethodGet, "/skip", nil))
	r := httptest.NewRequest(http.MethodGet, "/copy", nil)
	r.Header.Set("X-Mirror", "yes")
	h.Do(r)
	if s := wait(t, got, "the copy"); s.uri != "/copy" {
		t.Errorf("mirror got %s, want /copy only", s.uri)
	}
	if st := status(t, h.Filter).Mirror; st.Queued != 1 {
		t.Errorf("queued %d, want 1", st.Queued)
	}
}
