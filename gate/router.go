package gate

import (
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/sluicegw/sluice/pipeline"
)

// router is a compiled rule set. It is built once per generation and only
// read afterwards; a lookup of a static or parameter route does not
// allocate.
type router struct {
	rules []rule
	h2c   bool // some route allows the h2c Upgrade
}

// rule is a compiled Rule. Exact paths, patterns and prefixes are in
// tree, regexps and paths without a path condition in regexps and any,
// each list in declaration order. With routerKind Ordered, ordered holds
// every path in declaration order too, and the tree has no parameters.
type rule struct {
	hosts   []hostMatch // none: any host
	ordered []*route    // nil with RadixTree
	tree    *node
	regexps []*route
	any     []*route
}

// methodSet is a bitmask of the standard methods plus a list of others.
type methodSet struct {
	mask  uint16 // 0 with no others means any method
	other []string
}

var standardMethods = [...]string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
	http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace,
}

func methodBit(m string) uint16 {
	for i, s := range standardMethods {
		if s == m {
			return 1 << i
		}
	}
	return 0
}

func newMethodSet(methods []string) methodSet {
	var ms methodSet
	for _, m := range methods {
		m = strings.ToUpper(m)
		if b := methodBit(m); b != 0 {
			ms.mask |= b
		} else {
			ms.other = append(ms.other, m)
		}
	}
	return ms
}

// headGet are the bits of HEAD and GET: a path that allows GET allows
// HEAD (RFC 9110 §9.3.2).
var headBit, getBit = methodBit(http.MethodHead), methodBit(http.MethodGet)

// add adds o's methods to ms.
func (ms *methodSet) add(o methodSet) {
	ms.mask |= o.mask
	for _, m := range o.other {
		if !contains(ms.other, m) {
			ms.other = append(ms.other, m)
		}
	}
}

func (ms methodSet) allows(m string) bool {
	if ms.mask == 0 && len(ms.other) == 0 {
		return true
	}
	if b := methodBit(m); b != 0 {
		return ms.mask&b != 0 || (b == headBit && ms.mask&getBit != 0)
	}
	for _, o := range ms.other {
		if o == m {
			return true
		}
	}
	return false
}

// newRouter compiles a validated spec's rules; resolve (nil in
// validation) finds each path's backend pipeline.
func newRouter(spec *Spec, resolve func(string) http.Handler) *router {
	rt, err := compileRouter(spec, resolve)
	if err != nil {
		panic("gate: rules of a validated spec: " + err.Error())
	}
	return rt
}

// compileRouter compiles spec's rules; errors name the field.
func compileRouter(spec *Spec, resolve func(string) http.Handler) (*router, error) {
	kind := spec.RouterKind
	switch kind {
	case "", RouterOrdered:
		kind = RouterOrdered
	case RouterRadixTree:
	default:
		return nil, pipeline.FieldErr("routerKind", fmt.Errorf("%q: want %s or %s", kind, RouterOrdered, RouterRadixTree))
	}
	rt := &router{rules: make([]rule, len(spec.Rules))}
	for i := range spec.Rules {
		r := &spec.Rules[i]
		rf := "rules[" + strconv.Itoa(i) + "]"
		cr := &rt.rules[i]
		if r.Host != "" {
			h, err := compileHost(r.Host, false)
			if err != nil {
				return nil, pipeline.FieldErr(rf+".host", err)
			}
			cr.hosts = append(cr.hosts, h)
		}
		if r.HostRegexp != "" {
			h, err := compileHost(r.HostRegexp, true)
			if err != nil {
				return nil, pipeline.FieldErr(rf+".hostRegexp", err)
			}
			cr.hosts = append(cr.hosts, h)
		}
		for j, hv := range r.Hosts {
			h, err := compileHost(hv.Value, hv.IsRegexp)
			if err != nil {
				return nil, pipeline.FieldErr(rf+".hosts["+strconv.Itoa(j)+"].value", err)
			}
			cr.hosts = append(cr.hosts, h)
		}
		cr.tree = &node{}
		for j := range r.Paths {
			p := &r.Paths[j]
			cp, toks, catchAll, err := compileRoute(kind, r, p, rf+".paths["+strconv.Itoa(j)+"]")
			if err != nil {
				return nil, err
			}
			cp.maxBody = maxBody(spec.ClientMaxBodySize, p.ClientMaxBodySize)
			rt.h2c = rt.h2c || cp.h2c
			if resolve != nil {
				cp.handler = resolve(p.Backend)
			}
			cp.index = j
			cp.rule = i
			if kind == RouterOrdered {
				cr.ordered = append(cr.ordered, cp)
			}
			switch cp.kind {
			case pathExact, pathPattern:
				cr.tree.insert(cp, toks, catchAll)
			case pathPrefix:
				n := cr.tree.insertStatic(cp.prefix)
				n.prefixes = append(n.prefixes, cp)
			case pathRegexp:
				cr.regexps = append(cr.regexps, cp)
			default:
				cr.any = append(cr.any, cp)
			}
		}
	}
	return rt, nil
}

