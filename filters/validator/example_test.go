package validator_test

import (
	"fmt"
	"net/http/httptest"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/filters/validator"
	"github.com/sluicegw/sluice/pipeline"
)

// A pipeline, configured in YAML as in Easegress, that lets through only
// JSON requests that name an API version.
func Example() {
	const spec = `
flow:
  - filter: validator
    jumpIf: { invalid: END }
filters:
  - name: validator
    kind: Validator
    headers:
      Content-Type:
        values: [application/json]
      X-Api-Version:
        regexp: '^v[0-9]+$'
`
	var ps pipeline.Spec
	if err := yaml.Unmarshal([]byte(spec), &ps); err != nil {
		panic(err)
	}
	ps.Name = "api"
	reg, err := pipeline.NewRegistry(validator.Kind)
	if err != nil {
		panic(err)
	}
	p, err := pipeline.New(ps, reg, pipeline.Env{})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	for _, version := range []string{"v2", "latest", ""} {
		req := httptest.NewRequest("POST", "/orders", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		if version != "" {
			req.Header.Set("X-Api-Version", version)
		}
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		fmt.Printf("%q: %d %q\n", version, rec.Code, rec.Body)
	}
	// Output:
	// "v2": 200 ""
	// "latest": 400 "invalid header X-Api-Version\n"
	// "": 400 "missing header X-Api-Version\n"
}
