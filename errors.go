package sluice

import (
	"errors"
	"fmt"
	"strings"
)

// Errors returned by the Gateway; test with errors.Is.
var (
	// ErrNotFound: no object of that kind and name.
	ErrNotFound = errors.New("object not found")
	// ErrExists: an object of that name already exists.
	ErrExists = errors.New("object already exists")
	// ErrUnknownKind: the kind is not registered with the gateway.
	ErrUnknownKind = errors.New("unknown object kind")
	// ErrBadSpec: a spec that does not decode, validate or build.
	ErrBadSpec = errors.New("invalid spec")
	// ErrClosed: the gateway has been shut down.
	ErrClosed = errors.New("gateway is shut down")
	// ErrDuplicateKind: two object kinds share a name.
	ErrDuplicateKind = errors.New("duplicate object kind")
	// ErrAdminUnprotected: ListenAdmin was asked for an address that is
	// not a loopback one while the admin API has neither a token nor
	// client certificates to authenticate its clients.
	ErrAdminUnprotected = errors.New("refusing to serve the admin API on a non-loopback address without authentication (WithAdminToken, or WithAdminTLS with verified client certificates)")
)

// ObjectError is an error about one object: its kind and name, and, when the
// spec is at fault, the field and its YAML line.
type ObjectError struct {
	Kind  string
	Name  string
	Field string // path from the object root, e.g. "filters[0].headers"
	Line  int    // 1-based line in the YAML; 0 when unknown
	Err   error
}

func (e *ObjectError) Error() string {
	var b strings.Builder
	switch {
	case e.Kind != "" && e.Name != "":
		fmt.Fprintf(&b, "%s %q: ", e.Kind, e.Name)
	case e.Kind != "":
		fmt.Fprintf(&b, "%s: ", e.Kind)
	case e.Name != "":
		fmt.Fprintf(&b, "%q: ", e.Name)
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, "field %q: ", e.Field)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ObjectError) Unwrap() error { return e.Err }
