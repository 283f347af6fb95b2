package mock_test

import (
	"fmt"
	"net/http/httptest"

	"github.com/sluicegw/sluice/filters/mock"
	"github.com/sluicegw/sluice/pipeline"
)

// A pipeline that stubs one endpoint of a backend that is not written yet.
// The spec is a Go value; in YAML it would be the same fields.
func Example() {
	reg, err := pipeline.NewRegistry(mock.Kind)
	if err != nil {
		panic(err)
	}
	p, err := pipeline.NewBuilder("api").
		Filter("stub", "Mock", mock.Spec{Rules: []mock.Rule{
			{
				Match:   mock.Match{Path: "/users/1"},
				Headers: map[string]string{"Content-Type": "application/json"},
				Body:    `{"id": 1, "name": "alice"}`,
			},
			{Code: 404, Body: "no such user\n"},
		}}).
		Build(reg, pipeline.Env{})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	for _, path := range []string{"/users/1", "/users/2"} {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		fmt.Printf("%s: %d %q %q\n", path, rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	// Output:
	// /users/1: 200 "application/json" "{\"id\": 1, \"name\": \"alice\"}"
	// /users/2: 404 "" "no such user\n"
}
