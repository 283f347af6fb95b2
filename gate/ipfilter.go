package gate

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/sluicegw/sluice/internal/ipset"
	"github.com/sluicegw/sluice/pipeline"
)

// IPFilter is an allow and block list of client addresses, at server level
// (Spec.IPFilter) and per rule (Rule.IPFilter), in Easegress's field names:
//
//	ipFilter:
//	  blockByDefault: true
//	  allowIPs: [10.0.0.0/8, 2001:db8::/32]
//	  blockIPs: [10.66.0.0/16]
//
// It judges the real client address (see ClientIP): the peer's, or, when
// the peer is one of trustedProxies, the one its forwarding headers give.
// An X-Forwarded-For sent by an untrusted peer is never believed. The most
// specific entry of the two lists that contains the address decides; an
// address neither list covers passes unless blockByDefault (which also
// refuses a client whose address is unknown). The same prefix in both
// lists is a spec error. A refused request is answered 403 before any
// pipeline runs: the server's list before routing, a rule's list once the
// request is routed to one of the rule's paths. Matching is a binary
// search over precomputed ranges: no allocation, no lock.
type IPFilter struct {
	// BlockByDefault refuses clients that neither list covers. Default
	// false: they pass.
	BlockByDefault bool `yaml:"blockByDefault,omitempty"`
	// AllowIPs lists addresses and CIDR prefixes (IPv4 or IPv6) whose
	// clients pass, unless a more specific blockIPs entry covers them.
	AllowIPs []string `yaml:"allowIPs,omitempty"`
	// BlockIPs lists addresses and CIDR prefixes whose clients are
	// refused, unless a more specific allowIPs entry covers them.
	BlockIPs []string `yaml:"blockIPs,omitempty"`
}

// compile builds f's matcher; nil when f lets everyone through. Errors
// name the field under field ("ipFilter", "rules[0].ipFilter").
func (f *IPFilter) compile(field string) (*ipset.Filter, error) {
	if f == nil || (len(f.AllowIPs) == 0 && len(f.BlockIPs) == 0 && !f.BlockByDefault) {
		return nil, nil
	}
	m, err := ipset.NewFilter(f.AllowIPs, f.BlockIPs, f.BlockByDefault)
	var le *ipset.ListError
	if errors.As(err, &le) {
		return nil, pipeline.FieldErr(field+"."+le.List+"["+strconv.Itoa(le.Index)+"]", le.Err)
	}
	if err != nil {
		return nil, pipeline.FieldErr(field, err)
	}
	return m, nil
}

// ipFilters are a server's compiled ipFilters: the server's own and one
// per rule (nil entries let everyone through).
type ipFilters struct {
	server *ipset.Filter
	rules  []*ipset.Filter
	any    bool // some filter is set
}

// compileIPFilters compiles the ipFilters of spec; errors name the field.
func compileIPFilters(spec *Spec) (ipFilters, error) {
	var fs ipFilters
	var err error
	if fs.server, err = spec.IPFilter.compile("ipFilter"); err != nil {
		return ipFilters{}, err
	}
	fs.any = fs.server != nil
	for i := range spec.Rules {
		m, err := spec.Rules[i].IPFilter.compile("rules[" + strconv.Itoa(i) + "].ipFilter")
		if err != nil {
			return ipFilters{}, err
		}
		if m == nil {
			continue
		}
		if fs.rules == nil {
			fs.rules = make([]*ipset.Filter, len(spec.Rules))
		}
		fs.rules[i] = m
		fs.any = true
	}
	return fs, nil
}

// allowServer reports whether the server's ipFilter lets r's client in.
func (fs *ipFilters) allowServer(r *http.Request) bool {
	return fs.server == nil || fs.server.Allowed(pipeline.ClientIP(r))
}

// allowRule reports whether the ipFilter of rule lets r's client in.
func (fs *ipFilters) allowRule(rule int, r *http.Request) bool {
	if rule >= len(fs.rules) || fs.rules[rule] == nil {
		return true
	}
	return fs.rules[rule].Allowed(pipeline.ClientIP(r))
}
