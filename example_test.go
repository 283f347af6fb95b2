package sluice_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"

	"github.com/sluicegw/sluice"
)

// A gateway loaded from YAML, serving through Handler without a listener.
func ExampleLoad() {
	g, err := sluice.Load(strings.NewReader(`
kind: HTTPServer
name: api
port: 8080
rules:
  - paths:
    - pathPrefix: /hello
      backend: hello
---
kind: Pipeline
name: hello
filters:
  - name: mock
    kind: Mock
    rules:
      - body: "hello, sluice\n"
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer g.Shutdown(context.Background())

	h, _ := g.Handler("api")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/hello", nil))
	fmt.Print(rec.Code, " ", rec.Body.String())
	// Output: 200 hello, sluice
}

// A bad spec is rejected with its kind, name, field and line, and the
// running configuration stays as it was.
func ExampleGateway_ApplyYAML() {
	g, _ := sluice.New()
	defer g.Shutdown(context.Background())

	err := g.ApplyYAML(context.Background(), strings.NewReader(`kind: Pipeline
name: demo
flow:
  - filter: check
    jumpIf: { denied: END }
filters:
  - name: check
    kind: Validator
    headers: { X-Key: { values: [k] } }
`))
	fmt.Println(err)
	fmt.Println(len(g.List("")), "objects")
	// Output:
	// Pipeline "demo": line 5: field "flow[0].jumpIf.denied": invalid spec: filter "check" (Validator): result not declared by the filter kind: "denied" (declared: [invalid])
	// 0 objects
}
