package validator

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicegw/sluice/filters/internal/headerops"
	"github.com/sluicegw/sluice/pipeline"
)

// Defaults of JWTSpec.
const (
	DefaultMaxTokenSize           = 8192
	DefaultClockSkew              = 30 * time.Second
	DefaultJWKSRefreshInterval    = 10 * time.Minute
	DefaultJWKSMinRefreshInterval = time.Minute
	DefaultJWKSTimeout            = 5 * time.Second
)

// minRSABits is the smallest RSA key the filter trusts.
const minRSABits = 2048

// algorithms lists the JWT algorithms a JWTSpec may allow.
var algorithms = []string{
	"HS256", "HS384", "HS512",
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

// JWTSpec configures the validation of JSON Web Tokens: Easegress's
// cookieName, algorithm, publicKey and secret, plus algorithm lists,
// JWKS, claim checks and claim forwarding.
//
//	jwt:
//	  algorithms: [RS256]
//	  jwksURL: https://idp.example.com/jwks.json
//	  issuer: https://idp.example.com/
//	  audiences: [orders]
//	  forwardClaims: { sub: X-User-Id, scope: X-Scopes }
type JWTSpec struct {
	// CookieName, when set, names a cookie the token is read from; a
	// request without that cookie may still send the token in
	// "Authorization: Bearer".
	CookieName string `yaml:"cookieName,omitempty"`
	// Algorithm is one allowed algorithm (the Easegress field); it is
	// added to Algorithms.
	Algorithm string `yaml:"algorithm,omitempty"`
	// Algorithms lists the allowed algorithms, from HS256, HS384, HS512,
	// RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512 and
	// EdDSA. A token signed with any other algorithm (including "none")
	// is refused. At least one, in this or Algorithm.
	Algorithms []string `yaml:"algorithms,omitempty"`
	// Secret is the base64 (standard or URL alphabet, padded or not)
	// HMAC key of HS* tokens; required exactly when an HS* algorithm is
	// allowed. At least 32 bytes. (Easegress takes this field in hex:
	// re-encode such a secret as base64.)
	Secret string `yaml:"secret,omitempty"`
	// PublicKey is a PEM public key (PKIX "PUBLIC KEY", "RSA PUBLIC KEY"
	// or a CERTIFICATE) for the RS*, PS*, ES* or EdDSA algorithms. RSA
	// keys have at least 2048 bits. Set this or JWKSURL when such an
	// algorithm is allowed, not both.
	PublicKey string `yaml:"publicKey,omitempty"`
	// JWKSURL is an http or https URL of a JSON Web Key Set holding the
	// public keys; tokens pick theirs by key ID (kid).
	JWKSURL string `yaml:"jwksURL,omitempty"`
	// JWKSRefreshInterval is how long a fetched key set is used before it
	// is fetched again (the old one stays in use if that fails). Default
	// 10m.
	JWKSRefreshInterval time.Duration `yaml:"jwksRefreshInterval,omitempty"`
	// JWKSMinRefreshInterval is the least time between two fetches: a
	// token with an unknown key ID triggers a fetch only when the last
	// one is at least this old. Default 1m.
	JWKSMinRefreshInterval time.Duration `yaml:"jwksMinRefreshInterval,omitempty"`
	// JWKSTimeout bounds one fetch of the key set. Default 5s.
	JWKSTimeout time.Duration `yaml:"jwksTimeout,omitempty"`
	// Issuer, when set, is the required iss claim.
	Issuer string `yaml:"issuer,omitempty"`
	// Audiences, when set, lists accepted audiences: the aud claim must
	// hold at least one of them.
	Audiences []string `yaml:"audiences,omitempty"`
	// ClockSkew is the leeway of the exp and nbf checks. Default 30s;
	// negative is refused.
	ClockSkew time.Duration `yaml:"clockSkew,omitempty"`
	// ExpOptional accepts tokens without an exp claim. Default false:
	// tokens must expire.
	ExpOptional bool `yaml:"expOptional,omitempty"`
	// ForwardClaims maps a claim name to the request header its value is
	// passed on in: strings as they are, numbers and booleans in JSON
	// form, lists of those joined with ",". A claim that is missing, of
	// another type, or whose value could not be sent in a header, sets
	// no header. Incoming headers of these names are always removed.
	ForwardClaims map[string]string `yaml:"forwardClaims,omitempty"`
	// MaxTokenSize is the longest token, in bytes, that is parsed at all.
	// Default 8192.
	MaxTokenSize int `yaml:"maxTokenSize,omitempty"`
}

func (s *JWTSpec) algorithms() []string {
	algs := slices.Clone(s.Algorithms)
	if s.Algorithm != "" && !slices.Contains(algs, s.Algorithm) {
		algs = append(algs, s.Algorithm)
	}
	return algs
}

func (s *JWTSpec) validate() error {
	_, err := s.compile()
	return err
}

// jwtKeys is what compile makes of a JWTSpec's keys.
type jwtKeys struct {
	algs      []string
	secret    []byte
	publicKey any
	jwksURL   *url.URL
}

func (s *JWTSpec) compile() (*jwtKeys, error) {
	k := &jwtKeys{algs: s.algorithms()}
	if len(k.algs) == 0 {
		return nil, pipeline.FieldErr("algorithms", errors.New("allow at least one algorithm (algorithms or algorithm)"))
	}
	var hs, asym bool
	for i, a := range k.algs {
		if !slices.Contains(algorithms, a) {
			field := "algorithms[" + strconv.Itoa(i) + "]"
			if i >= len(s.Algorithms) {
				field = "algorithm"
			}
			return nil, pipeline.FieldErr(field, fmt.Errorf("unknown algorithm %q; use one of %s", a, strings.Join(algorithms, ", ")))
		}
		if strings.HasPrefix(a, "HS") {
			hs = true
		} else {
			asym = true
		}
	}
	switch {
	case hs && s.Secret == "":
		return nil, pipeline.FieldErr("secret", errors.New("required for the HS* algorithms"))
	case !hs && s.Secret != "":
		return nil, pipeline.FieldErr("secret", errors.New("set, but no HS* algorithm is allowed"))
	case asym && s.PublicKey == "" && s.JWKSURL == "":
		return nil, pipeline.FieldErr("publicKey", errors.New("set publicKey or jwksURL for the RS*, PS*, ES* and EdDSA algorithms"))
	case !asym && (s.PublicKey != "" || s.JWKSURL != ""):
		return nil, pipeline.FieldErr("publicKey", errors.New("a public key or jwksURL is set, but only HS* algorithms are allowed"))
	case s.PublicKey != "" && s.JWKSURL != "":
		return nil, pipeline.FieldErr("jwksURL", errors.New("set publicKey or jwksURL, not both"))
	}
	if s.Secret != "" {
		b, err := decodeBase64(s.Secret)
		if err != nil {
			return nil, pipeline.FieldErr("secret", errors.New("not base64")) // never the secret itself
		}
		if len(b) < 32 {
			return nil, pipeline.FieldErr("secret", fmt.Errorf("%d bytes; HMAC keys need at least 32", len(b)))
		}
		k.secret = b
	}
	if s.PublicKey != "" {
		pk, err := parsePublicKeyPEM(s.PublicKey)
		if err != nil {
			return nil, pipeline.FieldErr("publicKey", err)
		}
		for i, a := range k.algs {
			if !strings.HasPrefix(a, "HS") && !keyFits(pk, a) {
				return nil, pipeline.FieldErr("algorithms", fmt.Errorf("the public key (%s) cannot verify algorithm %s (entry %d)", keyType(pk), a, i))
			}
		}
		k.publicKey = pk
	}
	if s.JWKSURL != "" {
		u, err := url.Parse(s.JWKSURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, pipeline.FieldErr("jwksURL", errors.New("must be an absolute http or https URL"))
		}
		k.jwksURL = u
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"jwksRefreshInterval", s.JWKSRefreshInterval}, {"jwksMinRefreshInterval", s.JWKSMinRefreshInterval}, {"jwksTimeout", s.JWKSTimeout}, {"clockSkew", s.ClockSkew}} {
		if f.d < 0 {
			return nil, pipeline.FieldErr(f.name, fmt.Errorf("must not be negative, got %v", f.d))
		}
	}
	if s.MaxTokenSize < 0 {
		return nil, pipeline.FieldErr("maxTokenSize", fmt.Errorf("must not be negative, got %d", s.MaxTokenSize))
	}
	if s.CookieName != "" && !headerops.IsToken(s.CookieName) {
		return nil, pipeline.FieldErr("cookieName", fmt.Errorf("%q is not a valid cookie name", s.CookieName))
	}
	for _, claim := range slices.Sorted(maps.Keys(s.ForwardClaims)) {
		h := s.ForwardClaims[claim]
		if claim == "" {
			return nil, pipeline.FieldErr("forwardClaims", errors.New("empty claim name"))
		}
		if !headerops.IsToken(h) {
			return nil, pipeline.FieldErr("forwardClaims."+claim, fmt.Errorf("%q is not a valid header name", h))
		}
	}
	return k, nil
}

