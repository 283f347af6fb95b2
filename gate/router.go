package gate

import (
	"net/http"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// router is a compiled rule set. It is built once per generation and only
// read afterwards; match does not allocate.
type router struct {
	rules []rule
	h2c   bool // some route allows the h2c Upgrade
}

type rule struct {
	host   string // lower case
	hostRe *regexp.Regexp
	paths  []route
}

type route struct {
	exact   string
	prefix  string
	re      *regexp.Regexp
	methods methodSet
	backend string
	handler http.Handler
	name    string // "rules[i].paths[j]", for the access log
	maxBody int64  // 0: no limit
	h2c     bool   // allows the h2c Upgrade
	upgrade bool   // allows other Upgrades (WebSocket, ...)
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

func newRouter(spec *Spec, resolve func(string) http.Handler) *router {
	rt := &router{rules: make([]rule, len(spec.Rules))}
	for i, r := range spec.Rules {
		cr := rule{host: strings.ToLower(r.Host)}
		if r.HostRegexp != "" {
			cr.hostRe = regexp.MustCompile(r.HostRegexp) // validated
		}
		for _, p := range r.Paths {
			cp := route{
				exact: p.Path, prefix: p.PathPrefix, methods: newMethodSet(p.Methods), backend: p.Backend,
				name:    "rules[" + strconv.Itoa(i) + "].paths[" + strconv.Itoa(len(cr.paths)) + "]",
				maxBody: maxBody(spec.ClientMaxBodySize, p.ClientMaxBodySize),
				h2c:     r.AllowH2CUpgrade || p.AllowH2CUpgrade,
				upgrade: r.AllowUpgrade || p.AllowUpgrade,
			}
			rt.h2c = rt.h2c || cp.h2c
			if p.PathRegexp != "" {
				cp.re = regexp.MustCompile(p.PathRegexp)
			}
			if resolve != nil {
				cp.handler = resolve(p.Backend)
			}
			cr.paths = append(cr.paths, cp)
		}
		rt.rules[i] = cr
	}
	return rt
}

func (r *rule) matchHost(host string) bool {
	switch {
	case r.host != "":
		return strings.EqualFold(r.host, host)
	case r.hostRe != nil:
		return r.hostRe.MatchString(host)
	}
	return true
}

func (p *route) matchPath(path string) bool {
	switch {
	case p.exact != "":
		return path == p.exact
	case p.prefix != "":
		return strings.HasPrefix(path, p.prefix)
	case p.re != nil:
		return p.re.MatchString(path)
	}
	return true
}

// match returns the route for a request, or the status to answer: 404 when
// no path matches, 405 when a path matches but not its methods.
func (rt *router) match(host, path, method string) (*route, int) {
	status := http.StatusNotFound
	for i := range rt.rules {
		r := &rt.rules[i]
		if !r.matchHost(host) {
			continue
		}
		for j := range r.paths {
			p := &r.paths[j]
			if !p.matchPath(path) {
				continue
			}
			if !p.methods.allows(method) {
				status = http.StatusMethodNotAllowed
				continue
			}
			return p, 0
		}
	}
	return nil, status
}

// allowed returns the methods the paths matching host and path allow, for
// the Allow header of a 405.
func (rt *router) allowed(host, path string) string {
	var mask uint16
	var other []string
	for i := range rt.rules {
		r := &rt.rules[i]
		if !r.matchHost(host) {
			continue
		}
		for j := range r.paths {
			if p := &r.paths[j]; p.matchPath(path) {
				mask |= p.methods.mask
				other = append(other, p.methods.other...)
			}
		}
	}
	if mask&getBit != 0 {
		mask |= headBit
	}
	var out []string
	for i, m := range standardMethods {
		if mask&(1<<i) != 0 {
			out = append(out, m)
		}
	}
	return strings.Join(append(out, other...), ", ")
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
