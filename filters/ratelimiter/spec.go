package ratelimiter

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicegw/sluice/filters/internal/headerops"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/resilience"
)

// DefaultMaxKeys is the default of Policy.MaxKeys.
const DefaultMaxKeys = 10000

// Keys a policy limits on (Policy.Key). A header key is HeaderKeyPrefix
// followed by the header's name.
const (
	KeyGlobal       = ""         // one bucket for every request of the policy
	KeyClientIP     = "clientIP" // one bucket per client IP
	KeyRoute        = "route"    // one bucket per url rule
	HeaderKeyPrefix = "header:"  // one bucket per value of a request header
)

// Errors of the package. Spec errors are *pipeline.FieldError values that
// name the field and wrap one of these; test with errors.Is.
var (
	// ErrInvalidSpec is wrapped by every spec error that is not one of the
	// more specific ones below. Errors in a policy's rate fields
	// (limitForPeriod, ...) wrap resilience.ErrInvalidSpec instead.
	ErrInvalidSpec = errors.New("invalid RateLimiter spec")
	// ErrUnknownPolicy: a policyRef or defaultPolicyRef names no policy.
	ErrUnknownPolicy = errors.New("unknown policy")
	// ErrDuplicatePolicy: two policies share a name.
	ErrDuplicatePolicy = errors.New("duplicate policy name")
)

// Spec is the RateLimiter filter's configuration: Easegress v2's
// (policies, defaultPolicyRef, urls) plus a key, a key bound and a burst per
// policy.
//
//	kind: RateLimiter
//	name: limiter
//	policies:
//	  - name: fast
//	    limitRefreshPeriod: 10ms
//	    limitForPeriod: 50
//	    timeoutDuration: 100ms
//	    burst: 100
//	    key: clientIP
//	    maxKeys: 10000
//	defaultPolicyRef: fast
//	urls:
//	  - methods: [GET, POST]
//	    url: { prefix: /api/ }
//	    policyRef: fast
type Spec struct {
	// Policies are the named rate limits; at least one, with unique names.
	Policies []Policy `yaml:"policies,omitempty"`
	// DefaultPolicyRef names the policy of requests that match no url
	// rule, and of url rules without a policyRef. Empty means requests
	// that match no rule are not limited (and every rule needs a
	// policyRef).
	DefaultPolicyRef string `yaml:"defaultPolicyRef,omitempty"`
	// URLs are tried in order; the first rule that matches a request's
	// method and path picks its policy. Nil or empty: every request gets
	// the default policy.
	URLs []URLRule `yaml:"urls,omitempty"`
}

// Policy is one named rate limit. In YAML, a field left out takes its
// default (limitRefreshPeriod 10ms, limitForPeriod 50, timeoutDuration
// 100ms, burst = limitForPeriod, maxKeys 10000); Go callers start from
// SetDefaults.
type Policy struct {
	// Name is how url rules and defaultPolicyRef refer to the policy.
	// Required, unique within the filter.
	Name string `yaml:"name"`
	// LimiterSpec is the rate: limitForPeriod requests per
	// limitRefreshPeriod with a bucket of burst, and timeoutDuration, how
	// long a request may wait for a permit before it is rejected (0:
	// rejected at once when no permit is free). See resilience.LimiterSpec.
	resilience.LimiterSpec `yaml:",inline"`
	// Key is what the policy keeps separate buckets for (not an Easegress
	// field):
	//
	//	""                 one bucket for every request the policy limits
	//	"clientIP"         one per client IP (the host of the peer address)
	//	"header:X-Api-Key" one per value of that request header; requests
	//	                   without it (or with it empty) share the bucket
	//	                   of the empty value
	//	"route"            one per url rule, plus one for the requests that
	//	                   match no rule (when this is the default policy)
	//
	// Default "". With "", each url rule that names the policy shares its
	// one bucket (Easegress keeps one bucket per url rule: use "route" for
	// that).
	Key string `yaml:"key,omitempty"`
	// MaxKeys bounds the buckets of a clientIP or header policy: when it
	// is full, the least recently used key is dropped (and starts again
	// with a full bucket if it comes back). At least 1; default 10000.
	// Ignored for the keys "" and "route", whose buckets are fixed.
	MaxKeys int `yaml:"maxKeys"`
}

// URLRule picks a policy for the requests it matches.
type URLRule struct {
	// Methods the rule matches, case-sensitive (GET, POST, ...). Nil or
	// empty matches every method.
	Methods []string `yaml:"methods,omitempty"`
	// URL matches the request's path. Required.
	URL URLMatch `yaml:"url"`
	// PolicyRef names the policy of the requests the rule matches. Empty
	// means the defaultPolicyRef.
	PolicyRef string `yaml:"policyRef,omitempty"`
}

