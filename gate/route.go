package gate

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/sluicegw/sluice/pipeline"
)

// Router kinds, the values of Spec.RouterKind.
const (
	RouterOrdered   = "Ordered"
	RouterRadixTree = "RadixTree"
)

// pathKind says which of a path's fields matches the request path.
type pathKind uint8

const (
	pathAny     pathKind = iota // no path condition
	pathExact                   // path (Ordered, or RadixTree without "{" or "*")
	pathPattern                 // path with parameters or a catch-all (RadixTree)
	pathPrefix                  // pathPrefix
	pathRegexp                  // pathRegexp
)

// route is a compiled Path.
type route struct {
	kind       pathKind
	index      int // in its rule's paths
	rule       int // the index of its rule
	exact      string
	prefix     string
	re         *regexp.Regexp
	paramNames []string // pathPattern: the names of the captured values, "*" last for a catch-all

	methods             methodSet
	headers, queries    []valueMatch
	allHeader, allQuery bool

	rewrite      string        // RewriteTarget; "" leaves the path alone
	rewriteParts []rewritePart // pathPattern: rewrite split at its {name} references

	backend string
	handler http.Handler
	name    string // "rules[i].paths[j]", for the access log
	maxBody int64  // 0: no limit
	h2c     bool   // allows the h2c Upgrade
	upgrade bool   // allows other Upgrades (WebSocket, ...)
}

// matchInput is what routing reads of a request.
type matchInput struct {
	host, path, method string
	header             http.Header
	rawQuery           string
}

func (p *route) matchPath(path string) bool {
	switch p.kind {
	case pathExact:
		return path == p.exact
	case pathPrefix:
		return strings.HasPrefix(path, p.prefix)
	case pathRegexp:
		return p.re.MatchString(path)
	}
	return true
}

// matchConditions reports whether the request's headers and query match
// the path's conditions.
func (p *route) matchConditions(q *matchInput) bool {
	if len(p.headers) > 0 && !matchAll(p.headers, p.allHeader, q, true) {
		return false
	}
	if len(p.queries) > 0 && !matchAll(p.queries, p.allQuery, q, false) {
		return false
	}
	return true
}

// valueMatch is a compiled ValueMatch.
type valueMatch struct {
	key    string // canonical header key, or query parameter name
	values []string
	re     *regexp.Regexp
}

func matchAll(ms []valueMatch, all bool, q *matchInput, header bool) bool {
	for i := range ms {
		m := &ms[i]
		var v string
		if header {
			v = headerValue(q, m.key)
		} else {
			v = queryValue(q, m.key)
		}
		if all {
			if (len(m.values) > 0 && !contains(m.values, v)) || (m.re != nil && !m.re.MatchString(v)) {
				return false
			}
		} else if contains(m.values, v) || (m.re != nil && m.re.MatchString(v)) {
			return true
		}
	}
	return all
}

func contains(vs []string, v string) bool {
	for _, s := range vs {
		if s == v {
			return true
		}
	}
	return false
}

