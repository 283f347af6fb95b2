package validator

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sluicegw/sluice/pipeline"
)

// The request signing scheme of SignatureSpec.
//
// A client signs a request with a secret it shares with the gateway,
// known by an access key ID:
//
//  1. It sets DateHeader to the current UTC time as 20060102T150405Z.
//
//  2. It hashes the body with SHA-256 (hex, lower case); with
//     excludeBody, the hash is the literal UNSIGNED-PAYLOAD.
//
//  3. It picks the headers to sign: always host and x-sluice-date, plus
//     any others (content-type, ...). Names are lower case, sorted,
//     joined with ";": the signed headers list.
//
//  4. It builds the string to sign, lines joined with "\n":
//
//     SLUICE-HMAC-SHA256
//     <the DateHeader value>
//     <method>
//     <the path as sent, escaped>
//     <the canonical query: each name=value, both escaped with
//     url.QueryEscape, sorted, joined with "&">
//     <for each signed header: name:values, each trimmed, joined with ",">
//     ... (one line per header)
//     <the signed headers list>
//     <the body hash>
//
//  5. It sends Authorization: SLUICE-HMAC-SHA256 Credential=<access key
//     ID>, SignedHeaders=<list>, Signature=<hex HMAC-SHA256 of the string
//     to sign, keyed with the secret>.
//
// Sign does all of this. The gateway recomputes the signature and compares
// it in constant time; it refuses a date more than ttl away from its
// clock (either way), an unknown key, and a list that leaves out host or
// the date.
const (
	// SignatureScheme is the Authorization scheme of signed requests.
	SignatureScheme = "SLUICE-HMAC-SHA256"
	// DateHeader carries the time a request was signed.
	DateHeader = "X-Sluice-Date"
	// UnsignedPayload stands for the body hash with excludeBody.
	UnsignedPayload = "UNSIGNED-PAYLOAD"
	// SignatureDateFormat is the layout of DateHeader.
	SignatureDateFormat = "20060102T150405Z"
)

// Defaults of SignatureSpec.
const (
	DefaultSignatureTTL         = 5 * time.Minute
	DefaultSignatureMaxBodySize = 4 << 20
)

// SignatureSpec configures HMAC request signatures (see SignatureScheme
// and Sign). The field names follow Easegress's signer.
//
//	signature:
//	  accessKeys: { AKID1: secret-one, AKID2: secret-two }
//	  ttl: 5m
type SignatureSpec struct {
	// AccessKeyID and AccessKeySecret are one key; AccessKeys maps more
	// access key IDs to their secrets. At least one key; secrets of at
	// least 16 bytes.
	AccessKeyID     string            `yaml:"accessKeyId,omitempty"`
	AccessKeySecret string            `yaml:"accessKeySecret,omitempty"`
	AccessKeys      map[string]string `yaml:"accessKeys,omitempty"`
	// TTL is how far the signing time may be from the gateway's clock,
	// either way. Default 5m.
	TTL time.Duration `yaml:"ttl,omitempty"`
	// ExcludeBody leaves the body out of the signature (its hash is
	// UNSIGNED-PAYLOAD), so the filter need not read it.
	ExcludeBody bool `yaml:"excludeBody,omitempty"`
	// MaxBodySize is the largest body the filter reads to hash; a larger
	// one is answered with 413. Default 4 MiB.
	MaxBodySize int64 `yaml:"maxBodySize,omitempty"`
}

func (s *SignatureSpec) keys() map[string][]byte {
	keys := make(map[string][]byte, len(s.AccessKeys)+1)
	for id, secret := range s.AccessKeys {
		keys[id] = []byte(secret)
	}
	if s.AccessKeyID != "" {
		keys[s.AccessKeyID] = []byte(s.AccessKeySecret)
	}
	return keys
}

