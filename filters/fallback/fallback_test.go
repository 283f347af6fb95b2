package fallback_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicegw/sluice/filters/fallback"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

func TestFallbackReplacesTheResponse(t *testing.T) {
	h := filtertest.New(t, fallback.Kind, `
mockCode: 200
mockHeaders: { Content-Type: application/json, X-Degraded: "1" }
mockBody: '{"items": []}'
`)
	closed := false
	failed := &http.Response{StatusCode: 503, Header: http.Header{"X-Upstream": {"a"}},
		Body: closer{strings.NewReader("upstream failed"), &closed}}
	out := h.DoWith(httptest.NewRequest("GET", "/items", nil), failed)
	if out.Result != pipeline.Continue {
		t.Errorf("result %q", out.Result)
	}
	if out.Response.StatusCode != 200 || out.Body != `{"items": []}` ||
		out.Response.Header.Get("Content-Type") != "application/json" || out.Response.Header.Get("X-Upstream") != "" {
		t.Errorf("got %d %v %q", out.Response.StatusCode, out.Response.Header, out.Body)
	}
	if !closed {
		t.Error("the replaced response's body was not closed")
	}
	if got := h.Get("/").Response.StatusCode; got != 200 {
		t.Errorf("without a prior response: %d", got)
	}
}

type closer struct {
	io.Reader
	closed *bool
}

func (c closer) Close() error { *c.closed = true; return nil }

func TestFallbackBadSpecs(t *testing.T) {
	for _, tt := range []struct{ name, spec, want string }{
		{"code", "mockCode: 1000\n", `^line 1: field "mockCode": must be between 200 and 599`},
		{"body on 204", "mockCode: 204\nmockBody: x\n", `^line 2: field "mockBody": a 204 response cannot have a body`},
		{"header", "mockHeaders:\n  'X A': v\n", `^line 2: field "mockHeaders.X A"`},
		{"unknown", "mockCod: 200\n", `^line 1: field "mockCod": unknown field`},
	} {
		t.Run(tt.name, func(t *testing.T) { filtertest.ExpectBuildError(t, fallback.Kind, tt.spec, tt.want) })
	}
}

func TestFallbackRoundTrip(t *testing.T) {
	filtertest.RoundTrip(t, fallback.Kind, fallback.Spec{MockCode: 202, MockHeaders: map[string]string{"A": "b"}, MockBody: "x"})
}
