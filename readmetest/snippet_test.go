package readmetest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"sort"
	"strings"
)

// knownImports are the packages a README snippet may use without showing
// their import: the name it uses, and the path the harness imports. The
// App Engine names are appengine/v2's (the README is about v2), so "log",
// "mail" and "image" are App Engine's, not the standard library's.
var knownImports = map[string]string{
	"bytes":    "bytes",
	"context":  "context",
	"errors":   "errors",
	"fmt":      "fmt",
	"io":       "io",
	"json":     "encoding/json",
	"os":       "os",
	"strconv":  "strconv",
	"strings":  "strings",
	"sync":     "sync",
	"testing":  "testing",
	"time":     "time",
	"http":     "net/http",
	"httptest": "net/http/httptest",
	"url":      "net/url",

	"appengine":  "google.golang.org/appengine/v2",
	"aetest":     "google.golang.org/appengine/v2/aetest",
	"blobstore":  "google.golang.org/appengine/v2/blobstore",
	"capability": "google.golang.org/appengine/v2/capability",
	"datastore":  "google.golang.org/appengine/v2/datastore",
	"delay":      "google.golang.org/appengine/v2/delay",
	"image":      "google.golang.org/appengine/v2/image",
	"log":        "google.golang.org/appengine/v2/log",
	"mail":       "google.golang.org/appengine/v2/mail",
	"memcache":   "google.golang.org/appengine/v2/memcache",
	"module":     "google.golang.org/appengine/v2/module",
	"search":     "google.golang.org/appengine/v2/search",
	"taskqueue":  "google.golang.org/appengine/v2/taskqueue",
	"urlfetch":   "google.golang.org/appengine/v2/urlfetch",
	"user":       "google.golang.org/appengine/v2/user",

	"gaesession": "github.com/icza/gaesession/v2",
	"aelocal":    "github.com/icza/gaesession/v2/aelocal",
	"session":    "github.com/icza/session",
}

// freeName is a declaration the harness supplies for a name that README
// snippets use for the reader's own things (their test's t, their
// handler), and the packages that declaration needs.
type freeName struct {
	decl    string
	imports []string
}

var handlerDecl = func(name string) freeName {
	return freeName{"func " + name + "(w http.ResponseWriter, r *http.Request) {}", []string{"http"}}
}

// knownFree are the names a snippet may use without declaring them. A
// handler is a plain function, as most apps write it, so a snippet that
// passes one where an http.Handler is needed does not compile here either.
var knownFree = map[string]freeName{
	"t":          {"var t *testing.T", []string{"testing"}},
	"ctx":        {"var ctx context.Context", []string{"context"}},
	"srv":        {"var srv *aelocal.Server", []string{"aelocal"}},
	"w":          {"var w http.ResponseWriter", []string{"http"}},
	"r":          {"var r *http.Request", []string{"http"}},
	"handler":    handlerDecl("handler"),
	"myHandler":  handlerDecl("myHandler"),
	"work":       handlerDecl("work"),
	"appHandler": handlerDecl("appHandler"),
}

// goSnippet is a README Go block made into a file of a package of its own.
type goSnippet struct {
	pkg     string // package name: "main" if the block declares func main
	name    string // file name; snippet_test.go if the block declares tests
	src     string
	prelude string // a second file declaring the free names it uses; "" if none
}