func (r *rule) matchHost(host string) bool {
	if len(r.hosts) == 0 {
		return true
	}
	for i := range r.hosts {
		if r.hosts[i].match(host) {
			return true
		}
	}
	return false
}

// paths finds the route of r that matches the request, per the rule's
// router kind.
func (s *search) paths(r *rule) *route {
	path := s.q.path
	if r.ordered != nil {
		return s.inOrder(r)
	}
	if p := s.find(r.tree, path); p != nil {
		return p
	}
	if p := s.findPrefix(r.tree, path); p != nil {
		return p
	}
	for _, p := range r.regexps {
		if p.re.MatchString(path) && s.accept(p) {
			return p
		}
	}
	for _, p := range r.any {
		if s.accept(p) {
			return p
		}
	}
	return nil
}

// lookup returns the route for a request and the path parameters its
// pattern captured, appended to params; or, with a nil route, the status
// to answer: 404 when no path matches, 405 when a path matches in all but
// the method.
func (rt *router) lookup(q *matchInput, params []pipeline.Param) (*route, []pipeline.Param, int) {
	s := search{q: *q, params: params, base: len(params), status: http.StatusNotFound}
	for i := range rt.rules {
		r := &rt.rules[i]
		if !r.matchHost(q.host) {
			continue
		}
		if p := s.paths(r); p != nil {
			return p, s.params, 0
		}
	}
	return nil, params, s.status
}

// match is lookup for a request with no headers and no query.
func (rt *router) match(host, path, method string) (*route, int) {
	p, _, status := rt.lookup(&matchInput{host: host, path: path, method: method}, nil)
	return p, status
}

// input returns what routing reads of r, whose host (without port) and
// normalised path are given.
func input(r *http.Request, host, path string) matchInput {
	return matchInput{host: host, path: path, method: r.Method, header: r.Header, rawQuery: r.URL.RawQuery}
}

// allowed returns the methods of the paths that match the request in all
// but the method, for the Allow header of a 405.
func (rt *router) allowed(q *matchInput) string {
	var methods methodSet
	s := search{q: *q, collect: &methods}
	for i := range rt.rules {
		if r := &rt.rules[i]; r.matchHost(q.host) {
			s.paths(r)
		}
	}
	mask := methods.mask
	if mask&getBit != 0 {
		mask |= headBit
	}
	var out []string
	for i, m := range standardMethods {
		if mask&(1<<i) != 0 {
			out = append(out, m)
		}
	}
	return strings.Join(append(out, methods.other...), ", ")
}

// rewriteRequest returns r with its path rewritten by p's rewriteTarget, or r
// when p does not rewrite.
func (p *route) rewriteRequest(r *http.Request, path string, params []pipeline.Param) *http.Request {
	np := p.rewritePath(path, params)
	if np == "" {
		return r
	}
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path, u.RawPath = np, ""
	r2.URL = &u
	return r2
}

// cleanPath returns the request with its path normalised before routing:
// dot segments resolved and repeated slashes folded, so that the path the
// rules match is the path the backend gets. It reports false for a path
// that cannot be routed safely: a backslash or an encoded slash (servers
// disagree on what they mean), or one that does not start with a slash.
func cleanPath(r *http.Request) (*http.Request, bool) {
	p := r.URL.Path
	if raw := r.URL.RawPath; raw != "" && (containsFold(raw, "%2f") || containsFold(raw, "%5c")) {
		return r, false
	}
	if strings.ContainsRune(p, '\\') {
		return r, false
	}
	if p == "" {
		p = "/"
	}
	if p[0] != '/' {
		return r, r.Method == http.MethodOptions && p == "*"
	}
	if !needsClean(p) {
		return r, true
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path, u.RawPath = c, ""
	r2.URL = &u
	return r2, true
}

// needsClean reports whether p has a dot segment or a repeated slash.
func needsClean(p string) bool {
	return strings.Contains(p, "//") || strings.Contains(p, "/./") || strings.Contains(p, "/../") ||
		strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..")
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), sub)
}

// stripPort returns host without a port, handling IPv6 literals.
func stripPort(host string) string {
	if host == "" {
		return host
	}
	if host[0] == '[' {
		if i := strings.IndexByte(host, ']'); i > 0 {
			return host[1:i]
		}
		return host
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host, ':') == i {
		return host[:i]
	}
	return host
}
