package ipfilter_test

import (
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/sluicegw/sluice/filters/ipfilter"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

func BenchmarkHandle(b *testing.B) {
	f, err := filtertest.Build(ipfilter.Kind, spec)
	if err != nil {
		b.Fatal(err)
	}
	req := pipeline.WithRequestInfo(httptest.NewRequest("GET", "/", nil), &pipeline.RequestInfo{ClientIP: netip.MustParseAddr("10.1.2.3")})
	c := pipeline.NewContext(req)
	b.ReportAllocs()
	for b.Loop() {
		if f.Handle(c) != pipeline.Continue {
			b.Fatal("blocked")
		}
	}
}