func (s *SignatureSpec) validate() error {
	if (s.AccessKeyID == "") != (s.AccessKeySecret == "") {
		return pipeline.FieldErr("accessKeyId", errors.New("set accessKeyId and accessKeySecret together"))
	}
	if _, dup := s.AccessKeys[s.AccessKeyID]; dup && s.AccessKeyID != "" {
		return pipeline.FieldErr("accessKeys."+s.AccessKeyID, errors.New("also accessKeyId"))
	}
	if len(s.keys()) == 0 {
		return pipeline.FieldErr("accessKeys", errors.New("configure at least one key (accessKeys, or accessKeyId and accessKeySecret)"))
	}
	if len(s.AccessKeySecret) > 0 && len(s.AccessKeySecret) < 16 {
		return pipeline.FieldErr("accessKeySecret", errors.New("shorter than 16 bytes"))
	}
	for _, id := range slices.Sorted(maps.Keys(s.AccessKeys)) {
		if id == "" || strings.ContainsAny(id, ", =\t") {
			return pipeline.FieldErr("accessKeys", fmt.Errorf("access key ID %q is empty or holds a separator", id))
		}
		if len(s.AccessKeys[id]) < 16 {
			return pipeline.FieldErr("accessKeys."+id, errors.New("secret shorter than 16 bytes"))
		}
	}
	if strings.ContainsAny(s.AccessKeyID, ", =\t") {
		return pipeline.FieldErr("accessKeyId", errors.New("holds a separator"))
	}
	if s.TTL < 0 {
		return pipeline.FieldErr("ttl", fmt.Errorf("must not be negative, got %v", s.TTL))
	}
	if s.MaxBodySize < 0 {
		return pipeline.FieldErr("maxBodySize", fmt.Errorf("must not be negative, got %d", s.MaxBodySize))
	}
	return nil
}

type signatureVerifier struct {
	keys        map[string][]byte
	ttl         time.Duration
	excludeBody bool
	maxBody     int64
	clock       pipeline.Clock
}

func newSignatureVerifier(s *SignatureSpec, env pipeline.Env) *signatureVerifier {
	v := &signatureVerifier{keys: s.keys(), ttl: orDefault(s.TTL, DefaultSignatureTTL), excludeBody: s.ExcludeBody, maxBody: s.MaxBodySize, clock: env.Clock}
	if v.maxBody == 0 {
		v.maxBody = DefaultSignatureMaxBodySize
	}
	return v
}

// authorization is a parsed signature Authorization header.
type authorization struct {
	credential, signedHeaders, signature string
}

func parseAuthorization(h string) (authorization, bool) {
	var a authorization
	rest, ok := strings.CutPrefix(h, SignatureScheme+" ")
	if !ok {
		return a, false
	}
	for part := range strings.SplitSeq(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return a, false
		}
		switch k {
		case "Credential":
			a.credential = v
		case "SignedHeaders":
			a.signedHeaders = v
		case "Signature":
			a.signature = v
		default:
			return a, false
		}
	}
	return a, a.credential != "" && a.signedHeaders != "" && a.signature != ""
}

func (v *signatureVerifier) verify(r *http.Request) *failure {
	h := r.Header["Authorization"]
	if len(h) != 1 || len(h[0]) > 4096 {
		return unauthorized("missing signature")
	}
	a, ok := parseAuthorization(h[0])
	if !ok {
		return unauthorized("malformed signature")
	}
	secret, ok := v.keys[a.credential]
	if !ok {
		return unauthorized("unknown access key")
	}
	names := strings.Split(a.signedHeaders, ";")
	if !slices.IsSorted(names) || !slices.Contains(names, "host") || !slices.Contains(names, "x-sluice-date") || len(slices.Compact(slices.Clone(names))) != len(names) {
		return unauthorized("signed headers must be sorted, unique and include host and x-sluice-date")
	}
	date := r.Header.Get(DateHeader)
	t, err := time.Parse(SignatureDateFormat, date)
	if err != nil {
		return unauthorized("bad signature date")
	}
	if d := v.clock.Now().Sub(t); d > v.ttl || d < -v.ttl {
		return unauthorized("signature expired")
	}
	bodyHash := UnsignedPayload
	if !v.excludeBody {
		var f *failure
		if bodyHash, f = v.hashBody(r); f != nil {
			return f
		}
	}
	want := signature(secret, stringToSign(r, names, date, bodyHash))
	got, err := hex.DecodeString(a.signature)
	if err != nil || !hmac.Equal(got, want) {
		return unauthorized("bad signature")
	}
	return nil
}

