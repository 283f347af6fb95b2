package sluice_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/pipeline"
)

// listRegistrySpec is the spec of ListRegistry, a service registry an
// embedder writes: its instances are listed in the spec.
type listRegistrySpec struct {
	Instances []string `yaml:"instances"` // host:port of service "orders"
}

// listRegistry implements pipeline.ServiceRegistry; the gateway hands it
// to the Proxy's pools by its object name.
type listRegistry struct {
	inst []pipeline.ServiceInstance

	mu      sync.Mutex
	watches map[*func()]bool
}

func (r *listRegistry) Instances(service string) ([]pipeline.ServiceInstance, error) {
	if service != "orders" {
		return nil, nil
	}
	return r.inst, nil
}

func (r *listRegistry) Watch(_ string, notify func()) func() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watches[&notify] = true
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.watches, &notify)
	}
}

func (r *listRegistry) Close() error { return nil }
func (r *listRegistry) Status() any  { return map[string]any{"instances": r.inst} }

var listRegistryKind = sluice.DefineObject("ListRegistry", sluice.CategorySystem,
	func(_ sluice.Env, s *listRegistrySpec) (sluice.Object, error) {
		r := &listRegistry{watches: map[*func()]bool{}}
		for i, hp := range s.Instances {
			host, port, err := net.SplitHostPort(hp)
			if err != nil {
				return nil, pipeline.FieldErr("instances["+strconv.Itoa(i)+"]", err)
			}
			p, _ := strconv.Atoi(port)
			r.inst = append(r.inst, pipeline.ServiceInstance{ID: hp, Service: "orders", Address: host, Port: p, Healthy: true})
		}
		return r, nil
	})

func backendNamed(t *testing.T, name string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, name) }))
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// TestPipelinesFindRegistriesByName applies a Proxy whose pool names a
// registry object that does not exist yet, then the registry, updates
// and deletes it: the pool follows whichever object of that name is
// live, and keeps its last instances, reported stale, when there is none.
func TestPipelinesFindRegistriesByName(t *testing.T) {
	g := newGateway(t, sluice.WithObjectKinds(listRegistryKind))
	a, b := backendNamed(t, "a"), backendNamed(t, "b")
	apply(t, g, `
kind: Pipeline
name: p
filters:
- kind: Proxy
  name: proxy
  pools:
  - serviceRegistry: reg
    serviceName: orders
---
kind: HTTPServer
name: server
port: 0
address: 127.0.0.1
rules: [{paths: [{pathPrefix: /, backend: p}]}]
`)
	h, err := g.Handler("server")
	if err != nil {
		t.Fatal(err)
	}
	get := func() (int, string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "http://example.com/", nil))
		return w.Code, w.Body.String()
	}
	if code, _ := get(); code != http.StatusServiceUnavailable {
		t.Fatalf("status %d before the registry exists, want 503", code)
	}

	apply(t, g, "kind: ListRegistry\nname: reg\ninstances: ["+a+"]\n")
	if code, body := get(); code != 200 || body != "a" {
		t.Fatalf("got %d %q, want a", code, body)
	}

	apply(t, g, "kind: ListRegistry\nname: reg\ninstances: ["+b+"]\n")
	if code, body := get(); code != 200 || body != "b" {
		t.Fatalf("got %d %q after the update, want b", code, body)
	}

	if err := g.Delete(context.Background(), "ListRegistry", "reg"); err != nil {
		t.Fatal(err)
	}
	if code, body := get(); code != 200 || body != "b" {
		t.Fatalf("got %d %q after the delete, want b, the last known", code, body)
	}
	var st []byte
	for _, o := range g.Status().Objects {
		if o.Name == "p" {
			st, _ = json.Marshal(o.Status)
		}
	}
	if !strings.Contains(string(st), `"stale":true`) || !strings.Contains(string(st), "no such service registry") {
		t.Fatalf("pipeline status %s, want the pool stale", st)
	}
}