func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

func parsePublicKeyPEM(s string) (any, error) {
	block, _ := pem.Decode([]byte(strings.TrimSpace(s)))
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("PEM block %q is not a public key or certificate", block.Type)
	}
	if err != nil {
		return nil, err
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key of %d bits; at least %d are required", k.N.BitLen(), minRSABits)
		}
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
	return key, nil
}

// keyFits reports whether key can verify algorithm alg.
func keyFits(key any, alg string) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve.Params().BitSize == 256
		case "ES384":
			return k.Curve.Params().BitSize == 384
		case "ES512":
			return k.Curve.Params().BitSize == 521
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

func keyType(key any) string {
	switch key.(type) {
	case *rsa.PublicKey:
		return "RSA"
	case *ecdsa.PublicKey:
		return "ECDSA"
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return "unknown"
}

// jwtVerifier checks tokens as a JWTSpec says.
type jwtVerifier struct {
	keys       *jwtKeys
	jwks       *jwks // nil without jwksURL
	parser     *jwt.Parser
	cookieName string
	maxSize    int
	forward    []forwardedClaim // sorted by claim
}

type forwardedClaim struct{ claim, header string }

func newJWTVerifier(s *JWTSpec, env pipeline.Env) (*jwtVerifier, error) {
	k, err := s.compile()
	if err != nil {
		return nil, err
	}
	skew := s.ClockSkew
	if skew == 0 {
		skew = DefaultClockSkew
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(k.algs),
		jwt.WithTimeFunc(env.Clock.Now),
		jwt.WithLeeway(skew),
		jwt.WithJSONNumber(),
		jwt.WithIssuedAt(),
	}
	if !s.ExpOptional {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	if s.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(s.Issuer))
	}
	if len(s.Audiences) > 0 {
		opts = append(opts, jwt.WithAudience(s.Audiences...))
	}
	v := &jwtVerifier{keys: k, parser: jwt.NewParser(opts...), cookieName: s.CookieName, maxSize: s.MaxTokenSize}
	if v.maxSize == 0 {
		v.maxSize = DefaultMaxTokenSize
	}
	for _, claim := range slices.Sorted(maps.Keys(s.ForwardClaims)) {
		v.forward = append(v.forward, forwardedClaim{claim, textproto.CanonicalMIMEHeaderKey(s.ForwardClaims[claim])})
	}
	if k.jwksURL != nil {
		v.jwks = newJWKS(k.jwksURL, s, env)
	}
	return v, nil
}

