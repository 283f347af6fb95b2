package mock

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sluicegw/sluice/filters/internal/headerops"
	"github.com/sluicegw/sluice/internal/yamlx"
	"github.com/sluicegw/sluice/pipeline"
)

// Spec is the Mock filter's configuration.
//
//	kind: Mock
//	name: mock
//	rules:
//	  - match: { pathPrefix: /users/ }
//	    code: 200
//	    headers: { Content-Type: application/json }
//	    body: '{"name": "alice"}'
//	    delay: 50ms
type Spec struct {
	// Rules are tried in order; the first that matches the request answers
	// it. At least one rule is required.
	Rules []Rule `yaml:"rules,omitempty"`
}

// Rule is one canned response and the requests it answers.
type Rule struct {
	// Match selects the requests this rule answers. The zero Match
	// matches every request.
	Match Match `yaml:"match,omitempty"`
	// Path is the Easegress v1 spelling of Match.Path. Setting both is an
	// error.
	Path string `yaml:"path,omitempty"`
	// PathPrefix is the Easegress v1 spelling of Match.PathPrefix. Setting
	// both is an error.
	PathPrefix string `yaml:"pathPrefix,omitempty"`
	// Code is the response status, 200 to 599; 0 means 200. Codes that
	// forbid a body (204, 304) require an empty Body.
	Code int `yaml:"code,omitempty"`
	// Headers are set on the response, one value per name. Content-Length
	// is computed from Body and may not be set here. No Content-Type is
	// set unless it is listed here.
	Headers map[string]string `yaml:"headers,omitempty"`
	// Body is the response body; empty means none.
	Body string `yaml:"body,omitempty"`
	// Delay is how long to wait before answering, a duration string such
	// as "500ms" or "2s"; zero answers at once, negative is an error. The
	// wait uses the filter's clock and stops early when the request is
	// cancelled.
	Delay time.Duration `yaml:"delay,omitempty"`
}

// Match selects requests. The path conditions are alternatives: a request
// matches if its path equals Path, starts with PathPrefix or matches
// PathRegexp (any one is enough); with none of them set every path
// matches. The request must also pass the header conditions.
type Match struct {
	// Path is an exact URL path, starting with "/". Empty means no
	// exact-path condition.
	Path string `yaml:"path,omitempty"`
	// PathPrefix is a URL path prefix, starting with "/". Empty means no
	// prefix condition.
	PathPrefix string `yaml:"pathPrefix,omitempty"`
	// PathRegexp is an RE2 regular expression matched against the URL path
	// (unanchored: use ^ and $ to match the whole path). Empty means no
	// regexp condition.
	PathRegexp string `yaml:"pathRegexp,omitempty"`
	// Headers maps a header name (case-insensitive) to a condition on its
	// values. "Host" is the request's host, which net/http keeps out of
	// the header map. Nil or empty means no header conditions.
	Headers map[string]StringMatcher `yaml:"headers,omitempty"`
	// MatchAllHeaders requires every header condition to hold; false (the
	// default) requires only one of them.
	MatchAllHeaders bool `yaml:"matchAllHeaders,omitempty"`
}

// StringMatcher is a condition on a header's values, as Easegress's. Set
// Empty alone, or one or more of Exact, Prefix and Regex; a header passes
// if any of its values satisfies any of the conditions set.
type StringMatcher struct {
	// Exact is a value the header must equal. Empty means no exact
	// condition.
	Exact string `yaml:"exact,omitempty"`
	// Prefix is a prefix the value must start with. Empty means no prefix
	// condition.
	Prefix string `yaml:"prefix,omitempty"`
	// Regex is an RE2 regular expression the value must match
	// (unanchored). Empty means no regexp condition.
	Regex string `yaml:"regex,omitempty"`
	// Empty, when true, matches a request that lacks the header or whose
	// values are all empty, and nothing else. It cannot be combined with
	// the other conditions.
	Empty bool `yaml:"empty,omitempty"`
}

// Validate checks the spec; it is what building a Mock runs, so a spec
// that validates builds.
func (s *Spec) Validate() error {
	_, err := compile(s)
	return err
}

