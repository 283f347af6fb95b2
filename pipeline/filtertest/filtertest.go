// Package filtertest is httptest for filter authors: build a filter of a
// kind from a YAML snippet, run one request through it, and look at the
// result, the request as the filter left it, and the response.
//
//	func TestCounter(t *testing.T) {
//		h := filtertest.New(t, counter.Kind, `headers: [Cookie]`)
//		out := h.Do(httptest.NewRequest("GET", "/", nil))
//		if out.Result != "invalidHeader" { ... }
//	}
//
// Do fails the test when the filter returns a result its kind does not
// declare. NewBackend starts a real upstream on loopback that records what
// it received, for filters that call backends.
package filtertest

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/internal/clock"
	"github.com/sluicegw/sluice/pipeline"
)

// Option changes the Env a Harness builds its filter with.
type Option func(*pipeline.Env)

// WithClock builds the filter with clock c (for example a FakeClock).
func WithClock(c pipeline.Clock) Option { return func(e *pipeline.Env) { e.Clock = c } }

// WithTransport builds the filter with an upstream round tripper.
func WithTransport(rt http.RoundTripper) Option { return func(e *pipeline.Env) { e.Transport = rt } }

// WithLogger builds the filter with logger l.
func WithLogger(l *slog.Logger) Option { return func(e *pipeline.Env) { e.Logger = l } }

// FakeClock is a manual clock whose timers fire when Advance moves past them.
type FakeClock = clock.Fake

// NewFakeClock returns a FakeClock set to start.
func NewFakeClock(start time.Time) *FakeClock { return clock.NewFake(start) }

// Harness holds one built filter and its kind.
type Harness struct {
	t      testing.TB
	Kind   pipeline.Kind
	Filter pipeline.Filter
}

// Build builds a filter of kind from specYAML (the kind's own fields; name
// and kind keys are allowed and ignored) and returns the error instead of
// failing the test, for tests of bad specs.
func Build(kind pipeline.Kind, specYAML string, opts ...Option) (pipeline.Filter, error) {
	raw, err := pipeline.ParseRaw([]byte(specYAML))
	if err != nil {
		return nil, err
	}
	env := pipeline.Env{
		Logger:   slog.New(slog.DiscardHandler),
		Clock:    clock.Real(),
		Pipeline: "test",
		Name:     "filter",
	}
	for _, o := range opts {
		o(&env)
	}
	return kind.Build(env, raw.Without("name", "kind"))
}

// New builds a filter of kind from specYAML and fails the test if that
// fails. The filter is closed when the test ends.
func New(t testing.TB, kind pipeline.Kind, specYAML string, opts ...Option) *Harness {
	t.Helper()
	f, err := Build(kind, specYAML, opts...)
	if err != nil {
		t.Fatalf("building %s filter: %v", kind.Name, err)
	}
	if c, ok := f.(pipeline.Closer); ok {
		t.Cleanup(func() { c.Close() })
	}
	return &Harness{t: t, Kind: kind, Filter: f}
}

// Outcome is what one request through a filter produced.
type Outcome struct {
	Result pipeline.Result
	// Request is the request as the filter left it.
	Request *http.Request
	// Response is the response the filter set, or nil; its body has been
	// read into Body.
	Response *http.Response
	Body     string
	// Context is the request's context after the filter ran and its OnFinish
	// hooks fired.
	Context *pipeline.Context
}

// Do runs r through the filter. It fails the test if the filter returns a
// result its kind does not declare.
func (h *Harness) Do(r *http.Request) *Outcome {
	h.t.Helper()
	return h.DoWith(r, nil)
}

// DoWith runs r through the filter with resp already set as the response,
// for filters that work on responses (set by an earlier filter in a real
// pipeline).
func (h *Harness) DoWith(r *http.Request, resp *http.Response) *Outcome {
	h.t.Helper()
	c := pipeline.NewContext(r)
	if resp != nil {
		c.SetResponse(resp)
	}
	res := h.Filter.Handle(c)
	if res != pipeline.Continue && !h.Kind.Declares(res) {
		h.t.Errorf("%s returned result %q, which its kind does not declare (declared: %v)", h.Kind.Name, res, h.Kind.Results)
	}
	out := &Outcome{Result: res, Request: c.Request(), Response: c.Response(), Context: c}
	if out.Response != nil && out.Response.Body != nil {
		b, err := io.ReadAll(out.Response.Body)
		if err != nil {
			h.t.Errorf("reading response body: %v", err)
		}
		out.Response.Body.Close()
		out.Body = string(b)
		out.Response.Body = io.NopCloser(bytes.NewReader(b))
	}
	c.Finish()
	return out
}

// Get is Do with a GET request for target.
func (h *Harness) Get(target string) *Outcome {
	h.t.Helper()
	return h.Do(httptest.NewRequest(http.MethodGet, target, nil))
}

// Seen is one request a Backend received.
type Seen struct {
	Method string
	Host   string
	URL    string // path and query
	Header http.Header
	Body   string
}

// Backend is a real HTTP server on loopback that records every request.
type Backend struct {
	*httptest.Server
	mu   sync.Mutex
	seen []Seen
}

// NewBackend starts a backend that records each request and then calls h;
// a nil h answers 200 "ok". It is closed when the test ends.
func NewBackend(t testing.TB, h http.Handler) *Backend {
	t.Helper()
	b := &Backend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.seen = append(b.seen, Seen{Method: r.Method, Host: r.Host, URL: r.URL.RequestURI(), Header: r.Header.Clone(), Body: string(body)})
		b.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		if h == nil {
			io.WriteString(w, "ok")
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(b.Server.Close)
	return b
}

// Requests returns the requests received so far.
func (b *Backend) Requests() []Seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Seen(nil), b.seen...)
}

// ExpectBuildError builds a filter of kind from specYAML and fails the test
// unless that fails with an error matching the regular expression pattern.
func ExpectBuildError(t testing.TB, kind pipeline.Kind, specYAML, pattern string) {
	t.Helper()
	_, err := Build(kind, specYAML)
	if err == nil {
		t.Fatalf("built a %s filter from a bad spec:\n%s", kind.Name, specYAML)
	}
	if !regexp.MustCompile(pattern).MatchString(err.Error()) {
		t.Errorf("error %q\ndoes not match %q", err, pattern)
	}
}

// RoundTrip encodes spec as YAML, decodes it back into a new S, fails the
// test unless the two are equal, and builds a filter of kind from the YAML.
func RoundTrip[S any](t testing.TB, kind pipeline.Kind, spec S) {
	t.Helper()
	b, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	var out S
	if err := yaml.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(spec, out) {
		t.Errorf("round trip changed the spec:\n got %+v\nwant %+v\nyaml:\n%s", out, spec, b)
	}
	if _, err := Build(kind, string(b)); err != nil {
		t.Errorf("building from the encoded spec: %v\n%s", err, b)
	}
}
