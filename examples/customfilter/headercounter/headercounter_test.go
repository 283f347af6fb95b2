package headercounter_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sluicegw/sluice/examples/customfilter/headercounter"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

const spec = "headers: [Cookie, Authorization]"

func request(headers map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return r
}

func status(t *testing.T, f pipeline.Filter) headercounter.Status {
	t.Helper()
	st, ok := f.(pipeline.Statuser).Status().(headercounter.Status)
	if !ok {
		t.Fatalf("Status() is %T, want headercounter.Status", f.(pipeline.Statuser).Status())
	}
	return st
}

func TestHandle(t *testing.T) {
	tests := []struct {
		name     string
		spec     string
		headers  map[string]string
		result   pipeline.Result
		code     int // 0: the filter sets no response
		counts   map[string]int64
		rejected int64
	}{
		{
			name:     "no header",
			headers:  nil,
			result:   headercounter.ResultInvalidHeader,
			code:     http.StatusBadRequest,
			counts:   map[string]int64{"Cookie": 0, "Authorization": 0},
			rejected: 1,
		},
		{
			name:    "cookie only",
			headers: map[string]string{"Cookie": "session=1"},
			result:  pipeline.Continue,
			counts:  map[string]int64{"Cookie": 1, "Authorization": 0},
		},
		{
			name:    "both",
			headers: map[string]string{"Cookie": "session=1", "Authorization": "Bearer x"},
			result:  pipeline.Continue,
			counts:  map[string]int64{"Cookie": 1, "Authorization": 1},
		},
		{
			name:     "other headers only",
			headers:  map[string]string{"X-Api-Key": "k"},
			result:   headercounter.ResultInvalidHeader,
			code:     http.StatusBadRequest,
			counts:   map[string]int64{"Cookie": 0, "Authorization": 0},
			rejected: 1,
		},
		{
			name:     "empty value does not count",
			headers:  map[string]string{"Cookie": ""},
			result:   headercounter.ResultInvalidHeader,
			code:     http.StatusBadRequest,
			counts:   map[string]int64{"Cookie": 0, "Authorization": 0},
			rejected: 1,
		},
		{
			name:    "spec names are case-insensitive",
			spec:    "headers: [x-API-key]",
			headers: map[string]string{"X-Api-Key": "k"},
			result:  pipeline.Continue,
			counts:  map[string]int64{"X-Api-Key": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := spec
			if tt.spec != "" {
				s = tt.spec
			}
			h := filtertest.New(t, headercounter.Kind, s)
			out := h.Do(request(tt.headers))
			if out.Result != tt.result {
				t.Errorf("result %q, want %q", out.Result, tt.result)
			}
			switch {
			case tt.code == 0 && out.Response != nil:
				t.Errorf("set a %d response, want none", out.Response.StatusCode)
			case tt.code != 0 && out.Response == nil:
				t.Errorf("set no response, want %d", tt.code)
			case tt.code != 0 && out.Response.StatusCode != tt.code:
				t.Errorf("response %d, want %d", out.Response.StatusCode, tt.code)
			}
			if tt.code == http.StatusBadRequest && !strings.Contains(out.Body, "Cookie, Authorization") {
				t.Errorf("400 body %q does not say which headers are needed", out.Body)
			}
			st := status(t, h.Filter)
			if len(st.Counts) != len(tt.counts) {
				t.Errorf("counts %v, want %v", st.Counts, tt.counts)
			}
			for k, want := range tt.counts {
				if st.Counts[k] != want {
					t.Errorf("count of %s = %d, want %d (all: %v)", k, st.Counts[k], want, st.Counts)
				}
			}
			if st.Rejected != tt.rejected {
				t.Errorf("rejected %d, want %d", st.Rejected, tt.rejected)
			}
		})
	}
}

