// Package fallback is the Fallback filter: a fixed response for the
// requests a flow sends to it when something upstream failed, typically
// on a jump from a Proxy result:
//
//	flow:
//	  - filter: proxy
//	    jumpIf: { shortCircuited: fallback, serverError: fallback }
//	  - filter: END        # a good response ends here
//	  - filter: fallback
//	filters:
//	  - name: fallback
//	    kind: Fallback
//	    mockCode: 200
//	    mockHeaders: { Content-Type: application/json }
//	    mockBody: '{"items": [], "degraded": true}'
//
// It replaces whatever response the context holds (closing its body) and
// lets the flow go on, so a ResponseAdaptor may follow it. The field names
// are Easegress's; the response is built and checked exactly as a Mock
// rule's is (a 204 or 304 takes no body, Content-Length is computed).
package fallback

import (
	"errors"
	"strings"

	"github.com/sluicegw/sluice/filters/mock"
	"github.com/sluicegw/sluice/pipeline"
)

// Kind is the Fallback filter kind. It declares no results.
var Kind = pipeline.Define("Fallback", nil, build).
	WithDescription("answers with a fixed response, for requests a flow jumps to it")

// Spec is the Fallback filter's configuration.
type Spec struct {
	// MockCode is the response status; 0 means 200.
	MockCode int `yaml:"mockCode,omitempty"`
	// MockHeaders are set on the response.
	MockHeaders map[string]string `yaml:"mockHeaders,omitempty"`
	// MockBody is the response body.
	MockBody string `yaml:"mockBody,omitempty"`
}

// fields maps the Mock rule's field names to Fallback's, for errors.
var fields = strings.NewReplacer("rules[0].code", "mockCode", "rules[0].headers", "mockHeaders", "rules[0].body", "mockBody")

func (s *Spec) mock() *mock.Spec {
	return &mock.Spec{Rules: []mock.Rule{{Code: s.MockCode, Headers: s.MockHeaders, Body: s.MockBody}}}
}

// Validate checks the response as a Mock rule would.
func (s *Spec) Validate() error {
	err := s.mock().Validate()
	var fe *pipeline.FieldError
	if errors.As(err, &fe) {
		c := *fe
		c.Field = fields.Replace(fe.Field)
		return &c
	}
	return err
}

// Fallback answers every request it handles with one fixed response.
type Fallback struct {
	m *mock.Mock
}

func build(env pipeline.Env, s *Spec) (pipeline.Filter, error) { return New(env, s) }

// New builds a Fallback from s.
func New(env pipeline.Env, s *Spec) (*Fallback, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	m, err := mock.New(env, s.mock())
	if err != nil {
		return nil, err
	}
	return &Fallback{m: m}, nil
}

// Handle sets the fallback response and continues the flow.
func (f *Fallback) Handle(c *pipeline.Context) pipeline.Result {
	f.m.Handle(c)
	return pipeline.Continue
}

var _ pipeline.Filter = (*Fallback)(nil)