// compile checks s and turns it into the rules the filter runs.
func compile(s *Spec) ([]rule, error) {
	if len(s.Rules) == 0 {
		return nil, pipeline.FieldErr("rules", errors.New("at least one rule is required"))
	}
	rules := make([]rule, len(s.Rules))
	for i := range s.Rules {
		field := "rules[" + strconv.Itoa(i) + "]"
		r, err := compileRule(&s.Rules[i])
		if err != nil {
			return nil, yamlx.Prefix(err, field)
		}
		rules[i] = r
	}
	return rules, nil
}

func compileRule(sr *Rule) (rule, error) {
	m := sr.Match
	if sr.Path != "" {
		if m.Path != "" {
			return rule{}, pipeline.FieldErr("path", errors.New("set path or match.path, not both"))
		}
		m.Path = sr.Path
	}
	if sr.PathPrefix != "" {
		if m.PathPrefix != "" {
			return rule{}, pipeline.FieldErr("pathPrefix", errors.New("set pathPrefix or match.pathPrefix, not both"))
		}
		m.PathPrefix = sr.PathPrefix
	}
	// A v1 field's error names the field the user wrote.
	pathField := func(v1 bool, name string) string {
		if v1 {
			return name
		}
		return "match." + name
	}
	if m.Path != "" && !strings.HasPrefix(m.Path, "/") {
		return rule{}, pipeline.FieldErr(pathField(sr.Path != "", "path"), errors.New("must start with /"))
	}
	if m.PathPrefix != "" && !strings.HasPrefix(m.PathPrefix, "/") {
		return rule{}, pipeline.FieldErr(pathField(sr.PathPrefix != "", "pathPrefix"), errors.New("must start with /"))
	}
	r := rule{
		path:       m.Path,
		pathPrefix: m.PathPrefix,
		matchAll:   m.MatchAllHeaders,
		code:       sr.Code,
		body:       []byte(sr.Body),
		delay:      sr.Delay,
	}
	if m.PathRegexp != "" {
		re, err := regexp.Compile(m.PathRegexp)
		if err != nil {
			return rule{}, pipeline.FieldErr("match.pathRegexp", err)
		}
		r.pathRe = re
	}
	r.anyPath = r.path == "" && r.pathPrefix == "" && r.pathRe == nil

	if err := headerops.CheckNames("match.headers", m.Headers); err != nil {
		return rule{}, err
	}
	for name, sm := range m.Headers {
		hm, err := compileMatcher(http.CanonicalHeaderKey(name), sm)
		if err != nil {
			return rule{}, yamlx.Prefix(err, "match.headers."+name)
		}
		r.headers = append(r.headers, hm)
	}
	sortMatchers(r.headers)

	if r.code == 0 {
		r.code = http.StatusOK
	}
	if r.code < 200 || r.code > 599 {
		return rule{}, pipeline.FieldErr("code", fmt.Errorf("must be between 200 and 599 (a final status), not %d", sr.Code))
	}
	if len(r.body) > 0 && !bodyAllowed(r.code) {
		return rule{}, pipeline.FieldErr("body", fmt.Errorf("a %d response cannot have a body", r.code))
	}
	if err := headerops.CheckMap("headers", sr.Headers); err != nil {
		return rule{}, err
	}
	r.header = make(http.Header, len(sr.Headers))
	for name, v := range sr.Headers {
		if strings.EqualFold(name, "Content-Length") {
			return rule{}, pipeline.FieldErr("headers."+name, errors.New("content-length is computed from the body"))
		}
		r.header.Set(name, v)
	}
	if r.delay < 0 {
		return rule{}, pipeline.FieldErr("delay", fmt.Errorf("must not be negative, not %s", r.delay))
	}
	return r, nil
}

func compileMatcher(name string, sm StringMatcher) (headerMatcher, error) {
	hm := headerMatcher{name: name, exact: sm.Exact, prefix: sm.Prefix, empty: sm.Empty}
	others := sm.Exact != "" || sm.Prefix != "" || sm.Regex != ""
	switch {
	case sm.Empty && others:
		return hm, errors.New("empty cannot be combined with exact, prefix or regex")
	case !sm.Empty && !others:
		return hm, errors.New("set one of exact, prefix, regex or empty")
	}
	if sm.Regex != "" {
		re, err := regexp.Compile(sm.Regex)
		if err != nil {
			return hm, pipeline.FieldErr("regex", err)
		}
		hm.re = re
	}
	return hm, nil
}

// bodyAllowed reports whether a response with status code may have a body
// (RFC 9110 §6.4.1).
func bodyAllowed(code int) bool {
	return code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
}