// TestConcurrent counts under 50 goroutines; run with -race. Every count
// must be exact.
func TestConcurrent(t *testing.T) {
	const goroutines, perGoroutine = 50, 200
	h := filtertest.New(t, headercounter.Kind, spec)
	mixes := []map[string]string{
		{"Cookie": "a"},
		{"Authorization": "b"},
		{"Cookie": "a", "Authorization": "b"},
		nil,
	}
	// Contexts are not shared: each request gets its own, as in a pipeline.
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				c := pipeline.NewContext(request(mixes[(g+i)%len(mixes)]))
				h.Filter.Handle(c)
				c.Finish()
			}
		})
	}
	wg.Wait()
	// Each mix is used by exactly a quarter of all requests.
	quarter := int64(goroutines * perGoroutine / len(mixes))
	st := status(t, h.Filter)
	if st.Counts["Cookie"] != 2*quarter || st.Counts["Authorization"] != 2*quarter || st.Rejected != quarter {
		t.Errorf("status %+v, want Cookie=%d Authorization=%d rejected=%d", st, 2*quarter, 2*quarter, quarter)
	}
}

func TestInherit(t *testing.T) {
	old := filtertest.New(t, headercounter.Kind, spec)
	for _, hs := range []map[string]string{
		{"Cookie": "a"}, {"Cookie": "a"}, {"Authorization": "b"}, nil,
	} {
		old.Do(request(hs))
	}

	// The new generation drops Cookie, keeps Authorization, adds X-Api-Key.
	next := filtertest.New(t, headercounter.Kind, "headers: [authorization, X-Api-Key]")
	if err := next.Filter.(pipeline.Inheritor).Inherit(old.Filter); err != nil {
		t.Fatal(err)
	}
	st := status(t, next.Filter)
	want := map[string]int64{"Authorization": 1, "X-Api-Key": 0}
	if len(st.Counts) != len(want) || st.Counts["Authorization"] != 1 || st.Counts["X-Api-Key"] != 0 || st.Rejected != 1 {
		t.Fatalf("after inherit: %+v, want counts %v rejected 1", st, want)
	}

	// The old generation keeps serving until the swap; what it counts then
	// is not lost.
	old.Do(request(map[string]string{"Authorization": "b"}))
	next.Do(request(map[string]string{"Authorization": "b", "X-Api-Key": "k"}))
	if st := status(t, next.Filter); st.Counts["Authorization"] != 3 || st.Counts["X-Api-Key"] != 1 {
		t.Errorf("after more requests: %+v, want Authorization=3 X-Api-Key=1", st)
	}
}

func TestBadSpec(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		field string
		line  int
		is    error
	}{
		{"empty list", "headers: []", "headers", 1, headercounter.ErrNoHeaders},
		{"no headers", "{}", "headers", 1, headercounter.ErrNoHeaders},
		{"empty name", "headers:\n  - Cookie\n  - ''\n", "headers[1]", 3, headercounter.ErrHeaderName},
		{"not a token", "headers: [Cookie, 'X Token']", "headers[1]", 1, headercounter.ErrHeaderName},
		{"duplicate", "headers:\n  - Cookie\n  - Authorization\n  - cookie\n", "headers[2]", 4, headercounter.ErrDuplicateHeader},
		{"unknown field", "headers: [Cookie]\nheader: [X-Token]\n", "header", 2, pipeline.ErrUnknownField},
		{"not a list", "\nheaders: Cookie\n", "headers", 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := filtertest.Build(headercounter.Kind, tt.yaml)
			if err == nil {
				t.Fatal("built a filter from a bad spec")
			}
			var fe *pipeline.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not a *pipeline.FieldError", err, err)
			}
			if fe.Field != tt.field || fe.Line != tt.line {
				t.Errorf("error names field %q line %d, want %q line %d: %v", fe.Field, fe.Line, tt.field, tt.line, err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
		})
	}
}

// TestHandleAllocs checks the package doc's claim: counting a request that
// carries a header allocates nothing.
func TestHandleAllocs(t *testing.T) {
	h := filtertest.New(t, headercounter.Kind, spec)
	c := pipeline.NewContext(request(map[string]string{"Cookie": "a", "Authorization": "b"}))
	if n := testing.AllocsPerRun(1000, func() { h.Filter.Handle(c) }); n != 0 {
		t.Errorf("Handle allocates %v times per request, want 0", n)
	}
}

func BenchmarkHandle(b *testing.B) {
	h := filtertest.New(b, headercounter.Kind, spec)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		c := pipeline.NewContext(request(map[string]string{"Cookie": "a"}))
		for pb.Next() {
			h.Filter.Handle(c)
		}
	})
}
