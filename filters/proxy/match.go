package proxy

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicegw/sluice/pipeline"
)

// Request-matcher policies (filter.policy of a candidate pool).
const (
	// MatchGeneral matches by headers and URLs (the default).
	MatchGeneral = "general"
	// MatchHeaderHash matches permil ‰ of the values of the header
	// headerHashKey, the same values every time.
	MatchHeaderHash = "headerHash"
	// MatchIPHash matches permil ‰ of the client IPs (pipeline.ClientIP),
	// the same IPs every time.
	MatchIPHash = "ipHash"
	// MatchRandom matches permil ‰ of the requests at random.
	MatchRandom = "random"
)

var matchPolicies = []string{MatchGeneral, MatchHeaderHash, MatchIPHash, MatchRandom}

// RequestMatcherSpec is Easegress's request matcher, the filter of a
// candidate pool:
//
//	filter:                       # general: headers, then URLs
//	  headers:
//	    X-Canary: {exact: "yes"}
//	  urls:
//	  - methods: [GET]
//	    url: {prefix: /api/}
//	  matchAllHeaders: false      # one header rule is enough
//	  matchAllURLs: false         # one URL rule is enough
//
//	filter: {policy: ipHash, permil: 100}   # a canary: 10% of client IPs
//
// With policy general, a request matches when its headers match (any one
// rule, or every rule with matchAllHeaders; no rules: any headers) and,
// when urls are given, its method and path match (any one rule, or every
// rule with matchAllURLs). At least one header or URL rule is required
// (Easegress requires headers). A header rule is tested against each of the
// header's values; a missing header is tested as "". With policy random,
// ipHash or headerHash, a request matches with probability permil/1000: at
// random, or by a hash of the client IP or of the header headerHashKey, so
// that the same client or header value always gets the same answer.
type RequestMatcherSpec struct {
	// Policy is general (the default when empty), headerHash, ipHash or
	// random.
	Policy string `yaml:"policy,omitempty"`
	// Headers maps a header name to the rule its values must match; only
	// with policy general.
	Headers map[string]StringMatcherSpec `yaml:"headers,omitempty"`
	// URLs are rules for the method and path; only with policy general.
	URLs []MethodAndURLMatcherSpec `yaml:"urls,omitempty"`
	// MatchAllHeaders requires every header rule to match, not just one.
	MatchAllHeaders bool `yaml:"matchAllHeaders,omitempty"`
	// MatchAllURLs requires every URL rule to match, not just one.
	MatchAllURLs bool `yaml:"matchAllURLs,omitempty"`
	// HeaderHashKey is the header policy headerHash hashes; required with
	// it and not allowed otherwise. A request without it hashes "".
	HeaderHashKey string `yaml:"headerHashKey,omitempty"`
	// Permil is the share of requests, in 0..1000, that policies random,
	// ipHash and headerHash match; 0 matches none. Not allowed with general.
	Permil uint32 `yaml:"permil,omitempty"`
}

// StringMatcherSpec matches a string: exactly, by prefix, by a regular
// expression (RE2 syntax, unanchored), or, with empty, only the empty
// string. A string matches when any of the set rules does; at least one is
// required, and empty excludes the others.
type StringMatcherSpec struct {
	Exact  string `yaml:"exact,omitempty"`
	Prefix string `yaml:"prefix,omitempty"`
	Regex  string `yaml:"regex,omitempty"`
	Empty  bool   `yaml:"empty,omitempty"`
}

// MethodAndURLMatcherSpec matches a request's method and path.
type MethodAndURLMatcherSpec struct {
	// Methods the request may have; empty means any.
	Methods []string `yaml:"methods,omitempty"`
	// URL is the rule for the request's path; required.
	URL *URLMatcherSpec `yaml:"url,omitempty"`
}

// URLMatcherSpec matches a path exactly, by prefix or by a regular
// expression; exactly one is required.
type URLMatcherSpec struct {
	Exact  string `yaml:"exact,omitempty"`
	Prefix string `yaml:"prefix,omitempty"`
	Regex  string `yaml:"regex,omitempty"`
}

