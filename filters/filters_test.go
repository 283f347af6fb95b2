package filters_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/sluicegw/sluice/filters"
	"github.com/sluicegw/sluice/pipeline"
)

// scan collects, per directory under filters/, the filter kinds defined
// there (pipeline.Define calls) and every Result value the code can produce:
// constants and conversions of type pipeline.Result, and string literals
// returned from functions whose result is a pipeline.Result.
func scan(t *testing.T) (kindsByDir map[string][]string, resultsByDir map[string]map[string]token.Position) {
	t.Helper()
	kindsByDir = map[string][]string{}
	resultsByDir = map[string]map[string]token.Position{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		add := func(lit *ast.BasicLit) {
			if lit == nil || lit.Kind != token.STRING {
				return
			}
			v, _ := strconv.Unquote(lit.Value)
			if v == "" {
				return
			}
			if resultsByDir[dir] == nil {
				resultsByDir[dir] = map[string]token.Position{}
			}
			resultsByDir[dir][v] = fset.Position(lit.Pos())
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ValueSpec:
				if isResult(n.Type) {
					for _, v := range n.Values {
						lit, _ := v.(*ast.BasicLit)
						add(lit)
					}
				}
			case *ast.CallExpr:
				if isResult(n.Fun) && len(n.Args) == 1 {
					lit, _ := n.Args[0].(*ast.BasicLit)
					add(lit)
				}
				if name := defineName(n); name != "" {
					kindsByDir[dir] = append(kindsByDir[dir], name)
				}
			case *ast.FuncDecl:
				collectReturns(n.Type, n.Body, add)
			case *ast.FuncLit:
				collectReturns(n.Type, n.Body, add)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return kindsByDir, resultsByDir
}

func isResult(e ast.Expr) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "pipeline" && sel.Sel.Name == "Result"
}

// defineName returns the kind name of a pipeline.Define[...]("Name", ...) call.
func defineName(call *ast.CallExpr) string {
	fun := call.Fun
	if ix, ok := fun.(*ast.IndexExpr); ok {
		fun = ix.X
	}
	if ix, ok := fun.(*ast.IndexListExpr); ok {
		fun = ix.X
	}
	sel, ok := fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Define" || len(call.Args) == 0 {
		return ""
	}
	if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "pipeline" {
		return ""
	}
	lit, ok := call.Args[0].(*ast.BasicLit)
	if !ok {
		return ""
	}
	v, _ := strconv.Unquote(lit.Value)
	return v
}

func collectReturns(ft *ast.FuncType, body *ast.BlockStmt, add func(*ast.BasicLit)) {
	if body == nil || ft.Results == nil || len(ft.Results.List) != 1 || !isResult(ft.Results.List[0].Type) {
		return
	}
	ast.Inspect(body, func(n ast.Node) bool {
		if _, ok := n.(*ast.FuncLit); ok {
			return false // its own returns are collected on their own
		}
		if ret, ok := n.(*ast.ReturnStmt); ok && len(ret.Results) == 1 {
			lit, _ := ret.Results[0].(*ast.BasicLit)
			add(lit)
		}
		return true
	})
}

// TestEveryResultIsDeclared walks every built-in kind and proves that each
// result its code can return is declared in its Kind.Results, so that a
// jumpIf on it validates and the engine never sees an undeclared result.
func TestEveryResultIsDeclared(t *testing.T) {
	builtin := map[string]pipeline.Kind{}
	for _, k := range filters.Builtin() {
		builtin[k.Name] = k
	}
	kindsByDir, resultsByDir := scan(t)
	registered := 0
	for dir, kinds := range kindsByDir {
		declared := map[pipeline.Result]bool{}
		for _, name := range kinds {
			k, ok := builtin[name]
			if !ok {
				t.Errorf("%s defines kind %q, which filters.Builtin does not list", dir, name)
				continue
			}
			registered++
			for _, r := range k.Results {
				declared[r] = true
			}
		}
		for r, pos := range resultsByDir[dir] {
			if !declared[pipeline.Result(r)] {
				t.Errorf("%s: result %q is not declared by any kind of %s (%v)", pos, r, dir, kinds)
			}
		}
	}
	if registered != len(builtin) {
		t.Errorf("found %d Define calls under filters/ for %d built-in kinds", registered, len(builtin))
	}
	for name, k := range builtin {
		for _, r := range k.Results {
			found := false
			for dir, kinds := range kindsByDir {
				for _, kn := range kinds {
					if kn == name {
						_, found = resultsByDir[dir][string(r)]
					}
				}
			}
			if !found {
				t.Errorf("kind %s declares %q but its code never produces it", name, r)
			}
		}
	}
}

var tagOptions = map[string]bool{"omitempty": true, "inline": true, "flow": true}

// TestSpecTags rejects yaml tag typos in every built-in kind's spec: each
// exported field has a lowerCamel name (or inline), and only known options.
func TestSpecTags(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var check func(kind string, typ reflect.Type, path string)
	check = func(kind string, typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map || typ.Kind() == reflect.Array {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] || typ.PkgPath() == "time" {
			return
		}
		seen[typ] = true
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			if !f.IsExported() {
				continue
			}
			tag, ok := f.Tag.Lookup("yaml")
			if !ok {
				t.Errorf("%s: %s.%s has no yaml tag", kind, path, f.Name)
				continue
			}
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			for _, o := range strings.Split(opts, ",") {
				if o != "" && !tagOptions[o] {
					t.Errorf("%s: %s.%s: unknown yaml tag option %q", kind, path, f.Name, o)
				}
			}
			if name == "" && !strings.Contains(opts, "inline") {
				t.Errorf("%s: %s.%s: yaml tag without a name", kind, path, f.Name)
			}
			if name != "" && (!unicode.IsLower(rune(name[0])) || strings.ContainsAny(name, " _-")) {
				t.Errorf("%s: %s.%s: yaml name %q is not lowerCamel", kind, path, f.Name, name)
			}
			check(kind, f.Type, path+"."+name)
		}
	}
	for _, k := range filters.Builtin() {
		if k.DefaultSpec == nil {
			t.Errorf("%s has no DefaultSpec", k.Name)
			continue
		}
		check(k.Name, reflect.TypeOf(k.DefaultSpec()), k.Name)
	}
}

// TestDefaultSpecRoundTrip encodes each kind's default spec to YAML and
// decodes it back strictly.
func TestDefaultSpecRoundTrip(t *testing.T) {
	for _, k := range filters.Builtin() {
		def := k.DefaultSpec()
		b, err := yaml.Marshal(def)
		if err != nil {
			t.Errorf("%s: marshal: %v", k.Name, err)
			continue
		}
		raw, err := pipeline.ParseRaw(b)
		if err != nil {
			t.Errorf("%s: %v", k.Name, err)
			continue
		}
		back := reflect.New(reflect.TypeOf(def).Elem()).Interface()
		if err := raw.Decode(back); err != nil {
			t.Errorf("%s: decode of its own default: %v", k.Name, err)
			continue
		}
		if !reflect.DeepEqual(def, back) {
			t.Errorf("%s: default spec does not round-trip:\n%s", k.Name, b)
		}
	}
}
