// Package pipeline is Sluice's filter contract and the engine that runs
// filters in a flow.
//
// # The model
//
// A Pipeline is a list of steps. Each step runs one Filter on a Context that
// carries the request. The filter returns a Result: the empty result
// (Continue) moves on to the next step; any other result must be one its
// Kind declared, and the step's jumpIf maps it to a later step or to END. A
// result with no jumpIf entry ends the flow. When the flow ends, the
// response in the primary namespace is written to the client (200 with an
// empty body if no filter set one), and the OnFinish hooks run.
//
//	request → [validator] --invalid→ END
//	              │ ""
//	          [adaptor] → [proxy] → response
//
// # Building
//
// A Kind names a filter kind, lists its results and builds filters from a
// Raw spec. Define makes a Kind from a typed spec struct S: YAML is decoded
// strictly into S (unknown keys and wrong types are errors with line
// numbers), S's SetDefaults and Validate run, and the build function gets the
// result. A Registry holds kinds; it is a value, so each Gateway (and each
// test) has its own.
//
// New builds a Pipeline from a Spec and checks the whole flow first:
// unknown kinds or filters, duplicate names, a jumpIf on a result the kind
// does not declare, and a jump that does not go forward are all errors that
// name the field. A Pipeline is immutable; an update builds a new one, which
// takes state over from the old with Inherit before it is swapped in, and the
// old one is closed with Shutdown once its requests have finished.
//
// # Concurrency
//
// Filters are shared by every request of their pipeline: Handle runs
// concurrently and must keep its per-request state in the Context. Contexts
// are pooled; a filter must not keep one after Handle returns.
//
// Package filtertest builds a filter from a YAML snippet and runs one request
// through it, for table tests of filters.
package pipeline