func (m *RequestMatcherSpec) validate(field string) error {
	switch m.Policy {
	case "", MatchGeneral:
		if len(m.Headers) == 0 && len(m.URLs) == 0 {
			return pipeline.FieldErr(field+".headers", fmt.Errorf("%w: policy general needs headers or urls", ErrBadValue))
		}
		if m.Permil != 0 {
			return pipeline.FieldErr(field+".permil", fmt.Errorf("%w: not allowed with policy general", ErrBadValue))
		}
	case MatchHeaderHash, MatchIPHash, MatchRandom:
		if len(m.Headers) > 0 || len(m.URLs) > 0 {
			return pipeline.FieldErr(field+".policy", fmt.Errorf("%w: headers and urls are only for policy general", ErrBadValue))
		}
		if m.Permil > 1000 {
			return pipeline.FieldErr(field+".permil", fmt.Errorf("%w: %d is not in 0..1000", ErrBadValue, m.Permil))
		}
	default:
		return pipeline.FieldErr(field+".policy", fmt.Errorf("%w: unknown filter policy %q (want one of %s)", ErrBadValue, m.Policy, strings.Join(matchPolicies, ", ")))
	}
	switch {
	case m.Policy == MatchHeaderHash && !validToken(m.HeaderHashKey):
		return pipeline.FieldErr(field+".headerHashKey", fmt.Errorf("%w: a header name is required with policy %s", ErrBadValue, MatchHeaderHash))
	case m.Policy != MatchHeaderHash && m.HeaderHashKey != "":
		return pipeline.FieldErr(field+".headerHashKey", fmt.Errorf("%w: only allowed with policy %s", ErrBadValue, MatchHeaderHash))
	}
	names := make([]string, 0, len(m.Headers))
	for name := range m.Headers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		f := field + ".headers." + name
		if !validToken(name) {
			return pipeline.FieldErr(f, fmt.Errorf("%w: %q is not a header name", ErrBadValue, name))
		}
		sm := m.Headers[name]
		if err := sm.validate(f); err != nil {
			return err
		}
	}
	for i := range m.URLs {
		if err := m.URLs[i].validate(field + ".urls[" + strconv.Itoa(i) + "]"); err != nil {
			return err
		}
	}
	return nil
}

func (sm *StringMatcherSpec) validate(field string) error {
	switch {
	case sm.Empty && (sm.Exact != "" || sm.Prefix != "" || sm.Regex != ""):
		return pipeline.FieldErr(field+".empty", fmt.Errorf("%w: empty excludes exact, prefix and regex", ErrBadValue))
	case !sm.Empty && sm.Exact == "" && sm.Prefix == "" && sm.Regex == "":
		return pipeline.FieldErr(field, fmt.Errorf("%w: one of exact, prefix, regex or empty is required", ErrBadValue))
	}
	if sm.Regex != "" {
		if _, err := regexp.Compile(sm.Regex); err != nil {
			return pipeline.FieldErr(field+".regex", fmt.Errorf("%w: %v", ErrBadValue, err))
		}
	}
	return nil
}

func (mu *MethodAndURLMatcherSpec) validate(field string) error {
	for i, m := range mu.Methods {
		if !validToken(m) {
			return pipeline.FieldErr(field+".methods["+strconv.Itoa(i)+"]", fmt.Errorf("%w: %q is not a method", ErrBadValue, m))
		}
	}
	u := mu.URL
	if u == nil {
		return pipeline.FieldErr(field+".url", fmt.Errorf("%w: required", ErrBadValue))
	}
	n := 0
	for _, v := range []string{u.Exact, u.Prefix, u.Regex} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return pipeline.FieldErr(field+".url", fmt.Errorf("%w: exactly one of exact, prefix and regex is required", ErrBadValue))
	}
	if u.Regex != "" {
		if _, err := regexp.Compile(u.Regex); err != nil {
			return pipeline.FieldErr(field+".url.regex", fmt.Errorf("%w: %v", ErrBadValue, err))
		}
	}
	return nil
}