// extract returns the request's token: from the cookie, if configured and
// present, else from a bearer Authorization header; "" if neither. A
// token longer than the limit is returned cut to limit+1 bytes, which
// verify refuses without parsing.
func (v *jwtVerifier) extract(r *http.Request) string {
	if v.cookieName != "" {
		if c, err := r.Cookie(v.cookieName); err == nil && c.Value != "" {
			return c.Value
		}
	}
	return bearer(r, v.maxSize)
}

// bearer returns the token of an "Authorization: Bearer" header, or "".
// The scheme is case-insensitive (RFC 9110); anything longer than limit is
// cut to limit+1 bytes.
func bearer(r *http.Request, limit int) string {
	h := r.Header["Authorization"]
	if len(h) != 1 {
		return ""
	}
	a := h[0]
	const prefix = "bearer "
	if len(a) <= len(prefix) || !strings.EqualFold(a[:len(prefix)], prefix) {
		return ""
	}
	a = a[len(prefix):]
	if len(a) > limit {
		return a[:limit+1]
	}
	return strings.TrimSpace(a)
}

// strip removes incoming headers that forwarded claims would set.
func (v *jwtVerifier) strip(h http.Header) {
	for _, f := range v.forward {
		delete(h, f.header)
	}
}

// verify checks token and, when it is valid, sets the forwarded claims'
// headers on r.
func (v *jwtVerifier) verify(r *http.Request, token string) *failure {
	if token == "" {
		return unauthorized("missing token")
	}
	if len(token) > v.maxSize {
		return unauthorized("token too large")
	}
	if strings.Count(token, ".") != 2 {
		return unauthorized("malformed token")
	}
	claims := jwt.MapClaims{}
	_, err := v.parser.ParseWithClaims(token, claims, v.key)
	if err != nil {
		return unauthorized(jwtReason(err))
	}
	for _, f := range v.forward {
		if s, ok := claimString(claims[f.claim]); ok {
			r.Header[f.header] = []string{s}
		}
	}
	return nil
}

var (
	errNoKey      = errors.New("no key for the token")
	errKeyUnknown = errors.New("unknown key ID")
)

// key finds the key that verifies t. The parser has already checked that
// t's algorithm is allowed.
func (v *jwtVerifier) key(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if strings.HasPrefix(alg, "HS") {
		if v.keys.secret == nil {
			return nil, errNoKey
		}
		return v.keys.secret, nil
	}
	if v.jwks != nil {
		kid, _ := t.Header["kid"].(string)
		return v.jwks.key(kid, alg)
	}
	if v.keys.publicKey == nil || !keyFits(v.keys.publicKey, alg) {
		return nil, errNoKey
	}
	return v.keys.publicKey, nil
}

// jwtReason turns a parse error into a fixed reason.
func jwtReason(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "token expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "token not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "wrong issuer"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong audience"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "required claim missing"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "bad signature"
	case errors.Is(err, errKeysUnavailable):
		return "keys unavailable"
	case errors.Is(err, errKeyUnknown), errors.Is(err, errNoKey), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "no key for the token"
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return "invalid claims"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed token"
	}
	return "invalid token"
}

// claimString renders a forwardable claim value.
func claimString(v any) (string, bool) {
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case json.Number:
		s = v.String()
	case bool:
		s = strconv.FormatBool(v)
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			p, ok := claimString(e)
			if !ok || strings.Contains(p, ",") {
				return "", false
			}
			parts = append(parts, p)
		}
		s = strings.Join(parts, ",")
	default:
		return "", false
	}
	if !headerops.ValidValue(s) {
		return "", false
	}
	return s, true
}

func (v *jwtVerifier) close() {
	if v.jwks != nil {
		v.jwks.close()
	}
}
