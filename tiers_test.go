package gaesession

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The session core reaches App Engine's Memcache and Datastore only
// through its tiers (cache.go, durable.go), so that a Redis and a Cloud
// Datastore tier plug in without touching it: outside the bundled
// Datastore tier's file, the package names nothing of the bundled
// services' packages but the codec option and the purge's key type.
func TestCoreUsesServicesOnlyThroughTiers(t *testing.T) {
	// The bundled Memcache tier is tier.Memcache, in internal/tier with
	// the seam's types and the tiers' errors.
	tierFiles := map[string]bool{"durable_datastore.go": true}
	allowed := map[string]bool{
		"memcache.Codec": true, // MemcacheStoreOptions.Codec
		"memcache.Gob":   true, // its default
		"datastore.Key":  true, // purge.go: the bundled purge tier's key type
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var bad []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") || tierFiles[name] {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		services := map[string]bool{} // local names of the services' packages
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if path != "google.golang.org/appengine/v2/memcache" && path != "google.golang.org/appengine/v2/datastore" {
				continue
			}
			local := filepath.Base(path)
			if imp.Name != nil {
				local = imp.Name.Name
			}
			services[local] = true
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && services[x.Name] {
				if use := x.Name + "." + sel.Sel.Name; !allowed[use] {
					bad = append(bad, fset.Position(sel.Pos()).String()+": "+use)
				}
			}
			return true
		})
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("the core calls the bundled services around its tiers:\n%s", strings.Join(bad, "\n"))
	}
}
