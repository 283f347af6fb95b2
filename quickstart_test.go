package sluice_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

// easegressQuickstart is Easegress's README quickstart, verbatim: the v1
// spelling (HTTPPipeline, mainPool) that Sluice accepts as aliases.
const easegressQuickstart = `kind: HTTPServer
name: server-demo
port: 10080
keepAlive: true
https: false
rules:
  - paths:
    - pathPrefix: /pipeline
      backend: pipeline-demo
---
name: pipeline-demo
kind: HTTPPipeline
flow:
  - filter: validator
    jumpIf: { invalid: END }
  - filter: requestAdaptor
  - filter: proxy
filters:
  - name: validator
    kind: Validator
    headers:
      Content-Type:
        values:
        - application/json
  - name: requestAdaptor
    kind: RequestAdaptor
    header:
      set:
        X-Adapt-Key: goodplan
  - name: proxy
    kind: Proxy
    mainPool:
      servers:
      - url: http://127.0.0.1:9095
      - url: http://127.0.0.1:9096
      - url: http://127.0.0.1:9097
      loadBalance:
        policy: roundRobin
`

// The v2 spelling of the same pipeline.
const quickstartV2 = `name: pipeline-demo
kind: Pipeline
flow:
  - filter: validator
    jumpIf: { invalid: END }
  - filter: requestAdaptor
  - filter: proxy
filters:
  - name: validator
    kind: Validator
    headers:
      Content-Type:
        values: [application/json]
  - name: requestAdaptor
    kind: RequestAdaptor
    header:
      set:
        X-Adapt-Key: goodplan
  - name: proxy
    kind: Proxy
    pools:
    - servers:
      - url: http://127.0.0.1:9095
      - url: http://127.0.0.1:9096
      - url: http://127.0.0.1:9097
      loadBalance:
        policy: roundRobin
`

func TestEasegressQuickstartLoadsUnchanged(t *testing.T) {
	for name, y := range map[string]string{"v1": easegressQuickstart, "v2": strings.SplitN(easegressQuickstart, "---\n", 2)[0] + "---\n" + quickstartV2} {
		t.Run(name, func(t *testing.T) {
			g, err := sluice.Load(strings.NewReader(y))
			if err != nil {
				t.Fatal(err)
			}
			defer g.Shutdown(context.Background())
			if len(g.List("")) != 2 {
				t.Errorf("loaded %d objects", len(g.List("")))
			}
		})
	}
}

func TestEasegressQuickstartBehaves(t *testing.T) {
	// The three mirror backends of the quickstart, on free ports.
	var backends [3]*filtertest.Backend
	y := easegressQuickstart
	for i := range backends {
		backends[i] = filtertest.NewBackend(t, nil)
		y = strings.Replace(y, "http://127.0.0.1:909"+string(rune('5'+i)), backends[i].URL, 1)
	}
	serverDoc, pipelineDoc, _ := strings.Cut(y, "---\n")

	g := newGateway(t)
	apply(t, g, serverDoc)
	h, err := g.Handler("server-demo")
	if err != nil {
		t.Fatal(err)
	}
	post := func(contentType string) (int, string) {
		r := httptest.NewRequest("POST", "/pipeline", strings.NewReader(`{"hello":"sluice"}`))
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	if code, _ := post("application/json"); code != http.StatusServiceUnavailable {
		t.Errorf("before the pipeline exists: %d, want 503", code)
	}
	apply(t, g, pipelineDoc)
	if code, _ := post(""); code != http.StatusBadRequest {
		t.Errorf("without Content-Type: %d, want 400", code)
	}
	for i := 0; i < 6; i++ {
		if code, body := post("application/json"); code != 200 || body != "ok" {
			t.Fatalf("with Content-Type: %d %q", code, body)
		}
	}
	for i, b := range backends {
		seen := b.Requests()
		if len(seen) != 2 {
			t.Errorf("backend %d got %d requests, want 2 (round robin)", i, len(seen))
		}
		for _, s := range seen {
			if s.Header.Get("X-Adapt-Key") != "goodplan" || s.Body != `{"hello":"sluice"}` || s.URL != "/pipeline" {
				t.Errorf("backend %d saw %+v", i, s)
			}
		}
	}
}