// URLMatch matches a URL path; set exactly one of its fields.
type URLMatch struct {
	// Exact is a path the request's path must equal; starts with "/".
	Exact string `yaml:"exact,omitempty"`
	// Prefix is a path prefix; starts with "/".
	Prefix string `yaml:"prefix,omitempty"`
	// Regex is an RE2 regular expression matched against the path,
	// unanchored (use ^ and $ to match the whole path). Compiled when the
	// filter is built.
	Regex string `yaml:"regex,omitempty"`
}

// SetDefaults sets the rate fields and MaxKeys to their defaults, keeping
// Name and Key.
func (p *Policy) SetDefaults() {
	p.LimiterSpec.SetDefaults()
	p.MaxKeys = DefaultMaxKeys
}

// UnmarshalYAML gives the fields a policy leaves out their defaults:
// yaml.v3 makes each element of a list from the zero value, and a zero
// timeoutDuration is meaningful (reject at once), so the defaults cannot
// be filled in after decoding.
//
// It is the (still supported) function form of yaml.v3's Unmarshaler on
// purpose: the strict decoder of pipeline.Raw walks into a type with this
// method, so unknown keys in a policy are still errors with their field
// path and line (a test holds it to that).
func (p *Policy) UnmarshalYAML(unmarshal func(any) error) error {
	type plain Policy // without this method
	v := plain{}
	(*Policy)(&v).SetDefaults()
	if err := unmarshal(&v); err != nil {
		return err
	}
	*p = Policy(v)
	return nil
}

// Validate checks the spec; it is what building a RateLimiter runs, so a
// spec that validates builds. Errors name the field (urls[1].policyRef).
func (s *Spec) Validate() error {
	_, err := compile(s)
	return err
}

// keyKind is a parsed Policy.Key.
type keyKind uint8

const (
	keyGlobal keyKind = iota
	keyClientIP
	keyHeader
	keyRoute
)

// parseKey parses a Policy.Key, returning the canonical header name for a
// header key.
func parseKey(key string) (keyKind, string, error) {
	switch key {
	case KeyGlobal:
		return keyGlobal, "", nil
	case KeyClientIP:
		return keyClientIP, "", nil
	case KeyRoute:
		return keyRoute, "", nil
	}
	if name, ok := strings.CutPrefix(key, HeaderKeyPrefix); ok {
		if !headerops.IsToken(name) {
			return 0, "", fmt.Errorf("%w: %q is not a valid header name", ErrInvalidSpec, name)
		}
		return keyHeader, http.CanonicalHeaderKey(name), nil
	}
	return 0, "", fmt.Errorf(`%w: must be "", %q, %q or "header:<name>", got %q`, ErrInvalidSpec, KeyClientIP, KeyRoute, key)
}

// plan is a checked spec: its policies and rules, ready to get limiters.
type plan struct {
	policies []policyPlan
	rules    []rule
	def      int // index of the default policy, -1 for none
}

type policyPlan struct {
	spec   Policy
	key    keyKind
	header string // canonical, for keyHeader
}

func invalid(field, format string, args ...any) error {
	return pipeline.FieldErr(field, fmt.Errorf("%w: "+format, append([]any{ErrInvalidSpec}, args...)...))
}

