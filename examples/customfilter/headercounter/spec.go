package headercounter

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/sluicegw/sluice/pipeline"
)

// Errors of a bad Spec; Validate wraps them in a pipeline.FieldErr naming
// the field, so test with errors.Is.
var (
	// ErrNoHeaders: the headers list is empty.
	ErrNoHeaders = errors.New("at least one header is required")
	// ErrHeaderName: a header name is empty or not an HTTP token.
	ErrHeaderName = errors.New("invalid header name")
	// ErrDuplicateHeader: a header is listed twice (names are case-insensitive).
	ErrDuplicateHeader = errors.New("duplicate header")
)

// Spec is the HeaderCounter filter's configuration.
//
//	kind: HeaderCounter
//	name: headerCounter
//	headers: [Cookie, Authorization]
type Spec struct {
	// Headers are the names of the headers to count. Required: at least
	// one. Names are case-insensitive (they are canonicalized, so "cookie"
	// and "Cookie" are the same header, and listing both is an error).
	Headers []string `yaml:"headers"`
}

// Validate checks that there is at least one header, and that every name is
// a valid, unique header name. Errors name the field, e.g. "headers[1]".
func (s *Spec) Validate() error {
	if len(s.Headers) == 0 {
		return pipeline.FieldErr("headers", ErrNoHeaders)
	}
	seen := make(map[string]int, len(s.Headers))
	for i, h := range s.Headers {
		field := "headers[" + strconv.Itoa(i) + "]"
		if h == "" {
			return pipeline.FieldErr(field, fmt.Errorf("%w: empty name", ErrHeaderName))
		}
		if !isToken(h) {
			return pipeline.FieldErr(field, fmt.Errorf("%w %q", ErrHeaderName, h))
		}
		canon := http.CanonicalHeaderKey(h)
		if j, dup := seen[canon]; dup {
			return pipeline.FieldErr(field, fmt.Errorf("%w: %q is also headers[%d]", ErrDuplicateHeader, h, j))
		}
		seen[canon] = i
	}
	return nil
}

// isToken reports whether s is an HTTP token (RFC 9110, section 5.6.2), the
// syntax of a header name.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c < 0x80 && c > ' ' && c != 0x7f && !isSeparator(c):
		default:
			return false
		}
	}
	return true
}

func isSeparator(c byte) bool {
	switch c {
	case '(', ')', '<', '>', '@', ',', ';', ':', '\\', '"', '/', '[', ']', '?', '=', '{', '}':
		return true
	}
	return false
}

var _ pipeline.Validator = (*Spec)(nil)
