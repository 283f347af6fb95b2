// Package ipfilter is the IPFilter filter: it lets a request through or
// answers 403 by the address of its client.
//
// # Model
//
// The client address is the one the gate worked out (pipeline.ClientIP):
// the peer's address, or, when the peer is one of the gate's
// trustedProxies, the rightmost untrusted address of its X-Forwarded-For
// (or X-Real-IP, Forwarded). An X-Forwarded-For sent by an untrusted peer
// is never believed, so a client cannot talk its way past the filter. A
// request that did not come through a gate is judged by its RemoteAddr.
//
// allowIPs and blockIPs list addresses and CIDR prefixes, IPv4 or IPv6
// (IPv4-mapped IPv6 addresses count as IPv4). The most specific entry that
// contains the client's address decides: blockIPs [10.1.0.0/16] carves a
// hole in allowIPs [10.0.0.0/8], and allowIPs [10.1.2.3] lets one address
// of a blocked range in. An address neither list covers passes, unless
// blockByDefault. (Easegress lets an allowIPs entry win over any blockIPs
// entry; the two agree whenever the lists do not overlap.) The same
// prefix in both lists is a spec error.
//
//	request → allowed → "" (continue)
//	        → blocked → 403 "forbidden", "blocked"
//
// Matching is a binary search over precomputed ranges (internal/ipset):
// no allocation, no lock. Handle is safe for concurrent use.
package ipfilter

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/sluicegw/sluice/internal/ipset"
	"github.com/sluicegw/sluice/pipeline"
)

// Blocked is the result of a request from a client the filter refuses.
const Blocked pipeline.Result = "blocked"

// Kind is the IPFilter filter kind.
var Kind = pipeline.Define[Spec]("IPFilter", []pipeline.Result{Blocked}, build).
	WithDescription("answers 403 to clients whose address the allow and block lists refuse")

func build(_ pipeline.Env, s *Spec) (pipeline.Filter, error) {
	f, err := New(s)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// Spec is the IPFilter filter's configuration, as in Easegress.
//
//	kind: IPFilter
//	name: office-only
//	blockByDefault: true
//	allowIPs: [10.0.0.0/8, 2001:db8::/32, 192.168.1.7]
//	blockIPs: [10.66.0.0/16]
type Spec struct {
	// BlockByDefault refuses clients that neither list covers, and
	// clients whose address is unknown. Default false: they pass.
	BlockByDefault bool `yaml:"blockByDefault,omitempty"`
	// AllowIPs lists addresses and CIDR prefixes whose clients pass,
	// unless a more specific blockIPs entry covers them.
	AllowIPs []string `yaml:"allowIPs,omitempty"`
	// BlockIPs lists addresses and CIDR prefixes whose clients are
	// refused, unless a more specific allowIPs entry covers them.
	BlockIPs []string `yaml:"blockIPs,omitempty"`
}

// Validate checks the spec: every entry parses, and no prefix is in both
// lists.
func (s *Spec) Validate() error {
	_, err := compile(s)
	return err
}

func compile(s *Spec) (*ipset.Filter, error) {
	if len(s.AllowIPs) == 0 && len(s.BlockIPs) == 0 && !s.BlockByDefault {
		return nil, pipeline.FieldErr("allowIPs", errors.New("set allowIPs, blockIPs or blockByDefault: this filter lets every request through"))
	}
	f, err := ipset.NewFilter(s.AllowIPs, s.BlockIPs, s.BlockByDefault)
	var le *ipset.ListError
	if errors.As(err, &le) {
		return nil, pipeline.FieldErr(le.List+"["+strconv.Itoa(le.Index)+"]", le.Err)
	}
	return f, err
}

// IPFilter is a built IPFilter filter.
type IPFilter struct {
	f *ipset.Filter
}

// New builds an IPFilter from s, which it checks as Spec.Validate does.
func New(s *Spec) (*IPFilter, error) {
	f, err := compile(s)
	if err != nil {
		return nil, err
	}
	return &IPFilter{f: f}, nil
}

var forbidden = []byte("forbidden\n")

// Handle lets the request through when its client may pass, and answers
// 403 otherwise.
func (f *IPFilter) Handle(c *pipeline.Context) pipeline.Result {
	req := c.Request()
	if req == nil {
		return pipeline.Continue
	}
	if f.f.Allowed(pipeline.ClientIP(req)) {
		return pipeline.Continue
	}
	c.SetResponse(pipeline.NewResponse(req, http.StatusForbidden, "text/plain; charset=utf-8", forbidden))
	return Blocked
}

// Allowed reports whether the client of r may pass.
func (f *IPFilter) Allowed(r *http.Request) bool { return f.f.Allowed(pipeline.ClientIP(r)) }

var _ pipeline.Filter = (*IPFilter)(nil)
