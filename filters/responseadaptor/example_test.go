package responseadaptor_test

import (
	"fmt"
	"net/http/httptest"

	"github.com/sluicegw/sluice/filters/mock"
	"github.com/sluicegw/sluice/filters/responseadaptor"
	"github.com/sluicegw/sluice/pipeline"
)

// Hiding a backend's error details: a Mock stands in for the backend, and
// the ResponseAdaptor replaces its body and drops a revealing header.
func Example() {
	reg, err := pipeline.NewRegistry(mock.Kind, responseadaptor.Kind)
	if err != nil {
		panic(err)
	}
	p, err := pipeline.NewBuilder("api").
		Filter("backend", "Mock", mock.Spec{Rules: []mock.Rule{{
			Code:    503,
			Headers: map[string]string{"Server": "legacy/1.2"},
			Body:    "java.lang.NullPointerException at ...",
		}}}).
		JumpIf(mock.Mocked, "hide").
		Filter("hide", "ResponseAdaptor", responseadaptor.Spec{
			Header: responseadaptor.HeaderSpec{Del: []string{"Server"}},
			Body:   "service unavailable\n",
		}).
		Build(reg, pipeline.Env{})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	fmt.Printf("%d %q %q %q\n", rec.Code, rec.Header().Get("Server"), rec.Header().Get("Content-Length"), rec.Body)
	// Output:
	// 503 "" "20" "service unavailable\n"
}
