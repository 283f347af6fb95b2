package headercounter_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/examples/customfilter/headercounter"
	"github.com/sluicegw/sluice/pipeline"
)

// replySpec is the spec of a test filter that answers with a fixed body.
type replySpec struct {
	Body string `yaml:"body"`
}

type reply struct {
	body string
	hits *atomic.Int64
}

func (r *reply) Handle(c *pipeline.Context) pipeline.Result {
	r.hits.Add(1)
	c.Respond(http.StatusOK, r.body)
	return "replied"
}

// replyKind is a responder that counts the requests it answers in hits, so
// that a test can tell whether the flow reached it.
func replyKind(hits *atomic.Int64) pipeline.Kind {
	return pipeline.Define("Reply", []pipeline.Result{"replied"},
		func(_ pipeline.Env, s *replySpec) (pipeline.Filter, error) {
			return &reply{body: s.Body, hits: hits}, nil
		})
}

const gatewayYAML = `
kind: HTTPServer
name: server
rules:
  - paths:
    - pathPrefix: /
      backend: counted
---
kind: Pipeline
name: counted
flow:
  - filter: headerCounter
    jumpIf: { invalidHeader: END }
  - filter: reply
filters:
  - name: headerCounter
    kind: HeaderCounter
    headers: [Cookie, Authorization]
  - name: reply
    kind: Reply
    body: counted
`

// newGateway returns a gateway with the HeaderCounter and Reply kinds,
// configured with y, and a real HTTP server on loopback serving its
// "server" router. Nothing binds the HTTPServer's own port: the gateway is
// not started, its router is mounted with Handler.
func newGateway(t *testing.T, hits *atomic.Int64, y string) (*sluice.Gateway, *httptest.Server) {
	t.Helper()
	g, err := sluice.New(sluice.WithFilterKinds(headercounter.Kind, replyKind(hits)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	if err := g.ApplyYAML(context.Background(), strings.NewReader(y)); err != nil {
		t.Fatal(err)
	}
	h, err := g.Handler("server")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return g, srv
}

func get(t *testing.T, srv *httptest.Server, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/anything", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// counterStatus digs the HeaderCounter's status out of the gateway's.
func counterStatus(t *testing.T, g *sluice.Gateway) headercounter.Status {
	t.Helper()
	for _, o := range g.Status().Objects {
		if o.Name != "counted" {
			continue
		}
		ps, ok := o.Status.(pipeline.Status)
		if !ok {
			t.Fatalf("pipeline status is %T", o.Status)
		}
		st, ok := ps.Filters["headerCounter"].(headercounter.Status)
		if !ok {
			t.Fatalf("headerCounter status is %T", ps.Filters["headerCounter"])
		}
		return st
	}
	t.Fatal("no pipeline called counted in the gateway's status")
	return headercounter.Status{}
}

// TestGatewayJumpIf runs the filter in a real gateway: a request without
// the headers gets the filter's 400, and jumpIf {invalidHeader: END} skips
// the responder; a request with one goes on to it.
func TestGatewayJumpIf(t *testing.T) {
	var hits atomic.Int64
	g, srv := newGateway(t, &hits, gatewayYAML)

	code, body := get(t, srv, nil)
	if code != http.StatusBadRequest || !strings.Contains(body, "Cookie, Authorization") {
		t.Errorf("no header: %d %q, want 400 naming the headers", code, body)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the responder ran %d times for a rejected request; jumpIf END should skip it", n)
	}

	code, body = get(t, srv, map[string]string{"Cookie": "session=1"})
	if code != http.StatusOK || body != "counted" {
		t.Errorf("with Cookie: %d %q, want 200 \"counted\"", code, body)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("the responder ran %d times, want 1", n)
	}

	st := counterStatus(t, g)
	if st.Counts["Cookie"] != 1 || st.Counts["Authorization"] != 0 || st.Rejected != 1 {
		t.Errorf("status %+v, want Cookie=1 Authorization=0 rejected=1", st)
	}
}

// TestGatewayJumpIfStep maps invalidHeader to a later step instead of END:
// the result drives the flow, not just the end of it.
func TestGatewayJumpIfStep(t *testing.T) {
	var hits atomic.Int64
	y := strings.Replace(gatewayYAML, "{ invalidHeader: END }", "{ invalidHeader: anonymous }", 1) + `
  - name: anonymous
    kind: Reply
    body: anonymous
`
	y = strings.Replace(y, "  - filter: reply\n", "  - filter: reply\n  - filter: anonymous\n", 1)
	_, srv := newGateway(t, &hits, y)

	if code, body := get(t, srv, nil); code != http.StatusOK || body != "anonymous" {
		t.Errorf("no header: %d %q, want 200 \"anonymous\"", code, body)
	}
	if code, body := get(t, srv, map[string]string{"Authorization": "Bearer x"}); code != http.StatusOK || body != "counted" {
		t.Errorf("with Authorization: %d %q, want 200 \"counted\"", code, body)
	}
}

// TestGatewayReload updates the pipeline: counts of headers still
// configured survive, through the gateway's Inherit path.
func TestGatewayReload(t *testing.T) {
	var hits atomic.Int64
	g, srv := newGateway(t, &hits, gatewayYAML)
	get(t, srv, map[string]string{"Cookie": "a", "Authorization": "b"})
	get(t, srv, map[string]string{"Cookie": "a"})

	y := strings.Replace(gatewayYAML, "headers: [Cookie, Authorization]", "headers: [Cookie, X-Api-Key]", 1)
	if err := g.ApplyYAML(context.Background(), strings.NewReader(y)); err != nil {
		t.Fatal(err)
	}
	get(t, srv, map[string]string{"X-Api-Key": "k"})

	st := counterStatus(t, g)
	want := map[string]int64{"Cookie": 2, "X-Api-Key": 1}
	if len(st.Counts) != 2 || st.Counts["Cookie"] != 2 || st.Counts["X-Api-Key"] != 1 {
		t.Errorf("after reload: %v, want %v", st.Counts, want)
	}
}

// TestGatewayBadSpec: a bad filter spec fails the apply with an error that
// names the object, the field path from the object root and its line.
func TestGatewayBadSpec(t *testing.T) {
	var hits atomic.Int64
	g, srv := newGateway(t, &hits, gatewayYAML)
	y := strings.Replace(gatewayYAML, "headers: [Cookie, Authorization]", "headers:\n      - Cookie\n      - cookie", 1)
	err := g.ApplyYAML(context.Background(), strings.NewReader(y))
	var oe *sluice.ObjectError
	if !errors.As(err, &oe) {
		t.Fatalf("apply: %v, want an *sluice.ObjectError", err)
	}
	// Line 20 of y is "- cookie" (line 1 is empty).
	if oe.Kind != "Pipeline" || oe.Name != "counted" || oe.Field != "filters[0].headers[1]" || oe.Line != 20 {
		t.Errorf("error names %s %q field %q line %d, want Pipeline \"counted\" field \"filters[0].headers[1]\" line 20: %v",
			oe.Kind, oe.Name, oe.Field, oe.Line, err)
	}
	if !errors.Is(err, headercounter.ErrDuplicateHeader) || !errors.Is(err, sluice.ErrBadSpec) {
		t.Errorf("error %v should wrap ErrDuplicateHeader and sluice.ErrBadSpec", err)
	}
	// The running generation is untouched.
	if code, _ := get(t, srv, map[string]string{"Cookie": "a"}); code != http.StatusOK {
		t.Errorf("after a failed apply: %d, want 200", code)
	}
}
