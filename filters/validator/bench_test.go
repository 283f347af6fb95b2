package validator_test

import (
	"encoding/base64"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluicegw/sluice/filters/validator"
	"github.com/sluicegw/sluice/pipeline"
	"github.com/sluicegw/sluice/pipeline/filtertest"
)

func BenchmarkJWT(b *testing.B) {
	k := keysOnce()
	clk := filtertest.WithClock(filtertest.NewFakeClock(start))
	for _, bc := range []struct {
		name, spec string
		token      string
		want       pipeline.Result
	}{
		{"HS256", "jwt:\n  algorithms: [HS256]\n  secret: " + base64.StdEncoding.EncodeToString(k.secret), sign(b, jwt.SigningMethodHS256, k.secret, claims(), ""), pipeline.Continue},
		{"RS256", "jwt:\n  algorithms: [RS256]\n  publicKey: |\n    " + indent(pemOf(b, &k.rsa.PublicKey), 4), sign(b, jwt.SigningMethodRS256, k.rsa, claims(), ""), pipeline.Continue},
		{"ES256", "jwt:\n  algorithms: [ES256]\n  publicKey: |\n    " + indent(pemOf(b, &k.ec.PublicKey), 4), sign(b, jwt.SigningMethodES256, k.ec, claims(), ""), pipeline.Continue},
		{"reject1MiB", "jwt:\n  algorithms: [HS256]\n  secret: " + base64.StdEncoding.EncodeToString(k.secret), "eyJhbGciOiJIUzI1NiJ9." + strings.Repeat("A", 1<<20) + ".x", validator.Invalid},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f, err := filtertest.Build(validator.Kind, bc.spec, clk)
			if err != nil {
				b.Fatal(err)
			}
			req := httptest.NewRequest("GET", "/", nil)
			req.Header.Set("Authorization", "Bearer "+bc.token)
			b.ReportAllocs()
			for b.Loop() {
				if f.Handle(pipeline.NewContext(req)) != bc.want {
					b.Fatal("unexpected result")
				}
			}
		})
	}
}