// matcher is a compiled RequestMatcherSpec.
type matcher struct {
	policy  string
	headers []headerRule
	urls    []urlRule
	allHdrs bool
	allURLs bool
	hashKey string // canonical
	permil  uint64
}

type headerRule struct {
	name string // canonical
	strMatch
}

type strMatch struct {
	exact, prefix string
	re            *regexp.Regexp
	empty         bool
}

func (m *strMatch) match(v string) bool {
	switch {
	case m.empty:
		return v == ""
	case m.exact != "" && v == m.exact:
		return true
	case m.prefix != "" && strings.HasPrefix(v, m.prefix):
		return true
	}
	return m.re != nil && m.re.MatchString(v)
}

type urlRule struct {
	methods []string
	strMatch
}

// newMatcher compiles a validated spec.
func newMatcher(spec *RequestMatcherSpec) *matcher {
	m := &matcher{
		policy:  spec.Policy,
		allHdrs: spec.MatchAllHeaders,
		allURLs: spec.MatchAllURLs,
		hashKey: http.CanonicalHeaderKey(spec.HeaderHashKey),
		permil:  uint64(spec.Permil),
	}
	if m.policy == "" {
		m.policy = MatchGeneral
	}
	for name, sm := range spec.Headers {
		m.headers = append(m.headers, headerRule{name: http.CanonicalHeaderKey(name), strMatch: compileStr(sm.Exact, sm.Prefix, sm.Regex, sm.Empty)})
	}
	slices.SortFunc(m.headers, func(a, b headerRule) int { return strings.Compare(a.name, b.name) })
	for _, u := range spec.URLs {
		m.urls = append(m.urls, urlRule{methods: slices.Clone(u.Methods), strMatch: compileStr(u.URL.Exact, u.URL.Prefix, u.URL.Regex, false)})
	}
	return m
}

func compileStr(exact, prefix, re string, empty bool) strMatch {
	sm := strMatch{exact: exact, prefix: prefix, empty: empty}
	if re != "" {
		sm.re = regexp.MustCompile(re) // validated
	}
	return sm
}

// match reports whether r goes to the matcher's pool.
func (m *matcher) match(r *http.Request) bool {
	switch m.policy {
	case MatchRandom:
		return rand.Uint64N(1000) < m.permil // #nosec G404 -- traffic sampling, not a secret
	case MatchIPHash:
		ip := pipeline.ClientIP(r).As16()
		return hashBytes16(&ip)%1000 < m.permil
	case MatchHeaderHash:
		return hashString(r.Header.Get(m.hashKey))%1000 < m.permil
	}
	if len(m.headers) > 0 && !m.matchHeaders(r.Header) {
		return false
	}
	return len(m.urls) == 0 || m.matchURLs(r)
}

func (m *matcher) matchHeaders(h http.Header) bool {
	for i := range m.headers {
		rule := &m.headers[i]
		ok := false
		if vs := h[rule.name]; len(vs) == 0 {
			ok = rule.match("")
		} else {
			for _, v := range vs {
				if rule.match(v) {
					ok = true
					break
				}
			}
		}
		if ok && !m.allHdrs {
			return true
		}
		if !ok && m.allHdrs {
			return false
		}
	}
	return m.allHdrs
}

func (m *matcher) matchURLs(r *http.Request) bool {
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	for i := range m.urls {
		rule := &m.urls[i]
		ok := (len(rule.methods) == 0 || slices.Contains(rule.methods, method)) && rule.match(r.URL.Path)
		if ok && !m.allURLs {
			return true
		}
		if !ok && m.allURLs {
			return false
		}
	}
	return m.allURLs
}

// hashBytes16 is hashString of the 16 bytes of an address, without
// converting them to a string.
func hashBytes16(b *[16]byte) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for _, c := range b {
		h ^= uint64(c)
		h *= prime
	}
	return mix(h)
}
