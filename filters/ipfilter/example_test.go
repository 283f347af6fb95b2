package ipfilter_test

import (
	"fmt"
	"net/http/httptest"

	"github.com/sluicegw/sluice/filters/ipfilter"
	"github.com/sluicegw/sluice/filters/mock"
	"github.com/sluicegw/sluice/pipeline"
)

// An office network may call the API, except one quarantined subnet.
// Outside a gate the client is the request's peer address; behind a gate
// it is the address the gate resolved from its trusted proxies.
func Example() {
	reg, err := pipeline.NewRegistry(ipfilter.Kind, mock.Kind)
	if err != nil {
		panic(err)
	}
	p, err := pipeline.NewBuilder("api").
		Filter("office", "IPFilter", ipfilter.Spec{
			BlockByDefault: true,
			AllowIPs:       []string{"10.0.0.0/8", "2001:db8::/32"},
			BlockIPs:       []string{"10.66.0.0/16"},
		}).
		JumpIf(ipfilter.Blocked, pipeline.End).
		Filter("backend", "Mock", mock.Spec{Rules: []mock.Rule{{Body: "hello\n"}}}).
		Build(reg, pipeline.Env{})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	for _, peer := range []string{"10.1.2.3:4000", "10.66.0.9:4000", "[2001:db8::1]:4000", "203.0.113.5:4000"} {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = peer
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		fmt.Printf("%s: %d %q\n", peer, rec.Code, rec.Body)
	}
	// Output:
	// 10.1.2.3:4000: 200 "hello\n"
	// 10.66.0.9:4000: 403 "forbidden\n"
	// [2001:db8::1]:4000: 200 "hello\n"
	// 203.0.113.5:4000: 403 "forbidden\n"
}
