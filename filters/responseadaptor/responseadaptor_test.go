package responseadaptor_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/sluicegw/sluice/filters/mock"
	"github.com/sluicegw/sluice/filters/responseadaptor"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

// trackedBody records whether it was closed.
type trackedBody struct {
	io.Reader
	closed bool
}

func (b *trackedBody) Close() error { b.closed = true; return nil }

// upstream is a response as a Proxy would leave it: streamed, compressed.
func upstream() *http.Response {
	return &http.Response{
		StatusCode: http.StatusNotFound,
		Status:     "404 Not Found",
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{
			"Server":            {"nginx"},
			"Content-Type":      {"text/html"},
			"Content-Encoding":  {"gzip"},
			"Transfer-Encoding": {"chunked"},
			"Vary":              {"Origin"},
		},
		TransferEncoding: []string{"chunked"},
		ContentLength:    -1,
		Body:             &trackedBody{Reader: strings.NewReader("upstream body")},
	}
}

func TestHandle(t *testing.T) {
	tests := []struct {
		name string
		spec string
		resp *http.Response // the response before the filter; nil for none

		wantNil        bool
		wantCode       int
		wantHeader     http.Header
		wantBody       string
		wantLength     int64
		wantOldClosed  bool
		wantUnmodified bool // the filter must keep the very same response
	}{
		{
			name: "no response, header ops only: nothing to do", spec: "header: { set: { X-A: a } }",
			wantNil: true,
		},
		{
			name: "no response, body: a 200 with the body and the header ops", spec: "body: hello\nheader: { set: { Content-Type: text/plain } }",
			wantCode: 200, wantBody: "hello", wantLength: 5,
			wantHeader: http.Header{"Content-Length": {"5"}, "Content-Type": {"text/plain"}},
		},
		{
			name: "header ops keep the streamed body", spec: "header: { del: [server], set: { Cache-Control: no-store }, add: { Vary: Accept } }",
			resp:     upstream(),
			wantCode: 404, wantBody: "upstream body", wantLength: -1,
			wantHeader: http.Header{
				"Content-Type": {"text/html"}, "Content-Encoding": {"gzip"}, "Transfer-Encoding": {"chunked"},
				"Vary": {"Origin", "Accept"}, "Cache-Control": {"no-store"},
			},
		},
		{
			name: "body replaces a streamed, compressed body", spec: "body: '{\"error\": \"not found\"}'\nheader: { set: { Content-Type: application/json } }",
			resp:     upstream(),
			wantCode: 404, wantBody: `{"error": "not found"}`, wantLength: 22, wantOldClosed: true,
			wantHeader: http.Header{
				"Server": {"nginx"}, "Content-Type": {"application/json"}, "Vary": {"Origin"}, "Content-Length": {"22"},
			},
		},
		{
			name: "empty spec keeps the response", spec: "{}",
			resp:     upstream(),
			wantCode: 404, wantBody: "upstream body", wantLength: -1, wantUnmodified: true,
			wantHeader: upstream().Header,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := filtertest.New(t, responseadaptor.Kind, tt.spec)
			// filtertest's Do starts without a response, so a response a
			// previous filter left is set on a Context by hand.
			c := pipeline.NewContext(httptest.NewRequest(http.MethodGet, "/", nil))
			var origHeader http.Header
			if tt.resp != nil {
				origHeader = tt.resp.Header.Clone()
				c.SetResponse(tt.resp)
			}
			if res := h.Filter.Handle(c); res != pipeline.Continue {
				t.Errorf("result = %q, want continue", res)
			}
			got := c.Response()
			if tt.wantNil {
				if got != nil {
					t.Fatalf("created a response: %d", got.StatusCode)
				}
				return
			}
			if got == nil {
				t.Fatal("no response")
			}
			if tt.resp != nil {
				if same := got == tt.resp; same != tt.wantUnmodified {
					t.Errorf("same response = %v, want %v", same, tt.wantUnmodified)
				}
				if !reflect.DeepEqual(tt.resp.Header, origHeader) {
					t.Errorf("the previous response's header changed: %v", tt.resp.Header)
				}
				if closed := tt.resp.Body.(*trackedBody).closed; closed != tt.wantOldClosed {
					t.Errorf("old body closed = %v, want %v", closed, tt.wantOldClosed)
				}
			}
			b, err := io.ReadAll(got.Body)
			if err != nil {
				t.Fatal(err)
			}
			if got.StatusCode != tt.wantCode || string(b) != tt.wantBody || got.ContentLength != tt.wantLength {
				t.Errorf("response = %d %q length %d, want %d %q length %d",
					got.StatusCode, b, got.ContentLength, tt.wantCode, tt.wantBody, tt.wantLength)
			}
			if !reflect.DeepEqual(got.Header, tt.wantHeader) {
				t.Errorf("header = %v\nwant %v", got.Header, tt.wantHeader)
			}
			if tt.wantOldClosed && len(got.TransferEncoding) != 0 {
				t.Errorf("TransferEncoding = %v after the body was replaced", got.TransferEncoding)
			}
		})
	}
}