// headerValue returns the first value of the header key (canonical).
func headerValue(q *matchInput, key string) string {
	if vs := q.header[key]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// queryValue returns the first value of the query parameter key, as
// url.Values.Get of url.ParseQuery would, without building the map: pairs
// with a semicolon or a bad escape are skipped.
func queryValue(q *matchInput, key string) string {
	raw := q.rawQuery
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || strings.IndexByte(pair, ';') >= 0 {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, err := url.QueryUnescape(k)
		if err != nil || k != key {
			continue
		}
		if v, err = url.QueryUnescape(v); err == nil {
			return v
		}
	}
	return ""
}

// hostMatch is a compiled host condition.
type hostMatch struct {
	exact          string // lower case
	prefix, suffix string // lower case; wildcard when wild
	wild           bool
	re             *regexp.Regexp
}

func (h *hostMatch) match(host string) bool {
	switch {
	case h.re != nil:
		return h.re.MatchString(host)
	case h.wild:
		return len(host) >= len(h.prefix)+len(h.suffix) &&
			strings.EqualFold(host[:len(h.prefix)], h.prefix) &&
			strings.EqualFold(host[len(host)-len(h.suffix):], h.suffix)
	}
	return strings.EqualFold(host, h.exact)
}

func compileHost(v string, isRegexp bool) (hostMatch, error) {
	if isRegexp {
		re, err := regexp.Compile(v)
		return hostMatch{re: re}, err
	}
	if v == "" {
		return hostMatch{}, errors.New("empty host")
	}
	v = strings.ToLower(v)
	switch i := strings.IndexByte(v, '*'); {
	case i < 0:
		return hostMatch{exact: v}, nil
	case strings.Count(v, "*") > 1 || (i != 0 && i != len(v)-1):
		return hostMatch{}, fmt.Errorf("%q: a wildcard host has one * at its start or end", v)
	case i == 0:
		return hostMatch{suffix: v[1:], wild: true}, nil
	default:
		return hostMatch{prefix: v[:i], wild: true}, nil
	}
}

// patternToken is a piece of a RadixTree pattern: static bytes or a
// parameter.
type patternToken struct {
	static string
	param  bool
	name   string
	re     string // "" for a plain parameter
}

// parsePattern splits a RadixTree path into tokens; a final "*" is a
// catch-all.
func parsePattern(p string) (toks []patternToken, catchAll bool, err error) {
	start := 0
	flush := func(end int) {
		if end > start {
			toks = append(toks, patternToken{static: p[start:end]})
		}
	}
	seen := map[string]bool{}
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '*':
			if i != len(p)-1 {
				return nil, false, errors.New("* must be the last character of a pattern")
			}
			flush(i)
			return toks, true, nil
		case '}':
			return nil, false, fmt.Errorf("unbalanced } at byte %d", i)
		case '{':
			if i == 0 || p[i-1] != '/' {
				return nil, false, errors.New("a parameter must be a whole path segment")
			}
			depth, end := 0, -1
			for j := i; j < len(p) && end < 0; j++ {
				switch p[j] {
				case '{':
					depth++
				case '}':
					if depth--; depth == 0 {
						end = j
					}
				}
			}
			if end < 0 {
				return nil, false, fmt.Errorf("unclosed { at byte %d", i)
			}
			if end+1 < len(p) && p[end+1] != '/' {
				return nil, false, errors.New("a parameter must be a whole path segment")
			}
			name, re, _ := strings.Cut(p[i+1:end], ":")
			if !isParamName(name) {
				return nil, false, fmt.Errorf("parameter name %q: want letters, digits, _ or -", name)
			}
			if seen[name] {
				return nil, false, fmt.Errorf("parameter %q appears twice", name)
			}
			seen[name] = true
			if strings.Contains(p[i+1:end], ":") && re == "" {
				return nil, false, fmt.Errorf("parameter %q: empty regexp", name)
			}
			if re != "" {
				if _, err := regexp.Compile(anchored(re)); err != nil {
					return nil, false, fmt.Errorf("parameter %q: %w", name, err)
				}
			}
			flush(i)
			toks = append(toks, patternToken{param: true, name: name, re: re})
			start = end + 1
			i = end
		}
	}
	flush(len(p))
	return toks, false, nil
}

func isPattern(p string) bool { return strings.ContainsAny(p, "{}*") }

func isParamName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// anchored makes a parameter's regexp match a whole segment.
func anchored(re string) string { return "^(?:" + re + ")$" }

// rewritePart is a piece of a pattern route's rewrite target: literal
// text, or the value of parameter param (param >= 0).
type rewritePart struct {
	text  string
	param int
}

// parseRewrite splits target at its {name} references to the pattern's
// parameters ({*} and {EG_WILDCARD} name the catch-all).
func parseRewrite(target string, names []string) ([]rewritePart, error) {
	var parts []rewritePart
	for target != "" {
		i := strings.IndexAny(target, "{}*")
		if i < 0 {
			parts = append(parts, rewritePart{text: target, param: -1})
			break
		}
		if target[i] != '{' {
			return nil, fmt.Errorf("unexpected %q: name parameters as {name}, the catch-all as {*}", target[i])
		}
		if i > 0 {
			parts = append(parts, rewritePart{text: target[:i], param: -1})
		}
		end := strings.IndexByte(target[i:], '}')
		if end < 0 {
			return nil, errors.New("unclosed {")
		}
		name := target[i+1 : i+end]
		if name == "EG_WILDCARD" {
			name = "*"
		}
		k := -1
		for j, n := range names {
			if n == name {
				k = j
			}
		}
		if k < 0 {
			return nil, fmt.Errorf("{%s} is not a parameter of the path", name)
		}
		parts = append(parts, rewritePart{param: k})
		target = target[i+end+1:]
	}
	return parts, nil
}

// rewritePath returns the path a matched request is rewritten to, or ""
// when p does not rewrite.
func (p *route) rewritePath(reqPath string, params []pipeline.Param) string {
	if p.rewrite == "" {
		return ""
	}
	var out string
	switch p.kind {
	case pathPrefix:
		out = p.rewrite + reqPath[len(p.prefix):]
	case pathRegexp:
		out = p.re.ReplaceAllString(reqPath, p.rewrite)
	case pathPattern:
		var b strings.Builder
		for _, part := range p.rewriteParts {
			if part.param >= 0 {
				b.WriteString(params[part.param].Value)
			} else {
				b.WriteString(part.text)
			}
		}
		out = b.String()
	default:
		out = p.rewrite
	}
	if out == "" || out[0] != '/' {
		out = "/" + out
	}
	if needsClean(out) {
		c := path.Clean(out)
		if strings.HasSuffix(out, "/") && c != "/" {
			c += "/"
		}
		out = c
	}
	return out
}