// compile checks s and compiles its url rules; rules name their policy by
// index into the plan's policies.
func compile(s *Spec) (*plan, error) {
	if len(s.Policies) == 0 {
		return nil, invalid("policies", "at least one policy is required")
	}
	pl := &plan{policies: make([]policyPlan, len(s.Policies)), def: -1}
	byName := make(map[string]int, len(s.Policies))
	for i := range s.Policies {
		p := &s.Policies[i]
		field := "policies[" + strconv.Itoa(i) + "]"
		if p.Name == "" {
			return nil, invalid(field+".name", "a policy needs a name")
		}
		if j, dup := byName[p.Name]; dup {
			return nil, pipeline.FieldErr(field+".name", fmt.Errorf("%w %q (also policies[%d])", ErrDuplicatePolicy, p.Name, j))
		}
		byName[p.Name] = i
		if err := p.LimiterSpec.Validate(); err != nil {
			return nil, pipeline.PrefixErr(err, field)
		}
		kind, header, err := parseKey(p.Key)
		if err != nil {
			return nil, pipeline.FieldErr(field+".key", err)
		}
		if p.MaxKeys < 1 {
			return nil, invalid(field+".maxKeys", "must be at least 1, got %d", p.MaxKeys)
		}
		pl.policies[i] = policyPlan{spec: *p, key: kind, header: header}
	}
	names := func() []string { return slices.Sorted(maps.Keys(byName)) }
	if s.DefaultPolicyRef != "" {
		i, ok := byName[s.DefaultPolicyRef]
		if !ok {
			return nil, pipeline.FieldErr("defaultPolicyRef", fmt.Errorf("%w %q (policies: %v)", ErrUnknownPolicy, s.DefaultPolicyRef, names()))
		}
		pl.def = i
	}
	pl.rules = make([]rule, len(s.URLs))
	for i := range s.URLs {
		u := &s.URLs[i]
		field := "urls[" + strconv.Itoa(i) + "]"
		r, err := compileRule(u)
		if err != nil {
			return nil, pipeline.PrefixErr(err, field)
		}
		switch ref := u.PolicyRef; {
		case ref == "" && pl.def < 0:
			return nil, invalid(field+".policyRef", "required when there is no defaultPolicyRef")
		case ref == "":
			r.policy = pl.def
		default:
			j, ok := byName[ref]
			if !ok {
				return nil, pipeline.FieldErr(field+".policyRef", fmt.Errorf("%w %q (policies: %v)", ErrUnknownPolicy, ref, names()))
			}
			r.policy = j
		}
		pl.rules[i] = r
	}
	return pl, nil
}

// rule is a compiled URLRule.
type rule struct {
	methods []string // nil: any
	exact   string
	prefix  string
	re      *regexp.Regexp
	rePre   string // a literal prefix every match of an anchored re starts with
	policy  int    // index into the policies
	route   int    // index of the rule's bucket in a route policy
	id      string // the match, to find the same route in a new generation
}

func compileRule(u *URLRule) (rule, error) {
	r := rule{}
	for j, m := range u.Methods {
		field := "methods[" + strconv.Itoa(j) + "]"
		if !headerops.IsToken(m) {
			return r, invalid(field, "%q is not a valid method", m)
		}
		if up := strings.ToUpper(m); up != m && isStandardMethod(up) {
			return r, invalid(field, "methods are case-sensitive: %q, not %q", up, m)
		}
		if slices.Contains(u.Methods[:j], m) {
			return r, invalid(field, "%q is listed twice", m)
		}
	}
	if len(u.Methods) > 0 {
		r.methods = slices.Clone(u.Methods)
	}
	m := u.URL
	set := 0
	for _, v := range []string{m.Exact, m.Prefix, m.Regex} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		return r, invalid("url", "set exactly one of exact, prefix and regex")
	}
	switch {
	case m.Exact != "":
		if !strings.HasPrefix(m.Exact, "/") {
			return r, invalid("url.exact", "must start with /")
		}
		r.exact = m.Exact
		r.id = "exact:" + m.Exact
	case m.Prefix != "":
		if !strings.HasPrefix(m.Prefix, "/") {
			return r, invalid("url.prefix", "must start with /")
		}
		r.prefix = m.Prefix
		r.id = "prefix:" + m.Prefix
	default:
		re, err := regexp.Compile(m.Regex)
		if err != nil {
			return r, pipeline.FieldErr("url.regex", fmt.Errorf("%w: %w", ErrInvalidSpec, err))
		}
		r.re = re
		r.rePre = anchoredPrefix(m.Regex, re)
		r.id = "regex:" + m.Regex
	}
	ms := slices.Sorted(slices.Values(u.Methods))
	r.id = strings.Join(ms, ",") + " " + r.id
	return r, nil
}

// anchoredPrefix returns the literal prefix of re (compiled from expr)
// when re matches only at the start of the text (^/pets/\d+$ → "/pets/"),
// so that a path without it is turned down without running the regexp;
// otherwise "".
func anchoredPrefix(expr string, re *regexp.Regexp) string {
	s, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return ""
	}
	s = s.Simplify()
	if s.Op != syntax.OpConcat || len(s.Sub) == 0 || s.Sub[0].Op != syntax.OpBeginText {
		return ""
	}
	prefix, _ := re.LiteralPrefix()
	return prefix
}

func isStandardMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// match reports whether the rule matches a request with method and path.
func (r *rule) match(method, path string) bool {
	if r.methods != nil && !slices.Contains(r.methods, method) {
		return false
	}
	switch {
	case r.re != nil:
		return strings.HasPrefix(path, r.rePre) && r.re.MatchString(path)
	case r.prefix != "":
		return strings.HasPrefix(path, r.prefix)
	}
	return path == r.exact
}
