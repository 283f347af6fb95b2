package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/sluicegw/sluice/filters/proxy"
	"github.com/sluicegw/sluice/pipeline"
)

// A pipeline with one Proxy filter in front of a backend whose API lives
// under /v1. The same spec in YAML:
//
//	filters:
//	- name: proxy
//	  kind: Proxy
//	  pools:
//	  - servers: [{url: "http://127.0.0.1:9095/v1"}]
//	    timeout: 5s
func Example() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s for %s", r.Method, r.URL.RequestURI(), r.Header.Get("X-Forwarded-For"))
	}))
	defer backend.Close()

	reg, err := pipeline.NewRegistry(proxy.Kind)
	if err != nil {
		panic(err)
	}
	p, err := pipeline.NewBuilder("api").
		Filter("proxy", "Proxy", proxy.Spec{
			Pools: []proxy.PoolSpec{{
				Servers: []proxy.ServerSpec{{URL: backend.URL + "/v1"}},
				Timeout: 5e9,
			}},
		}).
		Build(reg, pipeline.Env{})
	if err != nil {
		panic(err)
	}
	defer p.Close() // closes the Proxy's idle connections

	req := httptest.NewRequest(http.MethodGet, "/users?id=7", nil)
	req.RemoteAddr = "198.51.100.7:51234"
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Body)
	fmt.Println(rec.Code, string(body))
	// Output: 200 GET /v1/users?id=7 for 198.51.100.7
}