// compileRoute compiles rules[i].paths[j]; errors name the field.
func compileRoute(kind string, r *Rule, p *Path, pf string) (*route, []patternToken, bool, error) {
	cp := &route{
		methods:   newMethodSet(p.Methods),
		allHeader: p.MatchAllHeader, allQuery: p.MatchAllQuery,
		rewrite: p.RewriteTarget, backend: p.Backend, name: pf,
		h2c: r.AllowH2CUpgrade || p.AllowH2CUpgrade, upgrade: r.AllowUpgrade || p.AllowUpgrade,
	}
	n := 0
	for _, v := range []string{p.Path, p.PathPrefix, p.PathRegexp} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		return nil, nil, false, pipeline.FieldErr(pf, errors.New("set at most one of path, pathPrefix and pathRegexp"))
	}
	var toks []patternToken
	var catchAll bool
	switch {
	case p.Path != "":
		if !strings.HasPrefix(p.Path, "/") {
			return nil, nil, false, pipeline.FieldErr(pf+".path", errors.New("must start with /"))
		}
		cp.kind, cp.exact = pathExact, p.Path
		if kind == RouterRadixTree {
			var err error
			if toks, catchAll, err = parsePattern(p.Path); err != nil {
				return nil, nil, false, pipeline.FieldErr(pf+".path", err)
			}
			for _, t := range toks {
				if t.param {
					cp.paramNames = append(cp.paramNames, t.name)
				}
			}
			if catchAll {
				cp.paramNames = append(cp.paramNames, "*")
			}
			if isPattern(p.Path) {
				cp.kind = pathPattern
			}
		}
	case p.PathPrefix != "":
		if !strings.HasPrefix(p.PathPrefix, "/") {
			return nil, nil, false, pipeline.FieldErr(pf+".pathPrefix", errors.New("must start with /"))
		}
		cp.kind, cp.prefix = pathPrefix, p.PathPrefix
	case p.PathRegexp != "":
		re, err := regexp.Compile(p.PathRegexp)
		if err != nil {
			return nil, nil, false, pipeline.FieldErr(pf+".pathRegexp", err)
		}
		cp.kind, cp.re = pathRegexp, re
	}
	if p.RewriteTarget != "" {
		switch cp.kind {
		case pathAny:
			return nil, nil, false, pipeline.FieldErr(pf+".rewriteTarget", errors.New("needs one of path, pathPrefix and pathRegexp"))
		case pathPattern:
			parts, err := parseRewrite(p.RewriteTarget, cp.paramNames)
			if err != nil {
				return nil, nil, false, pipeline.FieldErr(pf+".rewriteTarget", err)
			}
			cp.rewriteParts = parts
		case pathExact, pathPrefix:
			if cp.kind == pathExact && kind == RouterRadixTree {
				// A pattern without parameters: no {name} to refer to.
				if _, err := parseRewrite(p.RewriteTarget, nil); err != nil {
					return nil, nil, false, pipeline.FieldErr(pf+".rewriteTarget", err)
				}
			}
			if !strings.HasPrefix(p.RewriteTarget, "/") {
				return nil, nil, false, pipeline.FieldErr(pf+".rewriteTarget", errors.New("must start with /"))
			}
		}
	}
	for k, m := range p.Methods {
		if !isToken(m) {
			return nil, nil, false, pipeline.FieldErr(pf+".methods["+strconv.Itoa(k)+"]", fmt.Errorf("%q is not an HTTP method", m))
		}
	}
	var err error
	if cp.headers, err = compileMatches(p.Headers, pf+".headers", true); err != nil {
		return nil, nil, false, err
	}
	if cp.queries, err = compileMatches(p.Queries, pf+".queries", false); err != nil {
		return nil, nil, false, err
	}
	if p.ClientMaxBodySize < -1 {
		return nil, nil, false, pipeline.FieldErr(pf+".clientMaxBodySize", errors.New("must be -1 (no limit), 0 (the server's) or a size in bytes"))
	}
	if p.Backend == "" {
		return nil, nil, false, pipeline.FieldErr(pf+".backend", errors.New("a path needs a backend pipeline"))
	}
	return cp, toks, catchAll, nil
}

func compileMatches(ms []ValueMatch, field string, header bool) ([]valueMatch, error) {
	out := make([]valueMatch, 0, len(ms))
	for i, m := range ms {
		f := field + "[" + strconv.Itoa(i) + "]"
		key := m.Key
		if header {
			if !isToken(key) {
				return nil, pipeline.FieldErr(f+".key", fmt.Errorf("%q is not a header name", key))
			}
			key = textproto.CanonicalMIMEHeaderKey(key)
		} else if key == "" {
			return nil, pipeline.FieldErr(f+".key", errors.New("empty query parameter name"))
		}
		if len(m.Values) == 0 && m.Regexp == "" {
			return nil, pipeline.FieldErr(f, errors.New("set values, regexp or both"))
		}
		vm := valueMatch{key: key, values: m.Values}
		if m.Regexp != "" {
			re, err := regexp.Compile(m.Regexp)
			if err != nil {
				return nil, pipeline.FieldErr(f+".regexp", err)
			}
			vm.re = re
		}
		out = append(out, vm)
	}
	return out, nil
}

// validateRules checks routerKind and the rules by compiling them.
func validateRules(kind string, rules []Rule) error {
	_, err := compileRouter(&Spec{RouterKind: kind, Rules: rules}, nil)
	return err
}
