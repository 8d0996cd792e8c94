package readmetest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadmeGoSnippets compiles every ```go block of README.md, whatever
// section added it: each becomes a package of its own in a scratch module
// that requires this checkout through a replace line, with the imports
// and the reader's own names (a handler, a test's t) supplied as
// snippetFile describes, and `go vet` type-checks them all, tests
// included. An error names the README line.
func TestReadmeGoSnippets(t *testing.T) {
	var goBlocks []block
	for _, b := range readmeBlocks(t) {
		if b.lang == "go" {
			goBlocks = append(goBlocks, b)
		}
	}
	if len(goBlocks) < 3 {
		t.Fatalf("README.md has %d Go blocks; it had 3 when this test was written: is the parser broken?", len(goBlocks))
	}

	dir := scratchModule(t, "readme.example/snippets")
	for _, b := range goBlocks {
		s, err := snippetFile(b, nil)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		pkgDir := filepath.Join(dir, fmt.Sprintf("line%04d", b.line))
		writeFile(t, filepath.Join(pkgDir, s.name), s.src)
		if s.prelude != "" {
			writeFile(t, filepath.Join(pkgDir, "prelude.go"), s.prelude)
		}
	}
	if t.Failed() {
		return
	}
	runGo(t, dir, goEnv(t, "GOFLAGS=-mod=mod"), "vet", "./...")
}

// scratchModule makes a module named path in a temporary directory that
// requires this checkout through a replace line, with the checkout's
// requirements and go.sum, so that go needs nothing beyond the shared
// module cache.
func scratchModule(t testing.TB, path string) string {
	t.Helper()
	root := repoRoot(t)
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	first, rest, _ := strings.Cut(string(gomod), "\n")
	if !strings.HasPrefix(first, "module ") {
		t.Fatalf("go.mod does not start with its module line: %q", first)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "go.mod"), "module "+path+"\n"+rest+
		"\nrequire github.com/icza/gaesession/v2 v2.0.0\n\nreplace github.com/icza/gaesession/v2 => "+root+"\n")
	if err := copyFile(filepath.Join(root, "go.sum"), filepath.Join(dir, "go.sum")); err != nil {
		t.Fatal(err)
	}
	return dir
}
