// Package mock is the Mock filter: it answers requests with canned
// responses, for stubbing a backend that does not exist yet, faking a
// failure, or testing a client against a slow server.
//
// # Model
//
// A Mock holds an ordered list of rules. For each request the rules are
// tried in order; the first whose match selects the request wins: its
// response (status code, headers, body) becomes the request's response,
// after its delay if it has one, and the filter returns the result
// "mocked", which usually ends the flow (map it with jumpIf to go on). When
// no rule matches, the filter returns the empty result and the flow goes on
// to the next step, typically a Proxy.
//
//	request → first matching rule → [wait delay] → response, "mocked"
//	        → no rule matches                    → "" (continue)
//
// The spec is Easegress v2's (rules with match, code, headers, body,
// delay); Easegress v1's rule-level path and pathPrefix are accepted too.
// Everything is checked and compiled when the filter is built: paths start
// with "/", regexps compile, codes are 100–599, delays are not negative.
//
// The filter keeps no per-request state; Handle is safe for concurrent use.
package mock

import (
	"cmp"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/sluicegw/sluice/internal/clock"
	"github.com/sluicegw/sluice/pipeline"
)

// Mocked is the result of a request that a rule answered.
const Mocked pipeline.Result = "mocked"

// Kind is the Mock filter kind.
var Kind = pipeline.Define[Spec]("Mock", []pipeline.Result{Mocked}, build).
	WithDescription("answers requests that match a rule with a canned response")

// build is Kind's build function.
func build(env pipeline.Env, s *Spec) (pipeline.Filter, error) {
	m, err := New(env, s)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Mock is a built Mock filter.
type Mock struct {
	clock pipeline.Clock
	rules []rule
}

// rule is a compiled Rule.
type rule struct {
	path       string
	pathPrefix string
	pathRe     *regexp.Regexp
	anyPath    bool
	headers    []headerMatcher // sorted by name, so matching is deterministic
	matchAll   bool
	code       int
	header     http.Header // canonical names; copied into each response
	body       []byte
	delay      time.Duration
}

// headerMatcher is a compiled StringMatcher for one header.
type headerMatcher struct {
	name   string // canonical
	exact  string
	prefix string
	re     *regexp.Regexp
	empty  bool
}

// New builds a Mock from s, which it checks as Spec.Validate does;
// env.Clock times the delays (the real clock if nil). Kind builds filters
// with it after decoding their YAML.
func New(env pipeline.Env, s *Spec) (*Mock, error) {
	rules, err := compile(s)
	if err != nil {
		return nil, err
	}
	c := env.Clock
	if c == nil {
		c = clock.Real()
	}
	return &Mock{clock: c, rules: rules}, nil
}

// Handle answers the request with the first matching rule's response.
func (m *Mock) Handle(c *pipeline.Context) pipeline.Result {
	req := c.Request()
	if req == nil {
		return pipeline.Continue
	}
	for i := range m.rules {
		r := &m.rules[i]
		if !r.matchPath(req.URL.Path) || !r.matchHeaders(req) {
			continue
		}
		// A cancelled request stops the wait; the response is set anyway,
		// so the flow ends as it would have, just sooner.
		clock.Sleep(m.clock, r.delay, req.Context().Done())
		resp := pipeline.NewResponse(req, r.code, "", r.body)
		for k, vv := range r.header {
			resp.Header[k] = slices.Clone(vv)
		}
		c.SetResponse(resp)
		return Mocked
	}
	return pipeline.Continue
}

func (r *rule) matchPath(p string) bool {
	switch {
	case r.anyPath:
		return true
	case r.path != "" && p == r.path:
		return true
	case r.pathPrefix != "" && strings.HasPrefix(p, r.pathPrefix):
		return true
	case r.pathRe != nil:
		return r.pathRe.MatchString(p)
	}
	return false
}

// matchHeaders reports whether one (or, with matchAll, every) header
// condition holds. No conditions match every request.
func (r *rule) matchHeaders(req *http.Request) bool {
	if len(r.headers) == 0 {
		return true
	}
	for i := range r.headers {
		ok := r.headers[i].match(req)
		if ok && !r.matchAll {
			return true
		}
		if !ok && r.matchAll {
			return false
		}
	}
	return r.matchAll
}

func (h *headerMatcher) match(req *http.Request) bool {
	values := req.Header[h.name]
	if h.name == "Host" && req.Host != "" {
		values = []string{req.Host}
	}
	if h.empty {
		for _, v := range values {
			if v != "" {
				return false
			}
		}
		return true
	}
	for _, v := range values {
		switch {
		case h.exact != "" && v == h.exact,
			h.prefix != "" && strings.HasPrefix(v, h.prefix),
			h.re != nil && h.re.MatchString(v):
			return true
		}
	}
	return false
}

func sortMatchers(hs []headerMatcher) {
	slices.SortFunc(hs, func(a, b headerMatcher) int { return cmp.Compare(a.name, b.name) })
}

var _ pipeline.Filter = (*Mock)(nil)
