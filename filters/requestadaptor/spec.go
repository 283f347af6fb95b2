package requestadaptor

import (
	"errors"
	"regexp"
	"strings"

	"github.com/sluicegw/sluice/filters/internal/headerops"
	"github.com/sluicegw/sluice/internal/yamlx"
	"github.com/sluicegw/sluice/pipeline"
)

// Spec is the RequestAdaptor filter's configuration. Every field is
// optional; the zero Spec leaves the request as it is.
//
//	kind: RequestAdaptor
//	name: adaptor
//	method: POST
//	host: api.internal
//	path: { trimPrefix: /public }
//	header:
//	  del: [Cookie]
//	  set: { X-Gateway: sluice }
//	  add: { Via: 1.1 sluice }
//	body: '{"fixed": true}'
type Spec struct {
	// Method replaces the request method; it must be an RFC 9110 token
	// and is used as written (methods are case-sensitive). Empty keeps
	// the method.
	Method string `yaml:"method,omitempty"`
	// Host replaces the request's Host (what the backend sees in its Host
	// header), "name" or "name:port". Empty keeps the host.
	Host string `yaml:"host,omitempty"`
	// Path rewrites the URL path. The zero PathSpec keeps the path.
	Path PathSpec `yaml:"path,omitempty"`
	// Header deletes, sets and adds header fields, in that order. The Host
	// header cannot be changed here; use Host.
	Header HeaderSpec `yaml:"header,omitempty"`
	// Body replaces the request body and its length. Empty keeps the
	// body (as in Easegress, a body cannot be replaced by nothing).
	Body string `yaml:"body,omitempty"`
}

// HeaderSpec deletes, sets and adds header fields: see Spec.Header. It is
// shared with the ResponseAdaptor filter.
type HeaderSpec = headerops.Spec

// PathSpec rewrites the URL path. At most one of its fields may be set
// (Easegress applies only the first that is set, in the order listed; here
// setting several is an error rather than a silent choice). Every result
// is given a leading "/" if it lacks one, so "/api" trimmed from "/api" is
// "/".
type PathSpec struct {
	// Replace is the new path, starting with "/". Empty means no
	// replacement.
	Replace string `yaml:"replace,omitempty"`
	// AddPrefix is put in front of the path, starting with "/"; a trailing
	// "/" is dropped so that "/v2/" and "/users" make "/v2/users". Empty
	// adds nothing.
	AddPrefix string `yaml:"addPrefix,omitempty"`
	// TrimPrefix is removed from the start of the path if it is there,
	// starting with "/". It is a string prefix, not a segment prefix:
	// "/api" trimmed from "/apiv2" leaves "/v2". Empty trims nothing.
	TrimPrefix string `yaml:"trimPrefix,omitempty"`
	// RegexpReplace replaces every match of a regexp in the path. The zero
	// value replaces nothing.
	RegexpReplace RegexpReplace `yaml:"regexpReplace,omitempty"`
}

// RegexpReplace replaces the matches of a regexp.
type RegexpReplace struct {
	// Regexp is an RE2 regular expression, compiled when the filter is
	// built. Required if Replace is set.
	Regexp string `yaml:"regExp,omitempty"`
	// Replace is the replacement text, in which $1 or ${name} stand for
	// the regexp's groups (see regexp.Regexp.Expand). Empty deletes the
	// matches.
	Replace string `yaml:"replace,omitempty"`
}

// Validate checks the spec; it is what building a RequestAdaptor runs, so
// a spec that validates builds.
func (s *Spec) Validate() error {
	_, err := compile(s)
	return err
}

func compile(s *Spec) (*Adaptor, error) {
	a := &Adaptor{method: s.Method, host: s.Host, path: s.Path, header: s.Header}
	if s.Method != "" && !headerops.IsToken(s.Method) {
		return nil, pipeline.FieldErr("method", errors.New("not a valid HTTP method"))
	}
	if s.Host != "" && !validHost(s.Host) {
		return nil, pipeline.FieldErr("host", errors.New("not a valid host"))
	}
	if err := compilePath(&s.Path, a); err != nil {
		return nil, yamlx.Prefix(err, "path")
	}
	if err := s.Header.Validate(); err != nil {
		return nil, yamlx.Prefix(err, "header")
	}
	if s.Header.Touches("Host") {
		return nil, pipeline.FieldErr("header", errors.New("the Host header is set with host, not header"))
	}
	if s.Body != "" {
		a.body = []byte(s.Body)
	}
	a.noop = a.method == "" && a.host == "" && !a.rewritesPath() && s.Header.IsZero() && a.body == nil
	return a, nil
}

func compilePath(p *PathSpec, a *Adaptor) error {
	set := 0
	for _, f := range []struct{ name, value string }{
		{"replace", p.Replace},
		{"addPrefix", p.AddPrefix},
		{"trimPrefix", p.TrimPrefix},
	} {
		if f.value == "" {
			continue
		}
		set++
		if !strings.HasPrefix(f.value, "/") {
			return pipeline.FieldErr(f.name, errors.New("must start with /"))
		}
	}
	rr := p.RegexpReplace
	if rr.Regexp != "" || rr.Replace != "" {
		set++
		if rr.Regexp == "" {
			return pipeline.FieldErr("regexpReplace.regExp", errors.New("required with replace"))
		}
		re, err := regexp.Compile(rr.Regexp)
		if err != nil {
			return pipeline.FieldErr("regexpReplace.regExp", err)
		}
		a.pathRe = re
	}
	if set > 1 {
		return errors.New("set only one of replace, addPrefix, trimPrefix and regexpReplace")
	}
	return nil
}

// validHost reports whether h can be a Host header: no whitespace,
// controls or URL delimiters.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case c <= ' ', c == 0x7f, c == '/', c == '?', c == '#', c == '@', c == '\\':
			return false
		}
	}
	return true
}
