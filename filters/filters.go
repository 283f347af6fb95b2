// Package filters lists Sluice's built-in filter kinds. Each kind lives in
// its own subpackage (filters/proxy, filters/validator, ...), which a
// program may also import alone to use the kind with its own registry.
package filters

import "github.com/sluicegw/sluice/pipeline"

// Builtin returns every built-in filter kind.
func Builtin() []pipeline.Kind {
	return []pipeline.Kind{}
}
