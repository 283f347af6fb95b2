// Package corsadaptor is the CORSAdaptor filter: it answers CORS
// preflight requests and adds CORS headers to the answers of cross-origin
// requests, per the Fetch standard.
//
// # Model
//
// A request without an Origin header is not a CORS request: the filter
// lets it through untouched. For the others:
//
//	preflight (OPTIONS + Origin + Access-Control-Request-Method)
//	  origin, method and every requested header allowed
//	      → 204 with Access-Control-Allow-Origin/-Methods/-Headers
//	        (+ -Credentials, -Max-Age), Vary: Origin, "preflighted"
//	  anything not allowed
//	      → 403 "CORS preflight refused" without any Access-Control-*
//	        header (so the browser blocks the actual request), "rejected"
//	actual request (any other request with an Origin), with
//	supportCORSRequest
//	  origin allowed → Access-Control-Allow-Origin (+ -Credentials,
//	                   -Expose-Headers) and Vary: Origin on the response
//	  not allowed    → no CORS headers: the browser hides the answer
//
// Access-Control-Allow-Origin is "*" only when every origin is allowed
// and allowCredentials is off; otherwise it echoes the request's origin,
// so credentials are never allowed for "*".
//
// Headers of an actual request go on its response, which the filter must
// therefore see: the filter works on the request when no response is set
// yet (it answers preflights, and lets actual requests through), and on
// the response when one is. A flow that proxies runs it twice, with an
// alias for the second step:
//
//	flow:
//	  - filter: cors
//	    jumpIf: { preflighted: END, rejected: END }
//	  - filter: proxy
//	  - filter: cors
//	    alias: corsResponse
//
// Origins match case-insensitively: exactly, "*" for every origin, or
// with one wildcard such as "https://*.example.com", whose "*" stands for
// one or more DNS labels (letters, digits, "-" and "." only, so
// "https://evil.com/.example.com" does not match). The origin "null" is
// allowed only when listed.
//
// Everything is compiled when the filter is built; Handle is safe for
// concurrent use.
package corsadaptor

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicegw/sluice/filters/internal/headerops"
	"github.com/sluicegw/sluice/pipeline"
)

// Results of the CORSAdaptor.
const (
	// Preflighted: the filter answered an allowed preflight request.
	Preflighted pipeline.Result = "preflighted"
	// Rejected: the filter refused a preflight request with 403.
	Rejected pipeline.Result = "rejected"
)

// defaultMethods is the default of Spec.AllowedMethods.
var defaultMethods = []string{http.MethodGet, http.MethodPost, http.MethodHead}

// Kind is the CORSAdaptor filter kind.
var Kind = pipeline.Define[Spec]("CORSAdaptor", []pipeline.Result{Preflighted, Rejected}, build).
	WithDescription("answers CORS preflights and adds CORS headers to cross-origin answers")