// hashBody reads the body (up to the limit), puts it back, and returns
// its hash.
func (v *signatureVerifier) hashBody(r *http.Request) (string, *failure) {
	if r.Body == nil || r.Body == http.NoBody {
		return hex.EncodeToString(emptyHash[:]), nil
	}
	if r.ContentLength > v.maxBody {
		return "", &failure{http.StatusRequestEntityTooLarge, "body too large to verify"}
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, v.maxBody+1))
	r.Body.Close()
	if err != nil {
		return "", &failure{http.StatusBadRequest, "reading the body failed"}
	}
	if int64(len(b)) > v.maxBody {
		return "", &failure{http.StatusRequestEntityTooLarge, "body too large to verify"}
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

var emptyHash = sha256.Sum256(nil)

func signature(secret []byte, s string) []byte {
	m := hmac.New(sha256.New, secret)
	io.WriteString(m, s)
	return m.Sum(nil)
}

// stringToSign builds the string a signature covers (see SignatureScheme).
func stringToSign(r *http.Request, names []string, date, bodyHash string) string {
	var b strings.Builder
	b.WriteString(SignatureScheme + "\n")
	b.WriteString(date + "\n")
	b.WriteString(r.Method + "\n")
	b.WriteString(r.URL.EscapedPath() + "\n")
	b.WriteString(canonicalQuery(r.URL.Query()) + "\n")
	for _, n := range names {
		var vals []string
		if n == "host" {
			vals = []string{r.Host}
		} else {
			vals = r.Header.Values(n)
		}
		for i := range vals {
			vals[i] = strings.TrimSpace(vals[i])
		}
		b.WriteString(n + ":" + strings.Join(vals, ",") + "\n")
	}
	b.WriteString(strings.Join(names, ";") + "\n")
	b.WriteString(bodyHash)
	return b.String()
}

func canonicalQuery(q url.Values) string {
	var parts []string
	for k, vs := range q {
		for _, v := range vs {
			parts = append(parts, url.QueryEscape(k)+"="+url.QueryEscape(v))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "&")
}

// Sign signs r for a Validator's signature check, with the access key id
// and its secret, at time now: it sets DateHeader and Authorization,
// signing host, the date and the extra headers named (case-insensitive).
// Unless excludeBody, it reads r's body to hash it and puts it back.
func Sign(r *http.Request, id, secret string, now time.Time, excludeBody bool, headers ...string) error {
	date := now.UTC().Format(SignatureDateFormat)
	r.Header.Set(DateHeader, date)
	names := []string{"host", "x-sluice-date"}
	for _, h := range headers {
		names = append(names, strings.ToLower(h))
	}
	slices.Sort(names)
	names = slices.Compact(names)
	bodyHash := UnsignedPayload
	if !excludeBody {
		sum := emptyHash
		if r.Body != nil && r.Body != http.NoBody {
			b, err := io.ReadAll(r.Body)
			r.Body.Close()
			if err != nil {
				return err
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
			r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
			sum = sha256.Sum256(b)
		}
		bodyHash = hex.EncodeToString(sum[:])
	}
	sig := signature([]byte(secret), stringToSign(r, names, date, bodyHash))
	r.Header.Set("Authorization", SignatureScheme+" Credential="+id+", SignedHeaders="+strings.Join(names, ";")+", Signature="+hex.EncodeToString(sig))
	return nil
}
