package requestadaptor_test

import (
	"fmt"
	"net/http/httptest"

	"github.com/sluicegw/sluice/filters/requestadaptor"
	"github.com/sluicegw/sluice/pipeline"
)

// Rewriting a public API path to a backend's, with the filter built in Go
// and run on one request by hand.
func Example() {
	a, err := requestadaptor.New(&requestadaptor.Spec{
		Host: "users.internal",
		Path: requestadaptor.PathSpec{
			RegexpReplace: requestadaptor.RegexpReplace{Regexp: `^/api/users/([0-9]+)$`, Replace: "/v2/user/$1"},
		},
		Header: requestadaptor.HeaderSpec{
			Del: []string{"Cookie"},
			Set: map[string]string{"X-Gateway": "sluice"},
		},
	})
	if err != nil {
		panic(err)
	}
	req := httptest.NewRequest("GET", "http://example.com/api/users/42?fields=name", nil)
	req.Header.Set("Cookie", "session=secret")

	c := pipeline.NewContext(req)
	a.Handle(c)
	out := c.Request()
	fmt.Println(out.Host, out.URL.RequestURI(), out.Header)
	fmt.Println(req.Host, req.URL.RequestURI(), req.Header) // the original is unchanged
	// Output:
	// users.internal /v2/user/42?fields=name map[X-Gateway:[sluice]]
	// example.com /api/users/42?fields=name map[Cookie:[session=secret]]
}
