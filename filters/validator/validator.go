// Package validator is the Validator filter: it rejects requests that do
// not carry what its spec demands — header values, a valid JWT, a valid
// HMAC request signature, an OAuth2 access token, or a user name and
// password — before they reach a backend.
//
// # Model
//
// A spec configures one or more checks; all of them must pass, and they
// run in this order, stopping at the first that fails:
//
//	headers    → 400 "missing header X" / "invalid header X"
//	jwt        → 401, WWW-Authenticate: Bearer realm="…", error="invalid_token"
//	signature  → 401, WWW-Authenticate: SLUICE-HMAC-SHA256 realm="…" (413 when
//	             the body to hash is too large)
//	oauth2     → 401, WWW-Authenticate: Bearer …; 503 when the token
//	             introspection endpoint cannot answer
//	basicAuth  → 401, WWW-Authenticate: Basic realm="…", charset="UTF-8"
//
// A request that passes every check continues with the empty result; one
// that fails gets the response above and the result "invalid", which a
// flow usually maps to END (as happens when it is not mapped at all).
// Response bodies name what failed in a few fixed words: they never echo a
// header value, token, password or secret, and neither do the filter's
// log lines (a failed check is logged at debug level with its reason).
//
// Headers: the spec maps header names to rules. A rule holds when the
// header is present and at least one of its values is one of the rule's
// Values or matches its Regexp (either is enough, as in Easegress). Rules
// are checked in order of header name.
//
// JWT: the token comes from the cookie cookieName, if set and present,
// else from "Authorization: Bearer". Only the algorithms the spec lists
// are accepted ("none" never is), each verified only with a key of its own
// family: HS* with the secret, RS*/PS*/ES*/EdDSA with the PEM public key
// or a key of the JWKS — so an HS256 token "signed" with a public key is
// refused. A JWKS is fetched on first use, kept for jwksRefreshInterval,
// and fetched again early when a token names an unknown key ID, at most
// once per jwksMinRefreshInterval: key rotation needs no reload, and
// random key IDs cannot make the filter hammer the key server. Key IDs are
// only ever map keys. exp (required unless expOptional), nbf, iat, iss and aud
// are checked against the pipeline's clock with clockSkew of leeway.
// Tokens longer than maxTokenSize are refused before they are parsed.
// Claims listed in forwardClaims are passed to the backend as request
// headers; incoming headers of those names are always removed first, so
// a client cannot forge them.
//
// Signature: see the Signature type for the signing scheme (an AWS
// SigV4-like HMAC-SHA256 over method, path, query, chosen headers, a
// timestamp and the body's hash, with keys by access key ID).
//
// OAuth2: a bearer token is checked either by RFC 7662 token
// introspection (active results are cached until the token's exp, at most
// maxCacheTTL, in a cache of bounded size) or as a JWT (the jwt rules).
//
// Basic auth: users come from an htpasswd file of bcrypt entries, which is
// re-read when its modification time or size changes (looked at no more
// than once per reloadInterval). The user name is passed on in X-Auth-User
// (an incoming X-Auth-User is removed).
//
// Everything is compiled when the filter is built; Handle is safe for
// concurrent use. The filter's JWKS and introspection clients use the
// pipeline's Transport when there is one; Close releases their idle
// connections and cancels fetches in flight.
package validator

import (
	"cmp"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"

	"github.com/sluicegw/sluice/filters/internal/headerops"
	"github.com/sluicegw/sluice/internal/clock"
	"github.com/sluicegw/sluice/pipeline"
)

// Invalid is the result of a request that failed validation.
const Invalid pipeline.Result = "invalid"

// DefaultRealm is the default of Spec.Realm.
const DefaultRealm = "sluice"

// Kind is the Validator filter kind.
var Kind = pipeline.Define[Spec]("Validator", []pipeline.Result{Invalid}, build).
	WithDescription("rejects requests that break a header rule (400) or lack valid credentials: JWT, HMAC signature, OAuth2, basic auth (401)")

