package validator_test

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/filters/validator"
	"github.com/sluicegw/sluice/pipeline"
)

// A pipeline, configured in YAML as in Easegress, that lets through only
// JSON requests that name an API version.
func Example() {
	const spec = `
flow:
  - filter: validator
    jumpIf: { invalid: END }
filters:
  - name: validator
    kind: Validator
    headers:
      Content-Type:
        values: [application/json]
      X-Api-Version:
        regexp: '^v[0-9]+$'
`
	var ps pipeline.Spec
	if err := yaml.Unmarshal([]byte(spec), &ps); err != nil {
		panic(err)
	}
	ps.Name = "api"
	reg, err := pipeline.NewRegistry(validator.Kind)
	if err != nil {
		panic(err)
	}
	p, err := pipeline.New(ps, reg, pipeline.Env{})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	for _, version := range []string{"v2", "latest", ""} {
		req := httptest.NewRequest("POST", "/orders", strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		if version != "" {
			req.Header.Set("X-Api-Version", version)
		}
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		fmt.Printf("%q: %d %q\n", version, rec.Code, rec.Body)
	}
	// Output:
	// "v2": 200 ""
	// "latest": 400 "invalid header X-Api-Version\n"
	// "": 400 "missing header X-Api-Version\n"
}

// A Validator that accepts HS256 JWTs from an identity provider and passes
// the subject on to the backend in X-User-Id; a client cannot set that
// header itself.
func Example_jwt() {
	secret := []byte("an-example-key-of-at-least-32-bytes!")
	v, err := validator.New(&validator.Spec{JWT: &validator.JWTSpec{
		Algorithms:    []string{"HS256"},
		Secret:        base64.StdEncoding.EncodeToString(secret),
		Issuer:        "https://idp.example.com/",
		ForwardClaims: map[string]string{"sub": "X-User-Id"},
	}})
	if err != nil {
		panic(err)
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": "https://idp.example.com/", "sub": "alice", "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(secret)
	if err != nil {
		panic(err)
	}
	for _, auth := range []string{"Bearer " + token, "Bearer " + token[:len(token)-2] + "xx", ""} {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("X-User-Id", "mallory")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		c := pipeline.NewContext(req)
		if res := v.Handle(c); res != pipeline.Continue {
			resp := c.Response()
			body, _ := io.ReadAll(resp.Body)
			fmt.Printf("%d %q %s\n", resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
			continue
		}
		fmt.Println("passed as", c.Request().Header.Get("X-User-Id"))
	}
	// Output:
	// passed as alice
	// 401 "unauthorized: bad signature\n" Bearer realm="sluice", error="invalid_token"
	// 401 "unauthorized: missing token\n" Bearer realm="sluice", error="invalid_token"
}

// Sign signs a request the way the signature check verifies it.
func ExampleSign() {
	v, err := validator.New(&validator.Spec{Signature: &validator.SignatureSpec{
		AccessKeys: map[string]string{"AKID": "a-shared-secret-of-some-length"},
	}})
	if err != nil {
		panic(err)
	}
	req := httptest.NewRequest("POST", "http://api.example.com/orders", strings.NewReader(`{"qty":1}`))
	req.Header.Set("Content-Type", "application/json")
	if err := validator.Sign(req, "AKID", "a-shared-secret-of-some-length", time.Now(), false, "Content-Type"); err != nil {
		panic(err)
	}
	fmt.Println(strings.SplitN(req.Header.Get("Authorization"), ", Signature=", 2)[0])
	fmt.Println(v.Handle(pipeline.NewContext(req)) == pipeline.Continue)
	// Output:
	// SLUICE-HMAC-SHA256 Credential=AKID, SignedHeaders=content-type;host;x-sluice-date
	// true
}
