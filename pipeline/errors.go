package pipeline

import (
	"errors"

	"github.com/sluicegw/sluice/internal/yamlx"
)

// Errors returned by the pipeline package. Build errors wrap them, so test
// with errors.Is.
var (
	// ErrUnknownKind: a filter's kind is not in the registry.
	ErrUnknownKind = errors.New("unknown filter kind")
	// ErrDuplicateKind: a registry already has a kind of that name.
	ErrDuplicateKind = errors.New("duplicate filter kind")
	// ErrUnknownFilter: a flow step or jumpIf names a filter that is not defined.
	ErrUnknownFilter = errors.New("unknown filter")
	// ErrDuplicateName: two filters or steps share a name.
	ErrDuplicateName = errors.New("duplicate name")
	// ErrUndeclaredResult: a jumpIf names a result the filter's kind does not declare.
	ErrUndeclaredResult = errors.New("result not declared by the filter kind")
	// ErrBackwardJump: a jumpIf target is not a later step.
	ErrBackwardJump = errors.New("jump target is not a later step")
	// ErrUnknownPolicy: a filter names a policy the pipeline does not define.
	ErrUnknownPolicy = errors.New("unknown policy")
	// ErrUnknownPolicyKind: a policy's kind is not in the registry.
	ErrUnknownPolicyKind = errors.New("unknown policy kind")
	// ErrUnknownField: a spec has a key its type does not have.
	ErrUnknownField = yamlx.ErrUnknownField
	// ErrNoRegistry: no live service registry answers to the name (not
	// applied yet, or deleted); see ServiceRegistry.
	ErrNoRegistry = errors.New("no such service registry")
)

// FieldError is an error in one field of a spec: its path from the spec's
// root ("filters[1].headers") and its YAML line.
type FieldError = yamlx.FieldError

// FieldErr returns a FieldError for field. Validate methods return it so
// that the user sees the field's line.
func FieldErr(field string, err error) error {
	return &FieldError{Field: field, Err: err}
}

// PrefixErr puts prefix in front of the field path of the FieldError err
// carries (a plain error becomes a FieldError at prefix), for specs that
// decode or validate a nested part on their own.
func PrefixErr(err error, prefix string) error { return yamlx.Prefix(err, prefix) }