// build is Kind's build function.
func build(env pipeline.Env, s *Spec) (pipeline.Filter, error) {
	v, err := NewWithEnv(s, env)
	if err != nil {
		return nil, err
	}
	return v, nil
}

// Spec is the Validator filter's configuration: Easegress v2's fields
// (headers, jwt, signature, oauth2, basicAuth) with more options each. At
// least one check must be configured.
//
//	kind: Validator
//	name: validator
//	headers:
//	  Content-Type:
//	    values: [application/json]
//	jwt:
//	  algorithms: [RS256, ES256]
//	  jwksURL: https://idp.example.com/.well-known/jwks.json
//	  issuer: https://idp.example.com/
//	  audiences: [orders]
//	  forwardClaims: { sub: X-User-Id }
type Spec struct {
	// Headers maps a header name (case-insensitive) to the rule its
	// values must satisfy. "Host" is the request's host, which net/http
	// keeps out of the header map.
	Headers map[string]HeaderRule `yaml:"headers,omitempty"`
	// JWT, when set, requires a valid JSON Web Token.
	JWT *JWTSpec `yaml:"jwt,omitempty"`
	// Signature, when set, requires a valid HMAC request signature.
	Signature *SignatureSpec `yaml:"signature,omitempty"`
	// OAuth2, when set, requires a valid OAuth2 bearer token.
	OAuth2 *OAuth2Spec `yaml:"oauth2,omitempty"`
	// BasicAuth, when set, requires a known user name and its password.
	BasicAuth *BasicAuthSpec `yaml:"basicAuth,omitempty"`
	// Realm is the realm of the WWW-Authenticate challenges of 401
	// answers (not an Easegress field). Empty means DefaultRealm.
	Realm string `yaml:"realm,omitempty"`
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
// spec that validates builds (a basicAuth userFile must also be readable).
func (s *Spec) Validate() error {
	if s.Headers == nil && s.JWT == nil && s.Signature == nil && s.OAuth2 == nil && s.BasicAuth == nil {
		return pipeline.FieldErr("headers", errors.New("configure at least one check: headers, jwt, signature, oauth2 or basicAuth"))
	}
	if s.Headers != nil {
		if _, err := compileHeaders(s.Headers); err != nil {
			return err
		}
	}
	if s.Realm != "" && !realmOK(s.Realm) {
		return pipeline.FieldErr("realm", errors.New("must be printable ASCII without quotes or backslashes"))
	}
	if s.JWT != nil {
		if err := s.JWT.validate(); err != nil {
			return pipeline.PrefixErr(err, "jwt")
		}
	}
	if s.Signature != nil {
		if err := s.Signature.validate(); err != nil {
			return pipeline.PrefixErr(err, "signature")
		}
	}
	if s.OAuth2 != nil {
		if err := s.OAuth2.validate(); err != nil {
			return pipeline.PrefixErr(err, "oauth2")
		}
	}
	if s.BasicAuth != nil {
		if err := s.BasicAuth.validate(); err != nil {
			return pipeline.PrefixErr(err, "basicAuth")
		}
	}
	return nil
}

func realmOK(r string) bool {
	for i := 0; i < len(r); i++ {
		if c := r[i]; c < ' ' || c > '~' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func compileHeaders(headers map[string]HeaderRule) ([]headerRule, error) {
	if len(headers) == 0 {
		return nil, pipeline.FieldErr("headers", errors.New("at least one header rule is required"))
	}
	if err := headerops.CheckNames("headers", headers); err != nil {
		return nil, err
	}
	rules := make([]headerRule, 0, len(headers))
	for name, hr := range headers {
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
	rules     []headerRule // sorted by name, so the reported header is stable
	jwt       *jwtVerifier
	signature *signatureVerifier
	oauth2    *oauth2Verifier
	basic     *basicAuth
	logger    *slog.Logger

	bearerChallenge, basicChallenge, signatureChallenge string
}

type headerRule struct {
	name    string // canonical
	values  []string
	re      *regexp.Regexp
	missing []byte // response bodies
	invalid []byte
}

// New builds a Validator from s, which it checks as Spec.Validate does,
// with the wall clock, no logging and its own HTTP transport. Kind builds
// filters with NewWithEnv.
func New(s *Spec) (*Validator, error) { return NewWithEnv(s, pipeline.Env{}) }

// NewWithEnv builds a Validator from s with env's clock, logger and
// transport.
func NewWithEnv(s *Spec, env pipeline.Env) (*Validator, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if env.Clock == nil {
		env.Clock = clock.Real()
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	realm := s.Realm
	if realm == "" {
		realm = DefaultRealm
	}
	v := &Validator{
		logger:             env.Logger,
		bearerChallenge:    `Bearer realm="` + realm + `", error="invalid_token"`,
		basicChallenge:     `Basic realm="` + realm + `", charset="UTF-8"`,
		signatureChallenge: SignatureScheme + ` realm="` + realm + `"`,
	}
	var err error
	if s.Headers != nil {
		if v.rules, err = compileHeaders(s.Headers); err != nil {
			return nil, err
		}
	}
	if s.JWT != nil {
		if v.jwt, err = newJWTVerifier(s.JWT, env); err != nil {
			return nil, pipeline.PrefixErr(err, "jwt")
		}
	}
	if s.Signature != nil {
		v.signature = newSignatureVerifier(s.Signature, env)
	}
	if s.OAuth2 != nil {
		if v.oauth2, err = newOAuth2Verifier(s.OAuth2, env); err != nil {
			v.Close()
			return nil, pipeline.PrefixErr(err, "oauth2")
		}
	}
	if s.BasicAuth != nil {
		if v.basic, err = newBasicAuth(s.BasicAuth, env); err != nil {
			v.Close()
			return nil, pipeline.PrefixErr(err, "basicAuth")
		}
	}
	return v, nil
}

// Handle passes a request that satisfies every check and answers any
// other with 400, 401, 413 or 503 (see the package comment).
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
	if v.jwt != nil {
		v.jwt.strip(req.Header)
		if f := v.jwt.verify(req, v.jwt.extract(req)); f != nil {
			return v.deny(c, "jwt", f, v.bearerChallenge)
		}
	}
	if v.signature != nil {
		if f := v.signature.verify(req); f != nil {
			return v.deny(c, "signature", f, v.signatureChallenge)
		}
	}
	if v.oauth2 != nil {
		if f := v.oauth2.verify(req); f != nil {
			return v.deny(c, "oauth2", f, v.bearerChallenge)
		}
	}
	if v.basic != nil {
		if f := v.basic.verify(req); f != nil {
			return v.deny(c, "basicAuth", f, v.basicChallenge)
		}
	}
	return pipeline.Continue
}

// Close releases the idle connections of the filter's HTTP clients and
// cancels their requests in flight.
func (v *Validator) Close() error {
	if v.jwt != nil {
		v.jwt.close()
	}
	if v.oauth2 != nil {
		v.oauth2.close()
	}
	return nil
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

// failure is why a credential check failed: a status and a fixed reason,
// which never holds anything the client sent.
type failure struct {
	status int
	reason string
}

func unauthorized(reason string) *failure { return &failure{http.StatusUnauthorized, reason} }

// deny answers a failed credential check.
func (v *Validator) deny(c *pipeline.Context, check string, f *failure, challenge string) pipeline.Result {
	v.logger.Debug("request refused", "check", check, "status", f.status, "reason", f.reason)
	var body string
	switch f.status {
	case http.StatusUnauthorized:
		body = "unauthorized: " + f.reason + "\n"
	default:
		body = strconv.Itoa(f.status) + " " + http.StatusText(f.status) + ": " + f.reason + "\n"
	}
	resp := pipeline.NewResponse(c.Request(), f.status, "text/plain; charset=utf-8", []byte(body))
	if f.status == http.StatusUnauthorized {
		resp.Header.Set("WWW-Authenticate", challenge)
	}
	c.SetResponse(resp)
	return Invalid
}

var (
	_ pipeline.Filter = (*Validator)(nil)
	_ pipeline.Closer = (*Validator)(nil)
)
