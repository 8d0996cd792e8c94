// Package readmetest proves that README.md works as written: every Go
// snippet in it compiles (TestReadmeGoSnippets), and a new user's path
// through it, in a scratch app module of its own, runs command by command
// (TestReadmeFollowed).
//
// It is a test-only package of the library's module, so the repository's
// one `go test -race -count=1 ./...` runs it and CI fails when a README
// line stops working; it needs only the standard library, so the module
// gains no dependency for it.
package readmetest

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// markerPrefix starts the HTML comment (invisible on GitHub) that names a
// README code block for TestReadmeFollowed, on the line before its fence:
//
//	<!-- readme-test: aetest -->
const markerPrefix = "<!-- readme-test:"

// block is one fenced code block of a Markdown file.
type block struct {
	line   int    // 1-based line of the opening fence
	lang   string // the fence's info string: "go", "yaml", "" ...
	marker string // the readme-test name given on the line before, if any
	text   string // the lines between the fences, each ending in "\n"
}

// shell reports whether b holds commands: a fence without a language, or
// one for a shell.
func (b block) shell() bool {
	switch b.lang {
	case "", "sh", "bash", "shell", "console":
		return true
	}
	return false
}

// commands returns the lines of b that are not blank and not comments.
func (b block) commands() []string {
	var cmds []string
	for _, l := range strings.Split(b.text, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			cmds = append(cmds, l)
		}
	}
	return cmds
}

// parseBlocks returns the fenced code blocks of a Markdown text, with the
// readme-test marker of each. Fences are lines that start with ``` at the
// first column, as README.md writes them.
func parseBlocks(md string) []block {
	lines := strings.Split(md, "\n")
	var blocks []block
	for i := 0; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "```") {
			continue
		}
		b := block{line: i + 1, lang: strings.TrimSpace(strings.TrimPrefix(lines[i], "```"))}
		for j := i - 1; j >= 0; j-- {
			if l := strings.TrimSpace(lines[j]); l != "" {
				if strings.HasPrefix(l, markerPrefix) && strings.HasSuffix(l, "-->") {
					b.marker = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(l, markerPrefix), "-->"))
				}
				break
			}
		}
		var text strings.Builder
		for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			text.WriteString(lines[i] + "\n")
		}
		b.text = text.String()
		blocks = append(blocks, b)
	}
	return blocks
}

// repoRoot is the checkout this test belongs to.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot tell where the test's source is")
	}
	return filepath.Dir(filepath.Dir(file))
}

// readmeBlocks parses the repository's README.md.
func readmeBlocks(t testing.TB) []block {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return parseBlocks(string(b))
}

func TestParseBlocks(t *testing.T) {
	md := "text\n<!-- readme-test: one -->\n\n```\na\n# note\n\nb\n```\n```go\nx := 1\n```\n"
	got := parseBlocks(md)
	if len(got) != 2 {
		t.Fatalf("got %d blocks: %+v", len(got), got)
	}
	if got[0].line != 4 || got[0].lang != "" || got[0].marker != "one" || !got[0].shell() {
		t.Errorf("first block: %+v", got[0])
	}
	if c := got[0].commands(); len(c) != 2 || c[0] != "a" || c[1] != "b" {
		t.Errorf("commands: %q", c)
	}
	if got[1].lang != "go" || got[1].marker != "" || got[1].text != "x := 1\n" || got[1].shell() {
		t.Errorf("second block: %+v", got[1])
	}
}
