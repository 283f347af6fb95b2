// Package validator is the Validator filter: it rejects requests whose
// header fields do not satisfy the rules of its spec, before they reach a
// backend.
//
// # Model
//
// The spec maps header names to rules. Every rule must hold for the
// request to pass; the filter then returns the empty result and the flow
// goes on. A rule holds when the header is present and at least one of its
// values is one of the rule's Values or matches its Regexp (either is
// enough, as in Easegress). On the first rule that does not hold, in order
// of header name, the filter sets a 400 response whose plain-text body
// names the header — never its value, which may be a secret — and returns
// "invalid":
//
//	request → every rule holds → "" (continue)
//	        → a rule fails     → 400 "invalid header X-Api-Key", "invalid"
//
// A flow usually maps "invalid" to END (which is also what happens when it
// is not mapped at all).
//
// The spec is the headers part of Easegress v2's Validator; JWT, signature,
// OAuth2 and basic-auth validation are not implemented yet. Regexps are
// compiled when the filter is built. The filter keeps no per-request
// state; Handle is safe for concurrent use.
package validator

import (
	"cmp"
	"errors"
	"net/http"
	"regexp"
	"slices"

	"github.com/sluicegw/sluice/filters/internal/headerops"
	"github.com/sluicegw/sluice/pipeline"
)

// Invalid is the result of a request that failed validation.
const Invalid pipeline.Result = "invalid"

// Kind is the Validator filter kind.
var Kind = pipeline.Define[Spec]("Validator", []pipeline.Result{Invalid}, build).
	WithDescription("rejects requests whose header fields break a rule with 400")

// build is Kind's build function.
func build(_ pipeline.Env, s *Spec) (pipeline.Filter, error) {
	v, err := New(s)
	if err != nil {
		return nil, err
	}
	return v, nil
}

// Spec is the Validator filter's configuration.
//
//	kind: Validator
//	name: validator
//	headers:
//	  Content-Type:
//	    values: [application/json]
//	  X-Api-Version:
//	    regexp: '^v[0-9]+$'
type Spec struct {
	// Headers maps a header name (case-insensitive) to the rule its
	// values must satisfy. "Host" is the request's host, which net/http
	// keeps out of the header map. At least one rule is required.
	Headers map[string]HeaderRule `yaml:"headers,omitempty"`
}

// HeaderRule is what one header must satisfy: present, with a value that
// is in Values or matches Regexp. At least one of the two must be set.
type HeaderRule struct {
	// Values lists the values that pass, compared exactly
	// (case-sensitively). Nil means no value passes by this test alone.
	Values []string `yaml:"values,omitempty"`
	// Regexp is an RE2 regular expression that passing values match. It
	// is not anchored: write ^…$ to match whole values. Empty means no
	// value passes by this test alone.
	Regexp string `yaml:"regexp,omitempty"`
}

// Validate checks the spec; it is what building a Validator runs, so a
// spec that validates builds.
func (s *Spec) Validate() error {
	_, err := compile(s)
	return err
}

func compile(s *Spec) ([]headerRule, error) {
	if len(s.Headers) == 0 {
		return nil, pipeline.FieldErr("headers", errors.New("at least one header rule is required"))
	}
	if err := headerops.CheckNames("headers", s.Headers); err != nil {
		return nil, err
	}
	rules := make([]headerRule, 0, len(s.Headers))
	for name, hr := range s.Headers {
		field := "headers." + name
		if len(hr.Values) == 0 && hr.Regexp == "" {
			return nil, pipeline.FieldErr(field, errors.New("set values, regexp or both"))
		}
		r := headerRule{name: http.CanonicalHeaderKey(name), values: hr.Values}
		if hr.Regexp != "" {
			re, err := regexp.Compile(hr.Regexp)
			if err != nil {
				return nil, pipeline.FieldErr(field+".regexp", err)
			}
			r.re = re
		}
		r.missing = []byte("missing header " + r.name + "\n")
		r.invalid = []byte("invalid header " + r.name + "\n")
		rules = append(rules, r)
	}
	slices.SortFunc(rules, func(a, b headerRule) int { return cmp.Compare(a.name, b.name) })
	return rules, nil
}

// Validator is a built Validator filter.
type Validator struct {
	rules []headerRule // sorted by name, so the reported header is stable
}

type headerRule struct {
	name    string // canonical
	values  []string
	re      *regexp.Regexp
	missing []byte // response bodies
	invalid []byte
}

// New builds a Validator from s, which it checks as Spec.Validate does.
// Kind builds filters with it after decoding their YAML.
func New(s *Spec) (*Validator, error) {
	rules, err := compile(s)
	if err != nil {
		return nil, err
	}
	return &Validator{rules: rules}, nil
}

// Handle passes a request that satisfies every rule and answers any other
// with 400.
func (v *Validator) Handle(c *pipeline.Context) pipeline.Result {
	req := c.Request()
	if req == nil {
		return pipeline.Continue
	}
	for i := range v.rules {
		r := &v.rules[i]
		values := req.Header[r.name]
		if r.name == "Host" && req.Host != "" {
			// net/http moves the Host header out of the header map.
			values = []string{req.Host}
		}
		if len(values) == 0 {
			return reject(c, r.missing)
		}
		if !r.passes(values) {
			return reject(c, r.invalid)
		}
	}
	return pipeline.Continue
}

func (r *headerRule) passes(values []string) bool {
	for _, v := range values {
		if slices.Contains(r.values, v) || (r.re != nil && r.re.MatchString(v)) {
			return true
		}
	}
	return false
}

func reject(c *pipeline.Context, body []byte) pipeline.Result {
	c.SetResponse(pipeline.NewResponse(c.Request(), http.StatusBadRequest, "text/plain; charset=utf-8", body))
	return Invalid
}

var _ pipeline.Filter = (*Validator)(nil)
