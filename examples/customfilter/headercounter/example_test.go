package headercounter_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/sluicegw/sluice"
	"github.com/sluicegw/sluice/examples/customfilter/headercounter"
	"github.com/sluicegw/sluice/pipeline"
)

// A gateway with the HeaderCounter kind registered, and a pipeline that
// counts Cookie and Authorization headers. The gateway is not started: its
// router is called directly.
func Example() {
	const config = `
kind: HTTPServer
name: server
rules:
  - paths:
    - backend: counted
---
kind: Pipeline
name: counted
flow:
  - filter: headerCounter
    jumpIf: { invalidHeader: END }
filters:
  - name: headerCounter
    kind: HeaderCounter
    headers: [Cookie, Authorization]
`
	g, err := sluice.New(sluice.WithFilterKinds(headercounter.Kind))
	if err != nil {
		panic(err)
	}
	defer g.Shutdown(context.Background())
	if err := g.ApplyYAML(context.Background(), strings.NewReader(config)); err != nil {
		panic(err)
	}
	h, err := g.Handler("server")
	if err != nil {
		panic(err)
	}

	for _, header := range []string{"Cookie", "Authorization", "Cookie", "X-Other"} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set(header, "x")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(strings.TrimSpace(fmt.Sprintf("%s: %d %s", header, w.Code, w.Body)))
	}

	for _, o := range g.Status().Objects {
		if o.Name == "counted" {
			st := o.Status.(pipeline.Status).Filters["headerCounter"].(headercounter.Status)
			fmt.Println("Cookie:", st.Counts["Cookie"], "Authorization:", st.Counts["Authorization"], "rejected:", st.Rejected)
		}
	}
	// Output:
	// Cookie: 200
	// Authorization: 200
	// Cookie: 200
	// X-Other: 400 missing header: the request needs one of Cookie, Authorization
	// Cookie: 2 Authorization: 1 rejected: 1
}
