package corsadaptor_test

import (
	"fmt"
	"net/http/httptest"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/filters/corsadaptor"
	"github.com/sluicegw/sluice/filters/mock"
	"github.com/sluicegw/sluice/pipeline"
)

// A browser app on another origin calls the API: the CORSAdaptor answers
// its preflight and, run again after the backend (the corsResponse step),
// lets it read the answer.
func Example() {
	const spec = `
flow:
  - filter: cors
    jumpIf: { preflighted: END, rejected: END }
  - filter: backend
    jumpIf: { mocked: corsResponse }
  - filter: cors
    alias: corsResponse
filters:
  - name: cors
    kind: CORSAdaptor
    allowedOrigins: ["https://*.example.com"]
    allowedMethods: [GET, PUT]
    allowedHeaders: [Content-Type]
    maxAge: 600
    supportCORSRequest: true
  - name: backend
    kind: Mock
    rules: [{ body: "items\n" }]
`
	var ps pipeline.Spec
	if err := yaml.Unmarshal([]byte(spec), &ps); err != nil {
		panic(err)
	}
	ps.Name = "api"
	reg, err := pipeline.NewRegistry(corsadaptor.Kind, mock.Kind)
	if err != nil {
		panic(err)
	}
	p, err := pipeline.New(ps, reg, pipeline.Env{})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	pre := httptest.NewRequest("OPTIONS", "/items", nil)
	pre.Header.Set("Origin", "https://app.example.com")
	pre.Header.Set("Access-Control-Request-Method", "PUT")
	pre.Header.Set("Access-Control-Request-Headers", "content-type")
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, pre)
	h := rec.Header()
	fmt.Println("preflight:", rec.Code, h.Get("Access-Control-Allow-Origin"), h.Get("Access-Control-Allow-Methods"), h.Get("Access-Control-Allow-Headers"), h.Get("Access-Control-Max-Age"))

	get := httptest.NewRequest("GET", "/items", nil)
	get.Header.Set("Origin", "https://app.example.com")
	rec = httptest.NewRecorder()
	p.ServeHTTP(rec, get)
	fmt.Printf("actual: %d %s %q\n", rec.Code, rec.Header().Get("Access-Control-Allow-Origin"), rec.Body)

	pre.Header.Set("Origin", "https://evil.test")
	rec = httptest.NewRecorder()
	p.ServeHTTP(rec, pre)
	fmt.Printf("other origin: %d %q\n", rec.Code, rec.Header().Get("Access-Control-Allow-Origin"))
	// Output:
	// preflight: 204 https://app.example.com PUT content-type 600
	// actual: 200 https://app.example.com "items\n"
	// other origin: 403 ""
}
