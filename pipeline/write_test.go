package pipeline_test

// Regression tests for how responses reach the client when filters set
// odd statuses or bodies fail.

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sluicegw/sluice/pipeline"
)

// funcKind makes a kind whose filter is fn.
func funcKind(name string, fn func(*pipeline.Context) pipeline.Result) pipeline.Kind {
	return pipeline.Define(name, nil, func(pipeline.Env, *struct{}) (pipeline.Filter, error) {
		return pipeline.FilterFunc(fn), nil
	})
}

func serveTest(t *testing.T, kinds []pipeline.Kind, y string) *httptest.Server {
	t.Helper()
	reg, err := pipeline.NewRegistry(kinds...)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := pipeline.ParseRaw([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	var spec pipeline.Spec
	if err := raw.Decode(&spec); err != nil {
		t.Fatal(err)
	}
	spec.Name = "p"
	p, err := pipeline.New(spec, reg, pipeline.Env{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(func() { srv.Close(); p.Close() })
	return srv
}

// A 1xx is not a final status: a response a filter set with one must not
// turn into net/http's implicit 200.
func TestInformationalStatusIsNotFinal(t *testing.T) {
	early := funcKind("Early", func(c *pipeline.Context) pipeline.Result {
		c.Respond(103, "")
		return pipeline.Continue
	})
	srv := serveTest(t, []pipeline.Kind{early}, "filters: [{name: e, kind: Early}]\n")
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("a pipeline whose response is 103 answered the client %d %q (an implicit 200); a 1xx is not a final status", resp.StatusCode, b)
	}
}

// A status out of net/http's range is answered 500, not an implicit 200.
func TestOutOfRangeStatusIs500(t *testing.T) {
	bad := funcKind("Bad", func(c *pipeline.Context) pipeline.Result {
		resp := c.Respond(200, "x")
		resp.StatusCode = 42
		return pipeline.Continue
	})
	srv := serveTest(t, []pipeline.Kind{bad}, "filters: [{name: b, kind: Bad}]\n")
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("a recovered panic while writing the response answered %d, want 500", resp.StatusCode)
	}
}

// errAfter is a body that yields some bytes and then fails, like an upstream
// connection reset in the middle of a streamed (chunked) response.
type errAfter struct {
	data string
	done bool
}

func (b *errAfter) Read(p []byte) (int, error) {
	if !b.done {
		b.done = true
		return copy(p, b.data), nil
	}
	return 0, errors.New("connection reset by upstream")
}

func (b *errAfter) Close() error { return nil }

// A body that fails mid-stream aborts the response, so the client sees the
// truncation instead of a complete-looking body.
func TestTruncatedStreamIsVisible(t *testing.T) {
	stream := funcKind("Stream", func(c *pipeline.Context) pipeline.Result {
		resp := pipeline.NewResponse(c.Request(), 200, "text/plain", nil)
		resp.Header.Del("Content-Length")
		resp.ContentLength = -1
		resp.Body = &errAfter{data: "partial"}
		c.SetResponse(resp)
		return pipeline.Continue
	})
	srv := serveTest(t, []pipeline.Kind{stream}, "filters: [{name: s, kind: Stream}]\n")
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Errorf("the upstream body failed after %q, but the client read %q with no error: the truncation is invisible", "partial", b)
	}
}

// funcReader is a reader whose dynamic type (a func) is not comparable.
type funcReader func([]byte) (int, error)

func (f funcReader) Read(p []byte) (int, error) { return f(p) }

// SetResponse compares bodies without panicking on incomparable ones.
func TestSetResponseIncomparableBodies(t *testing.T) {
	c := pipeline.NewContext(httptest.NewRequest("GET", "/", nil))
	eof := func([]byte) (int, error) { return 0, io.EOF }
	mk := func() *http.Response {
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(funcReader(eof))}
	}
	c.SetResponse(mk())
	defer func() {
		if v := recover(); v != nil {
			t.Errorf("SetResponse panicked comparing bodies: %v", v)
		}
	}()
	c.SetResponse(mk())
}
