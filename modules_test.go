package gaesession

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestStorePackageImportsNothingNew holds README's "Two modules": the
// store's package builds on the go line of go.mod and compiles the modules
// the original package compiled, whatever else this module (aelocal's gRPC
// server) or the nested module cloud requires.
func TestStorePackageImportsNothingNew(t *testing.T) {
	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(gomod), "\ngo 1.23.0\n") {
		t.Errorf("go.mod no longer says go 1.23.0: apps on older runtimes import this package")
	}
	gocmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gocmd); err != nil {
		gocmd = "go"
	}
	out, err := exec.Command(gocmd, "list", "-deps", "-f", "{{with .Module}}{{.Path}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var modules []string
	for _, m := range strings.Fields(string(out)) {
		if !slices.Contains(modules, m) {
			modules = append(modules, m)
		}
	}
	slices.Sort(modules)
	want := []string{
		"github.com/golang/protobuf",
		"github.com/icza/gaesession/v2",
		"github.com/icza/session",
		"google.golang.org/appengine/v2",
		"google.golang.org/protobuf",
	}
	if !slices.Equal(modules, want) {
		t.Errorf("the store's package compiles the modules\n%s\nwant\n%s", strings.Join(modules, "\n"), strings.Join(want, "\n"))
	}
}