// snippetFile turns block b into Go source. A block is either a complete
// file (it starts with a package clause), or declarations (functions,
// types, imports), or statements, which go into a function; a variable a
// statement block declares and leaves unused is used by the harness, since
// the block is a fragment. The file imports the known packages the block
// uses and does not import itself; the prelude declares the known free
// names it uses that neither it nor declared (the names of other files of
// the same package) declares. Errors name README.md lines, through a
// //line directive, so compiler messages point into the README.
func snippetFile(b block, declared map[string]bool) (goSnippet, error) {
	lineDirective := fmt.Sprintf("//line README.md:%d\n", b.line+1)
	if strings.HasPrefix(strings.TrimSpace(b.text), "package ") {
		f, err := parser.ParseFile(token.NewFileSet(), "README.md", b.text, 0)
		if err != nil {
			return goSnippet{}, fmt.Errorf("README.md:%d: %v", b.line, err)
		}
		return goSnippet{pkg: f.Name.Name, name: fileName(f), src: lineDirective + b.text}, nil
	}

	fset := token.NewFileSet()
	body := b.text
	f, err := parser.ParseFile(fset, "README.md", "package p\n"+body, 0)
	stmts := false
	if err != nil {
		f, err = parser.ParseFile(fset, "README.md", "package p\nfunc _() {\n"+body+"}\n", 0)
		if err != nil {
			return goSnippet{}, fmt.Errorf("README.md:%d: neither declarations nor statements: %v", b.line, err)
		}
		stmts = true
	}

	own := map[string]bool{} // names the block imports itself
	for _, imp := range f.Imports {
		own[importName(imp)] = true
	}
	pkg := "snippet"
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && fd.Name.Name == "main" {
			pkg = "main"
		}
	}

	imports := map[string]bool{}
	var free []string
	for _, id := range f.Unresolved {
		name := id.Name
		switch {
		case types.Universe.Lookup(name) != nil, own[name], declared[name]:
		case knownImports[name] != "":
			imports[name] = true
		case knownFree[name].decl != "":
			if !contains(free, name) {
				free = append(free, name)
			}
		default:
			return goSnippet{}, fmt.Errorf("README.md:%d: the snippet uses %q, which neither it nor the harness declares (readmetest's knownImports and knownFree)", b.line, name)
		}
	}

	var src strings.Builder
	fmt.Fprintf(&src, "package %s\n\n%s", pkg, importBlock(imports))
	if stmts {
		src.WriteString("func _() {\n" + lineDirective + body)
		for _, v := range definedVars(f) {
			fmt.Fprintf(&src, "\t_ = %s\n", v)
		}
		src.WriteString("}\n")
	} else {
		src.WriteString(lineDirective + body)
	}

	s := goSnippet{pkg: pkg, name: fileName(f), src: src.String()}
	if len(free) > 0 {
		sort.Strings(free)
		need := map[string]bool{}
		var decls strings.Builder
		for _, name := range free {
			decls.WriteString(knownFree[name].decl + "\n")
			for _, imp := range knownFree[name].imports {
				need[imp] = true
			}
		}
		s.prelude = fmt.Sprintf("package %s\n\n%s%s", pkg, importBlock(need), decls.String())
	}
	return s, nil
}

// parseGo parses a Go file.
func parseGo(src string) (*ast.File, error) {
	return parser.ParseFile(token.NewFileSet(), "snippet.go", src, 0)
}

// importBlock imports the named known packages, each under its name.
func importBlock(names map[string]bool) string {
	if len(names) == 0 {
		return ""
	}
	var sorted []string
	for n := range names {
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	var b strings.Builder
	b.WriteString("import (\n")
	for _, n := range sorted {
		fmt.Fprintf(&b, "\t%s %q\n", n, knownImports[n])
	}
	b.WriteString(")\n\n")
	return b.String()
}

// importName is the name an import spec brings into the file.
func importName(imp *ast.ImportSpec) string {
	if imp.Name != nil {
		return imp.Name.Name
	}
	path := strings.Trim(imp.Path.Value, `"`)
	for name, p := range knownImports {
		if p == path {
			return name
		}
	}
	parts := strings.Split(path, "/")
	last := parts[len(parts)-1]
	if len(parts) > 1 && len(last) > 1 && last[0] == 'v' && strings.Trim(last[1:], "0123456789") == "" {
		last = parts[len(parts)-2]
	}
	return last
}

// fileName is snippet_test.go for a file that declares tests, examples,
// benchmarks or fuzz targets, else snippet.go.
func fileName(f *ast.File) string {
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil {
			for _, p := range []string{"Test", "Example", "Benchmark", "Fuzz"} {
				if strings.HasPrefix(fd.Name.Name, p) {
					return "snippet_test.go"
				}
			}
		}
	}
	return "snippet.go"
}

// topLevelNames are the names f declares at package level.
func topLevelNames(f *ast.File) map[string]bool {
	names := map[string]bool{}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil {
				names[d.Name.Name] = true
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.ValueSpec:
					for _, n := range s.Names {
						names[n.Name] = true
					}
				case *ast.TypeSpec:
					names[s.Name.Name] = true
				}
			}
		}
	}
	return names
}

// definedVars are the variables the statements of the wrapper function
// (the first declaration of f) declare at their top level.
func definedVars(f *ast.File) []string {
	var vars []string
	fd := f.Decls[len(f.Decls)-1].(*ast.FuncDecl)
	for _, st := range fd.Body.List {
		switch st := st.(type) {
		case *ast.AssignStmt:
			if st.Tok == token.DEFINE {
				for _, e := range st.Lhs {
					if id, ok := e.(*ast.Ident); ok && id.Name != "_" && !contains(vars, id.Name) {
						vars = append(vars, id.Name)
					}
				}
			}
		case *ast.DeclStmt:
			if gd, ok := st.Decl.(*ast.GenDecl); ok && gd.Tok == token.VAR {
				for _, s := range gd.Specs {
					for _, n := range s.(*ast.ValueSpec).Names {
						if n.Name != "_" && !contains(vars, n.Name) {
							vars = append(vars, n.Name)
						}
					}
				}
			}
		}
	}
	return vars
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