func build(_ pipeline.Env, s *Spec) (pipeline.Filter, error) {
	a, err := New(s)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Spec is the CORSAdaptor filter's configuration, as in Easegress.
//
//	kind: CORSAdaptor
//	name: cors
//	allowedOrigins: [https://app.example.com, "https://*.example.com"]
//	allowedMethods: [GET, POST, PUT]
//	allowedHeaders: [Content-Type, Authorization]
//	allowCredentials: true
//	exposedHeaders: [X-Request-Id]
//	maxAge: 600
//	supportCORSRequest: true
type Spec struct {
	// AllowedOrigins lists the origins allowed: exact origins
	// ("https://app.example.com"), "*", or patterns with one "*"
	// ("https://*.example.com"). Nil or empty allows every origin.
	AllowedOrigins []string `yaml:"allowedOrigins,omitempty"`
	// AllowedMethods lists the methods a preflight may ask for
	// (case-sensitive). Nil or empty means GET, POST and HEAD.
	AllowedMethods []string `yaml:"allowedMethods,omitempty"`
	// AllowedHeaders lists the request headers a preflight may ask for
	// (case-insensitive); "*" allows any. Nil or empty allows none beyond
	// what browsers send without asking.
	AllowedHeaders []string `yaml:"allowedHeaders,omitempty"`
	// AllowCredentials lets the browser send cookies and credentials and
	// read the answer: Access-Control-Allow-Credentials: true.
	AllowCredentials bool `yaml:"allowCredentials,omitempty"`
	// ExposedHeaders lists the response headers scripts may read, sent in
	// Access-Control-Expose-Headers on actual requests.
	ExposedHeaders []string `yaml:"exposedHeaders,omitempty"`
	// MaxAge is how many seconds a browser may cache a preflight answer
	// (Access-Control-Max-Age). 0 sends no header.
	MaxAge int `yaml:"maxAge,omitempty"`
	// SupportCORSRequest adds CORS headers to the answers of actual
	// (non-preflight) requests. Default false: only preflights are
	// handled.
	SupportCORSRequest bool `yaml:"supportCORSRequest,omitempty"`
}

// Validate checks the spec.
func (s *Spec) Validate() error {
	_, err := compile(s)
	return err
}

type originPattern struct {
	exact          string // lower case; "" for a wildcard pattern
	prefix, suffix string
}

func (p originPattern) match(origin string) bool {
	if p.exact != "" {
		return strings.EqualFold(origin, p.exact)
	}
	if len(origin) <= len(p.prefix)+len(p.suffix) {
		return false
	}
	lower := strings.ToLower(origin)
	if !strings.HasPrefix(lower, p.prefix) || !strings.HasSuffix(lower, p.suffix) {
		return false
	}
	middle := lower[len(p.prefix) : len(lower)-len(p.suffix)]
	for i := 0; i < len(middle); i++ {
		if c := middle[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return middle[0] != '.' && middle[len(middle)-1] != '.'
}

// CORSAdaptor is a built CORSAdaptor filter.
type CORSAdaptor struct {
	anyOrigin        bool
	origins          []originPattern
	methods          []string
	anyHeader        bool
	headers          []string // lower case
	credentials      bool
	exposed          string
	maxAge           string
	supportCORS      bool
	allowOriginConst string // "*" when every origin is allowed without credentials
}

func compile(s *Spec) (*CORSAdaptor, error) {
	a := &CORSAdaptor{credentials: s.AllowCredentials, supportCORS: s.SupportCORSRequest}
	if len(s.AllowedOrigins) == 0 {
		a.anyOrigin = true
	}
	for i, o := range s.AllowedOrigins {
		field := "allowedOrigins[" + strconv.Itoa(i) + "]"
		if o == "*" {
			a.anyOrigin = true
			continue
		}
		if o == "" || !headerops.ValidValue(o) || strings.ContainsAny(o, " ,") {
			return nil, pipeline.FieldErr(field, fmt.Errorf("%q is not an origin", o))
		}
		switch strings.Count(o, "*") {
		case 0:
			if !strings.Contains(o, "://") && o != "null" {
				return nil, pipeline.FieldErr(field, fmt.Errorf("%q is not an origin (scheme://host[:port])", o))
			}
			a.origins = append(a.origins, originPattern{exact: strings.ToLower(o)})
		case 1:
			pre, suf, _ := strings.Cut(strings.ToLower(o), "*")
			if !strings.Contains(pre, "://") {
				return nil, pipeline.FieldErr(field, fmt.Errorf("%q: the wildcard must be in the host, after the scheme", o))
			}
			a.origins = append(a.origins, originPattern{prefix: pre, suffix: suf})
		default:
			return nil, pipeline.FieldErr(field, fmt.Errorf("%q has more than one wildcard", o))
		}
	}
	a.methods = s.AllowedMethods
	if len(a.methods) == 0 {
		a.methods = defaultMethods
	}
	for i, m := range s.AllowedMethods {
		if !headerops.IsToken(m) {
			return nil, pipeline.FieldErr("allowedMethods["+strconv.Itoa(i)+"]", fmt.Errorf("%q is not a method", m))
		}
	}
	for i, h := range s.AllowedHeaders {
		if h == "*" {
			a.anyHeader = true
			continue
		}
		if !headerops.IsToken(h) {
			return nil, pipeline.FieldErr("allowedHeaders["+strconv.Itoa(i)+"]", fmt.Errorf("%q is not a header name", h))
		}
		a.headers = append(a.headers, strings.ToLower(h))
	}
	for i, h := range s.ExposedHeaders {
		if !headerops.IsToken(h) && h != "*" {
			return nil, pipeline.FieldErr("exposedHeaders["+strconv.Itoa(i)+"]", fmt.Errorf("%q is not a header name", h))
		}
	}
	a.exposed = strings.Join(s.ExposedHeaders, ", ")
	if s.MaxAge < 0 {
		return nil, pipeline.FieldErr("maxAge", errors.New("must not be negative"))
	}
	if s.MaxAge > 0 {
		a.maxAge = strconv.Itoa(s.MaxAge)
	}
	if a.anyOrigin && !a.credentials {
		a.allowOriginConst = "*"
	}
	return a, nil
}

// New builds a CORSAdaptor from s, which it checks as Spec.Validate does.
func New(s *Spec) (*CORSAdaptor, error) { return compile(s) }

// AllowsOrigin reports whether origin is allowed.
func (a *CORSAdaptor) AllowsOrigin(origin string) bool {
	if a.anyOrigin {
		return true
	}
	for _, p := range a.origins {
		if p.match(origin) {
			return true
		}
	}
	return false
}

var refused = []byte("CORS preflight refused\n")

// Handle answers preflights and, with supportCORSRequest, adds CORS
// headers to the response of an actual request (see the package
// comment).
func (a *CORSAdaptor) Handle(c *pipeline.Context) pipeline.Result {
	req := c.Request()
	if req == nil {
		return pipeline.Continue
	}
	origins := req.Header["Origin"]
	if len(origins) == 0 {
		return pipeline.Continue
	}
	if req.Method == http.MethodOptions && len(req.Header["Access-Control-Request-Method"]) > 0 {
		return a.preflight(c, req, origins)
	}
	resp := c.Response()
	if !a.supportCORS || resp == nil {
		return pipeline.Continue
	}
	if resp.Header == nil {
		resp.Header = http.Header{}
	}
	if a.allowOriginConst == "" {
		addVary(resp.Header, "Origin")
	}
	if len(origins) != 1 || !a.AllowsOrigin(origins[0]) {
		return pipeline.Continue
	}
	h := resp.Header
	a.allowOrigin(h, origins[0])
	if a.exposed != "" {
		h.Set("Access-Control-Expose-Headers", a.exposed)
	}
	return pipeline.Continue
}

func (a *CORSAdaptor) allowOrigin(h http.Header, origin string) {
	if a.allowOriginConst != "" {
		h.Set("Access-Control-Allow-Origin", a.allowOriginConst)
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if a.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}

func (a *CORSAdaptor) preflight(c *pipeline.Context, req *http.Request, origins []string) pipeline.Result {
	method := req.Header.Get("Access-Control-Request-Method")
	requested, headersOK := a.requestedHeaders(req.Header["Access-Control-Request-Headers"])
	ok := len(origins) == 1 && a.AllowsOrigin(origins[0]) && slices.Contains(a.methods, method) && headersOK
	status := http.StatusNoContent
	var body []byte
	if !ok {
		status, body = http.StatusForbidden, refused
	}
	resp := pipeline.NewResponse(req, status, "text/plain; charset=utf-8", body)
	h := resp.Header
	h.Set("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
	if !ok {
		c.SetResponse(resp)
		return Rejected
	}
	h.Del("Content-Length") // 204 has no body
	resp.ContentLength = 0
	a.allowOrigin(h, origins[0])
	h.Set("Access-Control-Allow-Methods", method)
	if requested != "" {
		h.Set("Access-Control-Allow-Headers", requested)
	}
	if a.maxAge != "" {
		h.Set("Access-Control-Max-Age", a.maxAge)
	}
	c.SetResponse(resp)
	return Preflighted
}

// requestedHeaders parses Access-Control-Request-Headers and reports
// whether every header it names is allowed; it returns the names, lower
// case, joined with ", ".
func (a *CORSAdaptor) requestedHeaders(values []string) (string, bool) {
	var names []string
	for _, v := range values {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" {
				continue
			}
			if !headerops.IsToken(name) || (!a.anyHeader && !slices.Contains(a.headers, name)) {
				return "", false
			}
			names = append(names, name)
		}
	}
	return strings.Join(names, ", "), true
}

func addVary(h http.Header, name string) {
	for _, v := range h["Vary"] {
		for part := range strings.SplitSeq(v, ",") {
			if p := strings.TrimSpace(part); p == "*" || strings.EqualFold(p, name) {
				return
			}
		}
	}
	h.Add("Vary", name)
}

var _ pipeline.Filter = (*CORSAdaptor)(nil)
