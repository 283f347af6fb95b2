package validator

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/sluicegw/sluice/pipeline"
)

// Defaults of TokenIntrospectSpec.
const (
	DefaultIntrospectTimeout  = 5 * time.Second
	DefaultIntrospectCacheTTL = 5 * time.Minute
	DefaultIntrospectCache    = 10000
)

// OAuth2Spec configures the check of OAuth2 bearer tokens, as in
// Easegress: by token introspection or as JWTs. Set exactly one.
type OAuth2Spec struct {
	// TokenIntrospect checks tokens with the authorization server's
	// RFC 7662 introspection endpoint.
	TokenIntrospect *TokenIntrospectSpec `yaml:"tokenIntrospect,omitempty"`
	// JWT checks tokens that are JWTs, with the rules of the jwt check
	// (the token is always read from the Authorization header).
	JWT *JWTSpec `yaml:"jwt,omitempty"`
}

// TokenIntrospectSpec configures RFC 7662 token introspection: the filter
// POSTs token=<the bearer token> to EndPoint, authenticated as the client,
// and accepts the token when the answer says "active": true.
//
//	tokenIntrospect:
//	  endPoint: https://idp.example.com/oauth2/introspect
//	  clientId: gateway
//	  clientSecret: s3cr3t
type TokenIntrospectSpec struct {
	// EndPoint is the introspection endpoint's http or https URL.
	EndPoint string `yaml:"endPoint"`
	// ClientID and ClientSecret authenticate the gateway to the endpoint
	// with HTTP basic auth (RFC 6749 section 2.3.1).
	ClientID     string `yaml:"clientId,omitempty"`
	ClientSecret string `yaml:"clientSecret,omitempty"`
	// BasicAuth, instead of ClientID and ClientSecret, is the base64 of
	// "id:secret" sent as is (the Easegress field).
	BasicAuth string `yaml:"basicAuth,omitempty"`
	// InsecureTLS skips the verification of the endpoint's certificate.
	// Only for tests; default false.
	InsecureTLS bool `yaml:"insecureTls,omitempty"`
	// Timeout bounds one introspection call. Default 5s.
	Timeout time.Duration `yaml:"timeout,omitempty"`
	// MaxCacheTTL is the longest an active answer is reused; it is never
	// reused past the token's exp. Default 5m.
	MaxCacheTTL time.Duration `yaml:"maxCacheTTL,omitempty"`
	// CacheSize bounds the number of cached answers. Default 10000.
	CacheSize int `yaml:"cacheSize,omitempty"`
}

func (s *OAuth2Spec) validate() error {
	switch {
	case (s.TokenIntrospect == nil) == (s.JWT == nil):
		return pipeline.FieldErr("tokenIntrospect", errors.New("set tokenIntrospect or jwt, exactly one"))
	case s.JWT != nil:
		if s.JWT.CookieName != "" {
			return pipeline.FieldErr("jwt.cookieName", errors.New("OAuth2 tokens come from the Authorization header"))
		}
		return pipeline.PrefixErr(s.JWT.validate(), "jwt")
	}
	t := s.TokenIntrospect
	u, err := url.Parse(t.EndPoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return pipeline.FieldErr("tokenIntrospect.endPoint", errors.New("must be an absolute http or https URL"))
	}
	if t.BasicAuth != "" && (t.ClientID != "" || t.ClientSecret != "") {
		return pipeline.FieldErr("tokenIntrospect.basicAuth", errors.New("set basicAuth or clientId and clientSecret, not both"))
	}
	if t.Timeout < 0 || t.MaxCacheTTL < 0 || t.CacheSize < 0 {
		return pipeline.FieldErr("tokenIntrospect", errors.New("timeout, maxCacheTTL and cacheSize must not be negative"))
	}
	return nil
}

// oauth2Verifier checks bearer tokens by introspection or as JWTs.
type oauth2Verifier struct {
	jwt *jwtVerifier // or:

	endPoint     string
	authHeader   string
	client       *http.Client
	ownTransport *http.Transport
	timeout      time.Duration
	maxTTL       time.Duration
	clock        pipeline.Clock
	logger       *slog.Logger
	ctx          context.Context
	cancel       context.CancelFunc

	mu      sync.Mutex
	cache   map[[32]byte]time.Time // hash of an active token → until when
	maxSize int
}

