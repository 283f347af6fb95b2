package sluice_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/pipeline"
)

const globalServerYAML = `
kind: HTTPServer
name: server
port: 0
address: 127.0.0.1
globalFilter: global
rules:
  - paths:
    - pathPrefix: /
      backend: p
`

func globalFilterYAML(stamp string) string {
	return `
kind: GlobalFilter
name: global
beforePipeline:
  filters:
    - name: auth
      kind: Validator
      headers:
        X-Api-Key: {values: [k1]}
afterPipeline:
  filters:
    - name: stamp
      kind: ResponseAdaptor
      header:
        set: {X-Stamp: ` + stamp + `}
`
}

// countingKind answers with a fixed body and counts the requests it saw.
func countingKind(n *atomic.Int64) pipeline.Kind {
	return pipeline.Define("Counting", []pipeline.Result{"done"}, func(pipeline.Env, *struct{}) (pipeline.Filter, error) {
		return pipeline.FilterFunc(func(c *pipeline.Context) pipeline.Result {
			n.Add(1)
			c.Respond(200, "backend")
			return "done"
		}), nil
	})
}

func TestGlobalFilter(t *testing.T) {
	var backend atomic.Int64
	g := newGateway(t, sluice.WithFilterKinds(countingKind(&backend)))
	apply(t, g, globalServerYAML+"---\nkind: Pipeline\nname: p\nfilters: [{name: c, kind: Counting}]\n")
	h, err := g.Handler("server")
	if err != nil {
		t.Fatal(err)
	}
	do := func(key string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/x", nil)
		if key != "" {
			r.Header.Set("X-Api-Key", key)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}

	// The server names a GlobalFilter that does not exist yet.
	if w := do("k1"); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("without the global filter: %d, want 503", w.Code)
	}
	apply(t, g, globalFilterYAML("v1"))

	// The before pipeline answers: the backend is skipped, the after
	// pipeline still runs.
	w := do("wrong")
	if w.Code != http.StatusBadRequest || w.Header().Get("X-Stamp") != "v1" || backend.Load() != 0 {
		t.Errorf("refused by the before pipeline: %d, stamp %q, backend saw %d", w.Code, w.Header().Get("X-Stamp"), backend.Load())
	}
	// It lets the request through: backend, then after.
	w = do("k1")
	if w.Code != 200 || w.Body.String() != "backend" || w.Header().Get("X-Stamp") != "v1" || backend.Load() != 1 {
		t.Errorf("passed: %d %q, stamp %q, backend saw %d", w.Code, w.Body.String(), w.Header().Get("X-Stamp"), backend.Load())
	}

	// An update applies to the next request.
	apply(t, g, globalFilterYAML("v2"))
	if w := do("k1"); w.Header().Get("X-Stamp") != "v2" {
		t.Errorf("after the update: stamp %q", w.Header().Get("X-Stamp"))
	}

	// A bad spec names the field inside the pipeline and its line, and
	// changes nothing.
	err = g.ApplyYAML(context.Background(), strings.NewReader(strings.Replace(globalFilterYAML("v3"), "kind: Validator", "kind: NoSuchKind", 1)))
	var oe *sluice.ObjectError
	if !errors.As(err, &oe) || oe.Kind != "GlobalFilter" || !strings.HasPrefix(oe.Field, "beforePipeline.filters[0]") || oe.Line != 7 {
		t.Errorf("bad spec: %v (%+v)", err, oe)
	}
	if w := do("k1"); w.Header().Get("X-Stamp") != "v2" {
		t.Errorf("after a rejected update: stamp %q", w.Header().Get("X-Stamp"))
	}

	// Deleted: the server answers 503 again rather than skip it.
	if err := g.Delete(context.Background(), "GlobalFilter", "global"); err != nil {
		t.Fatal(err)
	}
	if w := do("k1"); w.Code != http.StatusServiceUnavailable {
		t.Errorf("after delete: %d, want 503", w.Code)
	}
}

// Requests keep flowing while the GlobalFilter and the backend pipeline
// are replaced: none fails.
func TestGlobalFilterReloadUnderLoad(t *testing.T) {
	var backend atomic.Int64
	g := newGateway(t, sluice.WithFilterKinds(countingKind(&backend)))
	apply(t, g, globalServerYAML+"---\nkind: Pipeline\nname: p\nfilters: [{name: c, kind: Counting}]\n---\n"+globalFilterYAML("v0"))
	h, err := g.Handler("server")
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := httptest.NewRequest("GET", "/x", nil)
				r.Header.Set("X-Api-Key", "k1")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != 200 || !strings.HasPrefix(w.Header().Get("X-Stamp"), "v") {
					failed.Add(1)
				}
			}
		}()
	}
	for i := range 20 {
		apply(t, g, globalFilterYAML("v"+string(rune('a'+i))))
		apply(t, g, "kind: Pipeline\nname: p\nfilters: [{name: c, kind: Counting}]\n")
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || backend.Load() == 0 {
		t.Errorf("%d failed requests of %d", failed.Load(), backend.Load())
	}
}
