package eureka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/mesh/discovery/discoverytest"
	"github.com/sluicegw/sluice/mesh/discovery/eureka"
)

// fakeEureka is an in-process stand-in for a Eureka server: none can be
// installed here, so the client is tested against this fake, which follows
// Eureka's documented REST API (GET /eureka/apps/{appID} with Accept:
// application/json, 404 for an unknown application, instances with
// instanceId, ipAddr, status, port and securePort as {"$", "@enabled"},
// metadata) behind basic auth. Like some Eureka versions, it writes a
// single instance as an object rather than a list.
type fakeEureka struct {
	srv  *httptest.Server
	mu   sync.Mutex
	apps map[string]map[string]map[string]any // APP → instanceId → instance
}

func newFakeEureka(t *testing.T) *fakeEureka {
	f := &fakeEureka{apps: map[string]map[string]map[string]any{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.close)
	return f
}

func (f *fakeEureka) close() {
	f.srv.CloseClientConnections()
	f.srv.Close()
}

func (f *fakeEureka) set(app string, u *discoverytest.Upstream, status string, weight int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.apps[app] == nil {
		f.apps[app] = map[string]map[string]any{}
	}
	f.apps[app][u.Name] = map[string]any{
		"instanceId": u.Name, "hostName": "localhost", "app": app, "ipAddr": u.Host, "status": status,
		"port":       map[string]any{"$": u.Port, "@enabled": "true"},
		"securePort": map[string]any{"$": 443, "@enabled": "false"},
		"metadata":   map[string]string{"weight": fmt.Sprint(weight), "tags": "v1, blue"},
	}
}

func (f *fakeEureka) remove(app, id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.apps[app], id)
}

func (f *fakeEureka) serve(w http.ResponseWriter, r *http.Request) {
	if u, p, ok := r.BasicAuth(); !ok || u != "sluice" || p != "pw" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	app, ok := strings.CutPrefix(r.URL.Path, "/eureka/apps/")
	if !ok || r.Method != http.MethodGet || r.Header.Get("Accept") != "application/json" {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	insts, ok := f.apps[app]
	if !ok {
		http.NotFound(w, r)
		return
	}
	var list []map[string]any
	for _, in := range insts {
		list = append(list, in)
	}
	var instance any = list
	if len(list) == 1 {
		instance = list[0]
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"application": map[string]any{"name": app, "instance": instance}})
}

// TestEurekaPoolFollowsRegistry runs a real Gateway and Proxy under
// concurrent load while the fake Eureka's instances change status and
// leave, then stops the fake: traffic follows, no request fails, and the
// last known instances keep serving, reported stale.
func TestEurekaPoolFollowsRegistry(t *testing.T) {
	f := newFakeEureka(t)
	a, b := discoverytest.NewUpstream(t, "a"), discoverytest.NewUpstream(t, "b")
	f.set("ORDERS", a, "UP", 1)

	h := discoverytest.Start(t, []sluice.ObjectKind{eureka.Kind}, fmt.Sprintf(`
kind: EurekaServiceRegistry
name: reg
endpoints: [%s/eureka]
username: sluice
password: pw
syncInterval: 100ms
timeout: 1s
`, f.srv.URL), "reg", "orders", "    serverTags: [blue]\n")
	load := h.StartLoad(t, 8)
	load.Only(t, 10*time.Second, "a")

	f.set("ORDERS", b, "UP", 1)
	load.Only(t, 10*time.Second, "a", "b")

	f.set("ORDERS", a, "OUT_OF_SERVICE", 1)
	load.Only(t, 10*time.Second, "b")

	f.set("ORDERS", a, "UP", 1)
	f.remove("ORDERS", "b")
	load.Only(t, 10*time.Second, "a")

	f.close()
	discoverytest.Eventually(t, 20*time.Second, "the registry to report stale", h.RegistryStale)
	discoverytest.Eventually(t, 5*time.Second, "the pool to report stale", h.PoolStale)
	load.Only(t, 10*time.Second, "a")

	load.Stop()
	if n, last := load.Failed(); n != 0 {
		t.Fatalf("%d requests failed; last: %s", n, last)
	}
}

func TestSpecErrorsNameTheField(t *testing.T) {
	for _, tt := range []struct{ yaml, field string }{
		{"endpoints: []", "endpoints"},
		{"endpoints: [ftp://x]", "endpoints[0]"},
		{"endpoints: [http://x]\npassword: p", "username"},
		{"endpoints: [http://x]\ntimeout: -1s", "timeout"},
	} {
		g, err := sluice.New(sluice.WithObjectKinds(eureka.Kind))
		if err != nil {
			t.Fatal(err)
		}
		err = g.ApplyYAML(context.Background(), strings.NewReader("kind: EurekaServiceRegistry\nname: r\n"+tt.yaml+"\n"))
		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%q: error %v, want one naming %s", tt.yaml, err, tt.field)
		}
		g.Shutdown(context.Background())
	}
}