// TestDo runs the filter through filtertest's Do, which starts without a
// response.
func TestDo(t *testing.T) {
	out := filtertest.New(t, responseadaptor.Kind, "body: created").Get("/")
	if out.Result != pipeline.Continue || out.Response == nil || out.Response.StatusCode != 200 || out.Body != "created" {
		t.Errorf("got %q %v %q", out.Result, out.Response, out.Body)
	}
	if out.Response.Request != out.Request {
		t.Error("the created response does not point at its request")
	}
}

// TestInPipeline runs Mock then ResponseAdaptor in a pipeline and checks
// what a client receives.
func TestInPipeline(t *testing.T) {
	reg, err := pipeline.NewRegistry(mock.Kind, responseadaptor.Kind)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.NewBuilder("p").
		Filter("mock", "Mock", mock.Spec{Rules: []mock.Rule{{Code: 500, Headers: map[string]string{"X-Debug": "stack trace"}, Body: "a long internal error"}}}).
		JumpIf(mock.Mocked, "adaptor").
		Filter("adaptor", "ResponseAdaptor", responseadaptor.Spec{
			Header: responseadaptor.HeaderSpec{Del: []string{"X-Debug"}},
			Body:   "internal error\n",
		}).
		Build(reg, pipeline.Env{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != 500 || rec.Body.String() != "internal error\n" || rec.Header().Get("Content-Length") != "15" || rec.Header().Get("X-Debug") != "" {
		t.Errorf("client got %d %q %v", rec.Code, rec.Body, rec.Header())
	}
}

func TestConcurrent(t *testing.T) {
	h := filtertest.New(t, responseadaptor.Kind, "body: b\nheader: { add: { X-A: a } }")
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 20 {
				c := pipeline.NewContext(httptest.NewRequest(http.MethodGet, "/", nil))
				c.SetResponse(upstream())
				h.Filter.Handle(c)
				resp := c.Response()
				b, _ := io.ReadAll(resp.Body)
				if string(b) != "b" || len(resp.Header["X-A"]) != 1 {
					t.Errorf("got %q %v", b, resp.Header)
				}
			}
		})
	}
	wg.Wait()
}

func TestBadSpec(t *testing.T) {
	tests := []struct {
		name string
		spec string
		want string // regexp the error must match
	}{
		{"unknown field", "body: x\nheaders:\n  set: { A: b }\n", `^line 2: field "headers": unknown field`},
		{"unknown header op", "header:\n  replace: { A: b }\n", `^line 2: field "header\.replace": unknown field`},
		{"bad header name", "header:\n  del:\n    - ok\n    - 'not ok'\n", `^line 4: field "header\.del\[1\]": "not ok" is not a valid header name`},
		{"same header twice", "header:\n  set:\n    X-A: a\n    x-a: b\n", `^line 4: field "header\.set\.x-a": "X-A" and "x-a" name the same header`},
		{"header value injection", "header:\n  set:\n    X-A: \"a\\nb\"\n", `^line 3: field "header\.set\.X-A": header value contains a control character$`},
		{"wrong type", "header:\n  del: Server\n", `^line 2: field "header\.del": cannot unmarshal`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			filtertest.ExpectBuildError(t, responseadaptor.Kind, tt.spec, tt.want)
		})
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	in := responseadaptor.Spec{
		Header: responseadaptor.HeaderSpec{
			Del: []string{"Server"},
			Set: map[string]string{"Cache-Control": "no-store"},
			Add: map[string]string{"Vary": "Accept"},
		},
		Body: "multi\nline\n",
	}
	filtertest.RoundTrip(t, responseadaptor.Kind, in)
}