func newOAuth2Verifier(s *OAuth2Spec, env pipeline.Env) (*oauth2Verifier, error) {
	if s.JWT != nil {
		j, err := newJWTVerifier(s.JWT, env)
		if err != nil {
			return nil, pipeline.PrefixErr(err, "jwt")
		}
		return &oauth2Verifier{jwt: j}, nil
	}
	t := s.TokenIntrospect
	v := &oauth2Verifier{
		endPoint: t.EndPoint,
		timeout:  orDefault(t.Timeout, DefaultIntrospectTimeout),
		maxTTL:   orDefault(t.MaxCacheTTL, DefaultIntrospectCacheTTL),
		clock:    env.Clock,
		logger:   env.Logger,
		cache:    map[[32]byte]time.Time{},
		maxSize:  t.CacheSize,
	}
	if v.maxSize == 0 {
		v.maxSize = DefaultIntrospectCache
	}
	switch {
	case t.BasicAuth != "":
		v.authHeader = "Basic " + t.BasicAuth
	case t.ClientID != "":
		req := &http.Request{Header: http.Header{}}
		req.SetBasicAuth(url.QueryEscape(t.ClientID), url.QueryEscape(t.ClientSecret))
		v.authHeader = req.Header.Get("Authorization")
	}
	if t.InsecureTLS && env.Transport == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // #nosec G402 -- explicitly asked for in the spec
		v.client, v.ownTransport = &http.Client{Transport: tr, CheckRedirect: noRedirects}, tr
	} else {
		v.client, v.ownTransport = httpClient(env)
	}
	v.ctx, v.cancel = context.WithCancel(context.Background())
	return v, nil
}

func (v *oauth2Verifier) verify(r *http.Request) *failure {
	if v.jwt != nil {
		v.jwt.strip(r.Header)
		return v.jwt.verify(r, bearer(r, v.jwt.maxSize))
	}
	token := bearer(r, DefaultMaxTokenSize)
	if token == "" {
		return unauthorized("missing token")
	}
	if len(token) > DefaultMaxTokenSize {
		return unauthorized("token too large")
	}
	key := sha256.Sum256([]byte(token))
	now := v.clock.Now()
	v.mu.Lock()
	until, ok := v.cache[key]
	if ok && !now.Before(until) {
		delete(v.cache, key)
		ok = false
	}
	v.mu.Unlock()
	if ok {
		return nil
	}
	active, exp, err := v.introspect(r.Context(), token)
	if err != nil {
		v.logger.Warn("token introspection failed", "error", err)
		return &failure{http.StatusServiceUnavailable, "token introspection failed"}
	}
	if !active {
		return unauthorized("token not active")
	}
	until = now.Add(v.maxTTL)
	if !exp.IsZero() {
		if !now.Before(exp) {
			return unauthorized("token expired")
		}
		if exp.Before(until) {
			until = exp
		}
	}
	v.remember(key, until, now)
	return nil
}

// remember caches an active token, making room by dropping expired
// entries, then arbitrary ones.
func (v *oauth2Verifier) remember(key [32]byte, until, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cache) >= v.maxSize {
		for k, u := range v.cache {
			if !now.Before(u) {
				delete(v.cache, k)
			}
		}
		for k := range v.cache {
			if len(v.cache) < v.maxSize {
				break
			}
			delete(v.cache, k)
		}
	}
	v.cache[key] = until
}

// introspect asks the endpoint about token. Errors never hold the token.
func (v *oauth2Verifier) introspect(ctx context.Context, token string) (active bool, exp time.Time, err error) {
	ctx, cancel := context.WithTimeout(ctx, v.timeout)
	defer cancel()
	stop := context.AfterFunc(v.ctx, cancel)
	defer stop()
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.endPoint, strings.NewReader(form.Encode()))
	if err != nil {
		return false, exp, errors.New("building the introspection request failed")
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if v.authHeader != "" {
		req.Header.Set("Authorization", v.authHeader)
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return false, exp, fmt.Errorf("introspection request failed: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return false, exp, fmt.Errorf("introspection answered %s", resp.Status)
	}
	var answer struct {
		Active bool         `json:"active"`
		Exp    *json.Number `json:"exp"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&answer); err != nil {
		return false, exp, errors.New("introspection answer is not JSON")
	}
	if answer.Exp != nil {
		f, err := answer.Exp.Float64()
		if err != nil {
			return false, exp, errors.New("introspection answer has a bad exp")
		}
		exp = time.Unix(int64(f), 0)
	}
	return answer.Active, exp, nil
}

func (v *oauth2Verifier) close() {
	if v.jwt != nil {
		v.jwt.close()
		return
	}
	v.cancel()
	if v.ownTransport != nil {
		v.ownTransport.CloseIdleConnections()
	}
}
